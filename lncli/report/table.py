"""The side-by-side table of ``lncli evaluate``: records pivoted into rows (noise x severity, means, mCE)
and columns (checkpoint x mode), rendered with rich (plain text when stdout is not a terminal).
A sweep over several batch sizes gets one table per batch size (same columns), so that each fits
the width a single one does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lncli.records import CLEAN, MIXED, EvalRecord
from lncli.report.pivot import (
    MEAN,
    Column,
    RecordIndex,
    by_batch_size,
    cell_label,
    columns,
    noise_mean,
    noises,
    record_index,
    resolve_baseline,
    robustness,
    severities,
)

__all__ = ["format_table", "legend", "render_table"]

_LABEL_HEADER = "noise / severity"


@dataclass(frozen=True)
class _Row:
    """One table row: a value per column, its text with and without the Wilson interval."""

    label: str
    values: list[float]
    ci_texts: list[str]
    texts: list[str]
    higher_is_better: bool = True
    section: bool = False  # a section line above it


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _cell_text(r: EvalRecord) -> str:
    return f"{_pct(r.accuracy)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]"


def _cell_row(idx: RecordIndex, cols: Sequence[Column], noise: str, sev: int | str, label: str, section: bool) -> _Row:
    """A row of evaluated cells: accuracies with their intervals."""
    recs = [idx.get((c.key, noise, sev)) for c in cols]
    vals = [r.accuracy if r else math.nan for r in recs]
    return _Row(label, vals, [_cell_text(r) if r else "-" for r in recs], [_pct(v) for v in vals], True, section)


def _plain_row(label: str, vals: list[float], section: bool = False, higher_is_better: bool = True) -> _Row:
    """A row of aggregates: no interval (cells share images, so a binomial interval would be too narrow)."""
    texts = [_pct(v) for v in vals]
    return _Row(label, vals, texts, texts, higher_is_better, section)


def _rows(records: Sequence[EvalRecord], cols: Sequence[Column], base: Column) -> list[_Row]:
    """Clean, each noise's severities and its mean, the overall mean, then mCE and relative mCE."""
    idx = record_index(records)
    rows: list[_Row] = []
    if any(r.noise == CLEAN for r in records):
        rows.append(_cell_row(idx, cols, CLEAN, 0, CLEAN, False))
    found = noises(records)
    for noise in found:
        for k, sev in enumerate(severities(records, noise)):
            rows.append(_cell_row(idx, cols, noise, sev, cell_label(noise, sev), k == 0 and bool(rows)))
        if noise != MIXED:  # the mixed stream is one row: its mean would repeat it
            rows.append(_plain_row(f"{noise} mean", [noise_mean(records, c.key, noise) for c in cols]))
    if found:
        rows.append(_plain_row(MEAN, [noise_mean(records, c.key, None) for c in cols], True))
        rob = robustness(records, base.label)
        for key, name in (("mce", "mCE"), ("rel_mce", "rel. mCE")):
            rows.append(_plain_row(f"{name} %", [rob[c.label][key] for c in cols], higher_is_better=False))
    return rows


def _width_with_intervals(rows: Sequence[_Row], cols: Sequence[Column]) -> int:
    """Characters the table takes with intervals: borders take 3 per column plus 1; a cell is its text
    plus the best-marker; headers are the short checkpoint name over the mode."""
    need = 1 + max([len(_LABEL_HEADER)] + [len(r.label) for r in rows]) + 3
    for j, col in enumerate(cols):
        need += max([len(col.short), len(col.key[1])] + [len(r.ci_texts[j]) + 1 for r in rows]) + 3
    return need


def _caption(records: Sequence[EvalRecord], with_ci: bool, base: Column) -> str:
    """What the numbers are and how they were made (from the first record; a sweep shares these)."""
    if not records:
        return ""
    first = records[0]
    what = "accuracy % [Wilson 95%]" if with_ci else "accuracy % (95% intervals left out for width; see --csv)"
    synthetic = " (synthetic)" if first.synthetic and "synthetic" not in first.data else ""
    return (
        f"{what}, * = best in row; data {first.data}{synthetic}, n={first.n}, "
        f"batch {first.batch_size}, noise seed {first.noise_seed}, {_order_text(first)}, {first.device}"
        + (f"; mCE baseline {base.label}" if noises(records) else "")
        + _rescale_note(records)
        + ("; mixed: each image's own noise x severity, drawn from the lists" if first.mix else "")
    )


def _order_text(r: EvalRecord) -> str:
    """The stream order as the caption says it."""
    if r.order == "shuffled" and r.order_seed is not None:
        return f"order seed {r.order_seed}"
    return "sorted by class" if r.order == "sorted" else "dataset order"


