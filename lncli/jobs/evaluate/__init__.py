"""The ``evaluate`` job: checkpoints x test-time modes x noises x severities -> flat records.

* :mod:`.checkpoints`: the CKPT arguments resolved and loaded.
* :mod:`.testset`: the test data resolved and checked against the models, with each
  model's preprocessing.
* :mod:`.sources`: the image sources the sweep reads batches from (generated noise,
  corruption releases, the paper's rescale); :mod:`.loaders`: the clean images, from
  memory or from image files decoded by DataLoader workers.
* :mod:`.modes`: the test-time modes, a table from name to how a model runs in it.
* :mod:`.mix`: mixed streams, each image with its own noise and severity.
* :mod:`.columns`: the sweep's columns (checkpoint x mode), their runners and the notes on them.
* :mod:`.grid`: the sweep itself: :func:`plan_grid` (everything but the compute), :func:`run_grid`, and
  :func:`evaluate_grid`, the two in one call.
"""

from lncli.config.evaluate import (
    DEFAULT_BN_MODES,
    DEFAULT_GN_MODES,
    DEFAULT_LN_MODES,
    HEADS,
    MODES,
    NOISE_FAMILY,
    EvalConfig,
)
from lncli.jobs.evaluate.checkpoints import (
    CHECKPOINT_SUFFIXES,
    LoadedCheckpoint,
    checkpoint_notes,
    load_checkpoints,
    natural_key,
    resolve_checkpoint_paths,
)
from lncli.jobs.evaluate.columns import ColumnKey, GridColumn, ModelCache, column_keys, mode_notes, plan_columns
from lncli.jobs.evaluate.grid import GridPlan, check_config, evaluate_grid, plan_grid, run_grid
from lncli.jobs.evaluate.mix import MixedCell, draw_cells, mixed_batch, mixed_cell
from lncli.jobs.evaluate.modes import (
    DEFAULT_STATS,
    MODE_TABLE,
    LocalNormCopies,
    Mode,
    ModeRunner,
    default_modes,
    has_localnorm,
    is_groupnorm,
    make_runner,
    mode_spec,
    modes_for,
    predict,
    resolve_heads,
    resolve_mode,
    scores,
)
from lncli.jobs.evaluate.sources import (
    CIFAR10C_PROFILE,
    CLEAN_CELL,
    IMAGENETC_PROFILE,
    Cell,
    Cifar10CFiles,
    GeneratedNoise,
    ImageNetCFiles,
    ImageSource,
    MinMaxRescaled,
    open_source,
)
from lncli.jobs.evaluate.testset import (
    EvalData,
    check_data_matches,
    has_recorded_preprocessing,
    image_range,
    load_train_range,
    preprocess_flags,
    resolve_data,
)

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
    "Cell",
    "Cifar10CFiles",
    "ColumnKey",
    "EvalConfig",
    "EvalData",
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
    "check_config",
    "check_data_matches",
    "checkpoint_notes",
    "column_keys",
    "default_modes",
    "draw_cells",
    "evaluate_grid",
    "has_localnorm",
    "has_recorded_preprocessing",
    "image_range",
    "is_groupnorm",
    "load_checkpoints",
    "load_train_range",
    "make_runner",
    "mixed_batch",
    "mixed_cell",
    "mode_notes",
    "mode_spec",
    "modes_for",
    "natural_key",
    "open_source",
    "plan_columns",
    "plan_grid",
    "predict",
    "preprocess_flags",
    "resolve_checkpoint_paths",
    "resolve_data",
    "resolve_heads",
    "resolve_mode",
    "run_grid",
    "scores",
]
