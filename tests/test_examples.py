"""The shipped example checkpoints load, are small, record their provenance, and the demo's CSV has the evaluate schema.

No accuracy is asserted here: that depends on training, which the reproduction benchmark reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lncli.checkpoint import build_model, load_checkpoint
from lncli.cli import app
from lncli.evaluate import RECORD_FIELDS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted((ROOT / "examples" / "checkpoints").glob("*.pt"))


def test_both_norms_are_shipped() -> None:
    kinds = {load_checkpoint(p).norm.kind for p in CHECKPOINTS}
    assert kinds == {"batchnorm", "localnorm"}, f"shipped: {[p.name for p in CHECKPOINTS]}"


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_example_checkpoint_loads_and_records_provenance(path: Path) -> None:
    assert path.stat().st_size <= 2 * 1024 * 1024, f"{path.name} is {path.stat().st_size} bytes (> 2 MB)"
    ckpt = load_checkpoint(path)
    model = build_model(ckpt)
    assert ckpt.data.name == "fashion-mnist" and ckpt.data.in_channels == 1
    assert sum(p.numel() for p in model.parameters()) > 0
    prov = ckpt.provenance
    for key in ("config", "seed", "commit"):
        assert key in prov, f"{path.name}: provenance lacks {key!r}: {prov}"
    config = ROOT / prov["config"]
    assert config.is_file(), f"{path.name} names a config that is not in the repo: {prov['config']}"
    assert ckpt.train_state is None, "example checkpoints ship without optimizer state"


def test_demo_command_writes_the_evaluate_schema(tmp_path: Path) -> None:
    """The Makefile's demo command, on a few images: one CSV row per checkpoint x mode x cell."""
    out = tmp_path / "results.csv"
    args = ["evaluate", *map(str, CHECKPOINTS), "--noise", "gaussian,shot,impulse", "--severity", "0,5",
            "--limit", "256", "--data", "synthetic-gray", "--csv", str(out), "--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS
    # BN: running + batch, LN: local -> 3 columns; cells: clean + 3 noises at severity 5.
    assert len(rows) == 3 * 4, len(rows)
    assert {r["mode"] for r in rows} == {"running", "batch", "local"}
    assert all(int(r["n"]) == 256 for r in rows)
    assert (tmp_path / "p.png").stat().st_size > 0
