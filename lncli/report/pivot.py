"""The pivot of evaluation records: columns (checkpoint x mode), their labels, means and mCE ratios.

Every view in :mod:`lncli.report` (table, plot, thresholds) reads records through these:
:func:`columns` names each column once (unique labels, short header names), and
:func:`noise_mean` / :func:`robustness` aggregate cells the same way everywhere.

A sweep over several batch sizes (``--batch-size 1,16,128``) holds one record per batch size
of every cell: the views split the records with :func:`by_batch_size` first, and everything
else here (the index, the means, the ratios) works on the records of one batch size. A mixed
stream (``--mix``) is one row whose noise and severity are both ``mixed`` (:func:`cell_label`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lncli.errors import LncliError
from lncli.records import CLEAN, MIXED, EvalRecord

__all__ = [
    "MEAN",
    "Column",
    "ColumnKeyed",
    "batch_sizes",
    "by_batch_size",
    "cell_label",
    "columns",
    "noise_mean",
    "noises",
    "record_index",
    "resolve_baseline",
    "robustness",
    "severities",
    "short_names",
]

MEAN = "mean"
"""Row/threshold name of the mean over every corrupted cell."""

RecordIndex = dict[tuple[tuple[str, str], str, int | str], EvalRecord]
"""``{((checkpoint, mode), noise, severity): record}``, over the records of one batch size."""


class ColumnKeyed(Protocol):
    """Anything that names a column: a record, or a planned column before any record exists."""

    @property
    def checkpoint(self) -> str: ...

    @property
    def mode(self) -> str: ...


@dataclass(frozen=True)
class Column:
    """One table column: a checkpoint in one mode.

    ``label`` (``<name>:<mode>``) is unique and names the column everywhere but the
    table header: mCE keys, ``--baseline``, threshold messages, the plot legend.
    The header shows ``short`` over the mode: only the part of the name that tells the
    checkpoints apart (``bn`` for ``fashion_mnist_small_cnn_bn``), so that the table fits an
    80-column terminal; the legend under the table maps it back to the checkpoint file.
    """

    key: tuple[str, str]  # (checkpoint path, mode)
    label: str
    short: str = ""  # the distinguishing part of the checkpoint name; "" when there is one checkpoint

    @property
    def short_label(self) -> str:
        """``<short>:<mode>`` (the mode alone for one checkpoint): what the table header shows."""
        return f"{self.short}:{self.key[1]}" if self.short else self.key[1]


def columns(records: Sequence[ColumnKeyed]) -> list[Column]:
    """Columns in record order, labelled ``<checkpoint stem>:<mode>``.

    Stems that collide (``a/best.pt`` and ``b/best.pt``) get their parent folder prepended,
    and more parent folders while they still collide (``s1/bn/best.pt``, ``s2/bn/best.pt``):
    labels must be unique, since the baseline and the mCE rows are looked up by label.
    Each column's ``short`` name drops what every checkpoint name shares (see :func:`short_names`).

    Args:
        records: evaluation records (or anything with ``checkpoint`` and ``mode``).

    Returns:
        One :class:`Column` per distinct (checkpoint, mode), in first-seen order.
    """
    keys = list(dict.fromkeys((r.checkpoint, r.mode) for r in records))
    names = _unique_names(list(dict.fromkeys(k[0] for k in keys)))
    short = short_names(list(names.values()))
    return [Column(k, f"{names[k[0]]}:{k[1]}", short[names[k[0]]]) for k in keys]


def _unique_names(paths: Sequence[str]) -> dict[str, str]:
    """Each path's stem, with as many parent folders as it takes to tell colliding stems apart."""
    depth = dict.fromkeys(paths, 1)
    while True:
        names = {p: _name(p, depth[p]) for p in paths}
        counts = list(names.values())
        grow = [p for p in paths if counts.count(names[p]) > 1 and depth[p] < len(_parts(p))]
        if not grow:
            break
        for p in grow:
            depth[p] += 1
    counts = list(names.values())
    return {p: (p if counts.count(n) > 1 else n) for p, n in names.items()}  # e.g. "a.pt" and "./a.pt"


