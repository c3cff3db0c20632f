"""Progress where stderr is no terminal (a CI log): plain, rate-limited lines with done/total, rate and ETA.

The callbacks are driven with a fake clock (no sleeping); the CLI tests run tiny jobs through
Typer's CliRunner, whose stderr is not a terminal, and read the lines they print.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lncli.cli import app, progress
from lncli.cli.progress import PLAIN_INTERVAL_S, PlainProgress, plain_epoch_lines
from lncli.jobs.train import TrainEvent
from lncli.records import EpochRecord

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0  # not 0: the lines must use time since the start, not the clock's value

    def __call__(self) -> float:
        return self.now


def _plain(interval: float = 10.0) -> tuple[PlainProgress, FakeClock, list[str]]:
    clock, lines = FakeClock(), []
    return PlainProgress("evaluating", write=lines.append, clock=clock, interval=interval), clock, lines


def test_lines_are_rate_limited_and_say_done_total_rate_and_eta() -> None:
    bar, clock, lines = _plain(interval=10.0)
    for t, done in ((2.0, 10), (9.9, 20)):  # within 10 s of the start: nothing yet
        clock.now = 100.0 + t
        bar(done, 100)
    assert lines == []
    clock.now = 110.0
    bar(25, 100)
    assert lines == ["evaluating 25/100 (25%)  2.50/s  elapsed 0:10  ETA 0:30"]
    clock.now = 119.0  # 9 s after the last line: still too soon
    bar(40, 100)
    assert len(lines) == 1
    clock.now = 120.0
    bar(50, 100)
    assert lines[-1] == "evaluating 50/100 (50%)  2.50/s  elapsed 0:20  ETA 0:20"
    assert len(lines) == 2


def test_final_line_is_printed_once_at_close_with_the_total_time() -> None:
    bar, clock, lines = _plain()
    clock.now += 11.0
    bar(50, 200)
    clock.now += 50.0  # long after the interval, but the update that completes the work is close()'s to report
    bar(200, 200)
    assert len(lines) == 1
    bar.close()
    assert lines[-1] == "evaluating 200/200 (100%)  3.28/s  done in 1:01"
    assert len(lines) == 2


def test_large_counts_have_separators_and_long_runs_show_hours() -> None:
    bar, clock, lines = _plain()
    clock.now += 3725.0
    bar(1_234_567, 2_469_134)
    assert lines == ["evaluating 1,234,567/2,469,134 (50%)  331/s  elapsed 1:02:05  ETA 1:02:05"]


def test_a_run_shorter_than_the_interval_prints_nothing() -> None:
    bar, _, lines = _plain()
    bar.close()
    assert lines == []  # no update at all
    bar, clock, lines = _plain(interval=10.0)
    clock.now += 4.0
    bar(4, 8)
    clock.now += 5.0
    bar(8, 8)
    bar.close()
    assert lines == []  # 9 s in all: the results follow at once, no progress line stands before them


def test_the_default_interval_is_the_named_constant_read_when_made(monkeypatch) -> None:
    assert PlainProgress("x").interval == PLAIN_INTERVAL_S
    assert 5 <= PLAIN_INTERVAL_S <= 30  # "at most one every 10 s or so"
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.5)
    assert PlainProgress("x").interval == 0.5


def test_train_prints_one_line_per_finished_epoch_only() -> None:
    lines: list[str] = []
    on_event = plain_epoch_lines(write=lines.append)
    on_event(TrainEvent("start", epoch=0, epochs=2, step=0, steps=5))
    for step in range(1, 6):
        on_event(TrainEvent("batch", epoch=0, epochs=2, step=step, steps=5, loss=1.0, accuracy=0.5, lr=0.1))
    rec = EpochRecord(
        epoch=1, train_loss=0.5, train_accuracy=0.8, test_loss=0.6, test_accuracy=0.75, lr=0.1, seconds=3.25
    )
    on_event(TrainEvent("epoch", epoch=0, epochs=2, step=5, steps=5, record=rec))
    on_event(TrainEvent("saved", epoch=0, epochs=2, step=5, steps=5, path=Path("last.pt")))
    no_test = EpochRecord(
        epoch=2, train_loss=0.25, train_accuracy=0.9, test_loss=None, test_accuracy=None, lr=0.0, seconds=2.0
    )
    on_event(TrainEvent("epoch", epoch=1, epochs=2, step=5, steps=5, loss=math.nan, record=no_test))
    assert lines == [
        "epoch 1/2  loss 0.5000  acc 80.00%  test 75.00%  3.2s",
        "epoch 2/2  loss 0.2500  acc 90.00%  2.0s",
    ]


@pytest.fixture
def every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line at every update: the tiny CLI runs below finish well within the real interval."""
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)


def test_corrupt_prints_plain_progress_to_a_non_terminal_stderr(
    sample_images: Path, tmp_path: Path, every_update: None
) -> None:
    r = runner.invoke(
        app,
        ["corrupt", str(sample_images), "--noise", "gaussian,shot", "--severity", "1,2", "--out", str(tmp_path / "o")],
    )
    assert r.exit_code == 0, r.output
    work = 3 * 2 * 2  # sample_images' 3 images (a.png, sub/b.png, sub/gray.png) x 2 noises x 2 severities
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("corrupting (images x noises x severities) ")]
    assert len(progress) >= 2, r.stderr  # at least one line on the way, then the final one
    assert all(" ETA " in ln for ln in progress[:-1]), progress
    assert progress[-1].startswith(f"corrupting (images x noises x severities) {work}/{work} (100%)  ")
    assert " done in " in progress[-1]
    assert r.stdout == ""  # progress never goes to stdout, where the data is


def test_train_prints_a_line_per_epoch_to_a_non_terminal_stderr(tmp_path: Path) -> None:
    sets = ["epochs=2", "data.train_limit=64", "data.test_limit=32"]
    args = ["train", str(ROOT / "sample_configs/smoke.yaml"), "--out", str(tmp_path / "run")]
    r = runner.invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert r.exit_code == 0, r.output
    epochs = [ln for ln in r.stderr.splitlines() if ln.startswith("epoch ")]
    assert [ln.split("  ")[0] for ln in epochs] == ["epoch 1/2", "epoch 2/2"], r.stderr
    assert all(" loss " in ln and " acc " in ln and " test " in ln and ln.endswith("s") for ln in epochs), epochs


EVALUATE = ["--data", "synthetic", "--limit", "32", "--batch-size", "16", "--noise", "gaussian", "--severity", "0,3"]


def _evaluate_progress(ckpt: Path) -> list[str]:
    r = runner.invoke(app, ["evaluate", str(ckpt), *EVALUATE, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return [ln for ln in r.stderr.splitlines() if ln.startswith("evaluating (images x columns) ")]


def test_evaluate_prints_plain_progress_to_a_non_terminal_stderr(
    eval_ckpts: dict[str, Path], every_update: None
) -> None:
    lines = _evaluate_progress(eval_ckpts["bn"])
    total = 32 * 2 * 2  # images x (clean + gaussian 3) cells x BN's default columns (running, batch)
    assert len(lines) >= 2 and f"{total}/{total} (100%)" in lines[-1] and " done in " in lines[-1], lines
    assert all(" ETA " in ln for ln in lines[:-1]), lines


def test_a_short_evaluate_prints_no_progress_line(eval_ckpts: dict[str, Path]) -> None:
    assert _evaluate_progress(eval_ckpts["bn"]) == []  # seconds, not PLAIN_INTERVAL_S: its table follows at once
