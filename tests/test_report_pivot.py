"""Tests for lncli.report.pivot: column labels and short names, the baseline, mCE ratios (no models needed)."""

from __future__ import annotations

import math

import pytest
from report_helpers import N, demo_sweep, rec, sweep

from lncli.errors import LncliError
from lncli.records import CLEAN
from lncli.report import columns, resolve_baseline, robustness, short_names


def test_columns_disambiguate_same_stem() -> None:
    recs = [rec("a/best.pt", "running", CLEAN, 0, 1), rec("b/best.pt", "running", CLEAN, 0, 1)]
    assert [c.label for c in columns(recs)] == ["a/best:running", "b/best:running"]


def test_robustness_ratios() -> None:
    rob = robustness(sweep())
    assert rob["bn:running"] == {"mce": 1.0, "rel_mce": 1.0}
    # errors: running 20+30s/2 -> E = (0.25,0.40,0.55), batch (0.17,0.22,0.27)
    exp = (0.17 + 0.22 + 0.27) / (0.25 + 0.40 + 0.55)
    assert math.isclose(rob["bn:batch"]["mce"], exp, rel_tol=1e-9), rob
    exp_rel = ((0.17 + 0.22 + 0.27) - 3 * 0.12) / ((0.25 + 0.40 + 0.55) - 3 * 0.10)
    assert math.isclose(rob["bn:batch"]["rel_mce"], exp_rel, rel_tol=1e-9), rob
    # baseline by index, label, substring
    assert robustness(sweep(), "2")["bn:batch"]["mce"] == 1.0
    assert robustness(sweep(), "bn:batch")["bn:batch"]["mce"] == 1.0
    assert resolve_baseline(columns(sweep()), "batch").label == "bn:batch"
    with pytest.raises(LncliError, match="matches several"):
        resolve_baseline(columns(sweep()), "bn")
    with pytest.raises(LncliError, match="out of range"):
        resolve_baseline(columns(sweep()), "9")


def test_column_labels_stay_unique_when_parent_and_stem_collide() -> None:
    # seed1/bn/best.pt and seed2/bn/best.pt both used to be "bn/best": the mCE dict (keyed by
    # label) then gave every such column the last one's numbers, the baseline's included.
    recs = []
    for ck, clean in (("runs/seed1/bn/best.pt", 180), ("runs/seed2/bn/best.pt", 100)):
        recs += [rec(ck, "running", CLEAN, 0, clean), rec(ck, "running", "gaussian", 1, clean - 50)]
    labels = [c.label for c in columns(recs)]
    assert labels == ["seed1/bn/best:running", "seed2/bn/best:running"]
    rob = robustness(recs)
    assert rob[labels[0]]["mce"] == pytest.approx(1.0)  # the baseline against itself
    assert rob[labels[1]]["mce"] == pytest.approx((1 - 50 / N) / (1 - 130 / N))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["fashion_mnist_small_cnn_bn", "fashion_mnist_small_cnn_ln"], ["bn", "ln"]),
        (["seed1/bn/best", "seed2/bn/best"], ["seed1", "seed2"]),  # cut at word boundaries, not "1"/"2"
        (["runs/bn_seed1", "runs/ln_seed1", "runs/ln_seed2"], ["bn_seed1", "ln_seed1", "ln_seed2"]),
        (["cnn_bn_final", "cnn_ln_final"], ["bn", "ln"]),  # prefix and suffix both dropped
        (["bn", "bn_v2"], ["bn", "bn_v2"]),  # dropping the shared "bn" would leave an empty name
        (["a_x", "a_x_x"], ["x", "x_x"]),  # prefix and suffix overlap in "a_x": the suffix stays
        (["a.pt", "./a.pt"], ["a", "./a"]),
        (["only_one"], [""]),
    ],
)
def test_short_names_keep_what_tells_names_apart(names: list[str], expected: list[str]) -> None:
    got = short_names(names)
    assert [got[n] for n in names] == expected
    if len(names) > 1:
        assert len(set(got.values())) == len(names) and all(got.values())
        assert all(got[n] in n for n in names)


