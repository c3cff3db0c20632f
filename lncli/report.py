"""Render evaluation records: the side-by-side table, CSV/JSON, the plot and CI thresholds.

:func:`lncli.evaluate.evaluate_grid` returns flat :class:`~lncli.evaluate.EvalRecord`
rows (long format, one per checkpoint x mode x noise x severity, as RobustBench's
``unaggregated_results.csv``). Everything here is a view of those rows:

* :func:`render_table` pivots them (rows noise x severity + clean + per-noise
  mean + overall mean, columns checkpoint x mode) into a rich table; rich prints
  plain text when stdout is not a terminal.
* :func:`robustness` gives mCE-style error ratios against a baseline column
  (Hendrycks & Dietterich, 2019).
* :func:`write_csv`, :func:`write_json`, :func:`plot_accuracy` write files,
  atomically through :mod:`lncli.io`.
* :func:`parse_threshold` and :func:`check_thresholds` implement
  ``--fail-under`` / ``--max-drop`` for CI gating.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lncli.errors import LncliError
from lncli.records import CLEAN, RECORD_FIELDS, EvalRecord
from lncli.io import atomic_path, atomic_write, check_output_file, image_suffixes

MEAN = "mean"
"""Row/threshold name of the mean over every corrupted cell."""


# ---------------------------------------------------------------------------
# Pivot
# ---------------------------------------------------------------------------


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


def columns(records: Sequence[EvalRecord]) -> list[Column]:
    """Columns in record order, labelled ``<checkpoint stem>:<mode>``.

    Stems that collide (``a/best.pt`` and ``b/best.pt``) get their parent folder prepended,
    and more parent folders while they still collide (``s1/bn/best.pt``, ``s2/bn/best.pt``):
    labels must be unique, since the baseline and the mCE rows are looked up by label.
    Each column's ``short`` name drops what every checkpoint name shares (see :func:`short_names`).
    """
    keys = list(dict.fromkeys((r.checkpoint, r.mode) for r in records))
    paths = list(dict.fromkeys(k[0] for k in keys))

    def name(p: str, depth: int) -> str:  # stem plus its last depth-1 parent folders
        parts = _parts(p)
        return "/".join([*parts[max(0, len(parts) - depth) : -1], Path(p).stem]) if parts else p

    depth = dict.fromkeys(paths, 1)
    while True:
        names = {p: name(p, depth[p]) for p in paths}
        counts = list(names.values())
        grow = [p for p in paths if counts.count(names[p]) > 1 and depth[p] < len(_parts(p))]
        if not grow:
            break
        for p in grow:
            depth[p] += 1
    counts = list(names.values())
    names = {p: (p if counts.count(n) > 1 else n) for p, n in names.items()}  # e.g. "a.pt" and "./a.pt"
    short = short_names(list(names.values()))
    return [Column(k, f"{names[k[0]]}:{k[1]}", short[names[k[0]]]) for k in keys]


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


def _noises(records: Sequence[EvalRecord]) -> list[str]:
    return list(dict.fromkeys(r.noise for r in records if r.noise != CLEAN))


def _index(records: Sequence[EvalRecord]) -> dict[tuple[tuple[str, str], str, int], EvalRecord]:
    return {((r.checkpoint, r.mode), r.noise, r.severity): r for r in records}


def _pooled(recs: Sequence[EvalRecord]) -> float:
    """Mean accuracy over cells, pooled by counts (equal to the plain mean when every cell has the same n)."""
    n = sum(r.n for r in recs)
    return sum(r.correct for r in recs) / n if n else float("nan")


def noise_mean(records: Sequence[EvalRecord], key: tuple[str, str], noise: str | None) -> float:
    """Mean accuracy of one column over the corrupted cells of ``noise`` (``None`` = every noise)."""
    return _pooled([r for r in records if (r.checkpoint, r.mode) == key and r.noise != CLEAN and (noise is None or r.noise == noise)])


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
        records: evaluation records.
        baseline: see :func:`resolve_baseline`.

    Returns:
        ``{column label: {"mce": .., "rel_mce": ..}}``.
    """
    cols = columns(records)
    base = resolve_baseline(cols, baseline)
    idx = _index(records)
    out: dict[str, dict[str, float]] = {}
    for col in cols:
        ces, rces = [], []
        for noise in _noises(records):
            sevs = sorted({r.severity for r in records if r.noise == noise})
            err = [1 - idx[(col.key, noise, s)].accuracy for s in sevs if (col.key, noise, s) in idx]
            berr = [1 - idx[(base.key, noise, s)].accuracy for s in sevs if (base.key, noise, s) in idx]
            ces.append(sum(err) / sum(berr) if berr and sum(berr) > 0 else math.nan)
            clean, bclean = idx.get((col.key, CLEAN, 0)), idx.get((base.key, CLEAN, 0))
            if clean is not None and bclean is not None:
                num = sum(e - (1 - clean.accuracy) for e in err)
                den = sum(e - (1 - bclean.accuracy) for e in berr)
                rces.append(num / den if den > 0 else math.nan)
            else:
                rces.append(math.nan)
        out[col.label] = {
            "mce": sum(ces) / len(ces) if ces else math.nan,
            "rel_mce": sum(rces) / len(rces) if rces else math.nan,
        }
    return out


