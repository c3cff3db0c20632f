"""lncli.stats: the Wilson interval against its closed form and at the edges."""

from __future__ import annotations

import math

from lncli.stats import wilson_interval


def test_wilson_matches_closed_form_and_edges() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # 0/10 -> [0, 0.278]
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.65 < lo < 0.75
    lo, hi = wilson_interval(50, 100)
    assert math.isclose(lo, 0.4038, abs_tol=1e-4) and math.isclose(hi, 0.5962, abs_tol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
