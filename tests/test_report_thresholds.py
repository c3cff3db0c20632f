"""Tests for lncli.report.thresholds: --fail-under parsing and checks, and --max-drop (no models needed)."""

from __future__ import annotations

import pytest
from report_helpers import sweep

from lncli.errors import LncliError
from lncli.records import CLEAN
from lncli.report import check_thresholds, parse_threshold


@pytest.mark.parametrize(
    ("text", "scope", "noise", "sev", "value"),
    [
        ("0.5", "cells", None, None, 0.5),
        ("gaussian:5=0.30", "cell", "gaussian", 5, 0.30),
        ("mean=0.6", "mean", None, None, 0.6),
        ("gaussian=0.4", "noise", "gaussian", None, 0.4),
        ("clean=90%", "clean", None, None, 0.9),
    ],
)
def test_parse_threshold(text: str, scope: str, noise: str | None, sev: int | None, value: float) -> None:
    th = parse_threshold(text)
    assert (th.scope, th.noise, th.severity) == (scope, noise, sev)
    assert th.value == pytest.approx(value)


@pytest.mark.parametrize("bad", ["abc", "gaussian:x=0.3", "mean=", "1.5", "gaussian=-0.1", "a b=0.3"])
def test_parse_threshold_errors(bad: str) -> None:
    with pytest.raises(LncliError, match="--fail-under"):
        parse_threshold(bad)


def test_check_thresholds_names_each_failing_cell() -> None:
    recs = sweep()
    assert check_thresholds(recs, [parse_threshold("0.3")]) == []
    fails = check_thresholds(recs, [parse_threshold("gaussian:3=0.5")])
    assert fails == ["bn:running gaussian 3: 45.0% < 50.0%"]
    fails = check_thresholds(recs, [parse_threshold("0.6")])
    assert "bn:running gaussian 3: 45.0% < 60.0%" in fails and "bn:running impulse 2: 60.0% < 60.0%" not in fails
    assert check_thresholds(recs, [parse_threshold("gaussian=0.6")]) == []  # 0.6 is not under 0.6
    assert check_thresholds(recs, [parse_threshold("gaussian=0.61")]) == ["bn:running gaussian mean: 60.0% < 61.0%"]
    fails = check_thresholds(recs, [parse_threshold("mean=0.7")])
    assert fails == ["bn:running mean: 60.0% < 70.0%"]
    fails = check_thresholds(recs, [parse_threshold("clean=0.89")])
    assert fails == ["bn:batch clean: 88.0% < 89.0%"]
    fails = check_thresholds(recs, max_drop=0.2)
    assert fails and all(f.startswith("bn:running") for f in fails)
    assert any("gaussian 2: drop 30.0 points > 20.0" in f for f in fails)


def test_check_thresholds_errors() -> None:
    recs = sweep()
    with pytest.raises(LncliError, match="not evaluated"):
        check_thresholds(recs, [parse_threshold("shot:1=0.5")])
    with pytest.raises(LncliError, match="severity 5"):
        check_thresholds(recs, [parse_threshold("gaussian:5=0.5")])
    no_clean = [r for r in recs if r.noise != CLEAN]
    with pytest.raises(LncliError, match="clean row"):
        check_thresholds(no_clean, max_drop=0.1)


def test_thresholds_apply_to_each_batch_size() -> None:
    from report_helpers import sized_sweep

    recs = sized_sweep((1, 16))
    fails = check_thresholds(recs, [parse_threshold("clean=0.85")])
    assert fails == ["batch 1: bn:batch clean: 83.0% < 85.0%"]
    assert check_thresholds(recs, [parse_threshold("clean=0.89")]) == [
        "batch 1: bn:batch clean: 83.0% < 89.0%",
        "batch 16: bn:batch clean: 88.0% < 89.0%",
    ]
    one_size = [r for r in recs if r.batch_size == 16]  # one size: no prefix
    assert check_thresholds(one_size, [parse_threshold("clean=0.89")]) == ["bn:batch clean: 88.0% < 89.0%"]


def test_mixed_rows_are_named_mixed() -> None:
    from report_helpers import mixed_sweep

    fails = check_thresholds(mixed_sweep(), [parse_threshold("0.6")])
    assert fails == ["bn:running mixed: 50.0% < 60.0%"]
    assert check_thresholds(mixed_sweep(), [parse_threshold("mixed=0.6")]) == ["bn:running mixed mean: 50.0% < 60.0%"]
