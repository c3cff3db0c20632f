"""Every frozen config of lncli, the parsers that build them, and the defaults they share.

* :mod:`lncli.config._typed`: nested mappings -> typed frozen dataclasses (coercion,
  ``--set`` overrides, YAML reading), shared by every command's config.
* :mod:`lncli.config.common`: the default group size, norm kinds and aliases, and the
  command-line grammars (severities, comma lists).
* :mod:`lncli.config.train`: :class:`TrainConfig` and its sections (``lncli train``).
"""

from lncli.config._typed import apply_overrides, build, config_to_dict, parse_override, read_yaml_mapping
from lncli.config.common import (
    DEFAULT_GROUP_SIZE,
    MAX_SEVERITY,
    NORM_ALIASES,
    NORM_KINDS,
    NormKind,
    canonical_norm,
    parse_list,
    parse_severities,
)
from lncli.config.train import (
    DataConfig,
    ModelConfig,
    NormConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    dump_yaml,
    load_train_config,
    train_config_from_dict,
    validate,
)
from lncli.errors import ConfigError

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "MAX_SEVERITY",
    "NORM_ALIASES",
    "NORM_KINDS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "NormConfig",
    "NormKind",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "build",
    "canonical_norm",
    "config_to_dict",
    "dump_yaml",
    "load_train_config",
    "parse_list",
    "parse_override",
    "parse_severities",
    "read_yaml_mapping",
    "train_config_from_dict",
    "validate",
]
