"""The ``evaluate`` job: checkpoints x test-time modes x noises x severities -> flat records.

* :mod:`.checkpoints`: the CKPT arguments resolved and loaded.
* :mod:`.testset`: the test data resolved and checked against the models, with each
  model's preprocessing.
* :mod:`.sources`: the image sources the sweep reads batches from (generated noise,
  corruption releases, the paper's rescale); :mod:`.loaders`: the clean images, from
  memory or from image files decoded by DataLoader workers.
* :mod:`.modes`: the test-time modes, a table from name to how a model runs in it.
* :mod:`.ranges`: the per-channel ranges the paper's rescale maps onto.
* :mod:`.mix`: mixed streams, each image with its own noise and severity.
* :mod:`.columns`: the sweep's columns (checkpoint x mode), their runners and the notes on them.
* :mod:`.grid`: the sweep itself: :func:`plan_grid` (everything but the compute), :func:`run_grid`, and
  :func:`evaluate_grid`, the two in one call.
* :mod:`.options`: every option of ``lncli evaluate``, declared once (:class:`EvalOptions`), and their
  torch-free checks (:func:`parse_options`).
* :mod:`.plan`: one frozen plan per evaluation (:func:`build_plan`: every user error raised before the
  first forward pass), and :func:`run_plan`; :mod:`.result`: what it returns (:class:`EvalResult`).
* :mod:`.api`: :func:`evaluate` and :func:`load_model`, the Python entry points (``lncli.evaluate``).

The names are imported on first use (PEP 562), so that :mod:`.options` (and ``lncli evaluate``'s
argument checks) load no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lncli.lazy import attach

_PUBLIC: dict[str, str] = {
    "CHECKPOINT_SUFFIXES": "lncli.jobs.evaluate.checkpoints",
    "CIFAR10C_PROFILE": "lncli.jobs.evaluate.sources",
    "CLEAN_CELL": "lncli.jobs.evaluate.sources",
    "DEFAULT_BN_MODES": "lncli.config.evaluate",
    "DEFAULT_GN_MODES": "lncli.config.evaluate",
    "DEFAULT_LN_MODES": "lncli.config.evaluate",
    "DEFAULT_STATS": "lncli.jobs.evaluate.modes",
    "HEADS": "lncli.config.evaluate",
    "IMAGENETC_PROFILE": "lncli.jobs.evaluate.sources",
    "MODE_TABLE": "lncli.jobs.evaluate.modes",
    "MODES": "lncli.config.evaluate",
    "NOISE_FAMILY": "lncli.config.evaluate",
    "PANELS": "lncli.jobs.evaluate.options",
    "build_plan": "lncli.jobs.evaluate.plan",
    "Cell": "lncli.jobs.evaluate.sources",
    "check_config": "lncli.config.evaluate",
    "check_data_matches": "lncli.jobs.evaluate.testset",
    "checkpoint_notes": "lncli.jobs.evaluate.checkpoints",
    "Cifar10CFiles": "lncli.jobs.evaluate.sources",
    "column_keys": "lncli.jobs.evaluate.columns",
    "ColumnKey": "lncli.jobs.evaluate.columns",
    "default_modes": "lncli.jobs.evaluate.modes",
    "draw_cells": "lncli.jobs.evaluate.mix",
    "EvalConfig": "lncli.config.evaluate",
    "EvalData": "lncli.jobs.evaluate.testset",
    "EvalOptions": "lncli.jobs.evaluate.options",
    "EvalPlan": "lncli.jobs.evaluate.plan",
    "EvalRequest": "lncli.jobs.evaluate.options",
    "EvalResult": "lncli.jobs.evaluate.result",
    "evaluate": "lncli.jobs.evaluate.api",
    "evaluate_grid": "lncli.jobs.evaluate.grid",
    "evaluate_options": "lncli.jobs.evaluate.options",
    "GateOptions": "lncli.jobs.evaluate.options",
    "GeneratedNoise": "lncli.jobs.evaluate.sources",
    "GridColumn": "lncli.jobs.evaluate.columns",
    "GridPlan": "lncli.jobs.evaluate.grid",
    "has_localnorm": "lncli.jobs.evaluate.modes",
    "has_recorded_preprocessing": "lncli.jobs.evaluate.testset",
    "image_range": "lncli.jobs.evaluate.ranges",
    "ImageNetCFiles": "lncli.jobs.evaluate.sources",
    "ImageSource": "lncli.jobs.evaluate.sources",
    "is_groupnorm": "lncli.jobs.evaluate.modes",
    "load_checkpoints": "lncli.jobs.evaluate.checkpoints",
    "load_model": "lncli.jobs.evaluate.api",
    "load_models": "lncli.jobs.evaluate.plan",
    "load_train_range": "lncli.jobs.evaluate.ranges",
    "LoadedCheckpoint": "lncli.jobs.evaluate.checkpoints",
    "LocalNormCopies": "lncli.jobs.evaluate.modes",
    "make_runner": "lncli.jobs.evaluate.modes",
    "MinMaxRescaled": "lncli.jobs.evaluate.sources",
    "mixed_batch": "lncli.jobs.evaluate.mix",
    "mixed_cell": "lncli.jobs.evaluate.mix",
    "MixedCell": "lncli.jobs.evaluate.mix",
    "Mode": "lncli.jobs.evaluate.modes",
    "mode_notes": "lncli.jobs.evaluate.columns",
    "mode_spec": "lncli.jobs.evaluate.modes",
    "ModelCache": "lncli.jobs.evaluate.columns",
    "ModeRunner": "lncli.jobs.evaluate.modes",
    "modes_for": "lncli.jobs.evaluate.modes",
    "natural_key": "lncli.jobs.evaluate.checkpoints",
    "open_source": "lncli.jobs.evaluate.sources",
    "option_specs": "lncli.jobs.evaluate.options",
    "OptionSpec": "lncli.jobs.evaluate.options",
    "Outputs": "lncli.jobs.evaluate.options",
    "parse_options": "lncli.jobs.evaluate.options",
    "plan_columns": "lncli.jobs.evaluate.columns",
    "plan_grid": "lncli.jobs.evaluate.grid",
    "predict": "lncli.jobs.evaluate.modes",
    "preprocess_flags": "lncli.jobs.evaluate.testset",
    "resolve_checkpoint_paths": "lncli.jobs.evaluate.checkpoints",
    "resolve_data": "lncli.jobs.evaluate.testset",
    "resolve_heads": "lncli.jobs.evaluate.modes",
    "resolve_mode": "lncli.jobs.evaluate.modes",
    "run_grid": "lncli.jobs.evaluate.grid",
    "run_plan": "lncli.jobs.evaluate.plan",
    "scores": "lncli.jobs.evaluate.modes",
}
"""Each public name and the module it comes from."""

if TYPE_CHECKING:  # the same names, for type checkers (``X as X``: a re-export)
    from lncli.config.evaluate import DEFAULT_BN_MODES as DEFAULT_BN_MODES
    from lncli.config.evaluate import DEFAULT_GN_MODES as DEFAULT_GN_MODES
    from lncli.config.evaluate import DEFAULT_LN_MODES as DEFAULT_LN_MODES
    from lncli.config.evaluate import HEADS as HEADS
    from lncli.config.evaluate import MODES as MODES
    from lncli.config.evaluate import NOISE_FAMILY as NOISE_FAMILY
    from lncli.config.evaluate import EvalConfig as EvalConfig
    from lncli.config.evaluate import check_config as check_config
    from lncli.jobs.evaluate.api import evaluate as evaluate
    from lncli.jobs.evaluate.api import load_model as load_model
    from lncli.jobs.evaluate.checkpoints import CHECKPOINT_SUFFIXES as CHECKPOINT_SUFFIXES
    from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint as LoadedCheckpoint
    from lncli.jobs.evaluate.checkpoints import checkpoint_notes as checkpoint_notes
    from lncli.jobs.evaluate.checkpoints import load_checkpoints as load_checkpoints
    from lncli.jobs.evaluate.checkpoints import natural_key as natural_key
    from lncli.jobs.evaluate.checkpoints import resolve_checkpoint_paths as resolve_checkpoint_paths
    from lncli.jobs.evaluate.columns import ColumnKey as ColumnKey
    from lncli.jobs.evaluate.columns import GridColumn as GridColumn
    from lncli.jobs.evaluate.columns import ModelCache as ModelCache
    from lncli.jobs.evaluate.columns import column_keys as column_keys
    from lncli.jobs.evaluate.columns import mode_notes as mode_notes
    from lncli.jobs.evaluate.columns import plan_columns as plan_columns
    from lncli.jobs.evaluate.grid import GridPlan as GridPlan
    from lncli.jobs.evaluate.grid import evaluate_grid as evaluate_grid
    from lncli.jobs.evaluate.grid import plan_grid as plan_grid
    from lncli.jobs.evaluate.grid import run_grid as run_grid
    from lncli.jobs.evaluate.mix import MixedCell as MixedCell
    from lncli.jobs.evaluate.mix import draw_cells as draw_cells
    from lncli.jobs.evaluate.mix import mixed_batch as mixed_batch
    from lncli.jobs.evaluate.mix import mixed_cell as mixed_cell
    from lncli.jobs.evaluate.modes import DEFAULT_STATS as DEFAULT_STATS
    from lncli.jobs.evaluate.modes import MODE_TABLE as MODE_TABLE
    from lncli.jobs.evaluate.modes import LocalNormCopies as LocalNormCopies
    from lncli.jobs.evaluate.modes import Mode as Mode
    from lncli.jobs.evaluate.modes import ModeRunner as ModeRunner
    from lncli.jobs.evaluate.modes import default_modes as default_modes
    from lncli.jobs.evaluate.modes import has_localnorm as has_localnorm
    from lncli.jobs.evaluate.modes import is_groupnorm as is_groupnorm
    from lncli.jobs.evaluate.modes import make_runner as make_runner
    from lncli.jobs.evaluate.modes import mode_spec as mode_spec
    from lncli.jobs.evaluate.modes import modes_for as modes_for
    from lncli.jobs.evaluate.modes import predict as predict
    from lncli.jobs.evaluate.modes import resolve_heads as resolve_heads
    from lncli.jobs.evaluate.modes import resolve_mode as resolve_mode
    from lncli.jobs.evaluate.modes import scores as scores
    from lncli.jobs.evaluate.options import PANELS as PANELS
    from lncli.jobs.evaluate.options import EvalOptions as EvalOptions
    from lncli.jobs.evaluate.options import EvalRequest as EvalRequest
    from lncli.jobs.evaluate.options import GateOptions as GateOptions
    from lncli.jobs.evaluate.options import OptionSpec as OptionSpec
    from lncli.jobs.evaluate.options import Outputs as Outputs
    from lncli.jobs.evaluate.options import evaluate_options as evaluate_options
    from lncli.jobs.evaluate.options import option_specs as option_specs
    from lncli.jobs.evaluate.options import parse_options as parse_options
    from lncli.jobs.evaluate.plan import EvalPlan as EvalPlan
    from lncli.jobs.evaluate.plan import build_plan as build_plan
    from lncli.jobs.evaluate.plan import load_models as load_models
    from lncli.jobs.evaluate.plan import run_plan as run_plan
    from lncli.jobs.evaluate.ranges import image_range as image_range
    from lncli.jobs.evaluate.ranges import load_train_range as load_train_range
    from lncli.jobs.evaluate.result import EvalResult as EvalResult
    from lncli.jobs.evaluate.sources import CIFAR10C_PROFILE as CIFAR10C_PROFILE
    from lncli.jobs.evaluate.sources import CLEAN_CELL as CLEAN_CELL
    from lncli.jobs.evaluate.sources import IMAGENETC_PROFILE as IMAGENETC_PROFILE
    from lncli.jobs.evaluate.sources import Cell as Cell
    from lncli.jobs.evaluate.sources import Cifar10CFiles as Cifar10CFiles
    from lncli.jobs.evaluate.sources import GeneratedNoise as GeneratedNoise
    from lncli.jobs.evaluate.sources import ImageNetCFiles as ImageNetCFiles
    from lncli.jobs.evaluate.sources import ImageSource as ImageSource
    from lncli.jobs.evaluate.sources import MinMaxRescaled as MinMaxRescaled
    from lncli.jobs.evaluate.sources import open_source as open_source
    from lncli.jobs.evaluate.testset import EvalData as EvalData
    from lncli.jobs.evaluate.testset import check_data_matches as check_data_matches
    from lncli.jobs.evaluate.testset import has_recorded_preprocessing as has_recorded_preprocessing
    from lncli.jobs.evaluate.testset import preprocess_flags as preprocess_flags
    from lncli.jobs.evaluate.testset import resolve_data as resolve_data

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CIFAR10C_PROFILE",
    "CLEAN_CELL",
    "DEFAULT_BN_MODES",
    "DEFAULT_GN_MODES",
    "DEFAULT_LN_MODES",
    "DEFAULT_STATS",
    "HEADS",
    "IMAGENETC_PROFILE",
    "MODES",
    "MODE_TABLE",
    "NOISE_FAMILY",
    "PANELS",
    "Cell",
    "Cifar10CFiles",
    "ColumnKey",
    "EvalConfig",
    "EvalData",
    "EvalOptions",
    "EvalPlan",
    "EvalRequest",
    "EvalResult",
    "GateOptions",
    "GeneratedNoise",
    "GridColumn",
    "GridPlan",
    "ImageNetCFiles",
    "ImageSource",
    "LoadedCheckpoint",
    "LocalNormCopies",
    "MinMaxRescaled",
    "MixedCell",
    "Mode",
    "ModeRunner",
    "ModelCache",
    "OptionSpec",
    "Outputs",
    "build_plan",
    "check_config",
    "check_data_matches",
    "checkpoint_notes",
    "column_keys",
    "default_modes",
    "draw_cells",
    "evaluate",
    "evaluate_grid",
    "evaluate_options",
    "has_localnorm",
    "has_recorded_preprocessing",
    "image_range",
    "is_groupnorm",
    "load_checkpoints",
    "load_model",
    "load_models",
    "load_train_range",
    "make_runner",
    "mixed_batch",
    "mixed_cell",
    "mode_notes",
    "mode_spec",
    "modes_for",
    "natural_key",
    "open_source",
    "option_specs",
    "parse_options",
    "plan_columns",
    "plan_grid",
    "predict",
    "preprocess_flags",
    "resolve_checkpoint_paths",
    "resolve_data",
    "resolve_heads",
    "resolve_mode",
    "run_grid",
    "run_plan",
    "scores",
]

__getattr__, __dir__ = attach(__name__, _PUBLIC)
