"""Tests for lncli.report: pivot table, robustness ratios, files and threshold checks (no models needed)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from lncli.errors import LncliError
from lncli.records import CLEAN, RECORD_FIELDS, EvalRecord
from lncli.report import (
    check_thresholds,
    columns,
    format_table,
    parse_threshold,
    plot_accuracy,
    resolve_baseline,
    robustness,
    short_names,
    write_csv,
    write_json,
)
from lncli.stats import wilson_interval

N = 200


def rec(ckpt: str, mode: str, noise: str, sev: int, correct: int, n: int = N) -> EvalRecord:
    lo, hi = wilson_interval(correct, n)
    return EvalRecord(
        checkpoint=ckpt, sha256="0123456789ab", arch="tiny", norm="batchnorm", mode=mode, heads="position",
        group_size=None if mode == "running" else 16, batch_size=64, noise=noise, profile="none" if noise == CLEAN else "imagenet-c",
        severity=sev, param=0.0 if noise == CLEAN else 0.1 * sev, n=n, correct=correct, accuracy=correct / n,
        ci_low=lo, ci_high=hi, noise_seed=0, order_seed=0, device="cpu", amp=False, world_size=1,
        data="synthetic", synthetic=True, lncli_version="0.1.0",
    )  # fmt: skip


def sweep() -> list[EvalRecord]:
    """Two columns: bn:running degrades fast, bn:batch slowly."""
    out = []
    for mode, clean, slope in (("running", 180, 30), ("batch", 176, 10)):
        out.append(rec("runs/bn.pt", mode, CLEAN, 0, clean))
        for noise in ("gaussian", "impulse"):
            for s in (1, 2, 3):
                out.append(rec("runs/bn.pt", mode, noise, s, clean - slope * s))
    return out


def test_columns_disambiguate_same_stem() -> None:
    recs = [rec("a/best.pt", "running", CLEAN, 0, 1), rec("b/best.pt", "running", CLEAN, 0, 1)]
    assert [c.label for c in columns(recs)] == ["a/best:running", "b/best:running"]


def test_table_fixed_width_golden_rows() -> None:
    text = format_table(sweep(), width=110)
    lines = text.splitlines()
    assert all(len(line) <= 110 for line in lines)
    header = "\n".join(lines[:5])
    assert "running" in header and "batch" in header and lines[-1] == "checkpoint = runs/bn.pt"
    clean = next(line for line in lines if line.strip("│| ").startswith("clean"))
    # running is best on clean (90.0 vs 88.0) and carries the marker; batch does not.
    assert "90.0 [85.1, 93.4]*" in clean and "88.0 [82.8, 91.8] " in clean
    g3 = next(line for line in lines if "gaussian 3" in line)
    assert "73.0 [66.5, 78.7]*" in g3  # batch wins under heavy noise
    flat = " ".join(text.split())  # the caption wraps at the table's width
    for label in ("gaussian mean", "impulse mean", "mean", "mCE %", "rel. mCE %", "mCE baseline bn:running", "n=200"):
        assert label in flat
    # ANSI escapes never reach a non-terminal.
    assert "\x1b[" not in text


def test_table_is_deterministic() -> None:
    assert format_table(sweep(), width=100) == format_table(sweep(), width=100)


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


def test_csv_long_format(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.csv"
    write_csv(sweep(), path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(sweep())
    assert tuple(rows[0]) == RECORD_FIELDS
    assert rows[0]["group_size"] == ""  # None -> empty cell
    assert float(rows[1]["accuracy"]) == pytest.approx(sweep()[1].accuracy)
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file


def test_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(sweep(), path, config={"batch_size": 64})
    doc = json.loads(path.read_text())
    assert doc["format"] == "lncli-eval" and doc["format_version"] == 1
    assert doc["config"] == {"batch_size": 64}
    assert set(doc["records"][0]) == set(RECORD_FIELDS)


def test_plot_writes_png(tmp_path: Path) -> None:
    path = tmp_path / "acc.png"
    plot_accuracy(sweep(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_plot_with_unknown_suffix_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LncliError, match="cannot write 'txt'") as info:
        plot_accuracy(sweep(), tmp_path / "acc.txt")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "acc.txt").exists()


# ---------------------------------------------------------------------------
# short column headers (an 80-column terminal) and the legend
# ---------------------------------------------------------------------------

LONG = ("examples/checkpoints/fashion_mnist_small_cnn_bn.pt", "examples/checkpoints/fashion_mnist_small_cnn_ln.pt")


def demo_sweep(paths: tuple[str, ...] = LONG) -> list[EvalRecord]:
    """The demo's shape: a BN checkpoint in running + batch mode and a LocalNorm one in local mode, 3 noises x 5."""
    out = []
    for ck, modes in zip(paths, (("running", "batch"), ("local",))):
        for mode in modes:
            slope = {"running": 25, "batch": 10, "local": 9}[mode]
            out.append(rec(ck, mode, CLEAN, 0, 180))
            for noise in ("gaussian", "shot", "impulse"):
                out += [rec(ck, mode, noise, s, 170 - slope * s) for s in range(1, 6)]
    return out


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
    names = list(dict.fromkeys("_/-."[rng.randrange(4)].join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(6)))
    got = short_names(names)
    assert set(got) == set(names)
    if len(names) > 1:
        assert len(set(got.values())) == len(names), got
        assert all(got.values()) and all(got[n] in n for n in names), got


