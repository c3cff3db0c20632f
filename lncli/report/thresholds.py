"""CI gating for ``lncli evaluate``: ``--fail-under`` bounds parsed and checked, and ``--max-drop``.

:func:`parse_threshold` turns one ``--fail-under`` value into a :class:`Threshold` (before
any compute, so that a typo fails fast); :func:`threshold_checks` applies the bounds to every
cell they cover (:class:`~lncli.report.checks.Check`, for JUnit and Markdown), and
:func:`check_thresholds` returns one line per failing cell of every column, which the CLI
prints before exiting 1. Every bound applies to each batch size of the sweep on its own; with
several, each line starts with ``batch <size>:``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lncli.errors import LncliError
from lncli.records import CLEAN, EvalRecord
from lncli.report.checks import ALL_NOISES, MEAN_SEVERITY, Check, pct
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

__all__ = ["Threshold", "check_max_drop", "check_thresholds", "parse_threshold", "threshold_checks"]

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
    if pct and not 0.0 <= v <= 1.0:
        raise LncliError(f"--fail-under {whole!r}: a percentage must be in 0%-100%, got {t}")
    if not 0.0 <= v <= 1.0:
        example = f"{t}%" if 1.0 < v <= 100.0 else "30%"  # 90 surely meant 90%
        raise LncliError(
            f"--fail-under {whole!r}: a bare number must be a fraction in [0, 1], got {t}; a percentage needs % "
            f"({example})"
        )
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
    return [c.message for c in threshold_checks(records, fail_under, max_drop) if not c.passed]


def threshold_checks(
    records: Sequence[EvalRecord],
    fail_under: Sequence[Threshold] = (),
    max_drop: float | None = None,
) -> list[Check]:
    """Apply ``--fail-under`` bounds and ``--max-drop`` to every cell of every column they cover.

    Args:
        records: evaluation records.
        fail_under: parsed thresholds (see :func:`parse_threshold`).
        max_drop: largest allowed clean minus corrupted accuracy, per cell.

    Returns:
        One :class:`~lncli.report.checks.Check` per bound and covered cell (or mean), passed or not.

    Raises:
        LncliError: as :func:`check_thresholds`.
    """
    if max_drop is not None:
        check_max_drop(max_drop)
    parts = by_batch_size(records)
    checks: list[Check] = []
    for size, recs in parts:
        one = _checks_one_size(recs, fail_under, max_drop)
        if len(parts) > 1:  # each size is its own set of cells
            one = [replace(c, batch_size=size, message=f"batch {size}: {c.message}") for c in one]
        checks += one
    return checks


def _checks_one_size(
    records: Sequence[EvalRecord], fail_under: Sequence[Threshold], max_drop: float | None
) -> list[Check]:
    """:func:`threshold_checks` on the records of one batch size."""
    cols = columns(records)
    idx = record_index(records)
    found = noises(records)
    checks: list[Check] = []
    for th in fail_under:
        if th.noise is not None and th.noise not in found:
            raise LncliError(
                f"--fail-under {th.text!r}: noise {th.noise!r} was not evaluated (have: {', '.join(found) or 'none'})"
            )
        for col in cols:
            checks += _below(th, col, records, idx)
    if max_drop is not None:
        for col in cols:
            checks += _drops(col, records, idx, max_drop)
    return checks


def check_max_drop(max_drop: float | None) -> None:
    """Refuse a ``--max-drop`` outside [0, 1] (``None``: no bound), before any compute.

    Raises:
        LncliError: the bound is not an accuracy difference.
    """
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise LncliError(f"--max-drop must be in [0, 1], got {max_drop}")


def _line(col: Column, what: str, got: float, bound: float) -> str:
    return f"{col.label} {what}: {100 * got:.1f}% < {100 * bound:.1f}%"


def _bound(
    th: Threshold, col: Column, noise: str, severity: str, what: str, rec: EvalRecord | None, got: float
) -> Check:
    """The check of one ``--fail-under`` bound on one cell (``rec``) or mean (``rec`` None, value ``got``)."""
    return Check(
        column=col,
        noise=noise,
        severity=severity,
        rule=f"--fail-under {th.text}",
        passed=not got < th.value,
        value=got,
        low=rec.ci_low if rec else None,
        high=rec.ci_high if rec else None,
        expected=f">= {pct(th.value)}",
        margin=got - th.value,
        message=_line(col, what, got, th.value),
    )


def _below(th: Threshold, col: Column, records: Sequence[EvalRecord], idx: RecordIndex) -> list[Check]:
    """The checks of one column under one bound."""
    if th.scope == "cells":
        return [
            _bound(th, col, r.noise, str(r.severity), cell_label(r.noise, r.severity), r, r.accuracy)
            for r in records
            if (r.checkpoint, r.mode) == col.key
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
        return [_bound(th, col, rec.noise, str(rec.severity), cell_label(rec.noise, rec.severity), rec, rec.accuracy)]
    m = noise_mean(records, col.key, th.noise if th.scope == "noise" else None)  # a noise's mean or the overall one
    if math.isnan(m):
        raise LncliError(f"--fail-under {th.text!r}: no corrupted cell to average")
    if th.scope == "noise":
        return [_bound(th, col, th.noise or "", MEAN_SEVERITY, f"{th.noise} mean", None, m)]
    return [_bound(th, col, ALL_NOISES, MEAN_SEVERITY, MEAN, None, m)]


def _drops(col: Column, records: Sequence[EvalRecord], idx: RecordIndex, max_drop: float) -> list[Check]:
    """The checks of one column's corrupted cells: at most ``max_drop`` below its clean accuracy."""
    clean = idx.get((col.key, CLEAN, 0))
    if clean is None:
        raise LncliError("--max-drop needs the clean row (include severity 0)")
    checks = []
    for r in records:
        if (r.checkpoint, r.mode) != col.key or r.noise == CLEAN:
            continue
        drop = clean.accuracy - r.accuracy
        checks.append(
            Check(
                column=col,
                noise=r.noise,
                severity=str(r.severity),
                rule=f"--max-drop {max_drop:g}",
                passed=not drop > max_drop,
                value=r.accuracy,
                low=r.ci_low,
                high=r.ci_high,
                expected=f"at most {100 * max_drop:.1f} points below clean {pct(clean.accuracy)} "
                f"[{pct(clean.ci_low)}, {pct(clean.ci_high)}]",
                margin=max_drop - drop,
                message=f"{col.label} {cell_label(r.noise, r.severity)}: drop {100 * drop:.1f} points > {100 * max_drop:.1f} "
                f"(clean {100 * clean.accuracy:.1f}%, corrupted {100 * r.accuracy:.1f}%)",
            )
        )
    return checks
