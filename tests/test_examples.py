"""The shipped example checkpoints load, are small, record their provenance, and the demo's CSV has the evaluate schema.

No accuracy is asserted here: that depends on training, which the reproduction benchmark reports.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lncli.checkpoint import load_checkpoint, model_from_checkpoint
from lncli.cli import app
from lncli.records import RECORD_FIELDS

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted((ROOT / "examples" / "checkpoints").glob("*.pt"))


def test_both_norms_are_shipped() -> None:
    kinds = {load_checkpoint(p).norm.kind for p in CHECKPOINTS}
    assert kinds == {"batchnorm", "localnorm"}, f"shipped: {[p.name for p in CHECKPOINTS]}"


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_example_checkpoint_loads_and_records_provenance(path: Path) -> None:
    assert path.stat().st_size <= 2 * 1024 * 1024, f"{path.name} is {path.stat().st_size} bytes (> 2 MB)"
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    assert ckpt.data.name == "fashion-mnist" and ckpt.data.in_channels == 1
    assert sum(p.numel() for p in model.parameters()) > 0
    prov = ckpt.provenance
    for key in ("config", "seed", "commit"):
        assert key in prov, f"{path.name}: provenance lacks {key!r}: {prov}"
    config = ROOT / prov["config"]
    assert config.is_file(), f"{path.name} names a config that is not in the repo: {prov['config']}"
    assert ckpt.train_state is None, "example checkpoints ship without optimizer state"


DEMO_NOISES = "gaussian,shot,impulse"


def _demo_recipe() -> str:
    """The Makefile's demo target: its variables and its recipe lines."""
    text = (ROOT / "Makefile").read_text()
    start = text.index("# Main job:")
    return text[start : text.index("\ntest:", start)]


def test_makefile_demo_is_a_quick_look_and_readme_says_how_to_run_all() -> None:
    recipe = _demo_recipe()
    m = re.search(r"^DEMO_LIMIT \?= (\d+)$", recipe, re.MULTILINE)
    assert m and 0 < int(m.group(1)) <= 1000, "the default demo evaluates a subset, so a first look stays short"
    assert "$(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT))" in recipe  # an empty DEMO_LIMIT runs the full set
    assert f"lncli evaluate examples/checkpoints/*.pt --noise {DEMO_NOISES} " in recipe  # what the test below runs
    readme = (ROOT / "README.md").read_text()
    assert f"first {int(m.group(1)):,} of the 10,000 test images" in readme
    assert "make demo DEMO_LIMIT=" in readme


def test_demo_command_writes_the_evaluate_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Makefile's demo command, on a few images: one CSV row per checkpoint x mode x cell,
    and a table that fits an 80-column terminal with the shipped checkpoints' long names."""
    monkeypatch.chdir(ROOT)  # relative checkpoint paths, as `make demo` passes them
    relative = [p.relative_to(ROOT) for p in CHECKPOINTS]
    out = tmp_path / "results.csv"
    args = ["evaluate", *map(str, relative), "--noise", DEMO_NOISES, "--severity", "0,5",
            "--limit", "256", "--data", "synthetic-gray", "--csv", str(out), "--plot", str(tmp_path / "p.png")]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    assert [c.strip() for c in lines[top + 1].strip("┃").split("┃")] == ["", "bn", "bn", "ln"]  # not fashion_mnist_...
    assert lines[top + 3].startswith("┡")  # two header lines: short name, then mode
    assert [f"{short} = {path}" for short, path in zip(("bn", "ln"), relative)] == lines[-2:]  # the legend
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS
    # BN: running + batch, LN: local -> 3 columns; cells: clean + 3 noises at severity 5.
    assert len(rows) == 3 * 4, len(rows)
    assert {r["mode"] for r in rows} == {"running", "batch", "local"}
    assert all(int(r["n"]) == 256 for r in rows)
    assert (tmp_path / "p.png").stat().st_size > 0


def test_the_pytest_example_passes_as_a_users_suite() -> None:
    """examples/pytest: a robustness test as a user writes it (lncli.evaluate on a model object), run by pytest."""
    import subprocess
    import sys

    from lncli.data import load_dataset
    from lncli.errors import DataError

    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (CI installs it): the example would skip its checks")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "examples" / "pytest")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-1000:]
