"""Statistics for accuracies measured on finite test sets.

A robustness cell is a binomial count (``correct`` of ``n``); its uncertainty decides
whether a difference means anything, in the table and in CI gates.
"""

from __future__ import annotations

import math

__all__ = ["wilson_interval"]

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 and
    100% accuracy, which robustness cells often reach.

    Args:
        correct: number of successes.
        n: number of trials (0 gives the uninformative interval (0, 1)).
        z: normal quantile of the two-sided level.

    Returns:
        ``(low, high)``.
    """
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # At 0% / 100% the bound is exactly 0 / 1; pin it against float round-off.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high
