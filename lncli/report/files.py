"""The files ``lncli evaluate`` writes from its records: the long-format CSV, the JSON, the accuracy plot;
and :func:`read_json`, which reads such a JSON back (the baseline of ``--compare``).

Every file goes through :mod:`lncli.io`'s atomic writers (nothing half-written), and its
path is checked up front (:func:`check_plot_path`, :func:`lncli.io.check_output_file`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lncli.errors import LncliError
from lncli.io import atomic_path, atomic_write, check_output_file, image_suffixes
from lncli.records import CLEAN, COMPARISON_FIELDS, RECORD_FIELDS, ComparisonRecord, EvalRecord, record_from_json
from lncli.report.pivot import batch_sizes, cell_label, columns, noises, record_index

__all__ = [
    "EVAL_FORMAT",
    "EVAL_FORMAT_VERSION",
    "EvalRun",
    "check_plot_path",
    "plot_accuracy",
    "read_json",
    "write_csv",
    "write_json",
]

EVAL_FORMAT = "lncli-eval"
"""The ``format`` of the JSON :func:`write_json` writes."""

EVAL_FORMAT_VERSION = 1
"""Its ``format_version``: raised when a reader of the old version would misread the new one."""


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def _comparison_of(
    comparisons: Sequence[ComparisonRecord],
) -> dict[tuple[str, str, str, int | str, int], ComparisonRecord]:
    return {(c.checkpoint, c.mode, c.noise, c.severity, c.batch_size): c for c in comparisons}


def write_csv(
    records: Sequence[EvalRecord], path: str | Path, *, comparisons: Sequence[ComparisonRecord] | None = None
) -> None:
    """Write the long-format CSV: one row per record, columns :data:`lncli.records.RECORD_FIELDS`.

    With ``comparisons`` (``--compare``) each row also has :data:`lncli.records.COMPARISON_FIELDS`:
    the baseline's counts and accuracy, the delta, the test and whether the cell regressed.
    """
    by_cell = _comparison_of(comparisons or [])
    names = list(RECORD_FIELDS) + (list(COMPARISON_FIELDS) if comparisons is not None else [])
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")  # hits: JSON only
        writer.writeheader()
        for r in records:
            row = r.to_dict()
            match = by_cell.get((r.checkpoint, r.mode, r.noise, r.severity, r.batch_size))
            if match is not None:
                row.update({k: getattr(match, k) for k in COMPARISON_FIELDS})
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def write_json(
    records: Sequence[EvalRecord],
    path: str | Path,
    *,
    config: dict[str, Any] | None = None,
    comparison: dict[str, Any] | None = None,
    comparisons: Sequence[ComparisonRecord] | None = None,
) -> None:
    """Write ``{"format": "lncli-eval", "format_version": 1, "config": .., "records": [..]}``.

    NaN accuracies (empty cells) become ``null`` so the file is strict JSON. With ``comparisons``
    (``--compare``) a ``"comparison"`` block follows: ``comparison`` (the baseline's path, the gate)
    and ``"cells"``, one entry per cell with baseline, current and delta. The file stays a valid
    baseline for a later ``--compare``.
    """
    doc: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "format_version": EVAL_FORMAT_VERSION,
        "config": config or {},
        "records": [{k: _json_value(v) for k, v in r.to_dict().items()} for r in records],
    }
    if comparisons is not None:
        cells = [{k: _json_value(v) for k, v in c.to_dict().items()} for c in comparisons]
        doc["comparison"] = {**(comparison or {}), "cells": cells}
    with atomic_write(path, "w") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")


@dataclass(frozen=True)
class EvalRun:
    """What :func:`read_json` reads: the run's ``config`` block and its records."""

    config: dict[str, Any]
    records: list[EvalRecord] = field(default_factory=list)


def read_json(path: str | Path, option: str = "--compare") -> EvalRun:
    """Read the JSON of an earlier ``lncli evaluate --json`` (e.g. a ``--compare`` baseline).

    Args:
        path: the file.
        option: how the user gave it, for messages.

    Returns:
        The run's config block and records (fields the file lacks take their defaults).

    Raises:
        LncliError: one line: the file is missing or unreadable, not JSON, not an lncli evaluate
            JSON, of another format version, or a record is malformed.
    """
    where = f"{option} {path}"
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LncliError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise LncliError(f"{where} is a folder; give the JSON of an earlier lncli evaluate --json") from None
    except OSError as exc:
        raise LncliError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LncliError(f"{where} is not a JSON file (write one with lncli evaluate --json)") from None
    if not isinstance(doc, dict) or doc.get("format") != EVAL_FORMAT:
        raise LncliError(f'{where} is not the JSON of lncli evaluate (no "format": "{EVAL_FORMAT}")')
    version = doc.get("format_version")
    if version != EVAL_FORMAT_VERSION:
        raise LncliError(
            f"{where} has {EVAL_FORMAT} format version {version!r}; this lncli reads version {EVAL_FORMAT_VERSION} "
            "(rerun the baseline with this lncli)"
        )
    entries = doc.get("records")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LncliError(f'{where}: "records" is not a list of records')
    records = []
    for i, entry in enumerate(entries, start=1):
        try:
            records.append(record_from_json(entry))
        except (TypeError, ValueError) as exc:
            raise LncliError(f"{where}: record {i}: {exc}") from None
    config = doc.get("config")
    return EvalRun(config if isinstance(config, dict) else {}, records)


def check_plot_path(path: str | Path) -> None:
    """Fail fast, in one line, when the plot cannot be written at ``path`` (see :func:`lncli.io.check_output_file`).

    Raises:
        LncliError: the suffix is not an image format matplotlib's Agg backend writes,
            or the path is a folder or not writable.
    """
    check_output_file(path, "--plot", image_suffixes())


def plot_accuracy(records: Sequence[EvalRecord], path: str | Path) -> None:
    """Plot accuracy vs severity: one panel per noise, one line per checkpoint x mode.

    The clean accuracy is drawn at severity 0 of every panel; the band is the
    Wilson 95% interval. When the records hold several batch sizes, or a mixed stream
    (which has no severity axis), accuracy vs batch size instead: one panel per cell
    (clean, each noise x severity, or mixed), batch sizes on a log axis.
    Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_plot_path(path)
    if len(batch_sizes(records)) > 1 or any(r.mix for r in records):
        fig = _batch_size_figure(records, plt)
    else:
        panels = noises(records) or [CLEAN]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
        for ax, noise in zip(axes[0], panels):
            _plot_panel(ax, records, noise)
        axes[0][0].set_ylabel("accuracy %")
        axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def _plot_panel(ax: Any, records: Sequence[EvalRecord], noise: str) -> None:
    """One noise's panel: each column's clean point then its severities, with the interval as a band."""
    idx = record_index(records)
    for col in columns(records):
        pts = [idx[(col.key, CLEAN, 0)]] if (col.key, CLEAN, 0) in idx else []
        pts += sorted(
            (r for k, r in idx.items() if k[0] == col.key and k[1] == noise and noise != CLEAN),
            key=lambda r: r.severity,
        )
        if not pts:
            continue
        xs = [r.severity for r in pts]
        (line,) = ax.plot(xs, [100 * r.accuracy for r in pts], marker="o", label=col.label)
        ax.fill_between(
            xs, [100 * r.ci_low for r in pts], [100 * r.ci_high for r in pts], color=line.get_color(), alpha=0.15
        )
    ax.set_title(noise)
    ax.set_xlabel("severity (0 = clean)")
    ax.grid(alpha=0.3)


def _batch_size_figure(records: Sequence[EvalRecord], plt: Any) -> Any:
    """Accuracy vs batch size: one panel per cell (four to a row), one line per column, Wilson band."""
    cells = list(dict.fromkeys((r.noise, r.severity) for r in records))
    ncols = min(4, len(cells))
    nrows = -(-len(cells) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharey=True)
    sizes = sorted(batch_sizes(records))
    for ax, (noise, sev) in zip(axes.flat, cells):
        for col in columns(records):
            pts = sorted(
                (r for r in records if (r.checkpoint, r.mode) == col.key and (r.noise, r.severity) == (noise, sev)),
                key=lambda r: r.batch_size,
            )
            if not pts:
                continue
            xs = [r.batch_size for r in pts]
            (line,) = ax.plot(xs, [100 * r.accuracy for r in pts], marker="o", label=col.label)
            ax.fill_between(
                xs, [100 * r.ci_low for r in pts], [100 * r.ci_high for r in pts], color=line.get_color(), alpha=0.15
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_title(cell_label(noise, sev))
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("accuracy %")
    axes.flat[0].legend(fontsize="small")
    return fig
