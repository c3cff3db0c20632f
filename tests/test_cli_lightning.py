"""A PyTorch Lightning ``.ckpt`` (tests/lightning_project): its ``hyper_parameters`` go to the builder the user names.

The project's ``LitNet(num_filters=8, hidden_size=64)`` has other shapes than its defaults, so its
weights load only when the checkpoint's hyperparameters reach the builder. Only plain values, only
the names its signature takes, only to a ``package.module:function`` the user named; the provenance,
a ``note:`` line and the JSON's notes say which went and which did not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from foreign_helpers import batch, fit_classifier, predictions_correct
from typer.testing import CliRunner

from lncli.checkpoint import load_checkpoint
from lncli.cli import app
from lncli.data import dataset_meta
from lncli.errors import CheckpointError
from lncli.models import create_model

PROJECT = Path(__file__).resolve().parent / "lightning_project"
LIMIT = 48
EVAL = ("--data", "synthetic-gray", "--limit", str(LIMIT), "--batch-size", "16", "--severity", "0", "--device", "cpu")
HPARAMS: dict[str, Any] = {
    "num_filters": 8,
    "hidden_size": 64,
    "lr": 0.01,
    "num_classes": 10,  # lncli sets it from --data
    "class_weights": torch.ones(10),  # in the signature, but not a plain value
    "data_dir": "/data/fmnist",  # not in the signature
    "betas": [0.9, 0.999],
}
runner = CliRunner()


def invoke(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "TERM": "dumb"})


@pytest.fixture()
def litnet(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(PROJECT))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    import litnet

    yield litnet
    sys.modules.pop("litnet", None)


@pytest.fixture()
def trained(litnet: ModuleType, tmp_path: Path) -> tuple[Path, int]:
    """A fitted ``LitNet(8, 64)`` saved as Lightning saves it, and how many of the test images it gets right."""
    x, labels, _ = batch("synthetic-gray", LIMIT)
    torch.manual_seed(0)
    module = litnet.LitNet(num_filters=8, hidden_size=64)
    fit_classifier(module, x, labels, 10)
    correct = predictions_correct(module, x, labels)
    assert correct > LIMIT * 0.3, "the reference model should be informative"
    return litnet.lightning_checkpoint(module, HPARAMS, tmp_path / "lit.ckpt"), correct


def test_a_lightning_checkpoint_builds_with_its_hyper_parameters(trained: tuple[Path, int], tmp_path: Path) -> None:
    path, correct = trained
    res = invoke("evaluate", path, "--arch", "litnet:LitNet", *EVAL, "--mode", "running", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "r.json").read_text())
    (rec,) = run["records"]
    assert (rec["n"], rec["correct"]) == (LIMIT, correct)  # the weights of LitNet(8, 64), every one loaded
    note = (
        "lit.ckpt: its hyper_parameters num_filters=8, hidden_size=64, lr=0.01 went to litnet:LitNet (left out: "
        "num_classes: set by lncli; class_weights: a Tensor, not a plain value; data_dir, betas: not in the "
        "builder's signature)"
    )
    assert f"note: {note}" in res.stderr.splitlines() and note in run["config"]["notes"]
    ckpt = load_checkpoint(path, arch="litnet:LitNet", data=dataset_meta("synthetic-gray"), allow_code=True)
    assert ckpt.arch_kwargs == {"num_filters": 8, "hidden_size": 64, "lr": 0.01}
    assert ckpt.provenance["hyper_parameters"] == {
        "passed": ["num_filters", "hidden_size", "lr"],  # in the file's order
        "left_out": {
            "num_classes": "set by lncli",
            "class_weights": "a Tensor, not a plain value",
            "data_dir": "not in the builder's signature",
            "betas": "not in the builder's signature",
        },
    }
    # The caller's own arch_kwargs win over the file's.
    mine = load_checkpoint(
        path, arch="litnet:LitNet", arch_kwargs={"lr": 0.5}, data=dataset_meta("synthetic-gray"), allow_code=True
    )
    assert mine.arch_kwargs["lr"] == 0.5


def test_without_hyper_parameters_the_mismatch_names_what_the_model_has(
    litnet: ModuleType, trained: tuple[Path, int], tmp_path: Path
) -> None:
    path, _ = trained
    payload = torch.load(path, weights_only=True)
    del payload["hyper_parameters"]
    torch.save(payload, tmp_path / "bare.ckpt")
    res = invoke("evaluate", tmp_path / "bare.ckpt", "--arch", "litnet:LitNet", *EVAL)
    assert res.exit_code == 2
    (line,) = [s for s in res.stderr.splitlines() if s.strip()]
    assert "weights do not fit arch 'litnet:LitNet' with no norm layer, 10 classes, 1 channels" in line
    assert "model.conv.weight (8, 1, 3, 3) vs model (4, 1, 3, 3)" in line and "batchnorm" not in line


def test_hyper_parameters_go_only_to_a_builder_the_user_named(tmp_path: Path) -> None:
    """A registry (or timm/torchvision) arch gets none: its builder forwards keywords blindly; and the file never
    chooses the code (without allow_code a code arch is refused before anything is imported)."""
    torch.manual_seed(0)
    state = create_model("small_cnn", num_classes=10, in_channels=1).state_dict()
    torch.save({"state_dict": state, "hyper_parameters": {"lr": 0.1, "dropout": 0.5}}, tmp_path / "s.ckpt")
    res = invoke("evaluate", tmp_path / "s.ckpt", "--arch", "small_cnn", *EVAL)
    assert res.exit_code == 0, res.output
    assert (
        "note: s.ckpt: none of its hyper_parameters went to small_cnn (left out: lr, dropout: only a "
        "package.module:function --arch receives hyper_parameters)"
    ) in res.stderr.splitlines()
    ckpt = load_checkpoint(tmp_path / "s.ckpt", arch="small_cnn", data=dataset_meta("synthetic-gray"))
    assert ckpt.arch_kwargs == {} and ckpt.provenance["hyper_parameters"]["passed"] == []
    with pytest.raises(CheckpointError, match="runs code"):
        load_checkpoint(tmp_path / "s.ckpt", arch="litnet:LitNet", data=dataset_meta("synthetic-gray"))
