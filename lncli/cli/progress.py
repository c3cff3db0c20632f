"""Progress on stderr for the long commands (the library reports progress through callbacks).

On a terminal: rich progress bars with an ETA. Elsewhere (a CI log, a file, a pipe) a bar
cannot redraw, so :class:`PlainProgress` prints a plain line now and then instead (done/total,
rate, ETA; one every :data:`PLAIN_INTERVAL_S`, then a final one), and training prints one line
per epoch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lncli.cli.app import err_console

# A CI log needs a sign of life and an ETA, not a line per batch: one line every 10 s keeps a
# one-hour evaluation to a few hundred lines, and a run shorter than that prints none.
PLAIN_INTERVAL_S = 10.0


def _write_line(line: str) -> None:
    """One plain line on stderr (no markup, no highlighting, never wrapped: log readers grep it)."""
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s" if per_s >= 100 else f"{per_s:.2f}/s"


class PlainProgress:
    """A ``progress(done, total)`` callback that prints plain, rate-limited lines, for a stderr that is no terminal.

    An update prints a line once ``interval`` seconds have passed since the start or since the
    last line, and :meth:`close` prints the final line if any was printed before. A run shorter
    than ``interval`` prints nothing: its results follow at once, and lines saying so would only
    stand between the user and them (or an error message). The rate is the mean since the
    object was made (the start of the work): steadier than the last interval's, and the ETA
    follows from it.

    Args:
        label: what is counted, e.g. ``"evaluating (images x columns)"``; starts every line.
        write: prints one line (tests collect them).
        clock: monotonic seconds (tests pass a fake one).
        interval: the time between lines; None is :data:`PLAIN_INTERVAL_S` (read when the object is made).
    """

    def __init__(
        self,
        label: str,
        write: Callable[[str], None] = _write_line,
        clock: Callable[[], float] = time.monotonic,
        interval: float | None = None,
    ) -> None:
        self.label, self.write, self.clock = label, write, clock
        self.interval = PLAIN_INTERVAL_S if interval is None else interval
        self.start = clock()
        self.last_line: float | None = None  # when the last line was printed
        self.done, self.total = 0, 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if done >= total > 0:
            return  # the final line is close()'s, so that a run does not end on two lines that say the same
        now = self.clock()
        if now - (self.start if self.last_line is None else self.last_line) >= self.interval:
            self.last_line = now
            self.write(self._line(now, final=False))

    def close(self) -> None:
        """Print the final line, if a line was printed before (so that a log never ends part-way)."""
        if self.last_line is not None:
            self.write(self._line(self.clock(), final=True))

    def _line(self, now: float, *, final: bool) -> str:
        elapsed = max(now - self.start, 0.0)
        head = f"{self.label} {self.done:,}/{self.total:,}"
        if self.total > 0:
            head += f" ({self.done / self.total:.0%})"
        if elapsed <= 0 or self.done <= 0:
            return f"{head}  elapsed {_duration(elapsed)}"
        per_s = self.done / elapsed
        if final:
            return f"{head}  {_rate(per_s)}  done in {_duration(elapsed)}"
        eta = f"  ETA {_duration((self.total - self.done) / per_s)}" if self.total > 0 else ""
        return f"{head}  {_rate(per_s)}  elapsed {_duration(elapsed)}{eta}"


@contextlib.contextmanager
def _plain(label: str) -> Iterator[Callable[[int, int], None]]:
    """A :class:`PlainProgress` for the block; its final line only when the block ends normally (an error says the rest)."""
    bar = PlainProgress(label)
    yield bar
    bar.close()


def epoch_summary(record: Any) -> str:
    """One epoch's figures (an :class:`~lncli.records.EpochRecord`): the bar's final text and the plain line."""
    test = f"  test {record.test_accuracy:.2%}" if record.test_accuracy is not None else ""
    return f"loss {record.train_loss:.4f}  acc {record.train_accuracy:.2%}{test}  {record.seconds:.1f}s"


def plain_epoch_lines(write: Callable[[str], None] = _write_line) -> Callable[[Any], None]:
    """A train ``progress`` callback that prints one line per finished epoch (for a stderr that is no terminal).

    Args:
        write: prints one line (tests collect them).

    Returns:
        The callback: it takes every :class:`~lncli.jobs.train.TrainEvent` and prints on ``"epoch"`` ones.
    """

    def on_event(ev: Any) -> None:
        if ev.kind == "epoch" and ev.record is not None:
            write(f"epoch {ev.epoch + 1}/{ev.epochs}  {epoch_summary(ev.record)}")

    return on_event


@contextlib.contextmanager
def train_progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """One rich bar per epoch on stderr (loss, accuracy, lr); finished epochs stay as summary lines.

    When stderr is not a terminal, one plain line per epoch instead.
    """
    if not enabled:
        yield None
        return
    if not err_console.is_terminal:
        yield plain_epoch_lines()
        return

    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err_console) as bar:
        tasks: dict[int, Any] = {}

        def on_event(ev: Any) -> None:
            if ev.kind in ("start", "batch") and ev.epoch not in tasks:
                tasks[ev.epoch] = bar.add_task(
                    f"epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps, completed=ev.step, stats=""
                )
            if ev.kind == "batch":
                stats = f"loss {ev.loss:.4f}  acc {ev.accuracy:.2%}  lr {ev.lr:.3g}"
                bar.update(tasks[ev.epoch], completed=ev.step, stats=stats)
            elif ev.kind == "epoch" and ev.record is not None:
                if ev.epoch not in tasks:
                    tasks[ev.epoch] = bar.add_task(f"epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps)
                bar.update(tasks[ev.epoch], completed=ev.steps, stats=epoch_summary(ev.record))

        yield on_event


@contextlib.contextmanager
def eval_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar with ETA on stderr (plain lines when it is no terminal); yields ``progress(done, total)``."""
    if not enabled:
        yield None
        return
    if not err_console.is_terminal:
        with _plain("evaluating (images x columns)") as plain:
            yield plain
        return

    cols = (
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err_console, transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextlib.contextmanager
def corrupt_progress() -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (plain lines when it is no terminal); yields ``progress(done, total)``."""
    if not err_console.is_terminal:
        with _plain("corrupting (images x noises x severities)") as plain:
            yield plain
        return
    cols = (TextColumn("corrupting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, console=err_console, transient=True) as bar:
        task = bar.add_task("corrupt", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
