"""lncli.report.checks, .junit, .markdown, .regression: the CI gate as data and its views (records built by hand)."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from report_helpers import N, rec, sweep

from lncli.compare import compare_records
from lncli.report import (
    cases,
    check_thresholds,
    format_table,
    junit_xml,
    parse_threshold,
    regression_checks,
    render_comparison,
    render_markdown,
    threshold_checks,
    write_junit,
)
from lncli.report.markdown import MAX_ROWS


def _expected(bound: float, max_drop: float) -> dict[str, bool]:
    """Case name -> failed, worked out from sweep()'s construction (clean c, then c - slope x severity)."""
    out = {}
    for mode, clean, slope in (("running", 180, 30), ("batch", 176, 10)):
        out[f"bn:{mode}/clean/0"] = clean / N < bound
        for noise in ("gaussian", "impulse"):
            for s in (1, 2, 3):
                acc = (clean - slope * s) / N
                out[f"bn:{mode}/{noise}/{s}"] = acc < bound or clean / N - acc > max_drop
    return out


@pytest.mark.parametrize(("bound", "max_drop"), [(0.5, 0.3), (0.8, 0.1), (0.0, 1.0), (0.95, 0.0)])
def test_cases_cover_each_cell_once_and_fail_when_any_bound_does(bound: float, max_drop: float) -> None:
    checks = threshold_checks(sweep(), [parse_threshold(str(bound))], max_drop)
    got = {c.name: not c.passed for c in cases(checks)}
    assert got == _expected(bound, max_drop)
    failed_lines = check_thresholds(sweep(), [parse_threshold(str(bound))], max_drop)
    assert len(failed_lines) == sum(not c.passed for c in checks)  # the FAIL lines are the failed checks


def test_means_are_cases_without_an_interval() -> None:
    checks = threshold_checks(sweep(), [parse_threshold("gaussian=0.7"), parse_threshold("mean=0.7")])
    names = [c.name for c in checks]
    assert names == ["bn:running/gaussian/mean", "bn:batch/gaussian/mean", "bn:running/all/mean", "bn:batch/all/mean"]
    assert all(c.low is None and "[" not in c.measured for c in checks)
    running = checks[0]
    assert not running.passed and running.value == pytest.approx((150 + 120 + 90) / 3 / N)


@pytest.mark.parametrize(("bound", "max_drop"), [(0.5, 0.3), (0.8, 0.1), (0.95, 0.0)])
def test_junit_counts_match_the_cases_and_parse_with_junitparser(tmp_path: Path, bound: float, max_drop: float) -> None:
    from junitparser import Failure, JUnitXml

    want = _expected(bound, max_drop)
    path = tmp_path / "r.xml"
    write_junit(threshold_checks(sweep(), [parse_threshold(str(bound))], max_drop), path, properties={"n": N})
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (len(want), sum(want.values()), 0, 0)
    assert {c.name: any(isinstance(r, Failure) for r in c.result) for c in suite} == want
    assert {c.classname for c in suite} == {"bn"}
    assert {p.name: p.value for p in suite.properties()} == {"n": str(N)}


def test_junit_escapes_labels_and_carries_value_interval_and_bound() -> None:
    odd = [dataclasses.replace(r, checkpoint='runs/a&b<"c">.pt') for r in sweep()]
    text = junit_xml(threshold_checks(odd, [parse_threshold("gaussian:3=0.5")]))
    root = ET.fromstring(text)
    failure = root.find(".//failure")
    assert failure is not None
    case = root.find(".//testcase[failure]")
    assert (
        case is not None and case.get("name") == 'a&b<"c">:running/gaussian/3' and case.get("classname") == 'a&b<"c">'
    )
    assert "45.0%" in failure.get("message", "")  # the measured value ...
    lo, hi = sweep()[3].ci_low, sweep()[3].ci_high  # bn:running gaussian 3
    assert f"[{100 * lo:.1f}%, {100 * hi:.1f}%]" in (failure.text or "")  # ... its interval ...
    assert ">= 50.0% (--fail-under gaussian:3=0.5)" in (failure.text or "")  # ... and the bound


def test_markdown_puts_failures_first_then_the_closest_and_stays_compact() -> None:
    recs = sweep()
    checks = threshold_checks(recs, [parse_threshold("0.5")], 0.3)
    text = render_markdown(recs, checks, baseline="base.json")
    want = _expected(0.5, 0.3)
    assert f"{sum(want.values())} of {len(want)} checked cells failed" in text and "compared with `base.json`" in text
    names = [line.split("`")[1] for line in text.splitlines() if line.startswith(("| ❌", "| ✅"))]
    assert names[: sum(want.values())] == [n for n in names if want[n]]  # every failure first
    margins = {c.name: c.margin for c in cases(checks)}
    passing = [margins[n] for n in names if not want[n]]
    assert passing == sorted(passing)  # then the passing ones, closest to their bound first
    many = [rec(f"m{i}.pt", "running", "gaussian", 1, 150) for i in range(40)]
    text = render_markdown(many, threshold_checks(many, [parse_threshold("0.1")]))
    assert sum(line.startswith("| ✅") for line in text.splitlines()) == MAX_ROWS
    assert f"and {40 - MAX_ROWS} more passing cells" in text and "all 40 checked cells passed" in text


def test_markdown_escapes_pipes() -> None:
    recs = [dataclasses.replace(r, checkpoint="a|b.pt") for r in sweep()]
    text = render_markdown(recs, threshold_checks(recs, [parse_threshold("0.9")]))
    assert all(line.count("|") - line.count("\\|") == 6 for line in text.splitlines() if line.startswith("| ❌"))


def test_regression_views_show_baseline_now_and_delta() -> None:
    base = sweep()
    cur = [dataclasses.replace(r, correct=r.correct - 40, accuracy=(r.correct - 40) / N) if r.severity == 3 else r
           for r in base]  # fmt: skip
    comps = compare_records(cur, base, max_regression=0.1, significance=0.05)
    checks = regression_checks(comps)
    failed = {c.name for c in checks if not c.passed}
    assert failed == {f"bn:{m}/{n}/3" for m in ("running", "batch") for n in ("gaussian", "impulse")}
    one = next(c for c in checks if not c.passed)
    assert "fell 20.0 points" in one.message and "two-proportion" in one.message and "p = " in one.message
    assert "more than 10.0 points below the baseline's" in one.expected
    text = format_table(cur, width=200)  # the main table is unchanged by a comparison
    assert "gaussian 3" in text
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    Console(file=buf, width=200, color_system=None).print(render_comparison(comps, baseline="base.json"))
    out = buf.getvalue()
    assert "compared with base.json" in out and "45.0→25.0 (-20.0) ✗" in out and "90.0→90.0 (+0.0)" in out
