"""The frozen config of ``lncli evaluate`` and the names its options choose from, each written once.

:class:`EvalConfig` describes one sweep (checkpoints x test-time modes x noises x
severities); :mod:`lncli.jobs.evaluate` runs it. The tuples below are the vocabularies
of its options: the job validates against them and the CLI builds its choices from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lncli.config.common import MAX_SEVERITY

__all__ = [
    "DEFAULT_BN_MODES",
    "DEFAULT_LN_MODES",
    "HEADS",
    "INTERPOLATIONS",
    "MODES",
    "NOISE_FAMILY",
    "NORMALIZATION_PRESETS",
    "EvalConfig",
]

MODES: tuple[str, ...] = ("running", "batch", "local", "single", "vote", "majority")
"""Test-time normalisation modes (see :mod:`lncli.jobs.evaluate.modes`)."""

HEADS: tuple[str, ...] = ("position", "mean")
"""How ``local`` (and ``batch``/``running``) groups pick LocalNorm's affine head."""

"""Where the models run (train's vocabulary): ``auto`` = CUDA when available, ``cuda:LOCAL_RANK`` under torchrun."""

NOISE_FAMILY: tuple[str, ...] = ("gaussian", "shot", "impulse")
"""What ``--noise all`` means: ImageNet-C's noise family (every profile maps these names)."""

DEFAULT_BN_MODES: tuple[str, ...] = ("running", "batch")
"""A BatchNorm checkpoint's modes when none are asked for: the paper's two baselines."""

DEFAULT_LN_MODES: tuple[str, ...] = ("local",)
"""A LocalNorm checkpoint's modes when none are asked for: the method itself."""

INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest")
"""How images are resized (``--interpolation``): torchvision's and timm's eval resizes use the first two."""

NORMALIZATION_PRESETS: tuple[str, ...] = ("imagenet", "cifar10", "none")
"""Names ``--mean``/``--std`` accept besides numbers (values in :data:`lncli.data.preprocess.PRESETS`);
``none`` feeds [0, 1] pixels, for models that normalise inside (as RobustBench's do)."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation sweep (one per ``lncli evaluate`` call)."""

    # The three noises of ImageNet-C's "noise" family: what the paper's claim is about.
    noises: tuple[str, ...] = NOISE_FAMILY
    # 0 is the clean row (needed for --max-drop and the table); 1-5 are the ImageNet-C levels.
    severities: tuple[int, ...] = tuple(range(MAX_SEVERITY + 1))
    # imagenet-c is the reference everyone compares against; "paper" is the authors' own protocol.
    profile: str = "imagenet-c"
    # None = each checkpoint's natural modes: BN -> DEFAULT_BN_MODES, LocalNorm -> DEFAULT_LN_MODES.
    modes: tuple[str, ...] | None = None
    # "position" is what the authors' code does (group k uses head k); "mean" removes the order dependence.
    heads: str = "position"
    # None = the checkpoint's own group size, else DEFAULT_GROUP_SIZE (the paper's CIFAR setting).
    group_size: int | None = None
    # 128 is the paper's CIFAR batch; it fixes which images share test-batch statistics.
    batch_size: int = 128
    # Noise seed: the noise for image i depends only on (seed, noise, severity, i).
    seed: int = 0
    # Fixed shuffle so that batches mix classes (sorted test sets would bias batch statistics);
    # None keeps the dataset order.
    order_seed: int | None = 0
    # auto = CUDA when available (cuda:LOCAL_RANK under torchrun).
    device: str = "auto"
    # float16 autocast on CUDA only: accuracy shifts are tiny but not zero, so it is opt-in.
    amp: bool = False
    # Background workers preparing batches while the models run (0 = inline): threads that make the next
    # noisy batches, for every source; for image files also DataLoader processes that decode, resize and crop.
    workers: int = 0
    # The authors' min-max rescale (``paper`` profile only): off, because it is a property of their
    # protocol, not of the noise. When on, each noisy cell is computed in float without clipping and the
    # whole noisy test set is rescaled per channel onto the training split's range (PAPER.md, "Rescale";
    # ``EvalData.train_range``), or the clean test set's when no training split was loaded.
    rescale: bool = False
    # Preprocessing (image files and corruption releases): None = not said here; each falls back to the
    # checkpoint's recorded preprocessing, the named dataset's own, timm's config (timm: archs), then
    # ImageNet's (lncli.data.preprocess.resolve_preprocess). Side of the square centre crop fed to the model.
    image_size: int | None = None
    # Short side the image is resized to before the centre crop.
    resize: int | None = None
    # Per-channel mean and std of [0, 1] pixels: comma lists of numbers, or a NORMALIZATION_PRESETS name.
    mean: str | None = None
    std: str | None = None
    # INTERPOLATIONS name of the resize.
    interpolation: str | None = None
    # 1 (L) or 3 (RGB): how images are read; None = what the model takes.
    channels: int | None = None
    # Image files that cannot be opened are skipped (and counted in the records) instead of refused.
    skip_unreadable: bool = False
