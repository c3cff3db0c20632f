"""lncli.stats: the Wilson interval against its closed form and at the edges."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from lncli.stats import (
    binomial_sf,
    drop_p_value,
    mcnemar_drop_p_value,
    two_proportion_drop_p_value,
    wilson_interval,
)


def test_wilson_matches_closed_form_and_edges() -> None:
    z2 = statistics.NormalDist().inv_cdf(0.975) ** 2
    for n in (1, 10, 500):  # at the edges the interval has a closed form: [0, z^2/(n+z^2)] and [n/(n+z^2), 1]
        lo, hi = wilson_interval(0, n)
        assert lo == 0.0 and math.isclose(hi, z2 / (n + z2), rel_tol=1e-12), (n, hi)
        lo, hi = wilson_interval(n, n)
        assert hi == 1.0 and math.isclose(lo, n / (n + z2), rel_tol=1e-12), (n, lo)
    assert math.isclose(wilson_interval(0, 10)[1], 0.2775327999, abs_tol=1e-10)  # the value tables print
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("k", "n"), [(50, 100), (1, 10), (9, 10), (466, 500), (3, 7), (4999, 5000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    want = binomtest(k, n).proportion_ci(0.95, "wilson")
    lo, hi = wilson_interval(k, n)
    assert math.isclose(lo, want.low, rel_tol=1e-12) and math.isclose(hi, want.high, rel_tol=1e-12), (lo, hi, want)


@pytest.mark.parametrize("n", [0, 1, 7, 40, 1000, 5000])
def test_binomial_sf_matches_scipy(n: int) -> None:
    from scipy.stats import binom

    for k in sorted({0, 1, n // 3, n // 2, n // 2 + 1, n - 1, n, n + 1}):
        want = float(binom.sf(k - 1, n, 0.5)) if k >= 1 else 1.0
        got = binomial_sf(k, n)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), (k, n, got, want)


@pytest.mark.parametrize(("lost", "gained"), [(0, 0), (5, 0), (0, 5), (12, 3), (30, 30), (80, 40), (400, 310)])
def test_mcnemar_equals_exact_binomial_test(lost: int, gained: int) -> None:
    from scipy.stats import binomtest

    want = 1.0 if lost + gained == 0 else binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue
    assert math.isclose(mcnemar_drop_p_value(lost, gained), want, rel_tol=1e-9), (lost, gained)


@pytest.mark.parametrize("seed", range(5))
def test_two_proportion_matches_statsmodels_formula(seed: int) -> None:
    # Independent reference: the pooled z statistic written out with scipy's normal.
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    n1, n2 = int(rng.integers(100, 5000)), int(rng.integers(100, 5000))
    c1, c2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
    p = (c1 + c2) / (n1 + n2)
    z = (c1 / n1 - c2 / n2) / np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    assert math.isclose(two_proportion_drop_p_value(c1, n1, c2, n2), float(norm.sf(z)), rel_tol=1e-9, abs_tol=1e-15)


def test_drop_tests_direction_and_edges() -> None:
    # A rise is never a significant drop; a large fall on many images is.
    assert two_proportion_drop_p_value(500, 1000, 600, 1000) > 0.99
    assert two_proportion_drop_p_value(900, 1000, 800, 1000) < 1e-6
    assert two_proportion_drop_p_value(1000, 1000, 1000, 1000) == 1.0  # no variance, no evidence
    assert two_proportion_drop_p_value(0, 0, 5, 10) == 1.0
    # Pairing: 20 lost, 0 gained is strong evidence although the counts differ by 2% only.
    assert mcnemar_drop_p_value(20, 0) < 1e-5 and two_proportion_drop_p_value(800, 1000, 780, 1000) > 0.1
    p, test = drop_p_value(800, 1000, 780, 1000, lost=20, gained=0)
    assert test == "mcnemar" and p == mcnemar_drop_p_value(20, 0)
    assert drop_p_value(800, 1000, 780, 1000)[1] == "two-proportion"
