"""Benchmark: how fast ``lncli evaluate`` refuses bad input, whatever the size of the run (issue 21).

Two kinds of refusal, each timed as a whole command (``python -m lncli evaluate ...`` in a subprocess,
wall time, the interpreter's start included), over a run that would take minutes to compute (the
shipped checkpoints on the whole Fashion-MNIST test set, every severity of the three noises):

* **argument typos** (a noise name, a severity, a bound, an output suffix): checked before torch is
  imported (:func:`lncli.jobs.evaluate.options.parse_options`);
* **plan refusals**: a ``--compare`` baseline whose settings differ, an output that is also the
  baseline, a bound on a severity that will not run, and a mode no column can run: raised while the
  plan is built (checkpoints loaded, data resolved, models built), before the first forward pass.

Each command is run ``--runs`` times (default 5; ``--quick``: 1, and 200 test images); the results
report the median and the range, with the hardware, versions and runs, to
``benchmarks/results/bench_cli.{json,md}``.

    python benchmarks/bench_cli.py            # 5 runs per command
    python benchmarks/bench_cli.py --quick    # smoke run into a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import QUICK_NOTE, cpu_model, default_out

from lncli import __version__
from lncli.io import atomic_write

CHECKPOINTS = [str(p) for p in sorted((ROOT / "examples" / "checkpoints").glob("*.pt"))]
RUN = ["--noise", "gaussian,shot,impulse", "--severity", "0-5", "--data", "fashion-mnist"]
"""The run every command would start: 2 checkpoints x 3 columns x 16 cells of the test set."""

TYPOS = {
    "noise name": ["--noise", "gausian"],
    "severity": ["--severity", "9"],
    "bound": ["--fail-under", "90"],
    "output suffix": ["--csv", "out.txt"],
}


def plan_refusals(work: Path, baseline: Path) -> dict[str, list[str]]:
    """The commands refused while the plan is built, each against the same (large) run."""
    return {
        "baseline settings differ": ["--seed", "1", "--compare", str(baseline)],
        "output is the baseline": ["--compare", str(baseline), "--json", str(baseline)],
        "bound on a severity not run": ["--severity", "0-3", "--fail-under", "gaussian:5=0.3"],
        "mode no column can run": ["--mode", "groupnorm"],
    }


def _time(args: list[str], runs: int, cwd: Path) -> dict[str, object]:
    """Wall seconds of ``python -m lncli evaluate ARGS`` over ``runs`` runs; each must exit 2 in one line."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "lncli", "evaluate", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - t0)
        lines = out.stderr.strip().splitlines()
        if out.returncode != 2 or len(lines) != 1:
            raise SystemExit(f"expected exit 2 and one line for {args}, got {out.returncode}: {out.stderr[-500:]}")
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "error": lines[0]}


def _baseline(work: Path, limit: int | None) -> Path:
    """A real baseline of the run (tiny: 8 images, since only its settings matter here), its n patched to
    the run's so that only the asked-for setting differs."""
    path = work / "baseline.json"
    tiny = [*RUN, "--limit", "8", "--json", str(path)]
    subprocess.run(
        [sys.executable, "-m", "lncli", "evaluate", *CHECKPOINTS, *tiny], cwd=ROOT, check=True, capture_output=True
    )
    doc = json.loads(path.read_text())
    n = limit or 10000
    for rec in doc["records"]:
        rec["n"], rec["hits"] = n, None
        rec["correct"] = min(rec["correct"], n)
        rec["accuracy"] = rec["correct"] / n
    path.write_text(json.dumps(doc))
    return path


def _torch_version() -> str:
    """torch's version as ``torch.__version__`` says it (local tag included), without importing torch here."""
    code = "import torch; print(torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or metadata.version("torch")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="runs per command (default 5; --quick 1)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results; --quick: temp)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 run of one command of each kind, 200 images")
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.quick else 5)
    limit = 200 if args.quick else None
    out = args.out or default_out(args.quick)
    work = Path(tempfile.mkdtemp(prefix="lncli-bench-cli-"))
    base = [*CHECKPOINTS, *RUN, *(["--limit", str(limit)] if limit else [])]
    load = os.getloadavg()[0]
    typos, refusals = list(TYPOS.items()), list(plan_refusals(work, _baseline(work, limit)).items())
    if args.quick:  # a smoke run: one command of each kind
        typos, refusals = typos[:1], refusals[:1]
    results = {
        "typos": {name: _time([*base, *extra], runs, work) for name, extra in typos},
        "plan": {name: _time([*base, *extra], runs, work) for name, extra in refusals},
    }
    doc = {
        "benchmark": "bench_cli",
        "quick": args.quick,
        "runs": runs,
        "images": limit or 10000,
        "hardware": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_1min": [load, os.getloadavg()[0]]},
        "versions": {"python": platform.python_version(), "torch": _torch_version(), "lncli": __version__},
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "bench_cli.json") as fh:
        json.dump(doc, fh, indent=2)
    with atomic_write(out / "bench_cli.md") as fh:
        fh.write(markdown(doc))
    print((out / "bench_cli.md").read_text())


def markdown(doc: dict) -> str:
    """The results page: the evidence header, then one table per kind of refusal."""
    hw = doc["hardware"]
    lines = [
        "# How fast lncli evaluate refuses bad input",
        "",
        *([QUICK_NOTE, ""] if doc["quick"] else []),
        (
            f"Evidence: wall time of `python -m lncli evaluate ...` (interpreter start included), median of "
            f"{doc['runs']} runs per command, on a run of 2 checkpoints x 3 columns x 16 cells over "
            f"{doc['images']:,} Fashion-MNIST test images. Hardware: {hw['cpu']}, {hw['cores']} cores, 1-minute "
            f"load average {hw['load_avg_1min'][0]:.1f} before and {hw['load_avg_1min'][1]:.1f} after; Python "
            f"{doc['versions']['python']}, torch {doc['versions']['torch']}, lncli {doc['versions']['lncli']}."
        ),
    ]
    for kind, title in (
        ("typos", "Argument typos (before torch is imported)"),
        ("plan", "Refused while the plan is built"),
    ):
        lines += ["", f"## {title}", "", "| refusal | median s | min-max s | the error |", "|---|---:|---:|---|"]
        for name, r in doc["results"][kind].items():
            error = str(r["error"]).replace("|", "\\|")[:110]
            lines.append(f"| {name} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | `{error}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
