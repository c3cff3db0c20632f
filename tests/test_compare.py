"""lncli.compare: cells matched on every setting, the paired / unpaired drop test, the regression gate.

Records are built by hand (per-image results drawn from seeded generators), and every p-value is
checked against scipy's exact binomial test or a z-test written out here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest

from lncli.compare import MATCH_FIELDS, NOT_SETTINGS, check_regression_settings, compare_records, match_columns
from lncli.errors import LncliError
from lncli.records import CLEAN, JSON_FIELDS, EvalRecord, pack_hits
from lncli.stats import wilson_interval

N = 1000


def rec(hits: np.ndarray | None, *, correct: int | None = None, n: int = N, **kw: object) -> EvalRecord:
    """One cell; by default bn.pt in running mode, gaussian 3. ``hits`` None keeps only the counts."""
    c = int(hits.sum()) if hits is not None else int(correct or 0)
    lo, hi = wilson_interval(c, n)
    base: dict[str, object] = {
        "checkpoint": "runs/bn.pt",
        "sha256": "0123456789ab",
        "arch": "tiny",
        "norm": "batchnorm",
        "mode": "running",
        "heads": "position",
        "group_size": None,
        "batch_size": 64,
        "noise": "gaussian",
        "profile": "imagenet-c",
        "severity": 3,
        "param": 0.18,
        "n": n,
        "correct": c,
        "accuracy": c / n,
        "ci_low": lo,
        "ci_high": hi,
        "noise_seed": 0,
        "order_seed": 0,
        "device": "cpu",
        "amp": False,
        "world_size": 1,
        "data": "synthetic",
        "synthetic": True,
        "lncli_version": "0.1.0",
        "hits": None if hits is None else pack_hits(hits),
    }
    base.update(kw)
    return EvalRecord(**base)  # type: ignore[arg-type]


def flip(hits: np.ndarray, lose: int, gain: int, seed: int) -> np.ndarray:
    """A copy of ``hits`` with ``lose`` right images made wrong and ``gain`` wrong ones made right (seeded)."""
    rng = np.random.default_rng(seed)
    out = hits.copy()
    out[rng.choice(np.flatnonzero(hits), lose, replace=False)] = False
    out[rng.choice(np.flatnonzero(~hits), gain, replace=False)] = True
    return out


def base_hits(seed: int, accuracy: float = 0.8) -> np.ndarray:
    return np.random.default_rng(seed).random(N) < accuracy


def two_proportion_p(c1: int, n1: int, c2: int, n2: int) -> float:
    """The pooled one-sided z-test written out (reference for the unpaired path)."""
    p = (c1 + c2) / (n1 + n2)
    z = (c1 / n1 - c2 / n2) / math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    return 0.5 * math.erfc(z / math.sqrt(2))


def gate(cur: Sequence[EvalRecord], base: Sequence[EvalRecord], d: float = 0.0, alpha: float = 0.05):
    return compare_records(cur, base, max_regression=d, significance=alpha)


@pytest.mark.parametrize("seed", range(3))
def test_a_run_against_itself_passes_with_nothing_discordant(seed: int) -> None:
    recs = [rec(base_hits(seed), severity=s) for s in (1, 3, 5)]
    out = gate(recs, recs)
    assert [c.delta for c in out] == [0.0] * 3
    assert all(c.test == "mcnemar" and c.lost == 0 and c.gained == 0 and c.p_value == 1.0 for c in out)
    assert not any(c.regressed for c in out)


@pytest.mark.parametrize("seed", range(3))
def test_paired_test_counts_images_and_matches_scipy(seed: int) -> None:
    from scipy.stats import binomtest

    before = base_hits(seed)
    lose, gain = 30 + seed, 12 + seed
    now = flip(before, lose, gain, seed)
    (c,) = gate([rec(now)], [rec(before)])
    lost = sum(1 for b, a in zip(before, now) if b and not a)  # counted image by image, in Python
    gained = sum(1 for b, a in zip(before, now) if a and not b)
    assert (c.lost, c.gained) == (lost, gained) == (lose, gain)
    want = binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue
    assert c.test == "mcnemar" and math.isclose(c.p_value, want, rel_tol=1e-9)
    assert math.isclose(c.delta, (gain - lose) / N, abs_tol=1e-12)
    assert c.regressed == (want < 0.05)  # D = 0: any significant fall


@pytest.mark.parametrize("seed", range(3))
def test_a_drop_inside_the_interval_passes_and_a_large_one_fails(seed: int) -> None:
    before = base_hits(seed)
    half = 1.96 * math.sqrt(0.8 * 0.2 / N)  # the Wilson half-width at 80%, about 2.5 points
    small = flip(before, 20, 5, seed)  # falls 1.5 points: less than the interval
    large = flip(before, 90, 10, seed)  # falls 8 points
    # Counts only (no per-image results): the two-proportion test decides.
    for hits, fails in ((small, False), (large, True)):
        (c,) = gate([rec(None, correct=int(hits.sum()))], [rec(None, correct=int(before.sum()))])
        assert c.test == "two-proportion" and c.lost is None
        assert math.isclose(c.p_value, two_proportion_p(int(before.sum()), N, int(hits.sum()), N), rel_tol=1e-12)
        assert c.regressed is fails, (c.delta, c.p_value)
    assert -(small.sum() - before.sum()) / N < half < -(large.sum() - before.sum()) / N


def test_pairing_detects_a_fall_that_the_counts_alone_cannot() -> None:
    # 16 images lost, none gained: a 1.6-point fall, inside the Wilson interval, but no image improved.
    before = base_hits(0)
    now = flip(before, 16, 0, 0)
    (paired,) = gate([rec(now)], [rec(before)])
    (unpaired,) = gate([rec(None, correct=int(now.sum()))], [rec(None, correct=int(before.sum()))])
    assert paired.regressed and math.isclose(paired.p_value, 0.5**16, rel_tol=1e-9)
    assert not unpaired.regressed and unpaired.p_value > 0.05


def test_max_regression_needs_the_fall_to_exceed_d_too() -> None:
    before = base_hits(1)
    now = flip(before, 60, 0, 1)  # 6 points, p ~ 1e-18
    (c,) = gate([rec(now)], [rec(before)], d=0.06)  # exactly D: not "more than D"
    assert not c.regressed and c.p_value < 1e-15
    (c,) = gate([rec(now)], [rec(before)], d=0.05)
    assert c.regressed
    (c,) = gate([rec(now)], [rec(before)], d=0.05, alpha=1e-20)  # significant at 0.05, not at 1e-20
    assert not c.regressed


def test_doctored_baseline_raised_by_0_2_fails_every_cell_that_could_rise() -> None:
    cur = [rec(base_hits(s, acc), severity=s) for s, acc in ((1, 0.7), (2, 0.6), (3, 0.9))]
    doctored = []
    for r in cur:
        hits = np.asarray(base_hits(r.severity, {1: 0.7, 2: 0.6, 3: 0.9}[r.severity]))
        raise_by = min(int(0.2 * N), int((~hits).sum()))
        doctored.append(rec(flip(hits, 0, raise_by, 7), severity=r.severity))
    out = gate(cur, doctored, d=0.1)
    assert [c.regressed for c in out] == [True, True, False]  # the 90% cell can only rise 10 points
    assert [round(-c.delta, 3) for c in out] == [0.2, 0.2, round((~base_hits(3, 0.9)).sum() / N, 3)]


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 128},
        {"group_size": 8},
        {"heads": "mean"},
        {"noise_seed": 1},
        {"order_seed": None},
        {"profile": "cifar-10-c"},
        {"param": 0.08},
        {"data": "fashion-mnist"},
        {"n": 999},
        {"amp": True},
        {"rescale": True},
        {"crop_mode": "squash"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_setting_that_changes_accuracy_is_refused(change: dict[str, object]) -> None:
    hits = base_hits(0)
    base = rec(hits)
    cur = rec(hits[: change["n"]], n=change["n"]) if "n" in change else dataclasses.replace(base, **change)
    with pytest.raises(LncliError, match=f"settings differ .*{next(iter(change))} ") as info:
        gate([cur], [base])
    assert "\n" not in str(info.value) and "at bn:running gaussian 3:" in str(info.value)


def test_the_model_and_where_it_ran_may_differ() -> None:
    hits = base_hits(0)
    base = rec(hits)
    cur = dataclasses.replace(
        base, sha256="fedcba987654", arch="tiny2", device="cuda:0", world_size=4, lncli_version="9.9"
    )
    (c,) = gate([cur], [base])
    assert c.baseline_sha256 == "0123456789ab" and c.sha256 == "fedcba987654" and not c.regressed


def test_match_fields_are_every_other_record_field() -> None:
    assert set(MATCH_FIELDS) | set(NOT_SETTINGS) == set(JSON_FIELDS)
    assert not set(MATCH_FIELDS) & set(NOT_SETTINGS)
    named_in_the_issue = {"mode", "noise", "profile", "severity", "batch_size", "group_size", "noise_seed"}
    assert named_in_the_issue | {"order_seed", "data", "n", "heads"} <= set(MATCH_FIELDS)


def test_cells_and_columns_must_pair_up_both_ways() -> None:
    hits = base_hits(0)
    run = [rec(hits, severity=s) for s in (1, 3)]
    with pytest.raises(LncliError, match="gaussian 3 is not in the baseline"):
        gate(run, run[:1])
    with pytest.raises(LncliError, match="baseline's cell running gaussian 3 is not in this run"):
        gate(run[:1], run)
    ln = [dataclasses.replace(r, checkpoint="runs/ln.pt", sha256="aaaaaaaaaaaa") for r in run]
    with pytest.raises(LncliError, match="ln:running matches no column of the baseline"):
        gate(run + ln, run)
    with pytest.raises(LncliError, match="baseline's column ln:running is not in this run"):
        gate(run, run + ln)


def test_columns_match_by_label_else_by_hash() -> None:
    hits = base_hits(0)
    base = [rec(hits, checkpoint="old/bn.pt")]  # another folder, same name: same label
    (c,) = gate([rec(hits, checkpoint="new/bn.pt", sha256="ffffffffffff")], base)
    assert c.baseline_checkpoint == "old/bn.pt"
    renamed = rec(hits, checkpoint="runs/renamed.pt")  # another name, same bytes: same hash
    (c,) = gate([renamed], base)
    assert c.baseline_checkpoint == "old/bn.pt"
    # Before any compute, from planned columns and full hashes.
    pairs = match_columns([renamed], {"runs/renamed.pt": "0123456789ab" + "0" * 52}, base)
    assert pairs[("runs/renamed.pt", "running")].key == ("old/bn.pt", "running")


def test_contradictory_counts_in_the_baseline_are_refused() -> None:
    hits = base_hits(0)
    good = rec(hits)
    for bad, needle in (
        (
            dataclasses.replace(good, correct=good.correct + 1, accuracy=(good.correct + 1) / N),
            "per-image results hold",
        ),
        (dataclasses.replace(good, accuracy=good.accuracy + 0.2), "is not"),
        (dataclasses.replace(good, correct=N + 1, hits=None), "correct of"),
        (dataclasses.replace(good, hits="%%%"), "unreadable per-image results"),
    ):
        with pytest.raises(LncliError, match=needle):
            gate([good], [bad])


@pytest.mark.parametrize(
    ("d", "alpha", "needle"),
    [(-0.1, 0.05, "--max-regression"), (1.5, 0.05, "--max-regression"), (0.0, 0.0, "--significance"),
     (0.0, 1.0, "--significance"), (0.0, -1.0, "--significance")],
)  # fmt: skip
def test_bad_gate_is_refused(d: float, alpha: float, needle: str) -> None:
    with pytest.raises(LncliError, match=needle):
        check_regression_settings(d, alpha)
    check_regression_settings(None, 0.05)
    check_regression_settings(0.0, 0.5)


def test_clean_cells_compare_too() -> None:
    hits = base_hits(2, 0.9)
    clean = rec(hits, noise=CLEAN, severity=0, profile="none", param=0.0)
    (c,) = gate([rec(flip(hits, 80, 0, 2), noise=CLEAN, severity=0, profile="none", param=0.0)], [clean])
    assert c.noise == CLEAN and c.regressed


def test_a_list_read_back_from_json_equals_the_tuple_it_was_written_from() -> None:
    from lncli.compare import _same

    assert _same((1, 2), [1, 2]) and _same([0.1 + 0.2], (0.3,)) and not _same((1, 2), [1, 3])
    assert not _same((1,), [1, 1]) and _same(None, None) and not _same(None, 0)


def test_several_batch_sizes_pair_cell_by_cell_per_size() -> None:
    # Each batch size is its own cell: a fall at batch 1 only is found at batch 1 only.
    rng = np.random.default_rng(0)
    base16, base1 = rng.random(N) < 0.8, rng.random(N) < 0.8
    baseline = [rec(base1, batch_size=1), rec(base16, batch_size=16)]
    now = [rec(flip(base1, 80, 0, 1), batch_size=1), rec(base16, batch_size=16)]
    out = compare_records(now, baseline, max_regression=0.02, significance=0.05)
    assert [(c.batch_size, c.regressed) for c in out] == [(1, True), (16, False)]
    assert out[0].lost == 80 and out[1].lost == 0
    with pytest.raises(LncliError, match="not in the baseline"):
        compare_records([*now, rec(base16, batch_size=128)], baseline, max_regression=0.02, significance=0.05)


def test_a_baseline_written_before_crop_modes_reads_as_center() -> None:
    """An older JSON has no crop_mode: it read images as center crops, which is what the field's default says."""
    from lncli.config.common import DEFAULT_CROP_MODE
    from lncli.records import record_from_json

    hits = base_hits(0)
    old = {k: v for k, v in rec(hits).to_dict().items() if k != "crop_mode"}
    base = record_from_json(old)
    assert base.crop_mode == DEFAULT_CROP_MODE == "center"
    (c,) = gate([rec(hits)], [base])
    assert not c.regressed
    with pytest.raises(LncliError, match="crop_mode 'squash' here, 'center' in the baseline"):
        gate([dataclasses.replace(rec(hits), crop_mode="squash")], [base])