def _name(path: str, depth: int) -> str:
    """The stem of ``path`` plus its last ``depth - 1`` parent folders."""
    parts = _parts(path)
    return "/".join([*parts[max(0, len(parts) - depth) : -1], Path(path).stem]) if parts else path


_SEPARATORS = "_-./"
"""Where a shared prefix or suffix may be cut, so that short names are whole words (``seed1``, not ``1``)."""


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Map distinct names to what tells them apart: the shared prefix and suffix dropped at word boundaries.

    ``fashion_mnist_small_cnn_bn`` / ``fashion_mnist_small_cnn_ln`` -> ``bn`` / ``ln``;
    ``seed1/bn/best`` / ``seed2/bn/best`` -> ``seed1`` / ``seed2``. Distinct names stay
    distinct (each is prefix + short + suffix with the same prefix and suffix), and no
    short name is empty: where dropping the suffix, then the prefix, would empty one,
    that part is kept. A single name has nothing to tell apart and maps to ``""``.

    Args:
        names: distinct names.

    Returns:
        ``{name: short name}``.
    """
    unique = list(dict.fromkeys(names))
    if len(unique) < 2:
        return dict.fromkeys(unique, "")
    prefix = os.path.commonprefix(unique)
    prefix = prefix[: max(prefix.rfind(s) for s in _SEPARATORS) + 1]  # ends just after a separator (or is "")
    suffix = os.path.commonprefix([n[::-1] for n in unique])[::-1]
    cuts = [i for i in (suffix.find(s) for s in _SEPARATORS) if i >= 0]
    suffix = suffix[min(cuts) :] if cuts else ""  # starts at a separator (or is "")
    for pre, suf in ((prefix, suffix), (prefix, ""), ("", suffix)):
        if all(len(pre) + len(suf) < len(n) for n in unique):  # every short name keeps a character
            return {n: n[len(pre) : len(n) - len(suf)] for n in unique}
    return {n: n for n in unique}


def _parts(path: str) -> tuple[str, ...]:
    """Path components without the root (``/a/b.pt`` -> ``("a", "b.pt")``)."""
    pp = Path(path)
    return pp.parts[1:] if pp.anchor else pp.parts


def noises(records: Sequence[EvalRecord]) -> list[str]:
    """The corrupting noises of the records, in first-seen order."""
    return list(dict.fromkeys(r.noise for r in records if r.noise != CLEAN))


def record_index(records: Sequence[EvalRecord]) -> RecordIndex:
    """The records (of one batch size) by ``((checkpoint, mode), noise, severity)``."""
    return {((r.checkpoint, r.mode), r.noise, r.severity): r for r in records}


def batch_sizes(records: Sequence[EvalRecord]) -> list[int]:
    """The records' batch sizes, in first-seen order (the order the sweep ran them)."""
    return list(dict.fromkeys(r.batch_size for r in records))


def by_batch_size(records: Sequence[EvalRecord]) -> list[tuple[int, list[EvalRecord]]]:
    """The records split by batch size, in first-seen order, each part in record order.

    Args:
        records: evaluation records.

    Returns:
        ``[(batch size, its records), ...]``.
    """
    return [(b, [r for r in records if r.batch_size == b]) for b in batch_sizes(records)]


def severities(records: Sequence[EvalRecord], noise: str) -> list[int | str]:
    """The severities of one noise, ascending (a mixed stream's one severity is ``mixed``)."""
    found = {r.severity for r in records if r.noise == noise}
    return sorted(found, key=lambda s: (isinstance(s, str), s if isinstance(s, int) else 0, str(s)))


def cell_label(noise: str, severity: int | str) -> str:
    """How a cell is named in the table, messages and plots: ``clean``, ``mixed`` or ``<noise> <severity>``."""
    return noise if noise in (CLEAN, MIXED) else f"{noise} {severity}"


def _pooled(recs: Sequence[EvalRecord]) -> float:
    """Mean accuracy over cells, pooled by counts (equal to the plain mean when every cell has the same n)."""
    n = sum(r.n for r in recs)
    return sum(r.correct for r in recs) / n if n else float("nan")


