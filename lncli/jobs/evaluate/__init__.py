"""The ``evaluate`` job: checkpoints x test-time modes x noises x severities -> flat records.

* :mod:`.checkpoints`: the CKPT arguments resolved and loaded.
* :mod:`.testset`: the test data resolved and checked against the models, with each
  model's preprocessing.
* :mod:`.sources`: the image sources the sweep reads batches from (generated noise,
  corruption releases, the paper's rescale); :mod:`.loaders`: the clean images, from
  memory or from image files decoded by DataLoader workers.
* :mod:`.modes`: the test-time modes, a table from name to how a model runs in it.
* :mod:`.mix`: mixed streams, each image with its own noise and severity.
* :mod:`.grid`: :func:`evaluate_grid`, the sweep itself.
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
from lncli.jobs.evaluate.grid import (
    Column,
    ColumnKey,
    check_config,
    check_group_sizes,
    column_keys,
    evaluate_grid,
    mode_notes,
)
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
    "Column",
    "ColumnKey",
    "EvalConfig",
    "EvalData",
    "GeneratedNoise",
    "ImageNetCFiles",
    "ImageSource",
    "LoadedCheckpoint",
    "LocalNormCopies",
    "MinMaxRescaled",
    "MixedCell",
    "Mode",
    "ModeRunner",
    "check_config",
    "check_data_matches",
    "check_group_sizes",
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
    "predict",
    "preprocess_flags",
    "resolve_checkpoint_paths",
    "resolve_data",
    "resolve_mode",
    "scores",
]
