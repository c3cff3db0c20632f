"""Typed, frozen configuration for ``lncli train`` (and the fine-tune after ``convert``).

A run is described by one :class:`TrainConfig`: a frozen dataclass with nested
frozen sections (``data``, ``model``, ``norm``, ``optim``, ``schedule``) and a
handful of top-level knobs. Every default carries a *why* comment.

Precedence is ``defaults < YAML file < --set key=value`` (after timm's
``train.py``). ``--set`` keys are dotted (``optim.lr=0.05``,
``model.kwargs.width=32``) and their values are parsed as YAML, so ``true``,
``null``, ``[30, 60]`` and ``1e-3`` mean what they look like. Unknown keys and
bad values raise :class:`lncli.errors.ConfigError` with one line that names the
key and the valid options.

This module does no file writing; :mod:`lncli.jobs.train` saves the resolved config
(:func:`config_to_dict`) as ``OUT/config.yaml`` beside every run.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from lncli.config._typed import apply_overrides, build, config_to_dict, read_yaml_mapping
from lncli.config.common import (
    DEFAULT_GROUP_SIZE,
    NORM_ALIASES,
    NORM_KINDS,
    DeviceName,
    Grouping,
    NormKind,
    canonical_norm_or_none,
)
from lncli.errors import CheckpointError, ConfigError

__all__ = [
    "ARCH_FORMS",
    "LIBRARY_PREFIXES",
    "MODEL_CORE_KWARGS",
    "ArchSpec",
    "DataConfig",
    "ModelConfig",
    "NormConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "dump_yaml",
    "load_train_config",
    "parse_arch",
    "train_config_from_dict",
    "validate",
]


AugmentName = Literal["auto", "none", "flip", "crop_flip"]
OptimName = Literal["sgd", "adamw"]
ScheduleName = Literal["cosine", "step", "onecycle", "constant"]
AmpName = Literal["none", "bf16", "fp16"]

MODEL_CORE_KWARGS: tuple[str, ...] = ("num_classes", "in_channels", "norm_layer")
"""Keywords every model builder takes; lncli sets them from the data and the norm, so ``model.kwargs`` may not."""

LIBRARY_PREFIXES: tuple[str, ...] = ("torchvision", "timm")
"""Model libraries an arch may name as ``PREFIX:NAME``; NAME resolves only through that library's own registry."""

ARCH_FORMS = "NAME (lncli's registry), torchvision:NAME, timm:NAME or package.module:function"
"""The forms of an arch string, as error messages and help texts state them."""

ArchKind = Literal["registry", "torchvision", "timm", "code"]

# A library model name: letters, digits, _ . - (timm's pretrained tags use '.'); no ':' or '/',
# so that no hub or file prefix (timm's "hf-hub:") can ever reach the library.
_LIBRARY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class ArchSpec:
    """An arch string, parsed (:func:`parse_arch`); nothing is imported or looked up.

    Attributes:
        kind: ``registry`` (lncli's own models), ``torchvision``, ``timm`` or ``code`` (a user's builder).
        name: the model name (registry / library), or the function's (dotted) name in ``module``.
        module: the dotted module of a ``code`` arch; ``None`` otherwise.
    """

    kind: ArchKind
    name: str
    module: str | None = None

    @property
    def runs_code(self) -> bool:
        """True for ``package.module:function``: building it imports and runs the user's code."""
        return self.kind == "code"


