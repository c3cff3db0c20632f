"""Moved to :mod:`lncli.nn.convert` (model swaps) and :mod:`lncli.jobs.convert` (the job); this module re-exports them."""

from lncli.config.convert import ConvertConfig
from lncli.jobs.convert import run_convert
from lncli.nn.convert import (
    CONVERT_TARGETS,
    ConversionSummary,
    convert_batchnorm_to_localnorm,
    convert_checkpoint,
    convert_localnorm_to_batchnorm,
)

__all__ = [
    "CONVERT_TARGETS",
    "ConversionSummary",
    "ConvertConfig",
    "convert_batchnorm_to_localnorm",
    "convert_checkpoint",
    "convert_localnorm_to_batchnorm",
    "run_convert",
]
