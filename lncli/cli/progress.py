"""Rich progress bars on stderr for the long commands (the library reports progress through callbacks)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lncli.cli.app import err_console


@contextlib.contextmanager
def train_progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """One rich bar per epoch on stderr (loss, accuracy, lr); finished epochs stay as summary lines."""
    if not enabled:
        yield None
        return

    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err_console, disable=not err_console.is_terminal) as bar:
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
                r = ev.record
                test = f"  test {r.test_accuracy:.2%}" if r.test_accuracy is not None else ""
                stats = f"loss {r.train_loss:.4f}  acc {r.train_accuracy:.2%}{test}  {r.seconds:.1f}s"
                if ev.epoch not in tasks:
                    tasks[ev.epoch] = bar.add_task(f"epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps)
                bar.update(tasks[ev.epoch], completed=ev.steps, stats=stats)

        yield on_event


@contextlib.contextmanager
def eval_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar with ETA on stderr; yields the ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return

    cols = (
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("evaluate", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextlib.contextmanager
def corrupt_progress() -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (hidden when stderr is not a terminal); yields ``progress(done, total)``."""
    cols = (TextColumn("corrupting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("corrupt", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