def noise_mean(records: Sequence[EvalRecord], key: tuple[str, str], noise: str | None) -> float:
    """Mean accuracy of one column over the corrupted cells of ``noise`` (``None`` = every noise)."""
    return _pooled(
        [
            r
            for r in records
            if (r.checkpoint, r.mode) == key and r.noise != CLEAN and (noise is None or r.noise == noise)
        ]
    )


def resolve_baseline(cols: Sequence[Column], baseline: str | int | None) -> Column:
    """Pick the baseline column: ``None`` = first, a 1-based index, an exact label or a unique substring.

    Labels are matched in their full form (``fashion_mnist_small_cnn_bn:running``) and in
    the table header's short form (``bn:running``); an exact full label wins over an exact
    short one, and either wins over a substring.

    Raises:
        LncliError: no or several columns match.
    """
    if not cols:
        raise LncliError("no results to compare")
    if baseline is None or baseline == "":
        return cols[0]
    text = str(baseline)
    if text.isdigit():
        i = int(text)
        if not 1 <= i <= len(cols):
            raise LncliError(f"--baseline {i} is out of range; there are {len(cols)} columns")
        return cols[i - 1]
    for exact in ([c for c in cols if c.label == text], [c for c in cols if c.short_label == text]):
        if exact:
            return exact[0]
    partial = [c for c in cols if text in c.label or text in c.short_label]
    if len(partial) == 1:
        return partial[0]
    labels = ", ".join(c.label for c in cols)
    what = "matches several columns" if partial else "matches no column"
    raise LncliError(f"--baseline {text!r} {what}; columns: {labels}")


def robustness(records: Sequence[EvalRecord], baseline: str | int | None = None) -> dict[str, dict[str, float]]:
    """mCE-style error ratios of every column against a baseline column.

    For each noise c: CE_c = sum_s E(s, c) / sum_s E_base(s, c), and the relative
    version subtracts each column's own clean error first,
    rCE_c = sum_s (E(s, c) - E(clean)) / sum_s (E_base(s, c) - E_base(clean)).
    ``mce`` / ``rel_mce`` are the means over noises (Hendrycks & Dietterich 2019).
    Below 1 = more robust than the baseline. NaN where undefined (no clean row,
    or a baseline with zero error).

    Args:
        records: evaluation records of one batch size (see :func:`by_batch_size`).
        baseline: see :func:`resolve_baseline`.

    Returns:
        ``{column label: {"mce": .., "rel_mce": ..}}``.
    """
    cols = columns(records)
    base = resolve_baseline(cols, baseline)
    idx = record_index(records)
    out: dict[str, dict[str, float]] = {}
    for col in cols:
        ces, rces = [], []
        for noise in noises(records):
            ce, rce = _error_ratios(records, idx, col.key, base.key, noise)
            ces.append(ce)
            rces.append(rce)
        out[col.label] = {
            "mce": sum(ces) / len(ces) if ces else math.nan,
            "rel_mce": sum(rces) / len(rces) if rces else math.nan,
        }
    return out


def _error_ratios(
    records: Sequence[EvalRecord], idx: RecordIndex, key: tuple[str, str], base: tuple[str, str], noise: str
) -> tuple[float, float]:
    """(CE, relative CE) of column ``key`` against column ``base`` on one noise (see :func:`robustness`)."""
    sevs = severities(records, noise)
    err = [1 - idx[(key, noise, s)].accuracy for s in sevs if (key, noise, s) in idx]
    berr = [1 - idx[(base, noise, s)].accuracy for s in sevs if (base, noise, s) in idx]
    ce = sum(err) / sum(berr) if berr and sum(berr) > 0 else math.nan
    clean, bclean = idx.get((key, CLEAN, 0)), idx.get((base, CLEAN, 0))
    if clean is None or bclean is None:
        return ce, math.nan
    num = sum(e - (1 - clean.accuracy) for e in err)
    den = sum(e - (1 - bclean.accuracy) for e in berr)
    return ce, (num / den if den > 0 else math.nan)
