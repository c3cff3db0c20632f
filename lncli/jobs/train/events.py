"""What training reports: the progress events a caller receives, and the result of a run.

Compute never prints: :func:`lncli.jobs.train.train` and :func:`lncli.jobs.train.finetune`
hand :class:`TrainEvent` s to an optional ``progress`` callback and return records.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from lncli.config.train import TrainConfig
from lncli.records import EpochRecord

__all__ = ["ProgressFn", "TrainEvent", "TrainResult", "emit", "epoch_event"]


@dataclass(frozen=True)
class TrainEvent:
    """What the ``progress`` callback receives.

    ``kind`` is ``"start"`` (once; ``step`` = the step resumed from), ``"batch"``
    (after every optimiser step; ``loss``/``accuracy`` are the epoch's running
    means on this rank), ``"epoch"`` (after each epoch, with ``record``) or
    ``"saved"`` (``path`` written).
    """

    kind: Literal["start", "batch", "epoch", "saved"]
    epoch: int  # 0-based epoch index
    epochs: int
    step: int  # steps done in this epoch
    steps: int  # steps per epoch
    loss: float = math.nan
    accuracy: float = math.nan
    lr: float = math.nan
    record: EpochRecord | None = None
    path: Path | None = None


ProgressFn = Callable[[TrainEvent], None]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`lncli.jobs.train.train` returns (on every rank; paths are where rank 0 wrote)."""

    out_dir: Path
    history: tuple[EpochRecord, ...]
    best_test_accuracy: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    resumed_from: tuple[int, int] | None  # (epoch, step) of last.pt, or None
    world_size: int
    device: str
    samples_per_second: float  # training throughput of this run (all ranks), excluding evaluation
    config: TrainConfig
    # The trained model (unwrapped from DDP, on the training device, train mode).
    model: nn.Module = dataclasses.field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def final(self) -> EpochRecord | None:
        """The last epoch's record (None before the first epoch ends)."""
        return self.history[-1] if self.history else None


def emit(progress: ProgressFn | None, event: TrainEvent) -> None:
    """Hand ``event`` to ``progress`` when there is one.

    Args:
        progress: the caller's callback, or None.
        event: what happened.
    """
    if progress is not None:
        progress(event)


def epoch_event(record: EpochRecord, epochs: int, steps: int) -> TrainEvent:
    """The ``"epoch"`` event for a finished epoch.

    Args:
        record: the epoch's record (``record.epoch`` is 1-based).
        epochs: total epochs of the run.
        steps: optimiser steps per epoch.

    Returns:
        The event, carrying the record and its training loss, accuracy and last rate.
    """
    return TrainEvent(
        "epoch",
        record.epoch - 1,
        epochs,
        steps,
        steps,
        loss=record.train_loss,
        accuracy=record.train_accuracy,
        lr=record.lr,
        record=record,
    )
