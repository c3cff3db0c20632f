"""examples/ci and sample_configs/ci_robustness.yaml: the CI check as shipped, and its shell script run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lncli.cli import app
from lncli.compare import compare_records
from lncli.report import read_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_configs" / "ci_robustness.yaml"
CI = ROOT / "examples" / "ci"
SCRIPT = CI / "check.sh"


def _sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


def test_the_sample_config_is_a_valid_evaluate_config() -> None:
    # --config is read (and every key and value checked) before the eager --help exits 0.
    res = CliRunner().invoke(app, ["evaluate", "--config", str(SAMPLE), "--help"], env={"TERM": "dumb"})
    assert res.exit_code == 0 and "--compare" in res.stdout, res.stdout + res.stderr
    cfg = _sample()
    assert all((ROOT / c).is_file() for c in cfg["checkpoints"]) and (ROOT / cfg["compare"]).is_file()
    assert {"fail_under", "max_drop", "max_regression", "significance", "junit", "markdown"} <= set(cfg)


def test_the_shipped_baseline_is_the_sample_configs_run() -> None:
    cfg = _sample()
    base = read_json(ROOT / cfg["compare"]).records
    assert {r.n for r in base} == {cfg["limit"]} and {r.batch_size for r in base} == {cfg["batch_size"]}
    assert {r.data for r in base} == {cfg["data"]} and {r.noise_seed for r in base} == {cfg["seed"]}
    assert {r.noise for r in base} == {"clean", *cfg["noise"]} and {r.severity for r in base} == set(range(6))
    assert {(Path(r.checkpoint).name, r.mode) for r in base} == {
        ("fashion_mnist_small_cnn_bn.pt", "running"),
        ("fashion_mnist_small_cnn_bn.pt", "batch"),
        ("fashion_mnist_small_cnn_ln.pt", "local"),
    }
    assert all(r.hits is not None for r in base)  # so that the gate is the paired McNemar test
    comps = compare_records(base, base, max_regression=cfg["max_regression"], significance=cfg["significance"])
    assert {c.test for c in comps} == {"mcnemar"} and not any(c.regressed for c in comps)


def test_the_workflow_runs_the_script_and_uploads_what_the_config_writes() -> None:
    flow = yaml.safe_load((CI / "robustness.yml").read_text())
    steps = flow["jobs"]["robustness"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "examples/ci/check.sh" in runs and "dataset-fashion-mnist" in runs and "GITHUB_STEP_SUMMARY" in runs
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    folder = upload["with"]["path"].rstrip("/")
    cfg = _sample()
    assert {str(Path(cfg[k]).parent) for k in ("junit", "markdown", "csv", "json")} == {folder}
    assert f"cat {cfg['markdown']}" in runs and upload["if"] == "always()"
    assert os.access(SCRIPT, os.X_OK) and SCRIPT.read_text().startswith("#!/bin/sh")


def _fast_config(tmp: Path) -> Path:
    """The sample config made fast (64 images, one noise at severity 5, loose bounds) and writing under ``tmp``;
    synthetic data when Fashion-MNIST is not installed (the script's mechanics are what is tested)."""
    from lncli.data import load_dataset
    from lncli.errors import LncliError

    cfg = _sample()
    for key in ("compare", "max_regression", "significance"):
        del cfg[key]
    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except LncliError:
        cfg["data"] = "synthetic-gray"
    cfg.update(limit=64, noise="gaussian", severity=[0, 5], fail_under=["clean=0.05"], max_drop=0.95)
    cfg.update({k: str(tmp / Path(cfg[k]).name) for k in ("junit", "markdown", "csv", "json")})
    path = tmp / "fast.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_script(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LNCLI": f"{sys.executable} -m lncli",
        "CONFIG": str(config),
        "COLUMNS": "120",
    }
    sh = shutil.which("sh") or "/bin/sh"
    return subprocess.run(
        [sh, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_shell_script_runs_the_check_then_compares_with_its_own_result(tmp_path: Path) -> None:
    config = _fast_config(tmp_path)
    first = _run_script(config)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "robustness check passed" in first.stderr
    root = ET.parse(tmp_path / "junit.xml").getroot()
    # clean=... covers the 3 clean cells (BN running, BN batch, LN local), --max-drop their 3 noisy cells.
    assert (root.get("tests"), root.get("failures")) == ("6", "0")
    assert "all 6 checked cells passed" in (tmp_path / "summary.md").read_text()
    # The accepted run becomes the baseline: the same check against it passes, every cell paired.
    shutil.copy(tmp_path / "results.json", tmp_path / "baseline.json")
    second = _run_script(config, "--compare", str(tmp_path / "baseline.json"), "--max-regression", "0")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    cells = json.loads((tmp_path / "results.json").read_text())["comparison"]["cells"]
    assert len(cells) == 6 and all(c["test"] == "mcnemar" and c["delta"] == 0 for c in cells)
    assert "compared with" in second.stdout


def test_the_shipped_check_passes_against_the_shipped_baseline(tmp_path: Path) -> None:
    """What the workflow runs, as shipped (256 Fashion-MNIST images x 16 cells x 3 columns): it passes against
    the shipped baseline, so a change to the code or the config that moves the baseline's settings fails here
    (exit 2, "settings differ") until ``make baseline`` regenerates it."""
    from lncli.data import load_dataset
    from lncli.errors import DataError

    try:
        load_dataset(_sample()["data"], "test", limit=1)
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (CI installs it): the shipped check cannot run")
    outputs = [
        f"--{k}={tmp_path / Path(v).name}" for k, v in _sample().items() if k in ("junit", "markdown", "csv", "json")
    ]
    res = _run_script(SAMPLE, *outputs)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ET.parse(tmp_path / "junit.xml").getroot().get("tests") == "51"  # 48 cells + 3 overall means
    assert "robustness check passed" in res.stderr


def test_make_baseline_regenerates_the_baseline_from_the_checks_config() -> None:
    """One make target rebuilds the baseline, from the check's own config (no second copy of the settings)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "\nbaseline: " in makefile and "examples/ci/make_baseline.py" in makefile
    script = (CI / "make_baseline.py").read_text()
    assert "ci_robustness.yaml" in script and "lncli.evaluate(" in script
