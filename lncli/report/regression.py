"""Views of ``--compare``: the baseline-vs-now table and the regression gate's checks.

The comparison itself is computed by :func:`lncli.compare.compare_records`; here its
:class:`~lncli.records.ComparisonRecord` rows become a rich table (baseline, current and delta
per cell) and :class:`~lncli.report.checks.Check` entries for the failure lines, JUnit and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from lncli.records import CLEAN, ComparisonRecord
from lncli.report.checks import Check, pct
from lncli.report.pivot import Column, cell_label, columns
from lncli.stats import wilson_interval

__all__ = ["TEST_NAMES", "regression_checks", "render_comparison"]

TEST_NAMES = {"mcnemar": "McNemar, paired", "two-proportion": "two-proportion"}
"""How the tables and reports name the test of each cell (:func:`lncli.stats.drop_p_value`)."""

_FAIL_MARK = "✗"


def _cell(c: ComparisonRecord, several_sizes: bool = False) -> str:
    cell = cell_label(c.noise, c.severity)
    return f"batch {c.batch_size}: {cell}" if several_sizes else cell


def _points(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:+.1f}"


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _test_text(c: ComparisonRecord) -> str:
    """``McNemar, paired: 45 lost / 5 gained`` or ``two-proportion``."""
    name = TEST_NAMES.get(c.test, c.test)
    return f"{name}: {c.lost} lost / {c.gained} gained" if c.lost is not None else name


def _gate(c: ComparisonRecord) -> str:
    return f"--max-regression {c.max_regression:g} --significance {c.significance:g}"


def regression_checks(comparisons: Sequence[ComparisonRecord]) -> list[Check]:
    """One check per compared cell: it fails when the cell regressed (fell more than D, significantly).

    Args:
        comparisons: from :func:`lncli.compare.compare_records`.

    Returns:
        The checks, in the comparisons' order.
    """
    labels: dict[tuple[str, str], Column] = {col.key: col for col in columns(comparisons)}
    several = len({c.batch_size for c in comparisons}) > 1  # then each size is its own set of cells
    checks = []
    for c in comparisons:
        col = labels[(c.checkpoint, c.mode)]
        low, high = wilson_interval(c.correct, c.n)
        b_low, b_high = wilson_interval(c.baseline_correct, c.baseline_n)
        fell = f"fell {-100 * c.delta:.1f} points from the baseline ({pct(c.baseline_accuracy)} -> {pct(c.accuracy)})"
        checks.append(
            Check(
                column=col,
                noise=c.noise,
                severity=str(c.severity),
                batch_size=c.batch_size if several else None,
                rule=f"--compare {_gate(c)}",
                passed=not c.regressed,
                value=c.accuracy,
                low=low,
                high=high,
                expected=(
                    f"no significant fall of more than {100 * c.max_regression:.1f} points below the baseline's "
                    f"{pct(c.baseline_accuracy)} [{pct(b_low)}, {pct(b_high)}]; delta {_points(c.delta)} points, "
                    f"p = {c.p_value:.3g} ({_test_text(c)})"
                ),
                margin=c.delta + c.max_regression,
                message=(
                    f"{col.label} {_cell(c, several)}: {fell}, more than {100 * c.max_regression:.1f} and significant: "
                    f"p = {c.p_value:.3g} < {c.significance:g} ({_test_text(c)})"
                ),
            )
        )
    return checks


def render_comparison(comparisons: Sequence[ComparisonRecord], *, baseline: str = "") -> RenderableType:
    """The baseline-vs-now table: rows are cells, columns are checkpoint x mode.

    Each cell reads ``baseline -> now (delta)`` in accuracy %, marked ``✗`` where it regressed.

    Args:
        comparisons: from :func:`lncli.compare.compare_records`.
        baseline: the baseline's path, for the caption.

    Returns:
        A :class:`rich.table.Table`.
    """
    cols = columns(comparisons)
    by_cell = {((c.checkpoint, c.mode), c.noise, c.severity, c.batch_size): c for c in comparisons}
    cells = list(dict.fromkeys((c.batch_size, c.noise, c.severity) for c in comparisons))
    sizes = list(dict.fromkeys(c.batch_size for c in comparisons))
    cells.sort(key=lambda bns: (sizes.index(bns[0]), bns[1] != CLEAN))  # per size: clean first, noises in order
    first = comparisons[0] if comparisons else None
    gate = (
        f"; {_FAIL_MARK} = fell more than {100 * first.max_regression:.1f} points and significant at "
        f"p < {first.significance:g}"
        if first
        else ""
    )
    table = Table(
        title=f"compared with {baseline}" if baseline else "compared with the baseline",
        caption=f"accuracy % baseline→now (delta in points){gate}; test: McNemar (paired) where both runs "
        "kept per-image results, else two-proportion",
    )
    table.add_column("noise / severity", no_wrap=True)
    for col in cols:
        table.add_column(col.short_label.replace(":", "\n", 1), justify="right", overflow="fold")
    for size, noise, severity in cells:
        label = cell_label(noise, severity)
        row: list[Text | str] = [f"batch {size}: {label}" if len(sizes) > 1 else label]
        for col in cols:
            c = by_cell.get((col.key, noise, severity, size))
            if c is None:
                row.append("-")
                continue
            text = f"{_num(c.baseline_accuracy)}→{_num(c.accuracy)} ({_points(c.delta)})"
            row.append(Text(f"{text} {_FAIL_MARK}", style="bold red") if c.regressed else Text(f"{text}  "))
        table.add_row(*row)
    return table