@pytest.mark.parametrize("seed", range(5))
def test_short_names_are_unique_and_non_empty_for_random_names(seed: int) -> None:
    """Property check on names built from a few shared words (worst case for prefix/suffix overlap)."""
    import random

    rng = random.Random(seed)
    words = ["a", "b", "bn", "ln", "seed1", "x"]
    names = list(
        dict.fromkeys("_/-."[rng.randrange(4)].join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(6))
    )
    got = short_names(names)
    assert set(got) == set(names)
    if len(names) > 1:
        assert len(set(got.values())) == len(names), got
        assert all(got.values()) and all(got[n] in n for n in names), got


def test_baseline_matches_full_and_short_labels() -> None:
    cols = columns(demo_sweep())
    assert [c.label for c in cols] == [
        "fashion_mnist_small_cnn_bn:running",
        "fashion_mnist_small_cnn_bn:batch",
        "fashion_mnist_small_cnn_ln:local",
    ]
    assert [c.short_label for c in cols] == ["bn:running", "bn:batch", "ln:local"]
    for text, want in [
        ("fashion_mnist_small_cnn_ln:local", 2),  # full label
        ("ln:local", 2),  # short label
        ("bn:batch", 1),
        ("small_cnn_bn:run", 0),  # part of a full label
        ("local", 2),
        ("3", 2),
    ]:
        assert resolve_baseline(cols, text) is cols[want], text
    for text in ("bn", "fashion_mnist"):
        with pytest.raises(LncliError, match="matches several columns"):
            resolve_baseline(cols, text)
    rob = robustness(demo_sweep(), "ln:local")
    assert rob["fashion_mnist_small_cnn_ln:local"]["mce"] == pytest.approx(1.0)  # keyed by the full, unique label
    assert set(rob) == {c.label for c in cols}


def test_exact_full_label_wins_over_an_equal_short_label() -> None:
    # Names a_a_b and a_b share the prefix "a_": the first's short name "a_b" is the second's full name.
    recs = [rec("a_a_b.pt", "running", CLEAN, 0, 100), rec("a_b.pt", "running", CLEAN, 0, 150)]
    cols = columns(recs)
    assert [c.short_label for c in cols] == ["a_b:running", "b:running"]
    assert resolve_baseline(cols, "a_b:running") is cols[1]


def test_planned_columns_label_like_their_records() -> None:
    """columns() reads only checkpoint and mode, so the CLI can check --baseline before any record exists."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Planned:
        checkpoint: str
        mode: str

    recs = demo_sweep()
    planned = [Planned(r.checkpoint, r.mode) for r in recs]
    assert columns(planned) == columns(recs)


def test_report_depends_on_records_never_on_the_jobs() -> None:
    import subprocess
    import sys

    code = "import sys, lncli.report; print(sorted(m for m in sys.modules if m.startswith(('lncli.jobs', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_batch_sizes_severities_and_cell_labels() -> None:
    from report_helpers import mixed_sweep, sized_sweep

    from lncli.report import batch_sizes, by_batch_size, cell_label
    from lncli.report.pivot import severities

    recs = sized_sweep((128, 1))
    assert batch_sizes(recs) == [128, 1]
    parts = by_batch_size(recs)
    assert [(b, len(rs)) for b, rs in parts] == [(128, 14), (1, 14)] and all(
        r.batch_size == b for b, rs in parts for r in rs
    )
    assert severities(recs, "gaussian") == [1, 2, 3] and severities(mixed_sweep(), "mixed") == ["mixed"]
    assert [cell_label(*k) for k in (("clean", 0), ("gaussian", 3), ("mixed", "mixed"))] == [
        "clean",
        "gaussian 3",
        "mixed",
    ]
