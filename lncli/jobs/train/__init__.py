"""The training job: ``lncli train`` (:func:`train`) and the fine-tune after ``lncli convert`` (:func:`finetune`).

* :mod:`~lncli.jobs.train.run`: :func:`train`, one resumable run (alone or under ``torchrun``);
* :mod:`~lncli.jobs.train.loop`: the epoch loop (seeded batches, steps, Ctrl-C, DDP);
* :mod:`~lncli.jobs.train.recipe`: the LR schedule, augmentation and optimiser groups;
* :mod:`~lncli.jobs.train.finetune`: :func:`finetune`;
* :mod:`~lncli.jobs.train.events`: the progress events and the result.
"""

from lncli.jobs.train.events import ProgressFn, TrainEvent, TrainResult
from lncli.jobs.train.finetune import finetune
from lncli.jobs.train.recipe import augment_batch, lr_factor
from lncli.jobs.train.run import train
from lncli.records import HISTORY_FIELDS, EpochRecord

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
