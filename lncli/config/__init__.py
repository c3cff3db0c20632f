"""Every frozen config of lncli, the parsers that build them, and the defaults they share.

* :mod:`lncli.config._typed`: nested mappings -> typed frozen dataclasses (coercion,
  ``--set`` overrides, YAML reading), shared by every command's config.
* :mod:`lncli.config.common`: what every layer and command shares: the default group size and
  ``prior`` weight, norm kinds and aliases, the preprocessing vocabulary, and the command-line
  grammars (severities, comma lists).
* :mod:`lncli.config.train`: :class:`TrainConfig` and its sections (``lncli train``).
* :mod:`lncli.config.evaluate`, :mod:`lncli.config.convert`, :mod:`lncli.config.corrupt`: the
  configs of ``lncli evaluate``, ``lncli convert`` and ``lncli corrupt``.

This package imports nothing heavy (no torch), so the CLI can build its choices from it quickly.
"""

from lncli.config._typed import apply_overrides, build, config_to_dict, parse_override, read_yaml_mapping
from lncli.config.common import (
    DEFAULT_GROUP_SIZE,
    DEVICES,
    GROUPINGS,
    MAX_SEVERITY,
    NORM_ALIASES,
    NORM_KINDS,
    DeviceName,
    Grouping,
    NormKind,
    canonical_norm,
    parse_list,
    parse_severities,
)
from lncli.config.convert import ConvertConfig
from lncli.config.corrupt import CorruptConfig, OutputFormat
from lncli.config.evaluate import HEADS, MODES, NOISE_FAMILY, EvalConfig
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
    "DEVICES",
    "GROUPINGS",
    "HEADS",
    "MAX_SEVERITY",
    "MODES",
    "NOISE_FAMILY",
    "NORM_ALIASES",
    "NORM_KINDS",
    "ConfigError",
    "ConvertConfig",
    "CorruptConfig",
    "DataConfig",
    "DeviceName",
    "EvalConfig",
    "Grouping",
    "ModelConfig",
    "NormConfig",
    "NormKind",
    "OptimConfig",
    "OutputFormat",
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
