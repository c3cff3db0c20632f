"""The CI gate as data: every bound applied to every cell it covers, passed or not.

``--fail-under``, ``--max-drop`` (:mod:`.thresholds`) and ``--compare``'s regression gate
(:mod:`.regression`) each yield one :class:`Check` per (column, cell) they cover. The
failure lines, the JUnit XML (:mod:`.junit`) and the Markdown summary (:mod:`.markdown`)
are views of the same checks, grouped per (column, cell) by :func:`cases`, so their counts
agree by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lncli.report.pivot import Column

__all__ = ["ALL_NOISES", "MEAN_SEVERITY", "Case", "Check", "cases", "pct", "worst_first"]

ALL_NOISES = "all"
"""The noise part of a check over every corrupted cell (``mean=0.6``)."""

MEAN_SEVERITY = "mean"
"""The severity part of a check over a noise's mean (``gaussian=0.4``) or the overall mean."""


def pct(x: float | None) -> str:
    """An accuracy as a percentage with one decimal (``-`` when unknown)."""
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


@dataclass(frozen=True)
class Check:
    """One bound applied to one cell (or mean) of one column.

    ``value`` is the accuracy measured there, ``low``/``high`` its Wilson 95% interval (``None``
    for means pooled over cells, which share images), ``expected`` the bound in words and
    ``margin`` how far inside the bound the cell is (negative: outside), in accuracy units, so
    that the worst cells sort first. ``message`` is the one-line failure text.
    """

    column: Column
    noise: str  # a noise, "clean", or ALL_NOISES
    severity: str  # "0".."5" or MEAN_SEVERITY
    rule: str  # the option that set the bound, as given: "--fail-under gaussian:5=0.3"
    passed: bool
    value: float
    low: float | None
    high: float | None
    expected: str
    margin: float
    message: str
    batch_size: int | None = None  # set when the sweep has several batch sizes (each its own cells)

    @property
    def name(self) -> str:
        """``<checkpoint>:<mode>/<noise>/<severity>``, plus ``@batch<size>`` with several batch sizes."""
        at = "" if self.batch_size is None else f"@batch{self.batch_size}"
        return f"{self.column.label}/{self.noise}/{self.severity}{at}"

    @property
    def measured(self) -> str:
        """The value with its interval: ``21.2% [18.8%, 23.8%]``."""
        interval = f" [{pct(self.low)}, {pct(self.high)}]" if self.low is not None and self.high is not None else ""
        return f"{pct(self.value)}{interval}"

    @property
    def detail(self) -> str:
        """Everything about the check in one line: the measured value, its interval, the bound and the rule."""
        return f"measured {self.measured}; expected {self.expected} ({self.rule})"


@dataclass(frozen=True)
class Case:
    """Every check of one (column, cell): one JUnit test case, one Markdown row."""

    checks: tuple[Check, ...]

    @property
    def name(self) -> str:
        """``<checkpoint>:<mode>/<noise>/<severity>``."""
        return self.checks[0].name

    @property
    def classname(self) -> str:
        """The checkpoint's label (the column label without its mode), which JUnit viewers group by."""
        col = self.checks[0].column
        return col.label[: -len(col.key[1]) - 1] if col.label.endswith(f":{col.key[1]}") else col.label

    @property
    def passed(self) -> bool:
        """Whether every bound on the cell holds."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.passed)

    @property
    def margin(self) -> float:
        """The smallest margin of its checks (how close the cell is to failing; negative: failed; inf: unknown)."""
        return min(math.inf if math.isnan(c.margin) else c.margin for c in self.checks)


def cases(checks: Sequence[Check]) -> list[Case]:
    """Group checks per (column, cell), in first-seen order.

    Args:
        checks: from :func:`lncli.report.threshold_checks` and :func:`lncli.report.regression_checks`.

    Returns:
        One :class:`Case` per (column, noise, severity, batch size) that some check covers.
    """
    groups: dict[tuple[tuple[str, str], str, str, int | None], list[Check]] = {}
    for c in checks:
        groups.setdefault((c.column.key, c.noise, c.severity, c.batch_size), []).append(c)
    return [Case(tuple(g)) for g in groups.values()]


def worst_first(items: Sequence[Case]) -> list[Case]:
    """Failed cases first, then by margin (closest to failing first); ties keep their order."""
    return sorted(items, key=lambda c: (c.passed, c.margin))