def _header_cells(text: str) -> list[list[str]]:
    """The header rows of a plain-text table: the lines between its top border and the header rule."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    rule = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    return [[cell.strip() for cell in line.strip("┃").split("┃")] for line in lines[top + 1 : rule]]


@pytest.mark.parametrize("width", [80, 200])
def test_table_headers_fit_80_and_200_columns_with_a_legend(width: int) -> None:
    text = format_table(demo_sweep(), width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    # Exactly two header lines: the short names intact over the modes (no wrap, no fold, no ellipsis).
    assert _header_cells(text) == [["", "bn", "bn", "ln"], ["noise / severity", "running", "batch", "local"]]
    legend = lines[-2:]
    assert legend == [f"bn = {LONG[0]}", f"ln = {LONG[1]}"]
    # The intervals are shown whenever they fit (3 x 22 + 23 = 89 columns here).
    assert ("[" in text.split("clean")[1].splitlines()[0]) == (width >= 89)


def test_single_checkpoint_headers_show_the_mode_and_the_legend_its_file() -> None:
    text = format_table(sweep(), width=80)
    assert _header_cells(text) == [["noise / severity", "running", "batch"]]
    assert text.splitlines()[-1] == "checkpoint = runs/bn.pt"
    assert "mCE baseline bn:running" in " ".join(text.split())  # the caption keeps the full label


def test_baseline_matches_full_and_short_labels() -> None:
    cols = columns(demo_sweep())
    assert [c.label for c in cols] == ["fashion_mnist_small_cnn_bn:running", "fashion_mnist_small_cnn_bn:batch", "fashion_mnist_small_cnn_ln:local"]
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


def test_csv_keeps_the_full_checkpoint_path(tmp_path: Path) -> None:
    write_csv(demo_sweep(), tmp_path / "r.csv")
    with open(tmp_path / "r.csv", newline="") as fh:
        assert {row["checkpoint"] for row in csv.DictReader(fh)} == set(LONG)


def test_caption_names_the_rescale_range() -> None:
    import dataclasses

    def flat(recs: list[EvalRecord]) -> str:
        return " ".join(format_table(recs, width=120).split())

    assert "rescaled" not in flat(sweep())
    for used, words in (("train", "rescaled onto the training split's range"), ("test", "onto the clean test set's range (no training split found)")):
        recs = [r if r.noise == CLEAN else dataclasses.replace(r, rescale=True, rescale_range=used) for r in sweep()]
        assert words in flat(recs)