def parse_arch(arch: str) -> ArchSpec:
    """Split an arch string into its form and name (the one grammar of ``--arch`` and ``model.arch``).

    ``NAME`` is a model of lncli's registry; ``torchvision:NAME`` and ``timm:NAME`` name a model
    of that library; any other ``package.module:function`` is a user's builder.

    Args:
        arch: the string, e.g. ``"resnet20"``, ``"timm:resnet18"``, ``"mypkg.nets:build"``.

    Returns:
        The :class:`ArchSpec`.

    Raises:
        ConfigError: an empty string or one that fits none of the forms.
    """
    text = str(arch).strip()
    if ":" not in text:
        if not text:
            raise ConfigError(f"empty arch; the forms are {ARCH_FORMS}")
        return ArchSpec("registry", text)
    prefix, name = text.split(":", 1)
    if prefix in LIBRARY_PREFIXES:
        if not _LIBRARY_NAME.fullmatch(name):
            raise ConfigError(f"bad arch {text!r}: {prefix}: needs a model name (letters, digits, _ . -)")
        return ArchSpec(cast(ArchKind, prefix), name)
    if not (_DOTTED.fullmatch(prefix) and _DOTTED.fullmatch(name)):
        raise ConfigError(f"bad arch {text!r}; the forms are {ARCH_FORMS}")
    return ArchSpec("code", name, prefix)