def _marked(row: _Row, with_ci: bool) -> list[Text | str]:
    """The row's cells, the best value of the row bold and marked ``*`` (visible in plain text too)."""
    finite = [v for v in row.values if not math.isnan(v)]
    best = (max(finite) if row.higher_is_better else min(finite)) if finite else None
    cells: list[Text | str] = [row.label]
    for v, t in zip(row.values, row.ci_texts if with_ci else row.texts):
        if best is not None and len(row.values) > 1 and not math.isnan(v) and math.isclose(v, best, abs_tol=1e-12):
            cells.append(Text(t + "*", style="bold green"))
        else:
            cells.append(Text(t + " "))
    return cells


def render_table(
    records: Sequence[EvalRecord], *, baseline: str | int | None = None, width: int | None = None
) -> RenderableType:
    """Pivot records into the side-by-side rich table.

    Rows: clean, each noise's severities and its mean, the overall mean, then
    mCE and relative mCE against the baseline. Cells: accuracy % with the
    Wilson 95% interval; mean rows are pooled over cells and carry no interval
    (cells share images, so a binomial interval would be too narrow). The best
    value of each row is bold and marked ``*`` (visible in plain text too).
    When the intervals would not fit in ``width`` they are left out (the
    caption says so; the CSV always has them) rather than wrapping every cell.
    Headers name each checkpoint by what tells it apart from the others (``bn``
    for ``fashion_mnist_small_cnn_bn``) and the legend under the table gives the
    files, so that an 80-column terminal does not wrap them. Several batch sizes
    give one table each (titled with the size), then one legend.

    Args:
        records: evaluation records.
        baseline: column for the mCE rows (see :func:`~lncli.report.pivot.resolve_baseline`).
        width: the console width the table must fit (``None``: no limit).

    Returns:
        A :class:`rich.table.Table`, grouped with its :func:`legend` (headers show short
        checkpoint names, see :class:`~lncli.report.pivot.Column`).
    """
    cols = columns(records)
    base = resolve_baseline(cols, baseline)
    parts = by_batch_size(records)
    tables = [
        _table(recs, cols, base, width, "lncli evaluate" + (f", batch {size}" if len(parts) > 1 else ""))
        for size, recs in parts
    ]
    return Group(*tables, legend(cols))


def _table(records: Sequence[EvalRecord], cols: Sequence[Column], base: Column, width: int | None, title: str) -> Table:
    """The table of the records of one batch size."""
    rows = _rows(records, cols, base)
    with_ci = width is None or _width_with_intervals(rows, cols) <= width
    table = Table(title=title, caption=_caption(records, with_ci, base))
    table.add_column(_LABEL_HEADER, no_wrap=True)
    for col in cols:
        # fold (not ellipsis) so that a console too narrow even for the short names still shows all of each
        table.add_column(col.short_label.replace(":", "\n", 1), justify="right", overflow="fold")
    for row in rows:
        if row.section:
            table.add_section()
        table.add_row(*_marked(row, with_ci))
    return table


def legend(cols: Sequence[Column]) -> Text:
    """The line(s) under the table that map each header's short name back to its checkpoint file.

    Args:
        cols: the table's columns (see :func:`~lncli.report.pivot.columns`).

    Returns:
        One line per checkpoint, ``<short name> = <checkpoint path>`` (``checkpoint = <path>``
        when there is only one); none for a checkpoint the header already names in full (a name
        given in Python, ``lncli.evaluate({"bn": model})``).
    """
    lines = {  # one per checkpoint, in column order
        c.key[0]: f"{c.short or 'checkpoint'} = {c.key[0]}" for c in cols if (c.short or "checkpoint") != c.key[0]
    }
    return Text("\n".join(lines.values()), no_wrap=False, overflow="fold")


_RESCALE_RANGES = {
    "train": "the training split's range",
    "test": "the clean test set's range (no training split found)",
}


def _rescale_note(records: Sequence[EvalRecord]) -> str:
    """Caption part naming the range ``--rescale`` mapped onto (empty without a rescale)."""
    used = list(dict.fromkeys(r.rescale_range for r in records if r.rescale_range is not None))
    return f"; noisy cells min-max rescaled onto {' / '.join(_RESCALE_RANGES.get(u, u) for u in used)}" if used else ""


def format_table(records: Sequence[EvalRecord], *, width: int = 120, baseline: str | int | None = None) -> str:
    """The table as plain text at a fixed width (what a non-TTY stdout receives)."""
    buf = StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None, legacy_windows=False)
    console.print(render_table(records, baseline=baseline, width=width))
    return buf.getvalue()
