"""The frozen config of ``lncli evaluate`` and the names its options choose from, each written once.

:class:`EvalConfig` describes one sweep (checkpoints x test-time modes x noises x
severities); :mod:`lncli.jobs.evaluate` runs it. The tuples below are the vocabularies
of its options: the job validates against them and the CLI builds its choices from them.
The vocabulary that lower layers share (``prior``'s N, interpolations, normalisation presets)
is in :mod:`lncli.config.common`, so that :mod:`lncli.nn` and :mod:`lncli.data` need no
command's config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lncli.config.common import (
    CROP_MODES,
    DEFAULT_PRIOR_N,
    DEVICES,
    INTERPOLATIONS,
    MAX_SEVERITY,
    PROFILE_NAMES,
    parse_stats,
)
from lncli.errors import LncliError

__all__ = [
    "DEFAULT_BN_MODES",
    "DEFAULT_GN_MODES",
    "DEFAULT_LN_MODES",
    "DEFAULT_TENT_LR",
    "HEADS",
    "MODES",
    "NOISE_FAMILY",
    "ORDERS",
    "EvalConfig",
    "check_config",
    "parse_batch_sizes",
]

MODES: tuple[str, ...] = ("running", "batch", "local", "single", "vote", "majority", "prior", "tent", "groupnorm")
"""Test-time normalisation modes (see :mod:`lncli.jobs.evaluate.modes`)."""

ORDERS: tuple[str, ...] = ("shuffled", "sorted", "dataset")
"""The test stream's order: a seeded shuffle (batches mix classes), sorted by label (stable within a
class: a class-correlated stream, as in video or one site at a time), or the dataset's own order."""

DEFAULT_TENT_LR = 1e-3
"""``tent`` mode's Adam learning rate: TENT's CIFAR-10-C setting (Wang et al. 2021, ICLR)."""

HEADS: tuple[str, ...] = ("position", "mean")
"""How LocalNorm's affine head is chosen where test images form groups (``local``, ``batch``, ``prior``,
``tent``): by the group's position in the batch (the paper), or the mean of the heads. The per-image
modes (``running``, ``single``) always take the mean: an image there belongs to no group."""

NOISE_FAMILY: tuple[str, ...] = ("gaussian", "shot", "impulse")
"""What ``--noise all`` means: ImageNet-C's noise family (every profile maps these names)."""

DEFAULT_BN_MODES: tuple[str, ...] = ("running", "batch")
"""A BatchNorm checkpoint's modes when none are asked for: the paper's two baselines."""

DEFAULT_LN_MODES: tuple[str, ...] = ("local",)
"""A LocalNorm checkpoint's modes when none are asked for: the method itself."""

