"""Training (``lncli train``) and the fine-tune after ``convert``: the code now lives in :mod:`lncli.jobs.train`."""

from lncli.jobs.train import (
    HISTORY_FIELDS,
    EpochRecord,
    ProgressFn,
    TrainEvent,
    TrainResult,
    augment_batch,
    finetune,
    lr_factor,
    train,
)

__all__ = [
    "HISTORY_FIELDS",
    "EpochRecord",
    "ProgressFn",
    "TrainEvent",
    "TrainResult",
    "augment_batch",
    "finetune",
    "lr_factor",
    "train",
]
