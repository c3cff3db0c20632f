"""``lncli evaluate`` / ``convert`` / ``train`` on models lncli did not write: --arch, --data, --non-strict, security."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from foreign_helpers import (
    BUILDERS,
    batch,
    fit_classifier,
    library_model,
    predictions_correct,
    trained_like,
    write_module,
)
from typer.testing import CliRunner

from lncli.checkpoint import NormSpec, checkpoint_from_model, load_checkpoint, save_checkpoint
from lncli.cli import app
from lncli.models import create_model

runner = CliRunner()
LIMIT = 48  # 3 batches of 16
EVAL = ["--limit", str(LIMIT), "--batch-size", "16", "--noise", "gaussian", "--severity", "0,1", "--device", "cpu"]


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "TERM": "dumb"})


def _clean_running(json_path: Path) -> dict[str, Any]:
    """The clean row of the running mode of the one checkpoint in a --json file."""
    records = json.loads(json_path.read_text())["records"]
    (rec,) = [r for r in records if r["mode"] == "running" and r["severity"] == 0]
    return rec


def _saved_library_model(tmp_path: Path, arch: str, spec: str, seed: int = 0) -> tuple[Path, int]:
    """torch.save(model.state_dict()) of an informative library model; returns the file and its correct count."""
    x, labels, meta = batch(spec, LIMIT)
    torch.manual_seed(seed)
    model = fit_classifier(trained_like(library_model(arch, 10, meta.in_channels), seed), x, labels, 10)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    correct = predictions_correct(model, x, labels)
    assert correct > LIMIT * 0.3, "the reference model should be informative"
    return path, correct


@pytest.mark.parametrize(
    ("arch", "spec"), [("timm:test_efficientnet", "synthetic"), ("torchvision:resnet18", "synthetic-gray")]
)
def test_evaluate_a_foreign_state_dict(tmp_path: Path, arch: str, spec: str) -> None:
    path, correct = _saved_library_model(tmp_path, arch, spec)
    res = invoke("evaluate", path, "--arch", arch, "--data", spec, *EVAL, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    rec = _clean_running(tmp_path / "r.json")
    assert (rec["arch"], rec["n"], rec["correct"]) == (arch, LIMIT, correct)


def test_convert_a_foreign_state_dict_then_evaluate_without_flags(tmp_path: Path) -> None:
    arch, spec = "torchvision:resnet18", "synthetic"
    path, correct = _saved_library_model(tmp_path, arch, spec, seed=1)
    out = tmp_path / "ln.pt"
    res = invoke("convert", path, out, "--to", "localnorm", "--group-size", "8", "--arch", arch, "--data", spec)
    assert res.exit_code == 0, res.output
    assert "converted 20 layers: batchnorm->localnorm" in res.stdout
    ckpt = load_checkpoint(out)
    assert (ckpt.arch, ckpt.data.name, ckpt.norm.kind, ckpt.norm.group_size) == (arch, spec, "localnorm", 8)
    assert ckpt.provenance["foreign"] == "bare state_dict" and "load" not in ckpt.provenance
    # No flags: the arch and the data are recorded. LocalNorm with running statistics is BN's eval.
    res = invoke("evaluate", out, *EVAL, "--mode", "running", "--severity", "0", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    rec = _clean_running(tmp_path / "r.json")
    assert (rec["arch"], rec["norm"], rec["correct"]) == (arch, "localnorm", correct)


def _damaged_small_cnn(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    state = create_model("small_cnn", num_classes=10, in_channels=1).state_dict()
    del state["classifier.3.bias"]
    state["extra.weight"] = torch.ones(2)
    torch.save(state, tmp_path / "damaged.pt")
    return tmp_path / "damaged.pt"


def test_non_strict_reports_on_stderr_and_convert_records_it(tmp_path: Path) -> None:
    path = _damaged_small_cnn(tmp_path)
    args = ("--arch", "small_cnn", "--data", "synthetic-gray")
    res = invoke("evaluate", path, *args, *EVAL)
    assert res.exit_code == 2 and "missing keys: classifier.3.bias" in res.stderr and "--non-strict" in res.stderr
    res = invoke("evaluate", path, *args, *EVAL, "--non-strict")
    assert res.exit_code == 0, res.output
    warning = [line for line in res.stderr.splitlines() if "warning" in line]
    expected = "warning: damaged.pt loaded with --non-strict: 1 missing key (classifier.3.bias); 1 unexpected key"
    assert warning == [f"{expected} (extra.weight)"]
    out = tmp_path / "ln.pt"
    res = invoke("convert", path, out, "--to", "localnorm", *args, "--non-strict")
    assert res.exit_code == 0, res.output
    assert "1 missing key (classifier.3.bias)" in res.stderr
    load = load_checkpoint(out).provenance["load"]
    assert load == {"strict": False, "missing_keys": ["classifier.3.bias"], "unexpected_keys": ["extra.weight"]}
    res = invoke("evaluate", out, *EVAL)  # complete now: loads strictly, no flags
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output


@pytest.fixture()
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``lnclitest_nets`` (a user's builders) and ``lnclitest_evil`` (writes ``tmp_path/imported`` on import)."""
    marker = tmp_path / "imported"
    write_module(tmp_path / "src", "lnclitest_nets", BUILDERS)
    write_module(tmp_path / "src", "lnclitest_evil", f"open({str(marker)!r}, 'w').close()\ndef build(**kw): 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield marker
    for name in ("lnclitest_nets", "lnclitest_evil"):
        sys.modules.pop(name, None)


def test_your_own_builder_from_the_command_line(tmp_path: Path, user_modules: Path) -> None:
    import lnclitest_nets

    x, labels, _ = batch("synthetic", LIMIT)
    torch.manual_seed(0)
    net = fit_classifier(trained_like(lnclitest_nets.build(10, 3), 0), x, labels, 10)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    arch = ("--arch", "lnclitest_nets:build", "--data", "synthetic")
    res = invoke("evaluate", tmp_path / "mine.pt", *arch, *EVAL, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert _clean_running(tmp_path / "r.json")["correct"] == predictions_correct(net, x, labels)
    # Converted, the file records the builder; evaluating it needs the user to name it again.
    res = invoke("convert", tmp_path / "mine.pt", tmp_path / "ln.pt", "--to", "localnorm", *arch)
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "ln.pt", arch="lnclitest_nets:build", allow_code=True).arch == arch[1]
    res = invoke("evaluate", tmp_path / "ln.pt", *EVAL)
    assert res.exit_code == 2 and "name it yourself: --arch lnclitest_nets:build" in res.stderr
    res = invoke("evaluate", tmp_path / "ln.pt", "--arch", "lnclitest_nets:build", *EVAL)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("arch", ["os:system", "lnclitest_evil:build"])
@pytest.mark.parametrize("command", ["evaluate", "convert"])
def test_a_checkpoint_recording_code_is_refused_and_nothing_runs(
    tmp_path: Path, user_modules: Path, arch: str, command: str
) -> None:
    torch.manual_seed(0)
    _, _, meta = batch("synthetic", 1)
    model = create_model("tiny", num_classes=10, in_channels=3)
    path = tmp_path / "evil.pt"
    save_checkpoint(checkpoint_from_model(model, arch=arch, arch_kwargs={}, norm=NormSpec(), data=meta), path)
    before = sorted(p.name for p in tmp_path.iterdir())
    if command == "evaluate":
        res = invoke("evaluate", path, *EVAL)
    else:
        res = invoke("convert", path, tmp_path / "out.pt", "--to", "localnorm")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "never runs code named by a file" in lines[0], res.output
    assert "Traceback" not in res.output
    assert not user_modules.exists() and "lnclitest_evil" not in sys.modules
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_train_a_timm_model_with_localnorm_then_evaluate(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "data: {spec: synthetic, train_limit: 64, test_limit: 32, augment: none}\n"
        "model: {arch: 'timm:test_resnet'}\n"
        "norm: {kind: localnorm, group_size: 8}\n"
        "epochs: 1\nbatch_size: 16\ndevice: cpu\n"
    )
    res = invoke("train", config, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ckpt.arch, ckpt.norm.kind, ckpt.norm.num_heads) == ("timm:test_resnet", "localnorm", 2)
    res = invoke("evaluate", tmp_path / "run" / "last.pt", *EVAL)
    assert res.exit_code == 0, res.output


def _png_folder(root: Path, classes: int = 3, per_class: int = 2) -> Path:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (40, 48, 3), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def test_convert_records_the_preprocessing_evaluate_would_resolve(tmp_path: Path) -> None:
    """A foreign timm model converted for an image folder records timm's preprocessing (160 px crop from
    168, mean/std 0.5 for timm's test_resnet), so that evaluating the converted file needs no flags."""
    from lncli.data import dataset_meta
    from lncli.jobs.convert import with_preprocessing

    folder = _png_folder(tmp_path / "imgs")
    torch.manual_seed(0)
    path = tmp_path / "timm.pt"
    torch.save(library_model("timm:test_resnet", 3, 3).state_dict(), path)
    out = tmp_path / "ln.pt"
    spec = f"imagefolder:{folder}"
    res = invoke(
        "convert", path, out, "--to", "localnorm", "--group-size", "2", "--arch", "timm:test_resnet", "--data", spec
    )
    assert res.exit_code == 0, res.output
    meta = load_checkpoint(out).data
    assert (meta.image_size, meta.resize, meta.interpolation) == ((160, 160), 168, "bilinear")
    assert meta.mean == (0.5, 0.5, 0.5) and meta.std == (0.5, 0.5, 0.5)
    res = invoke("evaluate", out, "--data", spec, "--noise", "gaussian", "--severity", "0", "--batch-size", "2",
                 "--mode", "running", "--device", "cpu", "--json", tmp_path / "r.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    rec = _clean_running(tmp_path / "r.json")
    assert (rec["image_size"], rec["resize"], rec["mean"]) == ("160x160", 168, "0.5,0.5,0.5")
    # A named dataset's own preprocessing comes first (evaluate's precedence), whatever the arch.
    fm = dataset_meta("synthetic-gray")
    got = with_preprocessing(fm, "synthetic-gray", "timm:test_resnet")
    assert (got.image_size, got.mean, got.std, got.interpolation) == (fm.image_size, fm.mean, fm.std, fm.interpolation)
    assert got.resize == fm.image_size[0]  # made explicit: no resize beyond the dataset's own size
