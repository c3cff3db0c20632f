"""What every benchmark shares: where its results go, and the hardware for its evidence header."""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
"""The committed evidence: only full runs write here (by default), never a ``--quick`` one."""
QUICK_THREADS = 1
"""Torch threads of a ``--quick`` run: it shares the machine (CI runs it beside other work), where two
OpenMP threads on two busy cores spin against each other (bench_norm --quick: 27 s against 7 s with one)."""
QUICK_NOTE = "A --quick smoke run: it checks that the benchmark works; its numbers mean nothing."
"""What a quick run's Markdown says, so that its file is never taken for evidence."""


def default_out(quick: bool) -> Path:
    """The folder a benchmark writes to when ``--out`` is not given.

    Args:
        quick: a ``--quick`` smoke run: its numbers mean nothing, so it must never replace the
            committed results; it gets a new temporary folder (under ``$TMPDIR``) instead.

    Returns:
        :data:`RESULTS`, or the new temporary folder.
    """
    return Path(tempfile.mkdtemp(prefix="lncli-bench-quick-")) if quick else RESULTS


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
