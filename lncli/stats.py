"""Statistics for accuracies measured on finite test sets.

A robustness cell is a binomial count (``correct`` of ``n``); its uncertainty decides
whether a difference means anything, in the table and in CI gates.

* :func:`wilson_interval`: the 95% interval shown beside every accuracy.
* :func:`two_proportion_drop_p_value`: one-sided pooled two-proportion z-test that the
  current accuracy is lower than the baseline's, from the two counts alone (independent
  samples: different images, or per-image results not kept).
* :func:`mcnemar_drop_p_value`: the paired version for two runs on the same images with the
  same noise: the exact one-sided McNemar (sign) test on the discordant images. Pairing
  removes the between-image variance, so it detects smaller real drops at the same level.
"""

from __future__ import annotations

import math

__all__ = ["binomial_sf", "drop_p_value", "mcnemar_drop_p_value", "two_proportion_drop_p_value", "wilson_interval"]

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


def _normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def binomial_sf(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact (summed in log space, so any n works).

    Args:
        k: the threshold count.
        n: the number of trials (>= 0).

    Returns:
        The upper tail probability in [0, 1].
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_half_n = -n * math.log(2.0)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def two_proportion_drop_p_value(base_correct: int, base_n: int, cur_correct: int, cur_n: int) -> float:
    """One-sided p-value that the current accuracy is below the baseline's (pooled z-test).

    H0: p_current >= p_baseline. z = (p_base - p_cur) / sqrt(p (1 - p) (1/n_base + 1/n_cur))
    with p the pooled accuracy; the p-value is P(Z >= z). When both runs are all right or
    all wrong there is no evidence of a drop (p-value 1).

    Args:
        base_correct, base_n: the baseline's counts.
        cur_correct, cur_n: the current run's counts.

    Returns:
        The p-value in [0, 1].
    """
    if base_n <= 0 or cur_n <= 0:
        return 1.0
    pooled = (base_correct + cur_correct) / (base_n + cur_n)
    var = pooled * (1.0 - pooled) * (1.0 / base_n + 1.0 / cur_n)
    if var <= 0.0:
        return 1.0
    z = (base_correct / base_n - cur_correct / cur_n) / math.sqrt(var)
    return _normal_sf(z)


def mcnemar_drop_p_value(lost: int, gained: int) -> float:
    """Exact one-sided McNemar p-value that accuracy fell, from the discordant images.

    On the same images, ``lost`` counts those the baseline got right and the current run
    got wrong, ``gained`` the reverse. Under H0 (no drop) each discordant image is lost or
    gained with probability 1/2, so the p-value is P(X >= lost) for X ~ Binomial(lost +
    gained, 1/2) (the exact conditional test; no continuity correction needed).

    Args:
        lost: images right in the baseline, wrong now.
        gained: images wrong in the baseline, right now.

    Returns:
        The p-value in [0, 1] (1 when no image changed).
    """
    return binomial_sf(lost, lost + gained)


def drop_p_value(
    base_correct: int, base_n: int, cur_correct: int, cur_n: int, *, lost: int | None = None, gained: int | None = None
) -> tuple[float, str]:
    """The p-value of an accuracy drop, paired (McNemar) when the discordant counts are known.

    Args:
        base_correct, base_n, cur_correct, cur_n: the two runs' counts.
        lost, gained: the discordant images of a paired comparison (same images, same noise),
            or None when per-image results are not available.

    Returns:
        ``(p_value, test)`` with test ``"mcnemar"`` or ``"two-proportion"``.
    """
    if lost is not None and gained is not None:
        return mcnemar_drop_p_value(lost, gained), "mcnemar"
    return two_proportion_drop_p_value(base_correct, base_n, cur_correct, cur_n), "two-proportion"