DEFAULT_GN_MODES: tuple[str, ...] = ("groupnorm",)
"""A GroupNorm checkpoint's modes, whatever is asked for: it has no test-time statistics, so it runs as it is."""


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
    # GroupNorm checkpoints always run in DEFAULT_GN_MODES (their only mode), whatever this says.
    modes: tuple[str, ...] | None = None
    # Where test images form groups: "position" is what the authors' code does (group k uses head k); "mean"
    # removes the order dependence. None = "position" there; the per-image modes always take the mean (HEADS).
    heads: str | None = None
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
    # whole noisy test set is rescaled per channel onto the training split's range (lncli.noise.rescale;
    # ``EvalData.train_range``), or the clean test set's when no training split was loaded.
    rescale: bool = False
    # The architecture of foreign checkpoints (bare state_dicts), any form of lncli.config.train.parse_arch;
    # None: every checkpoint must record its own (lncli's do).
    arch: str | None = None
    # Refuse weights with missing or unexpected keys: a wrong --arch must not pass as a bad model.
    strict: bool = True
    # --compare's gate: a cell fails when its accuracy fell by more than this (a fraction) below the
    # baseline's AND the fall is significant. None without --compare; with it the CLI's default is 0
    # (any significant fall fails). Checked by lncli.compare.check_regression_settings.
    max_regression: float | None = None
    # The one-sided level of that test (McNemar on paired per-image results, else two-proportion), per cell.
    significance: float = 0.05
    # The stream's order (ORDERS). "shuffled" uses order_seed; "shuffled" with order_seed None is the
    # dataset order (the older spelling, ``--order-seed -1``): see ``stream_order``.
    order: str = "shuffled"
    # Several test batch sizes, each evaluated in turn (each size is its own records); () = (batch_size,).
    batch_sizes: tuple[int, ...] = ()
    # One mixed stream instead of a row per noise x severity: each image draws its own (noise, severity)
    # from the lists (severity 0 = clean), seeded by its global index and the noise seed.
    mix: bool = False
    # prior mode's N: how many images the training (running) statistics weigh against the n of a batch.
    prior_n: float = DEFAULT_PRIOR_N
    # tent mode: Adam's learning rate and the steps per test batch (TENT takes one).
    tent_lr: float = DEFAULT_TENT_LR
    tent_steps: int = 1

    # Preprocessing (image files and corruption releases): None = not said here; each falls back to the
    # checkpoint's recorded preprocessing, the named dataset's own, timm's config (timm: archs), then
    # ImageNet's (lncli.data.preprocess.resolve_preprocess). Side of the square centre crop fed to the model.
    image_size: int | None = None
    # Short side the image is resized to before the centre crop.
    resize: int | None = None
    # Per-channel mean and std of [0, 1] pixels: comma lists of numbers, or a
    # lncli.config.common.NORMALIZATION_PRESETS name.
    mean: str | None = None
    std: str | None = None
    # lncli.config.common.INTERPOLATIONS name of the resize.
    interpolation: str | None = None
    # CROP_MODES name (lncli.config.common): how the resized image becomes the crop, as timm's crop_mode.
    crop_mode: str | None = None
    # 1 (L) or 3 (RGB): how images are read; None = what the model takes.
    channels: int | None = None
    # Image files that cannot be opened are skipped (and counted in the records) instead of refused.
    skip_unreadable: bool = False

    @property
    def stream_order(self) -> str:
        """The order really used: ``order``, except that ``shuffled`` without a seed is ``dataset``."""
        return "dataset" if self.order == "shuffled" and self.order_seed is None else self.order

    @property
    def all_batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes of the sweep, in the order given: ``batch_sizes``, else ``(batch_size,)``."""
        return self.batch_sizes or (self.batch_size,)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """Parse ``--batch-size``: one size or a comma list (``1,16,128``), duplicates dropped, order kept.

    Args:
        text: comma-separated integers.

    Returns:
        The sizes (their range is checked with the rest of the sweep, :func:`lncli.jobs.evaluate.check_config`).

    Raises:
        LncliError: an item that is not an integer, or no size at all.
    """
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        sizes = tuple(dict.fromkeys(int(t) for t in items))
    except ValueError:
        raise LncliError(f"--batch-size {text!r}: expected integers, e.g. 128 or 1,16,128") from None
    if not sizes:
        raise LncliError(f"--batch-size {text!r}: no size given; use e.g. 128 or 1,16,128")
    return sizes


def check_config(config: EvalConfig) -> None:
    """Reject impossible sweep settings in one line each, before any work (no torch needed).

    The noise names are checked against the profile where the noise is made
    (:func:`lncli.noise.canonical_noise`).

    Raises:
        LncliError: the first bad setting.
    """
    for size in config.all_batch_sizes:
        if size < 1:
            raise LncliError(f"--batch-size must be >= 1, got {size}")
    if config.order not in ORDERS:
        raise LncliError(f"unknown --order {config.order!r}; valid: {', '.join(ORDERS)}")
    if not (math.isfinite(config.prior_n) and config.prior_n >= 0):
        raise LncliError(f"--prior-n must be a finite number >= 0, got {config.prior_n}")
    if not (math.isfinite(config.tent_lr) and config.tent_lr > 0):
        raise LncliError(f"--tent-lr must be > 0, got {config.tent_lr}")
    if config.tent_steps < 1:
        raise LncliError(f"--tent-steps must be >= 1, got {config.tent_steps}")
    if config.group_size is not None and config.group_size < 1:
        raise LncliError(f"--group-size must be >= 1, got {config.group_size}")
    if config.heads is not None and config.heads not in HEADS:
        raise LncliError(f"unknown heads {config.heads!r}; valid: {', '.join(HEADS)}")
    for mode in config.modes or ():
        if mode not in MODES:
            raise LncliError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if not config.noises:
        raise LncliError("no noise to evaluate")
    if config.profile not in PROFILE_NAMES:
        raise LncliError(f"unknown profile {config.profile!r}; valid: {', '.join(PROFILE_NAMES)}")
    if not config.severities:
        raise LncliError("no severity to evaluate")
    if any(not 0 <= s <= MAX_SEVERITY for s in config.severities):
        raise LncliError(
            f"--severity must be in 0..{MAX_SEVERITY} (0 = clean), got {', '.join(map(str, config.severities))}"
        )
    if config.workers < 0:
        raise LncliError(f"--workers must be >= 0, got {config.workers}")
    if config.device not in DEVICES:
        raise LncliError(f"unknown --device {config.device!r}; valid: {', '.join(DEVICES)}")
    if config.rescale and config.profile != "paper":
        raise LncliError(
            f"--rescale is the paper profile's min-max rescale; use it with --profile paper, not {config.profile}"
        )
    for flag, side in (("--image-size", config.image_size), ("--resize", config.resize)):
        if side is not None and side < 1:
            raise LncliError(f"{flag} must be >= 1, got {side}")
    for flag, name, valid in (
        ("--interpolation", config.interpolation, INTERPOLATIONS),
        ("--crop-mode", config.crop_mode, CROP_MODES),
    ):
        if name is not None and name not in valid:
            raise LncliError(f"unknown {flag} {name!r}; valid: {', '.join(valid)}")
    parse_stats(config.mean, "--mean")
    parse_stats(config.std, "--std")
