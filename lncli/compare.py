"""Regression against a baseline run (``lncli evaluate --compare``): cells matched, compared, gated. Pure compute.

:func:`compare_records` takes this run's records and an earlier run's (read by
:func:`lncli.report.read_json`) and returns one :class:`~lncli.records.ComparisonRecord` per
cell; :mod:`lncli.report` renders them. It never reads or writes files.

Matching. A column (checkpoint x mode) of this run is the baseline column with the same label
(:func:`lncli.report.columns`: ``<checkpoint name>:<mode>``), else the one with the same checkpoint
hash and mode (a renamed file). Inside matched columns, cells pair by (noise, severity). Every cell
must have its counterpart, both ways, and every field of :data:`MATCH_FIELDS` must be equal in the
two: anything else is refused in one line, never compared silently.

The match key is one list: :data:`MATCH_FIELDS` is every :class:`~lncli.records.EvalRecord`
field except those named in :data:`NOT_SETTINGS`, each with the reason it may differ. A field
added to the record is therefore matched with no further work; a field that does not change
accuracy gets one line in :data:`NOT_SETTINGS`. A baseline written before a field existed
reads it as the field's default (new fields default to the old behaviour).

Gate. A cell regressed when its accuracy fell by more than ``max_regression`` (D) below the
baseline's AND the fall is significant at ``significance`` (one-sided p < alpha). With per-image
results in both records (same images, same noise: the matched settings guarantee it) the test
is the exact paired McNemar test on the images lost and gained; otherwise the pooled
two-proportion z-test on the counts (:func:`lncli.stats.drop_p_value`). The level is per cell:
with k cells gated, the chance that some cell of an unchanged-but-retrained model fails at
random is up to k x alpha, which D > 0 or a smaller alpha reduces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lncli.errors import LncliError
from lncli.records import CLEAN, JSON_FIELDS, ComparisonRecord, EvalRecord, unpack_hits
from lncli.report.pivot import Column, ColumnKeyed, columns
from lncli.stats import drop_p_value

__all__ = [
    "MATCH_FIELDS",
    "NOT_SETTINGS",
    "check_regression_settings",
    "compare_records",
    "match_columns",
    "pair_cells",
]

_RESULT = "a result of the run, what is compared"
_MODEL = "the model under test: a changed model is what a regression check is for"

NOT_SETTINGS: dict[str, str] = {
    "checkpoint": "the column's identity: matched by label, else by hash (match_columns)",
    "sha256": "the column's identity, and the model under test",
    "arch": _MODEL,
    "norm": _MODEL,
    "correct": _RESULT,
    "accuracy": _RESULT,
    "ci_low": _RESULT,
    "ci_high": _RESULT,
    "hits": _RESULT,
    "device": "where it ran, not what is checked (float round-off on another device may flip borderline "
    "images; the gate weighs them like any other change)",
    "world_size": "torchrun shards whole batches, so the counts do not depend on it",
    "lncli_version": "the code under test",
}
"""The :class:`~lncli.records.EvalRecord` fields that may differ between a run and its baseline, with why."""

MATCH_FIELDS: tuple[str, ...] = tuple(f for f in JSON_FIELDS if f not in NOT_SETTINGS)
"""Every setting that changes accuracy (mode, heads, group and batch size, noise, profile, severity, the
noise constant, n, both seeds, data, amp, rescale, ...): equal in a cell and its baseline, or refused."""


def check_regression_settings(max_regression: float | None, significance: float) -> None:
    """Refuse a regression gate that means nothing, before any compute.

    Args:
        max_regression: D, the largest tolerated fall (a fraction in [0, 1]; None: no gate).
        significance: the test's level alpha, in (0, 1).

    Raises:
        LncliError: D outside [0, 1], or alpha outside (0, 1).
    """
    if max_regression is not None and not (0.0 <= max_regression <= 1.0):
        raise LncliError(f"--max-regression must be in [0, 1] (a fall in accuracy), got {max_regression}")
    if not (0.0 < significance < 1.0):
        raise LncliError(f"--significance must be in (0, 1) (a test level such as 0.05), got {significance}")


def _check_counts(r: EvalRecord, label: str, which: str) -> np.ndarray | None:
    """The record's per-image results (n,) bool, after checking that its counts agree with each other.

    Raises:
        LncliError: correct > n, an accuracy that is not correct / n, or hits that do not add up to correct.
    """
    where = f"--compare: {which} {label} {_cell(r)}"
    if r.correct > r.n:
        raise LncliError(f"{where}: {r.correct} correct of {r.n} images")
    if r.n and not math.isclose(r.accuracy, r.correct / r.n, rel_tol=0.0, abs_tol=1e-9):
        raise LncliError(f"{where}: accuracy {r.accuracy} is not {r.correct}/{r.n}")
    if r.hits is None:
        return None
    try:
        hits = unpack_hits(r.hits, r.n)
    except ValueError as exc:
        raise LncliError(f"{where}: unreadable per-image results ({exc})") from None
    if int(hits.sum()) != r.correct:
        raise LncliError(f"{where}: per-image results hold {int(hits.sum())} right images, but correct is {r.correct}")
    return hits


def _cell(r: EvalRecord) -> str:
    return CLEAN if r.noise == CLEAN else f"{r.noise} {r.severity}"


def _shas(records: Sequence[EvalRecord]) -> dict[str, str]:
    return {r.checkpoint: r.sha256[:12] for r in records}


def match_columns(
    current: Sequence[ColumnKeyed], current_shas: Mapping[str, str], baseline: Sequence[EvalRecord]
) -> dict[tuple[str, str], Column]:
    """Pair every column of this run with one baseline column: same label, else same hash and mode.

    Usable before any compute (from the planned columns) and after (from the records).

    Args:
        current: this run's columns (records, or planned (checkpoint, mode) keys), in order.
        current_shas: each checkpoint's SHA-256 (hex; the first 12 digits are compared).
        baseline: the baseline's records.

    Returns:
        ``{(checkpoint, mode): baseline column}``.

    Raises:
        LncliError: a column without a baseline column, two matches, or a baseline column left over.
    """
    base_cols, cur_cols = columns(baseline), columns(current)
    base_shas = _shas(baseline)
    pairs: dict[tuple[str, str], Column] = {}
    for col in cur_cols:
        found = [b for b in base_cols if b.label == col.label] or [
            b
            for b in base_cols
            if b.key[1] == col.key[1] and base_shas[b.key[0]] == current_shas.get(col.key[0], "")[:12]
        ]
        if len(found) != 1 or found[0] in pairs.values():
            what = "no column" if not found else "several columns" if len(found) > 1 else "a column matched twice"
            have = ", ".join(b.label for b in base_cols) or "none"
            raise LncliError(f"--compare: {col.label} matches {what} of the baseline by label or hash (it has: {have})")
        pairs[col.key] = found[0]
    left = [b.label for b in base_cols if b not in pairs.values()]
    if left:
        raise LncliError(f"--compare: the baseline's column {left[0]} is not in this run; compare the same columns")
    return pairs


def _same(mine: object, theirs: object) -> bool:
    """Equal settings; a list read from JSON equals the tuple it was written from, floats to round-off."""
    if isinstance(mine, (list, tuple)) and isinstance(theirs, (list, tuple)):
        return len(mine) == len(theirs) and all(_same(a, b) for a, b in zip(mine, theirs))
    if isinstance(mine, float) and isinstance(theirs, float):
        return math.isclose(mine, theirs, rel_tol=1e-12)
    return mine == theirs


def _differences(r: EvalRecord, b: EvalRecord) -> list[str]:
    """``field X here, Y in the baseline`` for each setting of :data:`MATCH_FIELDS` that differs."""
    return [
        f"{name} {getattr(r, name)!r} here, {getattr(b, name)!r} in the baseline"
        for name in MATCH_FIELDS
        if not _same(getattr(r, name), getattr(b, name))
    ]


def pair_cells(
    records: Sequence[EvalRecord], baseline: Sequence[EvalRecord]
) -> list[tuple[EvalRecord, EvalRecord, str]]:
    """Pair every cell of a run with the baseline's, checking that their settings match; no counts are read.

    Usable before any compute on a plan's skeleton records (their settings are the run's; their counts are
    not yet known), and after it on the records.

    Args:
        records: this run's records (or the records it will have).
        baseline: the baseline run's records.

    Returns:
        (this run's record, the baseline's, the column's label) per record, in record order.

    Raises:
        LncliError: columns or cells that do not pair up, or a setting of :data:`MATCH_FIELDS` that differs
            (naming the cell and the settings).
    """
    pairs = match_columns(records, _shas(records), baseline)
    labels = {c.key: c.label for c in columns(records)}
    # Cells pair per batch size when a run has several; with one size each, a different size is a
    # setting that differs (reported below), not a missing cell.
    per_size = len({r.batch_size for r in records}) > 1 or len({b.batch_size for b in baseline}) > 1

    def size(rec: EvalRecord) -> int | None:
        return rec.batch_size if per_size else None

    base_idx = {((b.checkpoint, b.mode), b.noise, b.severity, size(b)): b for b in baseline}
    used: set[int] = set()
    out = []
    for r in records:
        key = (r.checkpoint, r.mode)
        b = base_idx.get((pairs[key].key, r.noise, r.severity, size(r)))
        if b is None:
            raise LncliError(f"--compare: {labels[key]} {_cell(r)} is not in the baseline; compare the same cells")
        diffs = _differences(r, b)
        if diffs:
            raise LncliError(
                f"--compare: settings differ from the baseline at {labels[key]} {_cell(r)}: {'; '.join(diffs)}"
            )
        used.add(id(b))
        out.append((r, b, labels[key]))
    matched = {c.key for c in pairs.values()}
    left = [b for b in baseline if id(b) not in used and (b.checkpoint, b.mode) in matched]
    if left:
        raise LncliError(f"--compare: the baseline's cell {left[0].mode} {_cell(left[0])} is not in this run")
    return out


def compare_records(
    records: Sequence[EvalRecord],
    baseline: Sequence[EvalRecord],
    *,
    max_regression: float,
    significance: float,
) -> list[ComparisonRecord]:
    """Compare every cell of a run with the same cell of a baseline run, and gate it.

    Args:
        records: this run's records.
        baseline: the baseline run's records.
        max_regression: D, the largest tolerated fall in accuracy (a fraction).
        significance: alpha, the one-sided test's level.

    Returns:
        One :class:`~lncli.records.ComparisonRecord` per record, in record order.

    Raises:
        LncliError: a bad gate, cells that do not pair up or whose settings differ (:func:`pair_cells`),
            or counts that contradict themselves.
    """
    check_regression_settings(max_regression, significance)
    return [_compare_cell(r, b, label, max_regression, significance) for r, b, label in pair_cells(records, baseline)]


def _compare_cell(
    r: EvalRecord, b: EvalRecord, label: str, max_regression: float, significance: float
) -> ComparisonRecord:
    """One cell against its baseline: the counts, the paired or unpaired test, the verdict."""
    now, before = _check_counts(r, label, "this run's"), _check_counts(b, label, "the baseline's")
    lost = gained = None
    if now is not None and before is not None:  # (n,) bool each, the same images (n and data matched)
        lost, gained = int((before & ~now).sum()), int((~before & now).sum())
    p_value, test = drop_p_value(b.correct, b.n, r.correct, r.n, lost=lost, gained=gained)
    delta = r.accuracy - b.accuracy
    # A fall of exactly D is not "more than D"; the tolerance keeps float round-off from deciding it.
    regressed = bool(-delta > max_regression + 1e-12 and p_value < significance)
    return ComparisonRecord(
        checkpoint=r.checkpoint,
        mode=r.mode,
        noise=r.noise,
        severity=r.severity,
        batch_size=r.batch_size,
        sha256=r.sha256,
        baseline_checkpoint=b.checkpoint,
        baseline_sha256=b.sha256,
        baseline_n=b.n,
        baseline_correct=b.correct,
        baseline_accuracy=b.accuracy,
        n=r.n,
        correct=r.correct,
        accuracy=r.accuracy,
        delta=delta,
        lost=lost,
        gained=gained,
        test=test,
        p_value=p_value,
        max_regression=max_regression,
        significance=significance,
        regressed=regressed,
    )
