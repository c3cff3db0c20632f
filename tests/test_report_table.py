"""Tests for lncli.report.table: the pivot table at fixed widths, headers, legend and caption (no models needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import LONG, demo_sweep, header_cells, sweep

from lncli.records import CLEAN, EvalRecord
from lncli.report import format_table


def test_table_fixed_width_golden_rows() -> None:
    text = format_table(sweep(), width=110)
    lines = text.splitlines()
    assert all(len(line) <= 110 for line in lines)
    header = "\n".join(lines[:5])
    assert "running" in header and "batch" in header and lines[-1] == "checkpoint = runs/bn.pt"
    clean = next(line for line in lines if line.strip("│| ").startswith("clean"))
    # running is best on clean (90.0 vs 88.0) and carries the marker; batch does not.
    assert "90.0 [85.1, 93.4]*" in clean and "88.0 [82.8, 91.8] " in clean
    g3 = next(line for line in lines if "gaussian 3" in line)
    assert "73.0 [66.5, 78.7]*" in g3  # batch wins under heavy noise
    flat = " ".join(text.split())  # the caption wraps at the table's width
    for label in ("gaussian mean", "impulse mean", "mean", "mCE %", "rel. mCE %", "mCE baseline bn:running", "n=200"):
        assert label in flat
    # ANSI escapes never reach a non-terminal.
    assert "\x1b[" not in text


def test_table_is_deterministic() -> None:
    """The same records give the same table in another process, whose string hashes (set order) differ."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from report_helpers import sweep; "
        "from lncli.report import format_table; sys.stdout.write(format_table(sweep(), width=100))"
    )
    here = Path(__file__).resolve().parent
    tables = [
        subprocess.run(
            [sys.executable, "-c", code, str(here)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert tables[0] == tables[1] == format_table(sweep(), width=100)


@pytest.mark.parametrize("width", [80, 200])
def test_table_headers_fit_80_and_200_columns_with_a_legend(width: int) -> None:
    text = format_table(demo_sweep(), width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    # Exactly two header lines: the short names intact over the modes (no wrap, no fold, no ellipsis).
    assert header_cells(text) == [["", "bn", "bn", "ln"], ["noise / severity", "running", "batch", "local"]]
    legend = lines[-2:]
    assert legend == [f"bn = {LONG[0]}", f"ln = {LONG[1]}"]
    # The intervals are shown whenever they fit (3 x 22 + 23 = 89 columns here).
    assert ("[" in text.split("clean")[1].splitlines()[0]) == (width >= 89)


def test_single_checkpoint_headers_show_the_mode_and_the_legend_its_file() -> None:
    text = format_table(sweep(), width=80)
    assert header_cells(text) == [["noise / severity", "running", "batch"]]
    assert text.splitlines()[-1] == "checkpoint = runs/bn.pt"
    assert "mCE baseline bn:running" in " ".join(text.split())  # the caption keeps the full label


def test_caption_names_the_rescale_range() -> None:
    import dataclasses

    def flat(recs: list[EvalRecord]) -> str:
        return " ".join(format_table(recs, width=120).split())

    assert "rescaled" not in flat(sweep())
    for used, words in (
        ("train", "rescaled onto the training split's range"),
        ("test", "onto the clean test set's range (no training split found)"),
    ):
        recs = [r if r.noise == CLEAN else dataclasses.replace(r, rescale=True, rescale_range=used) for r in sweep()]
        assert words in flat(recs)


def test_several_batch_sizes_get_a_table_each_that_fits_80_columns() -> None:
    from report_helpers import sized_sweep

    text = format_table(sized_sweep(), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    titles = [line.strip() for line in text.splitlines() if line.strip().startswith("lncli evaluate")]
    assert titles == ["lncli evaluate, batch 1", "lncli evaluate, batch 16", "lncli evaluate, batch 128"]
    flat = " ".join(text.split())
    for size in (1, 16, 128):
        assert f"batch {size}, noise seed" in flat
    # Each table's cells are its own size's: batch mode's clean accuracy moves with the size (83, 88, 93%).
    cleans = [line for line in text.splitlines() if line.strip("│| ").startswith("clean")]
    assert [c.split("│")[3].split()[0] for c in cleans] == ["83.0", "88.0", "93.0"]
    assert text.count("checkpoint = runs/bn.pt") == 1  # one legend


def test_mixed_row_and_caption() -> None:
    from report_helpers import mixed_sweep

    text = format_table(mixed_sweep(), width=100)
    rows = [line.strip("│| ").split("│")[0].strip() for line in text.splitlines() if "│" in line]
    assert "mixed" in rows and "mixed mean" not in rows and "mixed mixed" not in rows
    assert "each image's own noise x severity" in " ".join(text.split())
