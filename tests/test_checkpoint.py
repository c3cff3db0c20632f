"""Checkpoint format: round trips, foreign formats, and one clear CheckpointError per kind of bad file."""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lncli import __version__
from lncli.checkpoint import (
    CHECKPOINT_SUFFIXES,
    FORMAT,
    Checkpoint,
    NormSpec,
    checkpoint_from_model,
    file_sha256,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from lncli.config.common import DEFAULT_GROUP_SIZE
from lncli.config.train import NormConfig, TrainConfig
from lncli.data import DATASETS
from lncli.errors import CheckpointError, LncliError
from lncli.models import create_model
from lncli.nn import LocalNorm2d, get_norm_layer, localnorm_layers

META = DATASETS["synthetic"]


class NotAllowed:
    """A custom class: unpickling an instance needs code, which weights_only refuses."""

    def __init__(self) -> None:
        self.x = 1


def _tiny(norm: NormSpec | None = None, seed: int = 0) -> tuple[nn.Module, Checkpoint]:
    torch.manual_seed(seed)
    norm = norm or NormSpec()
    if norm.kind == "localnorm":
        layer = get_norm_layer("localnorm", group_size=norm.group_size, num_heads=norm.num_heads or 1)
    else:
        layer = nn.BatchNorm2d
    model = create_model("tiny", num_classes=10, in_channels=3, norm_layer=layer, width=4)
    model.train()
    model(torch.randn(8, 3, 32, 32))  # move the running statistics off their init
    ckpt = checkpoint_from_model(
        model,
        arch="tiny",
        arch_kwargs={"width": 4},
        norm=norm,
        data=META,
        config={"lr": 0.1, "epochs": 2, "milestones": [1, 2]},
        metrics={"acc": 0.5},
        provenance={"source": "test"},
    )
    return model.eval(), ckpt


def _assert_same_outputs(a: nn.Module, b: nn.Module, seed: int) -> None:
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ya, yb = a.eval()(x), b.eval()(x)
    err = (ya - yb).abs().max().item()
    torch.testing.assert_close(ya, yb, rtol=0, atol=0, msg=f"max error {err}")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_batchnorm(tmp_path: Path, seed: int) -> None:
    model, ckpt = _tiny(seed=seed)
    save_checkpoint(ckpt, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.arch == "tiny" and loaded.arch_kwargs == {"width": 4}
    assert loaded.norm == NormSpec() and loaded.data == META
    assert loaded.config == {"lr": 0.1, "epochs": 2, "milestones": [1, 2]}
    assert loaded.metrics == {"acc": 0.5} and loaded.provenance == {"source": "test"}
    assert loaded.lncli_version == __version__ and loaded.train_state is None
    assert loaded.state_dict.keys() == ckpt.state_dict.keys()
    for k, v in ckpt.state_dict.items():
        assert torch.equal(loaded.state_dict[k], v), k
    rebuilt = model_from_checkpoint(loaded)
    assert not rebuilt.training
    _assert_same_outputs(model, rebuilt, seed)


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_localnorm(tmp_path: Path, seed: int) -> None:
    spec = NormSpec("localnorm", group_size=4, num_heads=2)
    model, ckpt = _tiny(spec, seed=seed)
    save_checkpoint(ckpt, tmp_path / "ln.pt")
    loaded = load_checkpoint(tmp_path / "ln.pt")
    assert loaded.norm == spec
    rebuilt = model_from_checkpoint(loaded)
    layers = [m for m in rebuilt.modules() if isinstance(m, LocalNorm2d)]
    assert layers and all(m.group_size == 4 and m.num_heads == 2 for m in layers)
    _assert_same_outputs(model, rebuilt, seed)


def test_on_disk_format_is_plain_and_weights_only(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    save_checkpoint(ckpt, tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert set(raw) >= {"arch", "arch_kwargs", "norm", "data", "state_dict", "config", "metrics", "lncli_version"}
    assert raw["data"]["mean"] == list(META.mean)


def test_train_state_round_trip(tmp_path: Path) -> None:
    model, ckpt = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    ckpt.train_state = {"epoch": 3, "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}
    save_checkpoint(ckpt, tmp_path / "last.pt")
    back = load_checkpoint(tmp_path / "last.pt").train_state
    assert back is not None and back["epoch"] == 3
    assert torch.equal(back["torch_rng"], ckpt.train_state["torch_rng"])


def test_save_is_byte_deterministic(tmp_path: Path) -> None:
    # The same checkpoint saved twice, under different names, gives the same bytes: the
    # temporary file name must not leak into torch.save's archive (it names the zip's root).
    _, ckpt = _tiny()
    save_checkpoint(ckpt, tmp_path / "a.pt")
    save_checkpoint(ckpt, tmp_path / "sub" / "other_name.pt")
    assert file_sha256(tmp_path / "a.pt") == file_sha256(tmp_path / "sub" / "other_name.pt")


def test_save_refuses_unloadable_objects(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    ckpt.metrics = {"confusion": np.zeros(3)}
    with pytest.raises(TypeError, match=r"checkpoint\.metrics\.confusion is a numpy.ndarray"):
        save_checkpoint(ckpt, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ckpt = _tiny()
    target = tmp_path / "last.pt"
    save_checkpoint(ckpt, target)
    digest = file_sha256(target)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, target)
    assert file_sha256(target) == digest  # previous checkpoint intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left


def test_checkpoint_from_model_unwraps_and_copies() -> None:
    model, _ = _tiny()
    wrapped = nn.Module()
    wrapped.module = model  # what DDP looks like from the outside
    ckpt = checkpoint_from_model(wrapped, arch="tiny", arch_kwargs={"width": 4}, norm=NormSpec(), data=META)
    assert set(ckpt.state_dict) == set(model.state_dict())
    with torch.no_grad():
        model.fc.weight.add_(1)
    assert not torch.equal(ckpt.state_dict["fc.weight"], model.fc.weight)


def test_file_sha256(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(CheckpointError, match="cannot read"):
        file_sha256(tmp_path / "missing")


def test_normspec_dict_round_trip() -> None:
    spec = NormSpec("localnorm", 16, 8, "strided")
    assert NormSpec.from_dict(spec.to_dict()) == spec
    assert NormSpec.from_dict({}) == NormSpec()


def test_normspec_is_the_train_configs_norm_section() -> None:
    # One dataclass: what a config's `norm:` section holds is what a checkpoint records.
    assert NormSpec is NormConfig
    assert TrainConfig().norm == NormSpec() and NormSpec().group_size == DEFAULT_GROUP_SIZE


@pytest.mark.parametrize(
    "spec", [NormSpec(), NormSpec("batchnorm", 8, 2, "strided"), NormSpec("batchnorm", grouping="strided")]
)
def test_batchnorm_record_holds_no_localnorm_settings(spec: NormSpec) -> None:
    # The on-disk record lncli has always written for a BatchNorm model, whatever the config held.
    record = spec.to_dict()
    assert record == {"kind": "batchnorm", "group_size": None, "num_heads": None, "grouping": "consecutive"}
    assert list(record) == ["kind", "group_size", "num_heads", "grouping"]
    assert NormSpec.from_dict(record) == NormSpec()


@pytest.mark.parametrize(
    ("g", "heads", "grouping"), [(4, 2, "consecutive"), (16, None, "strided"), (1, 8, "consecutive")]
)
def test_localnorm_record_is_every_field(g: int, heads: int | None, grouping: str) -> None:
    spec = NormSpec("localnorm", g, heads, grouping)  # type: ignore[arg-type]
    record = spec.to_dict()
    assert record == {"kind": "localnorm", "group_size": g, "num_heads": heads, "grouping": grouping}
    assert list(record) == ["kind", "group_size", "num_heads", "grouping"]
    assert NormSpec.from_dict(record) == spec


def test_norm_record_reading_rules() -> None:
    # A null G is the layer's default; spellings become the canonical kind; unknown kinds load
    # (building the model names them, see test_error_unknown_norm_kind).
    assert NormSpec.from_dict({"kind": "localnorm", "group_size": None, "num_heads": 4}) == NormSpec(
        "localnorm", DEFAULT_GROUP_SIZE, 4
    )
    assert NormSpec.from_dict({"kind": "BN"}).kind == "batchnorm"
    assert NormSpec.from_dict({"kind": "ln", "group_size": 4}) == NormSpec("localnorm", 4)
    assert NormSpec.from_dict({"kind": "groupnorm"}).kind == "groupnorm"
    with pytest.raises(CheckpointError, match="malformed norm spec"):
        NormSpec.from_dict({"kind": "localnorm", "group_size": "many"})


def test_norm_record_keeps_the_objects_it_read() -> None:
    # torch.save's pickle refers back to an object it has already written; a checkpoint that is
    # read and written again (convert records the old norm) keeps its bytes only if equal values
    # keep their objects. The strings are built at run time so they are not interned constants.
    def fresh(text: str) -> str:
        return "".join(list(text))  # a new str object equal to `text`

    grouping = fresh("consecutive")
    records = [
        {"kind": fresh("batchnorm"), "group_size": None, "num_heads": None, "grouping": grouping},
        {"kind": fresh("localnorm"), "group_size": 4, "num_heads": 2, "grouping": grouping},
    ]
    assert records[0]["kind"] is not NormSpec.kind  # the point: not the class's (interned) default
    for record in records:
        again = NormSpec.from_dict(record).to_dict()
        assert again == record
        assert again["kind"] is record["kind"] and again["grouping"] is record["grouping"]


def test_checkpoint_suffixes() -> None:
    import lncli.jobs.evaluate

    assert CHECKPOINT_SUFFIXES == (".pt", ".pth", ".ckpt")
    # evaluate picks up folders' files by the checkpoint format's own suffixes, not a copy of them.
    assert lncli.jobs.evaluate.CHECKPOINT_SUFFIXES is CHECKPOINT_SUFFIXES


# --------------------------------------------------------------------------- foreign checkpoints


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {}},
        lambda sd: {"state_dict_ema": sd},
        lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()),
        lambda sd: {"state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}},
    ],
    ids=["bare", "state_dict", "model", "state_dict_ema", "module-prefix", "compile-prefix"],
)
def test_foreign_formats_load(tmp_path: Path, wrap: object) -> None:
    model, _ = _tiny()
    torch.save(wrap(model.state_dict()), tmp_path / "f.pt")  # type: ignore[operator]
    ckpt = load_checkpoint(tmp_path / "f.pt", arch="tiny", arch_kwargs={"width": 4}, data=META)
    assert ckpt.norm == NormSpec()
    assert ckpt.provenance["source"] == str(tmp_path / "f.pt")
    _assert_same_outputs(model, model_from_checkpoint(ckpt), 0)


def test_foreign_localnorm_is_detected(tmp_path: Path) -> None:
    model, _ = _tiny(NormSpec("localnorm", group_size=4, num_heads=3))
    torch.save(model.state_dict(), tmp_path / "f.pt")
    ckpt = load_checkpoint(tmp_path / "f.pt", arch="tiny", arch_kwargs={"width": 4}, data=META)
    assert ckpt.norm.kind == "localnorm" and ckpt.norm.num_heads == 3
    rebuilt = model_from_checkpoint(ckpt)  # G is not in a state_dict: the default, so compare weights, not outputs
    assert [m.num_heads for m in rebuilt.modules() if isinstance(m, LocalNorm2d)] == [3] * len(localnorm_layers(model))
    want = model.state_dict()
    assert (
        all(torch.equal(v, want[k]) for k, v in rebuilt.state_dict().items())
        and rebuilt.state_dict().keys() == want.keys()
    )


def test_batchnorm_weights_load_into_localnorm_model(tmp_path: Path) -> None:
    model, _ = _tiny()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # affine values no fresh head could have (a fresh head is 1 and 0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    state = model.state_dict()
    torch.save(state, tmp_path / "bn.pt")
    ckpt = load_checkpoint(
        tmp_path / "bn.pt", arch="tiny", arch_kwargs={"width": 4}, data=META, norm=NormSpec("localnorm", 4, 2)
    )
    layers = {name: m for name, m in model_from_checkpoint(ckpt).named_modules() if isinstance(m, LocalNorm2d)}
    assert set(layers) == {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for name, layer in layers.items():  # every head of every layer is BN's weight/bias, bit for bit
        assert layer.head_weight.shape == (2, *state[f"{name}.weight"].shape), name
        for head in range(2):
            assert torch.equal(layer.head_weight[head], state[f"{name}.weight"]), (name, head)
            assert torch.equal(layer.head_bias[head], state[f"{name}.bias"]), (name, head)
        assert torch.equal(layer.running_mean, state[f"{name}.running_mean"]), name


def test_foreign_needs_arch_and_data(tmp_path: Path) -> None:
    model, _ = _tiny()
    torch.save(model.state_dict(), tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="foreign checkpoint .* pass --arch NAME and --data DATASET"):
        load_checkpoint(tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="foreign"):
        load_checkpoint(tmp_path / "f.pt", arch="tiny")
    with pytest.raises(CheckpointError, match="unknown arch 'resnet21'; valid: .*resnet20"):
        load_checkpoint(tmp_path / "f.pt", arch="resnet21", data=META)


# --------------------------------------------------------------------------- clear errors


def _message(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, LncliError) and "\n" not in msg, msg
    return msg


def test_error_nonexistent_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist") as exc:
        load_checkpoint(tmp_path / "nope.pt")
    _message(exc)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n", b"", *(np.random.default_rng(s).bytes(1000) for s in range(3))],
    ids=["text", "empty", "random0", "random1", "random2"],
)
def test_error_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(content.lstrip(b"\x80PK"))  # random bytes must not look like a zip or pickle
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as exc:
        load_checkpoint(path)
    _message(exc)


def test_error_plain_pickle_is_not_a_model(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"not a model checkpoint: it holds a dict with keys \['epoch', 'lr'\]"):
        load_checkpoint(tmp_path / "x.pt", arch="tiny", data=META)
    torch.save([torch.zeros(1)], tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(tmp_path / "y.pt", arch="tiny", data=META)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_error_truncated(tmp_path: Path, fraction: float) -> None:
    _, ckpt = _tiny()
    save_checkpoint(ckpt, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as exc:
        load_checkpoint(tmp_path / "t.pt")
    _message(exc)


def test_error_truncated_legacy_format(tmp_path: Path) -> None:
    model, _ = _tiny()
    torch.save(model.state_dict(), tmp_path / "m.pt", _use_new_zipfile_serialization=False)
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "t.pt")


def test_error_pickle_that_needs_code(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "extra": NotAllowed()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="needs code to unpickle .*NotAllowed.*weights-only") as exc:
        load_checkpoint(tmp_path / "code.pt")
    _message(exc)
    # A whole pickled module is the common real-world case.
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="needs code to unpickle"):
        load_checkpoint(tmp_path / "module.pt", arch="tiny", data=META)


def test_error_raw_pickle_that_runs_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        zf.writestr("evil/version", "3\n")
    with pytest.raises(CheckpointError, match=r"needs code to unpickle \(it contains a \w+\.system object\)"):
        load_checkpoint(tmp_path / "evil.pt")


def test_error_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    sd = dict(ckpt.state_dict)
    del sd["fc.weight"]
    sd["extra.weight"] = torch.zeros(1)
    ckpt.state_dict = sd
    with pytest.raises(CheckpointError, match=r"missing keys: fc\.weight; unexpected keys: extra\.weight") as exc:
        model_from_checkpoint(ckpt)
    _message(exc)


def test_error_many_missing_keys_are_abbreviated() -> None:
    _, ckpt = _tiny()
    ckpt.state_dict = {}
    with pytest.raises(CheckpointError, match=r"missing keys: .*, \.\.\. \(\d+ in all\)"):
        model_from_checkpoint(ckpt)


def test_error_wrong_arch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    r20 = create_model("resnet20", num_classes=10, in_channels=3)
    torch.save(r20.state_dict(), tmp_path / "r20.pt")
    ckpt = load_checkpoint(tmp_path / "r20.pt", arch="resnet32", data=DATASETS["cifar10"])
    with pytest.raises(
        CheckpointError, match=r"weights do not match arch 'resnet32'.*missing keys: layer1\.3\..*is --arch right\?"
    ):
        model_from_checkpoint(ckpt)
    ckpt = load_checkpoint(tmp_path / "r20.pt", arch="small_cnn", data=DATASETS["cifar10"])
    with pytest.raises(CheckpointError, match="small_cnn"):
        model_from_checkpoint(ckpt)
    # An lncli checkpoint records its arch: asking for another one is an error.
    _, tiny = _tiny()
    save_checkpoint(tiny, tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="holds a 'tiny' model, not 'resnet20'"):
        load_checkpoint(tmp_path / "tiny.pt", arch="resnet20")


def test_error_shape_mismatch_names_the_tensors(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    ckpt.data = dataclasses.replace(META, num_classes=5, classes=())
    with pytest.raises(CheckpointError, match=r"shape mismatch for fc\.weight \(10, 32\) vs model \(5, 32\)"):
        model_from_checkpoint(ckpt)


def test_error_unknown_arch_in_file(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    ckpt.arch = "resnet9000"
    save_checkpoint(ckpt, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="unknown arch 'resnet9000'"):
        model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))


def test_error_newer_format_and_malformed_payload(tmp_path: Path) -> None:
    _, ckpt = _tiny()
    payload = ckpt.to_dict()
    torch.save({**payload, "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "new.pt")
    torch.save({k: v for k, v in payload.items() if k != "data"}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="malformed lncli checkpoint: missing data"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({**payload, "data": {"name": "x"}}, tmp_path / "bad2.pt")
    with pytest.raises(CheckpointError, match="malformed data metadata"):
        load_checkpoint(tmp_path / "bad2.pt")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("arch_kwargs", [1, 2]),
        ("config", [1]),
        ("metrics", "x"),
        ("provenance", 3),
        ("train_state", 5),
        ("state_dict", {1: torch.zeros(1)}),
    ],
)
def test_error_malformed_payload_fields_are_checkpoint_errors(tmp_path: Path, key: str, value: object) -> None:
    """Non-dict fields (or non-str state_dict keys) used to escape as TypeError/ValueError/AttributeError."""
    _, ckpt = _tiny()
    torch.save({**ckpt.to_dict(), key: value}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="malformed lncli checkpoint"):
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))


def test_error_bad_arch_kwargs() -> None:
    _, ckpt = _tiny()
    ckpt.arch_kwargs = {"depth": 3}
    with pytest.raises(CheckpointError, match="cannot build 'tiny'.*takes no option depth"):
        model_from_checkpoint(ckpt)


def test_error_reserved_arch_kwargs() -> None:
    _, ckpt = _tiny()
    ckpt.arch_kwargs = {"width": 4, "norm_layer": None}
    with pytest.raises(CheckpointError, match="cannot build 'tiny'.*norm_layer is set by lncli"):
        model_from_checkpoint(ckpt)


def test_error_unknown_norm_kind() -> None:
    _, ckpt = _tiny()
    ckpt.norm = NormSpec("weightnorm")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="bad norm spec"):
        model_from_checkpoint(ckpt)


def test_save_refuses_namedtuples(tmp_path: Path) -> None:
    from collections import namedtuple

    _, ckpt = _tiny()
    ckpt.config = {"pair": namedtuple("Pair", "a b")(1, 2)}
    with pytest.raises(TypeError, match="checkpoint.config.pair"):
        save_checkpoint(ckpt, tmp_path / "m.pt")


def test_error_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "photos.pt", "w") as zf:
        zf.writestr("a.txt", "hello")
    with pytest.raises(CheckpointError, match="zip archive but not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "photos.pt")


# --------------------------------------------------------------------------- GroupNorm (issue 14)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("groups", [None, 2])
def test_round_trip_groupnorm(tmp_path: Path, seed: int, groups: int | None) -> None:
    from lncli.models import build_model as build_arch

    spec = NormSpec("groupnorm", groups=groups)
    torch.manual_seed(seed)
    model = build_arch("tiny", norm=spec, num_classes=10, in_channels=3, arch_kwargs={"width": 4}).eval()
    ckpt = checkpoint_from_model(model, arch="tiny", arch_kwargs={"width": 4}, norm=spec, data=META)
    save_checkpoint(ckpt, tmp_path / "gn.pt")
    raw = torch.load(tmp_path / "gn.pt", weights_only=True)
    assert raw["norm"] == {
        "kind": "groupnorm",
        "group_size": None,
        "num_heads": None,
        "grouping": "consecutive",
        "groups": groups,
    }
    back = load_checkpoint(tmp_path / "gn.pt")
    assert back.norm == spec
    rebuilt = model_from_checkpoint(back)
    norms = [m for m in rebuilt.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == (groups or min(32, m.num_channels)) for m in norms)
    _assert_same_outputs(model, rebuilt, seed)


@pytest.mark.parametrize("spec", [NormSpec(groups=4), NormSpec("localnorm", 4, 2, groups=4)])
def test_groups_stay_out_of_batchnorm_and_localnorm_records(spec: NormSpec) -> None:
    # A GroupNorm setting left in a BN/LN config must not reach their on-disk record.
    assert list(spec.to_dict()) == ["kind", "group_size", "num_heads", "grouping"]


@pytest.mark.parametrize("kind", ["batchnorm", "localnorm"])
def test_batchnorm_and_localnorm_checkpoint_bytes_are_the_pre_groupnorm_ones(tmp_path: Path, kind: str) -> None:
    """save_checkpoint writes exactly what torch.save writes for the payload with the norm record
    spelled as lncli wrote it before GroupNorm existed (a literal dict of four keys)."""
    spec = NormSpec("localnorm", 4, 2) if kind == "localnorm" else NormSpec()
    _, ckpt = _tiny(spec)
    save_checkpoint(ckpt, tmp_path / "now.pt")
    old_record = {
        "kind": kind,
        "group_size": 4 if kind == "localnorm" else None,
        "num_heads": 2 if kind == "localnorm" else None,
        "grouping": "consecutive",
    }
    with open(tmp_path / "before.pt", "wb") as fh:
        torch.save({**ckpt.to_dict(), "norm": old_record}, fh)
    assert file_sha256(tmp_path / "now.pt") == file_sha256(tmp_path / "before.pt")


def test_bn_weights_do_not_load_into_a_groupnorm_model() -> None:
    _, ckpt = _tiny()
    ckpt.norm = NormSpec("groupnorm")
    # Worded after the model as built: its GroupNorm layers, not the BatchNorm its weights came from.
    with pytest.raises(
        CheckpointError, match=r"with \d+ GroupNorm layers?, .*unexpected keys: features.1.running_mean"
    ):
        model_from_checkpoint(ckpt)
