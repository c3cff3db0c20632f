"""Every script in benchmarks/ has a ``--quick`` smoke run, and the default test run runs it (issue 21).

A smoke run checks that a script works end to end and writes its evidence files with the header a
reader needs (hardware, versions, runs); it never checks the numbers. Each runs as CI would,
``python benchmarks/NAME.py --quick`` in a subprocess, without ``--out`` and with ``$TMPDIR`` in the
test's folder: so the test also checks that a quick run writes nothing into ``benchmarks/results/``
(nor into the trained models under ``runs/`` that ``--reuse`` reads).

A new script fails here until it has a row in :data:`SMOKES`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@dataclass(frozen=True)
class Smoke:
    """One smoke run of a script: its extra arguments and what it must write."""

    files: tuple[str, ...]  # written somewhere under $TMPDIR
    runs: str  # a regex: where its Markdown states the number of runs
    args: tuple[str, ...] = ()  # after --quick


SMOKES: dict[str, tuple[Smoke, ...]] = {
    "bench_cli.py": (Smoke(("bench_cli.json", "bench_cli.md"), r"median of 1 runs per command"),),
    "bench_corrupt.py": (Smoke(("bench_corrupt.json", "bench_corrupt.md"), r"over n=2 runs per cell"),),
    "bench_evaluate.py": (
        Smoke(("bench_evaluate.json", "bench_evaluate.md"), r"median of 1 interleaved runs"),
        Smoke(
            ("bench_evaluate_conditions.json", "bench_evaluate_conditions.md"),
            r"Evidence \(1 interleaved runs",
            ("--conditions",),
        ),
    ),
    "bench_norm.py": (Smoke(("bench_norm.json", "bench_norm.md"), r"1 run of 1 interleaved iterations"),),
    "bench_stream.py": (Smoke(("bench_stream.json", "bench_stream.md"), r"1 interleaved run\(s\) per setting"),),
    "reproduce_conditions.py": (
        Smoke(("conditions.md", "conditions.csv", "conditions_records.csv", "conditions.png"), r"over n=1 seeds"),
    ),
    "reproduce_fashion_mnist.py": (
        Smoke(
            ("fashion_mnist.md", "fashion_mnist.csv", "fashion_mnist_records.csv", "fashion_mnist.png"),
            r"over n=1 seeds",
        ),
    ),
}
CASES = [(script, smoke) for script in SCRIPTS for smoke in SMOKES.get(script, (None,))]


def _common() -> ModuleType:
    """benchmarks/_common.py, loaded by path (benchmarks/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime in ns), to see that nothing was written there."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _values(obj: Any) -> list[Any]:
    """Every leaf value of a JSON document."""
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _values(x)]
    return [obj]


def _runs(obj: Any) -> list[Any]:
    """Every value stored under a ``runs`` key, at any depth."""
    if isinstance(obj, dict):
        return [v for k, x in obj.items() for v in ([x] if k == "runs" else _runs(x))]
    if isinstance(obj, list):
        return [v for x in obj for v in _runs(x)]
    return []


def test_every_script_has_a_smoke_run_and_none_is_stale() -> None:
    missing = sorted(set(SCRIPTS) - set(SMOKES))
    assert not missing, f"benchmarks without a --quick smoke test: {missing}; add them to SMOKES"
    assert sorted(SMOKES) == SCRIPTS, f"SMOKES names scripts that are gone: {sorted(set(SMOKES) - set(SCRIPTS))}"
    for script in SCRIPTS:
        assert "--quick" in (BENCH / script).read_text(), f"{script} has no --quick option"


def test_a_quick_run_without_out_never_writes_into_results() -> None:
    common = _common()
    folder = common.default_out(True)
    try:
        assert folder.is_dir() and not folder.resolve().is_relative_to(common.RESULTS.resolve())
        assert common.default_out(False) == common.RESULTS == BENCH / "results"
    finally:
        folder.rmdir()


@pytest.mark.parametrize(("script", "smoke"), CASES, ids=[" ".join([s, *(m.args if m else ())]) for s, m in CASES])
def test_quick_smoke_run(script: str, smoke: Smoke | None, tmp_path: Path) -> None:
    assert smoke is not None, f"{script} has no smoke expectations; add it to SMOKES"
    watched = [BENCH / "results", ROOT / "runs"]
    before = [_snapshot(f) for f in watched]
    env = {**os.environ, "TMPDIR": str(tmp_path), "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *smoke.args],
        check=False,  # the exit code is asserted below, with the script's stderr
        cwd=tmp_path,  # anything written relative to the working folder lands here, not in the repo
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"{script} --quick exited {r.returncode}:\n{r.stderr[-3000:]}"
    assert [_snapshot(f) for f in watched] == before, f"{script} --quick wrote into benchmarks/results/ or runs/"

    cpu, torch_version = _common().cpu_model(), torch.__version__
    for name in smoke.files:
        found = list(tmp_path.rglob(name))
        assert len(found) == 1, f"{script} --quick wrote {len(found)} {name} under $TMPDIR: {found}"
        path = found[0]
        if name.endswith(".md"):
            text = path.read_text()
            assert text.startswith("# "), f"{name} has no title"
            assert cpu in text and torch_version in text, f"{name}: no hardware ({cpu}) or torch version in its header"
            assert re.search(smoke.runs, text), f"{name} does not state its runs ({smoke.runs!r})"
            assert "smoke run" in text or "QUICK" in text, f"{name} does not say it is a --quick smoke run"
        elif name.endswith(".json"):
            doc = json.loads(path.read_text())
            values = _values(doc)
            assert cpu in values and torch_version in values, f"{name}: no hardware or versions"
            runs = _runs(doc)
            assert runs and all(isinstance(n, int) and n >= 1 for n in runs), f"{name}: runs {runs}"
        elif name.endswith(".csv"):
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert rows and len(rows[0]) > 1, f"{name}: no rows, or one column"
        elif name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
