"""``lncli.evaluate`` and ``lncli.load_model``: the evaluate job from Python (issue 21).

A model object, a torch ``Dataset`` and an ``(images, labels)`` pair go where the command line takes
files; every option is a keyword; the result renders, writes and gates as the command line does; the
caller's module is never changed. The central check: the same images as an image folder on the command
line, and as torchvision's ``ImageFolder`` with an in-memory module through ``lncli.evaluate``, give
identical counts (and per-image hits) in every cell.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import META, cfg
from PIL import Image
from typer.testing import CliRunner

import lncli
from lncli.checkpoint import load_checkpoint, model_from_checkpoint
from lncli.cli import app
from lncli.data import load_dataset
from lncli.errors import LncliError
from lncli.jobs.evaluate import EvalData, evaluate_grid, load_checkpoints

runner = CliRunner()
FAST = {"noise": "gaussian", "severity": (0, 3), "batch_size": 16, "device": "cpu"}


def _key(records: list) -> dict:
    return {(Path(r.checkpoint).name, r.mode, r.noise, r.severity): (r.correct, r.hits) for r in records}


def test_a_checkpoint_path_gives_the_command_lines_records(eval_ckpts: dict[str, Path]) -> None:
    res = lncli.evaluate([eval_ckpts["bn"], eval_ckpts["ln"]], "synthetic", limit=40, **FAST)
    data = EvalData.from_imageset(load_dataset("synthetic", "test", limit=40))
    grid = evaluate_grid(load_checkpoints([eval_ckpts["bn"], eval_ckpts["ln"]]), data, cfg(severities=(0, 3)))
    assert _key(res.records) == _key(grid)
    assert res.passed and res.comparisons is None
    assert "bn" in res.table() and "local" in res.table()


def test_a_module_is_evaluated_as_its_checkpoint_and_left_unchanged(eval_ckpts: dict[str, Path]) -> None:
    """An in-memory module gives its checkpoint's counts in every mode, and comes back as it was given:
    same weights, same train/eval flags, no LocalNorm layer swapped in (batch/local convert a copy)."""
    model = model_from_checkpoint(load_checkpoint(eval_ckpts["bn"])).train()  # in train mode on purpose
    before = copy.deepcopy(model.state_dict())
    modes = ("running", "batch", "local", "single", "tent")
    stats = {"mean": ",".join(map(str, META.mean)), "std": ",".join(map(str, META.std))}  # the checkpoint's
    res = lncli.evaluate({"bn": model}, "synthetic", limit=40, mode=",".join(modes), **stats, **FAST)
    by_file = lncli.evaluate({"bn": eval_ckpts["bn"]}, "synthetic", limit=40, mode=modes, **FAST)
    assert [(r.mode, r.noise, r.correct, r.hits) for r in res.records] == [
        (r.mode, r.noise, r.correct, r.hits) for r in by_file.records
    ]
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(type(m).__name__ == "LocalNorm2d" for m in model.modules())
    rec = res.records[0]
    assert rec.checkpoint == "bn" and rec.arch.startswith("module:") and rec.norm == "batchnorm"
    # Its identity is its weights' hash: the same module hashes the same, other weights otherwise.
    again = lncli.evaluate({"bn": model}, "synthetic", limit=8, mode="running", **stats, **FAST).records[0]
    other = model_from_checkpoint(load_checkpoint(eval_ckpts["ln"]))
    theirs = lncli.evaluate({"ln": other}, "synthetic", limit=8, mode="running", **stats, **FAST).records[0]
    assert len(rec.sha256) == 12 and again.sha256 == rec.sha256 != theirs.sha256


def _folder(root: Path, n_per_class: int = 6) -> Path:
    """A small RGB image folder of odd sizes (3 classes), made from the synthetic set."""
    images = load_dataset("synthetic", "test", limit=300)
    for k in range(3):
        picked = [i for i in range(len(images)) if int(images.labels[i]) == k][:n_per_class]
        for j, i in enumerate(picked):
            arr = images.images[i].permute(1, 2, 0).numpy()
            size = (29 + j, 35 - j)
            (root / f"class{k}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).resize(size).save(root / f"class{k}" / f"{j}.png")
    return root


def test_an_imagefolder_on_the_cli_equals_imagefolder_with_a_module_in_python(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    from lncli.checkpoint import NormSpec, checkpoint_from_model, save_checkpoint
    from lncli.data import DataMeta
    from lncli.models import create_model

    root = _folder(tmp_path / "folder")
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=3, in_channels=3).eval()
    meta = DataMeta("imagefolder", 3, 3, (28, 28), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), resize=32)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=meta), ckpt
    )
    out = tmp_path / "cli.json"
    args = ["--noise", "gaussian,impulse", "--severity", "0,2,5", "--batch-size", "4", "--mode", "running,batch"]
    res = runner.invoke(app, ["evaluate", str(ckpt), "--data", f"imagefolder:{root}", *args, "--json", str(out)])
    assert res.exit_code == 0, res.output
    cli = json.loads(out.read_text())["records"]
    py = lncli.evaluate({"m": model}, ImageFolder(str(root)), noise="gaussian,impulse", severity="0,2,5", batch_size=4,
                        mode=("running", "batch"), image_size=28, resize=32, mean="0.5", std="0.25")  # fmt: skip
    assert len(cli) == len(py.records) == 2 * 5
    for c, p in zip(cli, py.records):
        assert (c["mode"], c["noise"], c["severity"]) == (p.mode, p.noise, p.severity)
        assert (c["n"], c["correct"], c["hits"]) == (p.n, p.correct, p.hits), (p.mode, p.noise, p.severity)
    assert len({r.correct for r in py.records}) > 2  # not a degenerate model: the cells differ


def test_an_images_labels_pair_equals_the_dataset_it_came_from(eval_ckpts: dict[str, Path]) -> None:
    test = load_dataset("synthetic", "test", limit=40)
    model = model_from_checkpoint(load_checkpoint(eval_ckpts["bn"]))
    stats = {"mean": ",".join(map(str, META.mean)), "std": ",".join(map(str, META.std))}
    by_spec = lncli.evaluate({"m": model}, "synthetic", limit=40, **stats, **FAST)
    hwc = test.images.permute(0, 2, 3, 1).numpy()  # uint8 NHWC arrays
    by_arrays = lncli.evaluate({"m": model}, (hwc, test.labels.numpy()), **stats, **FAST)
    as_float = lncli.evaluate({"m": model}, (test.images.float() / 255, test.labels), **stats, **FAST)
    want = [(r.noise, r.correct, r.hits) for r in by_spec.records]
    assert [(r.noise, r.correct, r.hits) for r in by_arrays.records] == want
    assert [(r.noise, r.correct, r.hits) for r in as_float.records] == want


def test_the_result_renders_writes_and_gates_as_the_cli(eval_ckpts: dict[str, Path], tmp_path: Path) -> None:
    res = lncli.evaluate(eval_ckpts["bn"], "synthetic", limit=40, json=tmp_path / "r.json", **FAST)
    assert (tmp_path / "r.json").exists()  # the options' outputs are written
    res.to_csv(tmp_path / "r.csv")
    res.plot(tmp_path / "r.png")
    assert (tmp_path / "r.csv").read_text().startswith("checkpoint,") and (tmp_path / "r.png").stat().st_size > 0
    worst = min(r.accuracy for r in res.records)
    failing = res.check(fail_under=worst + 0.01)
    assert failing and all(not c.passed for c in failing)
    assert res.check(fail_under="0%") == []
    # compare with itself: nothing regressed; with a doctored baseline one cell did.
    assert not any(c.regressed for c in res.compare(tmp_path / "r.json"))
    doc = json.loads((tmp_path / "r.json").read_text())
    for rec in doc["records"]:
        rec["correct"], rec["accuracy"], rec["hits"] = rec["n"], 1.0, None
    (tmp_path / "best.json").write_text(json.dumps(doc))
    assert all(c.regressed for c in res.compare(tmp_path / "best.json") if c.accuracy < 0.9)
    gated = lncli.evaluate(eval_ckpts["bn"], "synthetic", limit=40, fail_under="clean=1.0", **FAST)
    assert not gated.passed and [c.rule for c in gated.failures] == ["--fail-under clean=1.0"] * 2


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"noise": "gausian"}, "did you mean 'gaussian'"),
        ({"severity": 7}, "--severity"),
        ({"fail_under": 90}, "a percentage needs %"),
        ({"batch_sizes": 4}, "unknown evaluate option 'batch_sizes' (did you mean 'batch_size'?)"),
        ({"mode": "groupnorm"}, "mode 'groupnorm' runs GroupNorm checkpoints"),
        ({"csv": "r.txt"}, "--csv r.txt"),
    ],
)
def test_bad_options_raise_one_line_before_any_compute(
    eval_ckpts: dict[str, Path], kwargs: dict, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lncli.jobs.evaluate.plan

    monkeypatch.setattr(lncli.jobs.evaluate.plan, "run_grid", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(LncliError, match=None) as info:
        lncli.evaluate(eval_ckpts["bn"], "synthetic", limit=8, **{**FAST, **kwargs})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_module_needs_data_and_models_must_be_models() -> None:
    with pytest.raises(LncliError, match="an nn.Module needs data="):
        lncli.evaluate(torch.nn.Linear(2, 2))
    with pytest.raises(LncliError, match="a model must be a checkpoint path or an nn.Module, not int"):
        lncli.evaluate([3], "synthetic")


def test_load_model_gives_the_checkpoints_module_in_eval_mode(eval_ckpts: dict[str, Path]) -> None:
    model = lncli.load_model(eval_ckpts["ln"])
    ref = model_from_checkpoint(load_checkpoint(eval_ckpts["ln"]))
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    with pytest.raises(LncliError, match="checkpoint not found"):
        lncli.load_model("nope.pt")


def test_flags_a_config_file_and_keywords_build_the_same_plan(eval_ckpts: dict[str, Path], tmp_path: Path) -> None:
    """One declaration of the options: the three routes give the same records and the same options block."""
    flags = ["--data", "synthetic", "--limit", "24", "--noise", "gaussian,impulse", "--severity", "0,4",
             "--batch-size", "8", "--mode", "running,batch", "--order", "sorted", "--device", "cpu"]  # fmt: skip
    res = runner.invoke(app, ["evaluate", str(eval_ckpts["bn"]), *flags, "--json", str(tmp_path / "flags.json")])
    assert res.exit_code == 0, res.output
    config = tmp_path / "c.yaml"
    config.write_text(
        f"checkpoints: [{eval_ckpts['bn']}]\ndata: synthetic\nlimit: 24\nnoise: [gaussian, impulse]\n"
        "severity: [0, 4]\nbatch_size: 8\nmode: running,batch\norder: sorted\ndevice: cpu\n"
    )
    res = runner.invoke(app, ["evaluate", "--config", str(config), "--json", str(tmp_path / "file.json")])
    assert res.exit_code == 0, res.output
    py = lncli.evaluate(eval_ckpts["bn"], "synthetic", limit=24, noise=["gaussian", "impulse"], severity=[0, 4],
                        batch_size=8, mode=("running", "batch"), order="sorted", device="cpu",
                        json=tmp_path / "py.json")  # fmt: skip
    docs = {k: json.loads((tmp_path / f"{k}.json").read_text()) for k in ("flags", "file", "py")}
    records = {
        k: [(r["mode"], r["noise"], r["severity"], r["correct"], r["hits"]) for r in d["records"]]
        for k, d in docs.items()
    }
    assert (
        records["flags"]
        == records["file"]
        == records["py"]
        == [(r.mode, r.noise, r.severity, r.correct, r.hits) for r in py.records]
    )
    sweep = {
        k: {
            f: v
            for f, v in d["config"].items()
            if f not in ("options", "config_file", "from_file", "from_command_line", "from_python")
        }
        for k, d in docs.items()
    }
    assert sweep["flags"] == sweep["file"] == sweep["py"]
    assert docs["file"]["config"]["config_file"] == str(config) and "limit" in docs["file"]["config"]["from_file"]
    assert "limit" in docs["flags"]["config"]["from_command_line"] and "limit" in docs["py"]["config"]["from_python"]