# ---------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _cell(r: EvalRecord) -> str:
    return f"{_pct(r.accuracy)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]"


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
    files, so that an 80-column terminal does not wrap them.

    Args:
        records: evaluation records.
        baseline: column for the mCE rows (see :func:`resolve_baseline`).
        width: the console width the table must fit (``None``: no limit).

    Returns:
        A :class:`rich.table.Table`, grouped with its :func:`legend` (headers show short
        checkpoint names, see :class:`Column`).
    """
    cols = columns(records)
    base = resolve_baseline(cols, baseline)
    idx = _index(records)
    # (label, values, texts with CI, texts without CI, higher is better, new section before)
    rows: list[tuple[str, list[float], list[str], list[str], bool, bool]] = []

    def cell_row(noise: str, sev: int, label: str, section: bool) -> None:
        recs = [idx.get((c.key, noise, sev)) for c in cols]
        vals = [r.accuracy if r else math.nan for r in recs]
        rows.append((label, vals, [_cell(r) if r else "-" for r in recs], [_pct(v) for v in vals], True, section))

    def plain_row(label: str, vals: list[float], section: bool, higher_is_better: bool = True) -> None:
        texts = [_pct(v) for v in vals]
        rows.append((label, vals, texts, texts, higher_is_better, section))

    if any(r.noise == CLEAN for r in records):
        cell_row(CLEAN, 0, CLEAN, False)
    noises = _noises(records)
    for noise in noises:
        for k, sev in enumerate(sorted({r.severity for r in records if r.noise == noise})):
            cell_row(noise, sev, f"{noise} {sev}", k == 0 and bool(rows))
        plain_row(f"{noise} mean", [noise_mean(records, c.key, noise) for c in cols], False)
    if noises:
        plain_row(MEAN, [noise_mean(records, c.key, None) for c in cols], True)
        rob = robustness(records, base.label)
        for key, name in (("mce", "mCE"), ("rel_mce", "rel. mCE")):
            plain_row(f"{name} %", [rob[c.label][key] for c in cols], False, higher_is_better=False)

    # Width check: borders take 3 characters per column plus 1; a cell is its text plus the marker;
    # headers are the short checkpoint name over the mode.
    label_w = max([len("noise / severity")] + [len(r[0]) for r in rows])
    need = 1 + label_w + 3
    for j, col in enumerate(cols):
        need += max([len(col.short), len(col.key[1])] + [len(r[2][j]) + 1 for r in rows]) + 3
    with_ci = width is None or need <= width
    first = records[0] if records else None
    caption = ""
    if first is not None:
        what = "accuracy % [Wilson 95%]" if with_ci else "accuracy % (95% intervals left out for width; see --csv)"
        caption = (
            f"{what}, * = best in row; data {first.data}{' (synthetic)' if first.synthetic and 'synthetic' not in first.data else ''}, n={first.n}, "
            f"batch {first.batch_size}, noise seed {first.noise_seed}, "
            f"{'dataset order' if first.order_seed is None else f'order seed {first.order_seed}'}, {first.device}"
            + (f"; mCE baseline {base.label}" if noises else "")
            + _rescale_note(records)
        )
    table = Table(title="lncli evaluate", caption=caption)
    table.add_column("noise / severity", no_wrap=True)
    for col in cols:
        # fold (not ellipsis) so that a console too narrow even for the short names still shows all of each
        table.add_column(col.short_label.replace(":", "\n", 1), justify="right", overflow="fold")
    for label, vals, ci_texts, texts, higher, section in rows:
        if section:
            table.add_section()
        finite = [v for v in vals if not math.isnan(v)]
        best = (max(finite) if higher else min(finite)) if finite else None
        cells: list[Text | str] = [label]
        for v, t in zip(vals, ci_texts if with_ci else texts):
            if best is not None and len(vals) > 1 and not math.isnan(v) and math.isclose(v, best, abs_tol=1e-12):
                cells.append(Text(t + "*", style="bold green"))
            else:
                cells.append(Text(t + " "))
        table.add_row(*cells)
    return Group(table, legend(cols))


def legend(cols: Sequence[Column]) -> Text:
    """The line(s) under the table that map each header's short name back to its checkpoint file.

    Args:
        cols: the table's columns (see :func:`columns`).

    Returns:
        One line per checkpoint, ``<short name> = <checkpoint path>`` (``checkpoint = <path>``
        when there is only one).
    """
    lines = {c.key[0]: f"{c.short or 'checkpoint'} = {c.key[0]}" for c in cols}  # one per checkpoint, in column order
    return Text("\n".join(lines.values()), no_wrap=False, overflow="fold")


_RESCALE_RANGES = {"train": "the training split's range", "test": "the clean test set's range (no training split found)"}


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


# ---------------------------------------------------------------------------
# Files (atomic)
# ---------------------------------------------------------------------------


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def write_csv(records: Sequence[EvalRecord], path: str | Path) -> None:
    """Write the long-format CSV: one row per record, columns :data:`lncli.evaluate.RECORD_FIELDS`."""
    with atomic_write(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(RECORD_FIELDS))
        writer.writeheader()
        for r in records:
            writer.writerow({k: _csv_value(v) for k, v in r.to_dict().items()})


def write_json(records: Sequence[EvalRecord], path: str | Path, *, config: dict[str, Any] | None = None) -> None:
    """Write ``{"format": "lncli-eval", "format_version": 1, "config": .., "records": [..]}``.

    NaN accuracies (empty cells) become ``null`` so the file is strict JSON.
    """

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    doc = {
        "format": "lncli-eval",
        "format_version": 1,
        "config": config or {},
        "records": [{k: clean(v) for k, v in r.to_dict().items()} for r in records],
    }
    with atomic_write(path, "w") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")


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
    Wilson 95% interval. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_plot_path(path)

    noises = _noises(records) or [CLEAN]
    cols = columns(records)
    idx = _index(records)
    fig, axes = plt.subplots(1, len(noises), figsize=(4.2 * len(noises), 3.6), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], noises):
        for col in cols:
            pts = []
            if (col.key, CLEAN, 0) in idx:
                pts.append(idx[(col.key, CLEAN, 0)])
            pts += sorted((r for k, r in idx.items() if k[0] == col.key and k[1] == noise and noise != CLEAN), key=lambda r: r.severity)
            if not pts:
                continue
            xs = [r.severity for r in pts]
            (line,) = ax.plot(xs, [100 * r.accuracy for r in pts], marker="o", label=col.label)
            ax.fill_between(xs, [100 * r.ci_low for r in pts], [100 * r.ci_high for r in pts], color=line.get_color(), alpha=0.15)
        ax.set_title(noise)
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy %")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------
# Thresholds (CI gating)
# ---------------------------------------------------------------------------


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
    m = re.fullmatch(r"([a-z0-9_\-]+):(\d+)", lhs_l)
    if m:
        return Threshold("cell", value, noise=m.group(1), severity=int(m.group(2)), text=t)
    if lhs_l == MEAN:
        return Threshold("mean", value, text=t)
    if lhs_l == CLEAN:
        return Threshold("clean", value, text=t)
    if re.fullmatch(r"[a-z0-9_\-]+", lhs_l):
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
        One line per failing cell, e.g. ``bn:running gaussian 5: 21.2% < 30.0%``; empty when all pass.

    Raises:
        LncliError: a bound names a noise/severity that was not evaluated, or
            ``max_drop`` is given without a clean row.
    """
    cols = columns(records)
    idx = _index(records)
    noises = _noises(records)
    failures: list[str] = []

    def fail(col: Column, what: str, got: float, bound: float, op: str = "<") -> None:
        failures.append(f"{col.label} {what}: {100 * got:.1f}% {op} {100 * bound:.1f}%")

    for th in fail_under:
        if th.noise is not None and th.noise not in noises:
            raise LncliError(f"--fail-under {th.text!r}: noise {th.noise!r} was not evaluated (have: {', '.join(noises) or 'none'})")
        for col in cols:
            if th.scope == "cells":
                for each in records:
                    if (each.checkpoint, each.mode) == col.key and each.accuracy < th.value:
                        fail(col, CLEAN if each.noise == CLEAN else f"{each.noise} {each.severity}", each.accuracy, th.value)
            elif th.scope == "cell":
                r = idx.get((col.key, th.noise or "", th.severity or 0))
                if r is None:
                    raise LncliError(f"--fail-under {th.text!r}: severity {th.severity} of {th.noise} was not evaluated")
                if r.accuracy < th.value:
                    fail(col, f"{th.noise} {th.severity}", r.accuracy, th.value)
            elif th.scope == "clean":
                r = idx.get((col.key, CLEAN, 0))
                if r is None:
                    raise LncliError(f"--fail-under {th.text!r}: no clean row (include severity 0)")
                if r.accuracy < th.value:
                    fail(col, CLEAN, r.accuracy, th.value)
            else:  # noise mean or overall mean
                m = noise_mean(records, col.key, th.noise if th.scope == "noise" else None)
                if math.isnan(m):
                    raise LncliError(f"--fail-under {th.text!r}: no corrupted cell to average")
                if m < th.value:
                    fail(col, f"{th.noise} mean" if th.scope == "noise" else MEAN, m, th.value)
    if max_drop is not None:
        if not 0.0 <= max_drop <= 1.0:
            raise LncliError(f"--max-drop must be in [0, 1], got {max_drop}")
        for col in cols:
            clean = idx.get((col.key, CLEAN, 0))
            if clean is None:
                raise LncliError("--max-drop needs the clean row (include severity 0)")
            for r in records:
                if (r.checkpoint, r.mode) == col.key and r.noise != CLEAN:
                    drop = clean.accuracy - r.accuracy
                    if drop > max_drop:
                        failures.append(
                            f"{col.label} {r.noise} {r.severity}: drop {100 * drop:.1f} points > {100 * max_drop:.1f} "
                            f"(clean {100 * clean.accuracy:.1f}%, corrupted {100 * r.accuracy:.1f}%)"
                        )
    return failures
