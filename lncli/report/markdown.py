"""``--markdown PATH``: a compact summary for ``$GITHUB_STEP_SUMMARY`` (or any Markdown viewer).

A headline (passed, or how many checked cells failed), one line about the run, then a table of
the checked cells (:func:`lncli.report.checks.cases`) with pass/fail marks, the worst first: every
failed cell with each bound it failed, then the passing ones closest to a bound (one row each,
that bound), up to ``max_rows``. Without any bound the table lists the cells with the lowest
accuracy instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lncli.io import atomic_write
from lncli.records import CLEAN, EvalRecord
from lncli.report.checks import Case, Check, cases, pct, worst_first
from lncli.report.pivot import columns

__all__ = ["MAX_ROWS", "render_markdown", "write_markdown"]

MAX_ROWS = 15
"""Passing rows shown at most (failed ones are always all shown): a summary, not the full table."""

_PASS, _FAIL = "✅", "❌"


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell (a ``|`` would end the cell)."""
    return text.replace("|", "\\|").replace("\n", " ")


def _about(records: Sequence[EvalRecord], baseline: str | None) -> str:
    """One line on what was run: data, images, batch, seeds, and the baseline compared with."""
    if not records:
        return "no cells were evaluated"
    r = records[0]
    order = "dataset order" if r.order_seed is None else f"order seed {r.order_seed}"
    text = f"data `{r.data}`, n={r.n}, batch {r.batch_size}, noise seed {r.noise_seed}, {order}, {r.device}"
    return text + (f"; compared with `{baseline}`" if baseline else "")


def _closest(case: Case) -> Check:
    """The check of a passing case that is closest to failing (the one row the case gets)."""
    return min(case.checks, key=lambda c: math.inf if math.isnan(c.margin) else c.margin)


def _check_rows(checks: Sequence[Check], max_rows: int) -> list[str]:
    """A row per failed bound of each failed cell, then one per passing cell (its closest bound), worst first."""
    groups = worst_first(cases(checks))
    failed = [c for c in groups if not c.passed]
    shown = failed + [c for c in groups if c.passed][:max_rows]
    rows = ["| | cell | accuracy [95% CI] | expected | rule |", "|:-:|---|--:|---|---|"]
    for case in shown:
        for i, check in enumerate(case.failures or (_closest(case),)):
            mark = "" if i else (_FAIL if not case.passed else _PASS)
            name = "" if i else f"`{_escape(case.name)}`"
            rows.append(f"| {mark} | {name} | {check.measured} | {_escape(check.expected)} | `{_escape(check.rule)}` |")
    hidden = len(groups) - len(shown)
    if hidden:
        rows.append(f"\n… and {hidden} more passing cells (all of them are in the JUnit report and the CSV).")
    return rows


def _cell_rows(records: Sequence[EvalRecord], max_rows: int) -> list[str]:
    labels = {c.key: c.label for c in columns(records)}
    rows = ["| cell | accuracy [95% CI] |", "|---|--:|"]
    worst = sorted(records, key=lambda r: (math.isnan(r.accuracy), r.accuracy))[:max_rows]
    for r in worst:
        cell = CLEAN if r.noise == CLEAN else f"{r.noise}/{r.severity}"
        rows.append(
            f"| `{_escape(labels[(r.checkpoint, r.mode)])}/{cell}` | {pct(r.accuracy)} [{pct(r.ci_low)}, {pct(r.ci_high)}] |"
        )
    return rows


def render_markdown(
    records: Sequence[EvalRecord],
    checks: Sequence[Check],
    *,
    baseline: str | None = None,
    max_rows: int = MAX_ROWS,
) -> str:
    """The Markdown summary of a run and its checks.

    Args:
        records: the run's records.
        checks: every check of the run (:func:`lncli.report.threshold_checks`, :func:`lncli.report.regression_checks`).
        baseline: the ``--compare`` baseline's path, if any.
        max_rows: passing rows shown at most.

    Returns:
        The Markdown text.
    """
    groups = cases(checks)
    failed = sum(not c.passed for c in groups)
    if not groups:
        head = "### lncli evaluate: no bound checked"
    elif failed:
        head = f"### {_FAIL} lncli evaluate: {failed} of {len(groups)} checked cells failed"
    else:
        head = f"### {_PASS} lncli evaluate: all {len(groups)} checked cells passed"
    body = _check_rows(checks, max_rows) if groups else _cell_rows(records, max_rows)
    return "\n".join([head, "", _about(records, baseline), "", *body]) + "\n"


def write_markdown(text: str, path: str | Path) -> None:
    """Write the summary atomically (UTF-8).

    Args:
        text: from :func:`render_markdown`.
        path: any file (``$GITHUB_STEP_SUMMARY`` has no suffix).
    """
    with atomic_write(path, "w") as fh:
        fh.write(text)
