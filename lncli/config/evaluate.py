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
    "DEFAULT_GN_MODES",
    "DEFAULT_LN_MODES",
    "HEADS",
    "MODES",
    "NOISE_FAMILY",
    "EvalConfig",
]

MODES: tuple[str, ...] = ("running", "batch", "local", "single", "vote", "majority", "groupnorm")
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
    # Background threads that generate the next noisy batch while the models run (0 = inline).
    workers: int = 0
    # The authors' min-max rescale (``paper`` profile only): off, because it is a property of their
    # protocol, not of the noise. When on, each noisy cell is computed in float without clipping and the
    # whole noisy test set is rescaled per channel onto the training split's range (PAPER.md, "Rescale";
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
