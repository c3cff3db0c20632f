"""CI gating for ``lncli evaluate``: ``--fail-under`` bounds parsed and checked, and ``--max-drop``.

:func:`parse_threshold` turns one ``--fail-under`` value into a :class:`Threshold` (before
any compute, so that a typo fails fast); :func:`check_thresholds` returns one line per
failing cell of every column, which the CLI prints before exiting 1. Every bound applies to
each batch size of the sweep on its own; with several, each line starts with ``batch <size>:``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lncli.errors import LncliError
from lncli.records import CLEAN, EvalRecord
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
)

__all__ = ["Threshold", "check_max_drop", "check_thresholds", "parse_threshold"]

_NAME = r"[a-z0-9_\-]+"
"""A noise name in a bound (lower case)."""


@dataclass(frozen=True)
class Threshold:
    """One ``--fail-under`` bound.

    ``scope`` is ``cells`` (every cell, clean included), ``cell`` (one noise at one
    severity), ``noise`` (a noise's mean), ``clean`` or ``mean`` (every corrupted cell).
    """

    scope: str
    value: float
    noise: str | None = None
    severity: int | None = None
    text: str = ""


def _parse_value(text: str, whole: str) -> float:
    t = text.strip()
    pct = t.endswith("%")
    try:
        v = float(t[:-1] if pct else t)
    except ValueError:
        raise LncliError(f"--fail-under {whole!r}: {t!r} is not a number (use 0.3 or 30%)") from None
    if pct:
        v /= 100
    if not 0.0 <= v <= 1.0:
        raise LncliError(f"--fail-under {whole!r}: accuracy must be in [0, 1] (or 0-100%), got {t}")
    return v


def parse_threshold(text: str) -> Threshold:
    """Parse a ``--fail-under`` value.

    Forms: ``0.5`` (every cell), ``gaussian:5=0.30`` (one cell), ``gaussian=0.4``
    (the noise's mean over severities), ``clean=0.9``, ``mean=0.6`` (mean over every
    corrupted cell). Values are fractions, or percentages with ``%``.

    Raises:
        LncliError: the text fits none of the forms.
    """
    t = text.strip()
    if "=" not in t:
        return Threshold("cells", _parse_value(t, text), text=t)
    lhs, rhs = (s.strip() for s in t.split("=", 1))
    value = _parse_value(rhs, text)
    lhs_l = lhs.lower()
    m = re.fullmatch(rf"({_NAME}):(\d+)", lhs_l)
    if m:
        return Threshold("cell", value, noise=m.group(1), severity=int(m.group(2)), text=t)
    if lhs_l == MEAN:
        return Threshold("mean", value, text=t)
    if lhs_l == CLEAN:
        return Threshold("clean", value, text=t)
    if re.fullmatch(_NAME, lhs_l):
        return Threshold("noise", value, noise=lhs_l, text=t)
    raise LncliError(f"--fail-under {text!r}: expected 0.5, gaussian:5=0.3, gaussian=0.4, clean=0.9 or mean=0.6")


def check_thresholds(
    records: Sequence[EvalRecord],
    fail_under: Sequence[Threshold] = (),
    max_drop: float | None = None,
) -> list[str]:
    """Check ``--fail-under`` bounds and ``--max-drop`` for every column.

    Args:
        records: evaluation records.
        fail_under: parsed thresholds (see :func:`parse_threshold`).
        max_drop: largest allowed clean minus corrupted accuracy, per cell.

    Returns:
        One line per failing cell, e.g. ``bn:running gaussian 5: 21.2% < 30.0%`` (``batch 16:
        bn:running ...`` when the sweep has several batch sizes); empty when all pass.

    Raises:
        LncliError: a bound names a noise/severity that was not evaluated, or
            ``max_drop`` is given without a clean row.
    """
    if max_drop is not None:
        check_max_drop(max_drop)
    parts = by_batch_size(records)
    failures: list[str] = []
    for size, recs in parts:
        prefix = f"batch {size}: " if len(parts) > 1 else ""
        failures += [prefix + line for line in _check_one_size(recs, fail_under, max_drop)]
    return failures


def _check_one_size(
    records: Sequence[EvalRecord], fail_under: Sequence[Threshold], max_drop: float | None
) -> list[str]:
    """:func:`check_thresholds` on the records of one batch size."""
    cols = columns(records)
    idx = record_index(records)
    found = noises(records)
    failures: list[str] = []
    for th in fail_under:
        if th.noise is not None and th.noise not in found:
            raise LncliError(
                f"--fail-under {th.text!r}: noise {th.noise!r} was not evaluated (have: {', '.join(found) or 'none'})"
            )
        for col in cols:
            failures += _below(th, col, records, idx)
    if max_drop is not None:
        for col in cols:
            failures += _drops(col, records, idx, max_drop)
    return failures


def check_max_drop(max_drop: float | None) -> None:
    """Refuse a ``--max-drop`` outside [0, 1] (``None``: no bound), before any compute.

    Raises:
        LncliError: the bound is not an accuracy difference.
    """
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise LncliError(f"--max-drop must be in [0, 1], got {max_drop}")


def _line(col: Column, what: str, got: float, bound: float) -> str:
    return f"{col.label} {what}: {100 * got:.1f}% < {100 * bound:.1f}%"


def _below(th: Threshold, col: Column, records: Sequence[EvalRecord], idx: RecordIndex) -> list[str]:
    """The failure lines of one column under one bound."""
    if th.scope == "cells":
        return [
            _line(col, cell_label(r.noise, r.severity), r.accuracy, th.value)
            for r in records
            if (r.checkpoint, r.mode) == col.key and r.accuracy < th.value
        ]
    if th.scope in ("cell", "clean"):
        one_cell = th.scope == "cell"
        rec = idx.get((col.key, th.noise or "", th.severity or 0) if one_cell else (col.key, CLEAN, 0))
        if rec is None:
            missing = (
                f"severity {th.severity} of {th.noise} was not evaluated"
                if one_cell
                else "no clean row (include severity 0)"
            )
            raise LncliError(f"--fail-under {th.text!r}: {missing}")
        what = f"{th.noise} {th.severity}" if one_cell else CLEAN
        return [_line(col, what, rec.accuracy, th.value)] if rec.accuracy < th.value else []
    m = noise_mean(records, col.key, th.noise if th.scope == "noise" else None)  # a noise's mean or the overall one
    if math.isnan(m):
        raise LncliError(f"--fail-under {th.text!r}: no corrupted cell to average")
    return [_line(col, f"{th.noise} mean" if th.scope == "noise" else MEAN, m, th.value)] if m < th.value else []


def _drops(col: Column, records: Sequence[EvalRecord], idx: RecordIndex, max_drop: float) -> list[str]:
    """The cells of one column whose accuracy drops more than ``max_drop`` below its clean accuracy."""
    clean = idx.get((col.key, CLEAN, 0))
    if clean is None:
        raise LncliError("--max-drop needs the clean row (include severity 0)")
    lines = []
    for r in records:
        drop = clean.accuracy - r.accuracy
        if (r.checkpoint, r.mode) == col.key and r.noise != CLEAN and drop > max_drop:
            lines.append(
                f"{col.label} {cell_label(r.noise, r.severity)}: drop {100 * drop:.1f} points > {100 * max_drop:.1f} "
                f"(clean {100 * clean.accuracy:.1f}%, corrupted {100 * r.accuracy:.1f}%)"
            )
    return lines
