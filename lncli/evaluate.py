"""Old home of the evaluate job, kept for its names: see :mod:`lncli.jobs.evaluate` and :mod:`lncli.config.evaluate`."""

from lncli.config.common import parse_list, parse_severities
from lncli.config.evaluate import HEADS, MODES, NOISE_FAMILY, EvalConfig
from lncli.jobs.evaluate import (
    CHECKPOINT_SUFFIXES,
    CIFAR10C_PROFILE,
    EvalData,
    LoadedCheckpoint,
    check_data_matches,
    default_modes,
    evaluate_grid,
    image_range,
    load_checkpoints,
    load_train_range,
    natural_key,
    predict,
    resolve_checkpoint_paths,
    resolve_data,
    scores,
)
from lncli.records import CLEAN, RECORD_FIELDS, EvalRecord
from lncli.stats import wilson_interval

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CIFAR10C_PROFILE",
    "CLEAN",
    "HEADS",
    "MODES",
    "NOISE_FAMILY",
    "RECORD_FIELDS",
    "EvalConfig",
    "EvalData",
    "EvalRecord",
    "LoadedCheckpoint",
    "check_data_matches",
    "default_modes",
    "evaluate_grid",
    "image_range",
    "load_checkpoints",
    "load_train_range",
    "natural_key",
    "parse_list",
    "parse_severities",
    "predict",
    "resolve_checkpoint_paths",
    "resolve_data",
    "scores",
    "wilson_interval",
]
