"""What an evaluation returns: the records and the gate's verdict, with the views a user asks for.

:class:`EvalResult` is what :func:`lncli.evaluate` returns and what ``lncli evaluate`` renders: the
records (one per checkpoint x mode x noise x severity x batch size, as in the JSON), the comparisons
with a ``--compare`` baseline, and every check of the gate. Its methods are the command line's
outputs, from Python: :meth:`~EvalResult.table`, :meth:`~EvalResult.to_csv`,
:meth:`~EvalResult.to_json`, :meth:`~EvalResult.plot`, :meth:`~EvalResult.check` (bounds) and
:meth:`~EvalResult.compare` (a baseline run); :meth:`~EvalResult.write` writes what the options asked for.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from lncli import report
from lncli.compare import compare_records
from lncli.jobs.evaluate.options import Outputs
from lncli.records import ComparisonRecord, EvalRecord
from lncli.report.thresholds import parse_threshold

__all__ = ["EvalResult"]


@dataclass(frozen=True)
class EvalResult:
    """The records of an evaluation and its gate.

    Attributes:
        records: one :class:`~lncli.records.EvalRecord` per cell, in the JSON's order.
        config: the JSON's ``config`` block (the sweep and every option as resolved, the notes).
        comparisons: one per cell against the ``--compare`` baseline (None without one).
        checks: every check of the gate (``--fail-under``, ``--max-drop``, ``--compare``), passed or not.
        notes: what lncli chose for the user, one line each.
        baseline: the table's mCE baseline column (``--baseline``; None: the first).
        compared_with: the ``--compare`` baseline's path (None without one).
        max_regression, significance: ``--compare``'s gate.
    """

    records: list[EvalRecord]
    config: dict[str, Any] = field(default_factory=dict)
    comparisons: list[ComparisonRecord] | None = None
    checks: list[report.Check] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    baseline: str | None = None
    compared_with: str | None = None
    max_regression: float = 0.0
    significance: float = 0.05

    @property
    def failures(self) -> list[report.Check]:
        """The checks that failed (the command line exits 1 when there is one)."""
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        """Whether every check of the gate passed."""
        return not self.failures

    def table(self, *, width: int = 120, baseline: str | int | None = None) -> str:
        """The command line's side-by-side table (one per batch size) as plain text.

        Args:
            width: the width to fit, in characters.
            baseline: the mCE baseline column (default: the result's, else the first).
        """
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        for renderable in self.renderables(width=width, baseline=baseline):
            console.print(renderable)
        return console.export_text()

    def renderables(self, *, width: int, baseline: str | int | None = None) -> list[RenderableType]:
        """The tables as rich renderables (the command line prints these; :meth:`table` exports their text)."""
        out = [report.render_table(self.records, baseline=baseline or self.baseline, width=width)]
        if self.comparisons is not None:
            out.append(report.render_comparison(self.comparisons, baseline=self.compared_with or ""))
        return out

    def to_csv(self, path: str | Path) -> None:
        """Write the long-format CSV (one row per record; with ``--compare``, the baseline's columns too)."""
        report.write_csv(self.records, path, comparisons=self.comparisons)

    def to_json(self, path: str | Path) -> None:
        """Write the records and the config block as JSON (a valid ``--compare`` baseline for a later run)."""
        comparison = {
            "baseline": self.compared_with,
            "max_regression": self.max_regression,
            "significance": self.significance,
        }
        report.write_json(self.records, path, config=self.config, comparison=comparison, comparisons=self.comparisons)

    def plot(self, path: str | Path) -> None:
        """Plot accuracy against severity (or batch size) to an image file."""
        report.plot_accuracy(self.records, path)

    def check(
        self, fail_under: str | float | Sequence[str | float] = (), max_drop: float | None = None
    ) -> list[report.Check]:
        """The failing cells under bounds, as the command line's gate finds them.

        Args:
            fail_under: ``--fail-under`` bounds: ``0.5``, ``"90%"``, ``"gaussian:5=0.3"``, ``"mean=0.6"``...
            max_drop: the largest clean minus corrupted accuracy.

        Returns:
            The checks that failed (empty: all pass); each says the cell, the value and the bound.
        """
        bounds = [fail_under] if isinstance(fail_under, (str, int, float)) else list(fail_under)
        thresholds = [parse_threshold(str(b)) for b in bounds]
        return [c for c in report.threshold_checks(self.records, thresholds, max_drop) if not c.passed]

    def compare(
        self, baseline: str | Path, *, max_regression: float = 0.0, significance: float = 0.05
    ) -> list[ComparisonRecord]:
        """Every cell against an earlier run's JSON, as ``--compare`` does (see :func:`lncli.compare.compare_records`).

        Returns:
            One comparison per cell; ``regressed`` marks the cells that fell more than ``max_regression``,
            significantly at ``significance``.
        """
        run = report.read_json(baseline, "baseline")
        return compare_records(self.records, run.records, max_regression=max_regression, significance=significance)

    def write(self, outputs: Outputs) -> None:
        """Write every file the options asked for (CSV, JSON, plot, JUnit, Markdown)."""
        if outputs.csv:
            self.to_csv(outputs.csv)
        if outputs.json:
            self.to_json(outputs.json)
        if outputs.plot:
            self.plot(outputs.plot)
        if outputs.junit:
            report.write_junit(self.checks, outputs.junit, properties=self._junit_properties())
        if outputs.markdown:
            report.write_markdown(
                report.render_markdown(self.records, self.checks, baseline=self.compared_with), outputs.markdown
            )

    def _junit_properties(self) -> dict[str, Any]:
        """The run's settings, as the JUnit suite's properties."""
        first = self.records[0] if self.records else None
        run = self.config
        return {
            "checkpoints": ", ".join(run.get("checkpoints", [])),
            "data": first.data if first else None,
            "n": first.n if first else None,
            "batch_size": run.get("batch_size"),
            "noise_seed": run.get("seed"),
            "order_seed": run.get("order_seed"),
            "profile": run.get("profile"),
            "baseline": self.compared_with,
            "config_file": run.get("config_file"),
            "lncli_version": first.lncli_version if first else None,
        }
