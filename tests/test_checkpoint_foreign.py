"""Foreign checkpoints with an arch: K/C checked before building, non-strict loads, and code named by a file refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from foreign_helpers import BUILDERS, SAME_MODEL_TOL, batch, trained_like, write_module

from lncli.checkpoint import (
    Checkpoint,
    NormSpec,
    checkpoint_from_model,
    complete_weights,
    load_checkpoint,
    model_from_checkpoint,
    model_with_report,
    save_checkpoint,
)
from lncli.data import DATASETS
from lncli.errors import CheckpointError
from lncli.models import create_model

GRAY = DATASETS["synthetic-gray"]  # 10 classes, 1 channel
RGB = DATASETS["synthetic"]  # 10 classes, 3 channels


def _small_cnn_state(classes: int = 10, channels: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=classes, in_channels=channels).state_dict()


@pytest.mark.parametrize(
    ("classes", "channels", "data", "message"),
    [
        (7, 1, GRAY, "classifier.3.weight has 7 classes, the data (synthetic-gray) has 10"),
        (10, 1, RGB, "features.0.weight takes 1 channels, the data (synthetic) has 3"),
    ],
)
def test_classes_and_channels_are_checked_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classes: int, channels: int, data, message: str
) -> None:
    torch.save(_small_cnn_state(classes, channels), tmp_path / "f.pt")

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built before the shapes were checked")

    monkeypatch.setattr("lncli.models.build_model", no_build)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "f.pt", arch="small_cnn", data=data)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_keys_are_unwrapped_and_prefixed_keys_load(tmp_path: Path) -> None:
    state = _small_cnn_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "f.pt")
    model = model_from_checkpoint(load_checkpoint(tmp_path / "f.pt", arch="small_cnn", data=GRAY))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def _damaged(tmp_path: Path) -> Path:
    """A small_cnn state_dict without the classifier's bias and with one key of another model."""
    state = _small_cnn_state()
    del state["classifier.3.bias"]
    state["extra.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "f.pt")
    return tmp_path / "f.pt"


def test_strict_by_default_non_strict_reports(tmp_path: Path) -> None:
    ckpt = load_checkpoint(_damaged(tmp_path), arch="small_cnn", data=GRAY)
    with pytest.raises(CheckpointError, match=r"missing keys: classifier\.3\.bias; unexpected keys: extra\.weight"):
        model_from_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="--non-strict loads anyway"):
        complete_weights(ckpt)
    model, report = model_with_report(ckpt, strict=False)
    assert report.missing_keys == ("classifier.3.bias",) and report.unexpected_keys == ("extra.weight",)
    assert report.summary() == "1 missing key (classifier.3.bias); 1 unexpected key (extra.weight)"
    assert torch.equal(model.state_dict()["classifier.3.weight"], ckpt.state_dict["classifier.3.weight"])


def test_complete_weights_fills_missing_keys_the_same_way_every_time(tmp_path: Path) -> None:
    ckpt = load_checkpoint(_damaged(tmp_path), arch="small_cnn", data=GRAY)
    rng = torch.random.get_rng_state()
    done, _ = complete_weights(ckpt, strict=False)
    again, _ = complete_weights(ckpt, strict=False)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global RNG is left alone
    assert "extra.weight" not in done.state_dict and "classifier.3.bias" in done.state_dict
    assert torch.equal(done.state_dict["classifier.3.bias"], again.state_dict["classifier.3.bias"])
    assert done.provenance["load"] == {
        "strict": False,
        "missing_keys": ["classifier.3.bias"],
        "unexpected_keys": ["extra.weight"],
    }
    model_from_checkpoint(done)  # now complete: loads strictly
    same, empty = complete_weights(done)
    assert same is done and not empty


def test_shapes_must_match_even_non_strict(tmp_path: Path) -> None:
    state = _small_cnn_state()
    state["classifier.1.weight"] = torch.zeros(128, 99)
    torch.save(state, tmp_path / "f.pt")
    ckpt = load_checkpoint(tmp_path / "f.pt", arch="small_cnn", data=GRAY)
    with pytest.raises(CheckpointError, match=r"shape mismatch for classifier\.1\.weight \(128, 99\)"):
        model_with_report(ckpt, strict=False)


# --------------------------------------------------------------------------- code named by a file


def _lncli_checkpoint_with_arch(path: Path, arch: str) -> Path:
    """An lncli checkpoint of a small net whose recorded arch is ``arch`` (as if lncli had written it for it)."""
    _, _, meta = batch("synthetic", 1)
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=10, in_channels=3)
    save_checkpoint(checkpoint_from_model(model, arch=arch, arch_kwargs={}, norm=NormSpec(), data=meta), path)
    return path


@pytest.fixture()
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module whose import writes ``tmp_path/imported``, importable as ``lnclitest_evil``; returns the marker."""
    marker = tmp_path / "imported"
    write_module(tmp_path / "src", "lnclitest_evil", f"open({str(marker)!r}, 'w').close()\ndef build(**kw): 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield marker
    sys.modules.pop("lnclitest_evil", None)


@pytest.mark.parametrize("arch", ["os:system", "lnclitest_evil:build", "torchvision.models:resnet18"])
def test_a_recorded_code_arch_is_refused_and_nothing_is_imported(tmp_path: Path, evil: Path, arch: str) -> None:
    path = _lncli_checkpoint_with_arch(tmp_path / "evil.pt", arch)
    modules = set(sys.modules)
    for kwargs in ({}, {"allow_code": True}, {"arch": "tiny", "allow_code": True}):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path, **kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    assert "never runs code named by a file" in str(load_error(path))
    assert not evil.exists() and "lnclitest_evil" not in sys.modules
    assert not {m for m in set(sys.modules) - modules if "evil" in m}
    # A Checkpoint made in memory with such an arch does not build either, unless the caller allows it.
    ckpt = Checkpoint(arch=arch, arch_kwargs={}, norm=NormSpec(), data=RGB, state_dict={})
    with pytest.raises(CheckpointError, match="runs code"):
        model_from_checkpoint(ckpt)
    assert not evil.exists()


def load_error(path: Path) -> CheckpointError:
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        return exc
    raise AssertionError("not refused")


def test_a_recorded_code_arch_loads_when_the_user_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(tmp_path / "src", "lnclitest_nets", BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        import lnclitest_nets

        x, _, meta = batch("synthetic", 8)
        net = trained_like(lnclitest_nets.build(10, 3), 0).eval()
        path = tmp_path / "mine.pt"
        ckpt = checkpoint_from_model(net, arch="lnclitest_nets:build", arch_kwargs={}, norm=NormSpec(), data=meta)
        save_checkpoint(ckpt, path)
        with pytest.raises(CheckpointError, match="--arch lnclitest_nets:build"):
            load_checkpoint(path)
        loaded = load_checkpoint(path, arch="lnclitest_nets:build", allow_code=True)
        with torch.no_grad():
            got, want = model_from_checkpoint(loaded)(x), net(x)
        rtol, atol = SAME_MODEL_TOL
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
        assert loaded.allow_code and "allow_code" not in loaded.to_dict()
    finally:
        sys.modules.pop("lnclitest_nets", None)


def test_a_recorded_library_arch_resolves_only_through_its_registry(tmp_path: Path) -> None:
    path = _lncli_checkpoint_with_arch(tmp_path / "tv.pt", "torchvision:os")
    ckpt = load_checkpoint(path)  # a library name is data, not code: reading it is harmless
    with pytest.raises(CheckpointError, match="unknown torchvision model 'os'"):
        model_from_checkpoint(ckpt)