# Accepted spellings that map onto a canonical value (keys are lower-case).
_ALIASES: dict[str, dict[str, str]] = {
    "norm.kind": NORM_ALIASES,
    "amp": {"bfloat16": "bf16", "float16": "fp16", "fp32": "none", "off": "none", "false": "none"},
    "data.augment": {"crop+flip": "crop_flip", "cropflip": "crop_flip"},
}


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and test on, and how to augment them."""

    # The offline, seconds-long default: a deterministic learnable dataset that
    # needs no files, so a bare `lncli train` config always runs.
    spec: str = "synthetic"
    # None = lncli.data's search order (--data-dir, $LNCLI_DATA, ~/.cache/lncli,
    # /usr/share/datasets/...); set it to pin one folder.
    data_dir: str | None = None
    # Off by default: training must not reach the network unless asked to.
    download: bool = False
    # None = the full split; small limits make smoke tests and demos fast.
    train_limit: int | None = None
    test_limit: int | None = None
    # "auto" = random crop + horizontal flip for natural RGB images (CIFAR-10,
    # ImageFolder: the standard recipe), none for Fashion-MNIST (flips change
    # the meaning of some classes, crops barely help at 28x28) and for the
    # synthetic sets (a flip swaps their stripe-orientation classes). Runs
    # batched on uint8 tensors on the training device: never a GPU bottleneck.
    augment: AugmentName = "auto"
    # 4 px zero padding before a random crop back to full size: the CIFAR
    # recipe of He et al. (2016) and of the authors' ResNet script (shift 0.125).
    crop_padding: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and builder keyword arguments.

    ``arch`` takes every form of :func:`parse_arch`: a name of lncli's registry,
    ``torchvision:NAME``, ``timm:NAME`` or ``package.module:function`` (the config is the
    user's own instruction, like the command line, so its builder may run).
    """

    # The 2-conv test model: trains in seconds on a CPU.
    arch: str = "tiny"
    # Extra builder arguments (e.g. {"width": 32}); num_classes, in_channels
    # and norm_layer come from the data and the norm section.
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NormConfig:
    """Which normalisation layer a model is built with: BatchNorm, LocalNorm (arXiv 1902.06550) or GroupNorm.

    The one description of a norm layer: the ``norm`` section of a train config,
    and (as :data:`lncli.checkpoint.NormSpec`) the norm a checkpoint's weights
    belong to. :meth:`to_dict` / :meth:`from_dict` are the checkpoint's on-disk
    ``norm`` record; :func:`config_to_dict` is the config's form.
    """

    # Plain BatchNorm is the baseline every comparison needs.
    kind: NormKind = "batchnorm"
    # G = samples per LocalNorm group; the default is the authors' CIFAR
    # choice (see DEFAULT_GROUP_SIZE). Ignored unless kind is localnorm.
    group_size: int = DEFAULT_GROUP_SIZE
    # Affine heads (gamma_k, beta_k). None = batch_size / group_size, one head
    # per group position as in the paper's code (resolved by validate(); in a
    # checkpoint, None = the layer's default).
    num_heads: int | None = None
    # Consecutive samples form a group, as in the authors' code; "strided" is
    # the zero-copy partition (equally faithful: training batches are shuffled).
    grouping: Grouping = "consecutive"
    # GroupNorm's groups of channels. None = per layer min(32, C), or the largest
    # divisor of C not above 32 when 32 does not divide C (Wu & He's G = 32 where it
    # fits: lncli.nn.default_groups); a number must divide every layer's width.
    # Ignored unless kind is groupnorm. Last, so the BN/LN records keep their key order.
    groups: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the checkpoint's ``norm`` record (keys in field order).

        A BatchNorm model has no groups or heads, so its record holds null G and
        heads and the default grouping, whatever else the config said: the form
        lncli checkpoints have always had on disk. GroupNorm's record is BatchNorm's
        form plus ``groups`` (null = the default rule); BatchNorm and LocalNorm records
        have no ``groups`` key, so their bytes are what they were before GroupNorm.

        Returns:
            ``{"kind", "group_size", "num_heads", "grouping"}`` (plus ``"groups"`` for
            GroupNorm) as plain types.
        """
        record = dataclasses.asdict(self)
        if self.kind != "groupnorm":
            del record["groups"]  # the last key: the others keep their order
        if self.kind in ("batchnorm", "groupnorm"):
            record.update(group_size=None, num_heads=None)
            # Replaced only when it differs: an equal value keeps its object, since torch.save's
            # pickle refers back to objects it has written, and a new one would change the bytes.
            if record["grouping"] != NormConfig.grouping:
                record["grouping"] = NormConfig.grouping
        return record

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormConfig:
        """Rebuild a spec from a checkpoint's ``norm`` record; unknown keys are ignored.

        A missing or null ``group_size`` is the default G (what the layer is built
        with); a missing or null ``groups`` is GroupNorm's default rule. A known spelling of the kind (``bn``...) becomes the canonical one;
        an unknown kind is kept, so the file still loads and building its model
        names the problem.

        Args:
            d: the record (:meth:`to_dict` output).

        Returns:
            The spec.

        Raises:
            CheckpointError: a value has the wrong type.
        """
        try:
            kind = str(d.get("kind", cls.kind))
            if kind not in NORM_KINDS:  # a canonical kind keeps its object (see to_dict)
                kind = canonical_norm_or_none(kind) or kind
            gs, nh, groups = d.get("group_size"), d.get("num_heads"), d.get("groups")
            return cls(
                kind=cast(NormKind, kind),
                group_size=DEFAULT_GROUP_SIZE if gs is None else int(gs),
                num_heads=None if nh is None else int(nh),
                grouping=cast(Grouping, str(d.get("grouping", cls.grouping))),
                groups=None if groups is None else int(groups),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"malformed norm spec {d!r}: {exc}") from None


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and its hyper-parameters."""

    # SGD + Nesterov momentum is what the paper's CIFAR recipes use.
    name: OptimName = "sgd"
    # 0.1 is the standard CIFAR SGD rate at batch 128 (and the paper's).
    lr: float = 0.1
    # 0.9: the usual heavy-ball constant, also the paper's.
    momentum: float = 0.9
    # The authors train with Nesterov; it is also a little more stable.
    nesterov: bool = True
    # 5e-4 is the CIFAR/VGG standard (the paper's VGG L2); ResNets often use 1e-4.
    weight_decay: float = 5e-4
    # Decay on BN/LN gamma, beta and heads fights the normalisation's own scale
    # and costs accuracy in small nets; exclude them by default (timm does too).
    decay_norm_and_bias: bool = False
    # AdamW betas; (0.9, 0.999) is the torch default.
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimiser step."""

    # Cosine to zero needs no tuning of milestones and is hard to beat.
    name: ScheduleName = "cosine"
    # A short linear warm-up keeps SGD 0.1 from blowing up the first steps of
    # deep nets; 0 leaves the paper's recipes exactly as published.
    warmup_epochs: float = 0.0
    # step: multiply by gamma at these epochs ...
    milestones: tuple[int, ...] = ()
    # ... or, when milestones is empty, every `step_every` epochs (the paper's
    # VGG recipe: x0.75 every 30 epochs). 0 = never.
    step_every: int = 0
    # step: the factor applied at each milestone; 0.1 is the classic ResNet drop.
    gamma: float = 0.1
    # cosine: the floor the rate decays to; 0 is the usual choice.
    min_lr: float = 0.0
    # onecycle: fraction of training spent rising to lr (torch's default 0.3).
    pct_start: float = 0.3


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``lncli train`` needs; one instance is one reproducible run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Small enough that a config without `epochs` finishes quickly by mistake
    # rather than running for hours.
    epochs: int = 10
    # Per process (per GPU under torchrun). 128 is the paper's CIFAR batch and
    # a multiple of every sensible G; LocalNorm requires batch_size % G == 0.
    batch_size: int = 128
    # None = batch_size. Evaluation keeps the training batch size so that
    # LocalNorm's test-time groups look like its training groups.
    eval_batch_size: int | None = None
    # 0: the paper trains with hard labels.
    label_smoothing: float = 0.0
    # Fixed seed: model init, shuffling and augmentation all derive from it.
    seed: int = 0
    # auto = CUDA when present, else CPU (cuda:LOCAL_RANK under torchrun).
    device: DeviceName = "auto"
    # Off by default so results are bit-comparable; bf16 is the fast, safe
    # choice on recent GPUs (fp16 adds a gradient scaler and needs CUDA).
    amp: AmpName = "none"
    # Faster convolutions on CUDA tensor cores; harmless elsewhere but off by
    # default to keep CPU runs on the most tested path.
    channels_last: bool = False
    # Background threads that slice/augment the next batches. The data are
    # in-memory uint8 tensors and augmentation is batched in torch, so 0
    # (inline) is right almost always; 1-2 can hide latency on a GPU.
    workers: int = 0
    # Evaluate the test split every N epochs (the last epoch always is);
    # 0 = only at the end. 1 gives a test-accuracy column for every epoch.
    eval_every: int = 1
    # Write OUT/last.pt every N epochs (always at the end and on Ctrl-C);
    # 1 makes --resume lose at most one epoch.
    save_every: int = 1
    # Ask torch for deterministic kernels (and no cuDNN autotuning): slower on
    # GPU, so off; CPU runs are deterministic regardless.
    deterministic: bool = False


# ---------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check value ranges and cross-field rules; resolve ``norm.num_heads``.

    Args:
        cfg: a config built from defaults/YAML/overrides.

    Returns:
        The config with ``norm.num_heads`` filled in (None -> batch_size / G).

    Raises:
        ConfigError: naming the first bad key and what it must be.
    """

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}': {what}")

    need(cfg.epochs >= 1, "epochs", f"must be >= 1, got {cfg.epochs}")
    need(cfg.batch_size >= 1, "batch_size", f"must be >= 1, got {cfg.batch_size}")
    need(cfg.eval_batch_size is None or cfg.eval_batch_size >= 1, "eval_batch_size", "must be >= 1 or null")
    need(0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", f"must be in [0, 1), got {cfg.label_smoothing}")
    need(cfg.seed >= 0, "seed", "must be >= 0")
    need(cfg.workers >= 0, "workers", "must be >= 0")
    need(cfg.eval_every >= 0, "eval_every", "must be >= 0 (0 = only after the last epoch)")
    need(cfg.save_every >= 1, "save_every", "must be >= 1")
    d = cfg.data
    need(
        bool(d.spec.strip()),
        "data.spec",
        "must name a dataset (fashion-mnist, cifar10, synthetic, synthetic-gray, imagefolder:PATH)",
    )
    need(d.train_limit is None or d.train_limit >= 1, "data.train_limit", "must be >= 1 or null")
    need(d.test_limit is None or d.test_limit >= 1, "data.test_limit", "must be >= 1 or null")
    need(d.crop_padding >= 0, "data.crop_padding", "must be >= 0")
    need(bool(cfg.model.arch.strip()), "model.arch", f"must name a model: {ARCH_FORMS}")
    try:
        parse_arch(cfg.model.arch)
    except ConfigError as exc:
        raise ConfigError(f"config key 'model.arch': {exc}") from None
    for reserved in MODEL_CORE_KWARGS:
        need(
            reserved not in cfg.model.kwargs,
            f"model.kwargs.{reserved}",
            "is set by lncli from the data and norm sections; remove it",
        )
    o = cfg.optim
    need(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    need(0.0 <= o.momentum < 1.0, "optim.momentum", f"must be in [0, 1), got {o.momentum}")
    need(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(not (o.nesterov and o.name == "sgd" and o.momentum == 0), "optim.nesterov", "needs optim.momentum > 0")
    need(all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", "must both be in [0, 1)")
    s = cfg.schedule
    need(0 <= s.warmup_epochs < cfg.epochs, "schedule.warmup_epochs", f"must be in [0, epochs={cfg.epochs})")
    need(
        all(m >= 1 for m in s.milestones) and list(s.milestones) == sorted(s.milestones),
        "schedule.milestones",
        "must be increasing epochs >= 1",
    )
    need(s.step_every >= 0, "schedule.step_every", "must be >= 0")
    need(s.gamma > 0, "schedule.gamma", "must be > 0")
    need(0 <= s.min_lr <= o.lr, "schedule.min_lr", f"must be in [0, optim.lr={o.lr}]")
    need(0 < s.pct_start < 1, "schedule.pct_start", "must be in (0, 1)")
    need(
        not (s.name == "onecycle" and s.warmup_epochs > 0),
        "schedule.warmup_epochs",
        "must be 0 with onecycle, which warms up by itself (pct_start)",
    )
    if s.name == "step":
        need(
            bool(s.milestones) or s.step_every > 0,
            "schedule.milestones",
            "schedule 'step' needs milestones (e.g. [100, 150]) or step_every > 0",
        )
    n = cfg.norm
    if n.kind == "localnorm":
        need(n.group_size >= 1, "norm.group_size", "must be >= 1")
        # Every training batch must hold whole groups (see lncli.jobs.train.loop).
        need(
            cfg.batch_size % n.group_size == 0,
            "norm.group_size",
            f"batch_size={cfg.batch_size} must be a multiple of group_size={n.group_size} so that every batch holds whole groups",
        )
        need(
            n.num_heads is None or n.num_heads >= 1,
            "norm.num_heads",
            "must be >= 1 or null (= batch_size / group_size)",
        )
        if n.num_heads is None:
            cfg = dataclasses.replace(cfg, norm=dataclasses.replace(n, num_heads=cfg.batch_size // n.group_size))
    if n.kind == "groupnorm":  # whether it divides each layer's width is checked when the model is built
        need(n.groups is None or n.groups >= 1, "norm.groups", "must be >= 1 or null (= min(32, C) per layer)")
    return cfg


def train_config_from_dict(
    raw: Mapping[str, Any] | None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested mapping plus overrides.

    Args:
        raw: nested mapping as read from YAML (None = all defaults).
        overrides: dotted ``KEY=VALUE`` strings or a ``{dotted_key: value}`` mapping.

    Returns:
        The frozen, validated config.
    """
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(
            "a train config must be a YAML mapping of keys (data, model, norm, optim, schedule, epochs, ...)"
        )
    merged = apply_overrides(raw or {}, overrides)
    return validate(build(TrainConfig, merged, _ALIASES))


def load_train_config(path: str | Path | None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> TrainConfig:
    """Read a YAML train config and apply ``--set`` overrides: defaults < YAML < overrides.

    Args:
        path: a YAML file (None = defaults only).
        overrides: dotted ``KEY=VALUE`` strings (values parsed as YAML) or a mapping.

    Returns:
        The frozen, validated :class:`TrainConfig`.

    Raises:
        ConfigError: unreadable/invalid YAML, unknown keys, bad values.
    """
    raw: Any = None if path is None else read_yaml_mapping(path)
    return train_config_from_dict(raw, overrides)


def dump_yaml(cfg: TrainConfig) -> str:
    """The config as YAML text (what ``lncli train`` saves as ``OUT/config.yaml``)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)
