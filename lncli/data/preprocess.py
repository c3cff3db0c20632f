"""How images become a model's input, and who says so: the preprocessing resolver.

Preprocessing is data about the model: the crop's size (``image_size``), the short side
resized to before it (``resize``), the ``interpolation``, how the resized image becomes the
crop (``crop_mode``: timm's ``center``, ``squash`` or ``border``), and the per-channel ``mean``
and ``std`` of [0, 1] pixels. Several places may say what they are, each a
:class:`PreprocessLayer`; each field takes the first of these that says it
(:func:`resolve_preprocess`, which returns a :class:`ResolvedPreprocess`), highest first:

1. the command line's flags (:func:`parse_flags`);
2. the checkpoint's recorded preprocessing (its :class:`~lncli.data.meta.DataMeta`; not for a
   foreign state_dict, whose meta was made up from ``--data``:
   :func:`lncli.jobs.evaluate.testset.has_recorded_preprocessing`);
3. a named dataset's own (fashion-mnist, cifar10, ..., and a CIFAR-10-C release's arrays:
   their size as stored);
4. timm's config for ``timm:`` archs (``timm.data.resolve_data_config`` on the arch's
   pretrained config; nothing is downloaded: :func:`timm_layer`, :func:`timm_config_layer`);
5. ImageNet's (:data:`IMAGENET`: resize 256, crop 224, bilinear, centre, ImageNet mean/std).

``resize`` goes with ``image_size``: it is taken from the layer that gave ``image_size`` or a
higher one (so ``--image-size 160`` alone crops 160 of a 160 resize, not of timm's 235); when
none says it, the crop's short side. A resize below the crop is allowed: the crop is padded
(torchvision's ``CenterCrop``; timm's ``crop_pct`` above 1, as VOLO's 1.15). A preset name for ``--mean`` (``imagenet``, ``cifar10``,
``none``) also sets ``std`` unless ``--std`` is given, and vice versa; ``none`` is mean 0,
std 1 (the model normalises inside). One value stands for every channel; three values for a
one-channel input become their ITU-R 601-2 luma (the convention lncli uses for L images).
The channel count itself is never a preprocessing choice: it is what the model takes.

:func:`to_input` applies a resolved meta to uint8 tensors (data held in memory, array
releases); image files are read the same way by :func:`lncli.images.decode_image`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from lncli.config.common import (
    CROP_MODES,
    DEFAULT_CROP_MODE,
    INTERPOLATIONS,
    close_names,
    parse_stats,
)
from lncli.data.meta import DATASETS, DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD, DataMeta
from lncli.errors import DataError, LncliError
from lncli.images import convert_channels, resize_crop

__all__ = [
    "FIELD_FLAGS",
    "IMAGENET",
    "LUMA",
    "PRESETS",
    "Origin",
    "PreprocessLayer",
    "ResolvedPreprocess",
    "apply_preprocess",
    "as_channels",
    "needs_transform",
    "parse_flags",
    "resolve_preprocess",
    "timm_config_layer",
    "timm_layer",
    "to_input",
    "unrecorded_note",
]

PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (DATASETS["cifar10"].mean, DATASETS["cifar10"].std),
    "none": ((0.0,), (1.0,)),
}
"""The (mean, std) of each :data:`~lncli.config.common.NORMALIZATION_PRESETS` name."""

LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights (Pillow's ``convert("L")``): how three-channel constants become one."""

FIELD_FLAGS: dict[str, str] = {
    "image_size": "--image-size",
    "resize": "--resize",
    "interpolation": "--interpolation",
    "crop_mode": "--crop-mode",
    "mean": "--mean",
    "std": "--std",
}
"""Each preprocessing field, in resolution order, and the flag that says it."""


@dataclass(frozen=True)
class Origin:
    """Who said a field: a layer's kind (``flags``, ``checkpoint``, ``dataset``, ``timm``, ``imagenet``; ``crop``
    for a resize taken from the crop's short side) and what it names (the dataset, the timm model)."""

    kind: str
    source: str = ""

    def __str__(self) -> str:
        """How a note names it: ``fashion-mnist``, ``timm's config of resnet18.a1_in1k``, ``ImageNet's defaults``."""
        if self.kind == "timm":
            return f"timm's config of {self.source}"
        if self.kind == "imagenet":
            return "ImageNet's defaults (torchvision's evaluation)"
        if self.kind == "flags":
            return "the flags"
        return self.source or f"the {self.kind}"


@dataclass(frozen=True)
class PreprocessLayer:
    """One layer's say on preprocessing; None = this layer does not say.

    Attributes:
        image_size: (H, W) of the crop.
        resize: the short side before the crop.
        mean: per-channel mean of [0, 1] pixels (one value: every channel).
        std: per-channel standard deviation.
        interpolation: the resize's (:data:`~lncli.config.common.INTERPOLATIONS`).
        crop_mode: how the resized image becomes the crop (:data:`~lncli.config.common.CROP_MODES`).
        origin: who says it (``flags``, ``checkpoint``, ``dataset``, ``timm``, ``imagenet``).
        source: what it names, for notes (the dataset's name, the timm model's); may be empty.
    """

    image_size: tuple[int, int] | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_mode: str | None = None
    origin: str = ""
    source: str = ""

    @classmethod
    def of_meta(cls, meta: DataMeta, origin: str) -> PreprocessLayer:
        """Everything a :class:`DataMeta` says (a checkpoint's recorded preprocessing, a dataset's own)."""
        return cls(
            meta.image_size, meta.resize, meta.mean, meta.std, meta.interpolation, meta.crop_mode, origin, meta.name
        )


@dataclass(frozen=True)
class ResolvedPreprocess:
    """Every preprocessing field, each said by one layer (:func:`resolve_preprocess`).

    Attributes:
        image_size: (H, W) of the crop.
        resize: the short side before the crop.
        mean: per-channel mean of [0, 1] pixels, one value per model channel.
        std: per-channel standard deviation, one value per model channel.
        interpolation: the resize's.
        crop_mode: how the resized image becomes the crop.
        origins: ``(field, who said it)`` for every field of :data:`FIELD_FLAGS`, in that order.
    """

    image_size: tuple[int, int]
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_mode: str
    origins: tuple[tuple[str, Origin], ...]

    @property
    def origin(self) -> str:
        """``field=kind`` per field, comma-separated (``image_size=flags,resize=crop,mean=timm,...``)."""
        return ",".join(f"{f}={o.kind}" for f, o in self.origins)

    def origin_of(self, name: str) -> Origin:
        """Who said field ``name``."""
        return dict(self.origins)[name]


IMAGENET = PreprocessLayer(
    (224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, DEFAULT_INTERPOLATION, DEFAULT_CROP_MODE, "imagenet", "ImageNet"
)
"""The last layer: torchvision's ImageNet evaluation (resize 256, centre crop 224, bilinear)."""


def _stats_value(
    own: tuple[float, ...] | str | None, other: tuple[float, ...] | str | None, which: int
) -> tuple[float, ...] | None:
    """One of mean (``which`` 0) / std (1): its own flag (numbers or a preset), else the other flag's preset."""
    if isinstance(own, str):
        return PRESETS[own][which]
    if own is not None:
        return own
    return PRESETS[other][which] if isinstance(other, str) else None


def parse_flags(
    *,
    image_size: int | None = None,
    resize: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    interpolation: str | None = None,
    crop_mode: str | None = None,
) -> PreprocessLayer:
    """The flags' layer, checked (one line per bad value).

    Args:
        image_size: ``--image-size``: side of the square crop.
        resize: ``--resize``: the short side before the crop.
        mean: ``--mean``: numbers (``0.5`` or ``0.485,0.456,0.406``) or a preset name.
        std: ``--std``: the same grammar.
        interpolation: ``--interpolation``.
        crop_mode: ``--crop-mode``.

    Returns:
        The layer (``origin="flags"``).

    Raises:
        LncliError: a size below 1, an unknown interpolation or crop mode, a bad mean or std.
    """
    for flag, value in (("--image-size", image_size), ("--resize", resize)):
        if value is not None and value < 1:
            raise LncliError(f"{flag} must be >= 1, got {value}")
    for flag, name, valid in (
        ("--interpolation", interpolation, INTERPOLATIONS),
        ("--crop-mode", crop_mode, CROP_MODES),
    ):
        if name is not None and name not in valid:
            raise LncliError(f"unknown {flag} {name!r}{close_names(name, valid)}; valid: {', '.join(valid)}")
    pm, ps = parse_stats(mean, "--mean"), parse_stats(std, "--std")
    # A preset names a pair: it also sets the other flag when that one is not given.
    m, s = _stats_value(pm, ps, 0), _stats_value(ps, pm, 1)
    if s is not None and any(v <= 0 for v in s):
        raise LncliError(f"--std must be > 0, got {std!r}")
    size = None if image_size is None else (image_size, image_size)
    return PreprocessLayer(size, resize, m, s, interpolation, crop_mode, "flags")


def timm_layer(arch: str) -> PreprocessLayer | None:
    """timm's preprocessing for a ``timm:NAME`` arch, from its pretrained config (nothing is downloaded).

    Args:
        arch: the arch string; anything not starting with ``timm:`` gives None.

    Returns:
        The layer (:func:`timm_config_layer`), or None (not a timm arch, or a name timm has no
        pretrained config for).

    Raises:
        LncliError: timm is not installed (``pip install lncli[timm]``).
    """
    if not arch.startswith("timm:"):
        return None
    try:
        import timm.data
        import timm.models
    except ImportError:
        raise LncliError(f"{arch} needs timm: pip install 'lncli[timm]'") from None
    name = arch.removeprefix("timm:")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    return timm_config_layer(timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict()), name)


def timm_config_layer(conf: dict[str, Any], source: str = "") -> PreprocessLayer:
    """The layer of a resolved timm data config (``timm.data.resolve_data_config``'s dict).

    It gives the input size, interpolation, mean, std, ``crop_mode`` and ``crop_pct``; the resize
    is timm's ``floor(size / crop_pct)`` of the short side (timm's default ``crop_pct`` 0.875 when
    the config has none, as ``transforms_imagenet_eval``). timm's rarer interpolations
    (``lanczos``, ``random``) are not offered here and read as bilinear; no pretrained config uses them.

    Args:
        conf: the resolved config.
        source: the model it is for (notes name it).

    Returns:
        The layer (``origin="timm"``).
    """
    from timm.data import DEFAULT_CROP_PCT

    _, h, w = (int(v) for v in conf["input_size"])
    interpolation = str(conf.get("interpolation", DEFAULT_INTERPOLATION))
    if interpolation not in INTERPOLATIONS:
        interpolation = DEFAULT_INTERPOLATION
    crop_mode = str(conf.get("crop_mode") or DEFAULT_CROP_MODE)
    crop_pct = float(conf.get("crop_pct") or DEFAULT_CROP_PCT)
    return PreprocessLayer(
        (h, w),
        math.floor(min(h, w) / crop_pct),
        tuple(float(v) for v in conf["mean"]),
        tuple(float(v) for v in conf["std"]),
        interpolation,
        crop_mode if crop_mode in CROP_MODES else DEFAULT_CROP_MODE,
        "timm",
        source,
    )


def as_channels(values: tuple[float, ...], channels: int, what: str) -> tuple[float, ...]:
    """Per-channel constants for ``channels`` channels: one value repeats; three become their luma for one.

    Raises:
        DataError: any other count.
    """
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    if len(values) == 3 and channels == 1:
        return (sum(w * v for w, v in zip(LUMA, values)),)
    raise DataError(f"{what} has {len(values)} values for {channels}-channel images")


def resolve_preprocess(layers: Sequence[PreprocessLayer], channels: int) -> ResolvedPreprocess:
    """Each field from the first layer that says it (see the module docstring), checked.

    Args:
        layers: highest first; the last should say everything (:data:`IMAGENET`).
        channels: the model's input channels (mean and std get one value each).

    Returns:
        Every field, with who said it.

    Raises:
        DataError: nothing says a field, or constants for another channel count.
    """

    def first(field: str, upto: int | None = None) -> int:
        """Index of the first layer (up to ``upto``) that says ``field``; -1 for none."""
        stop = len(layers) if upto is None else upto + 1
        return next((i for i, layer in enumerate(layers[:stop]) if getattr(layer, field) is not None), -1)

    at = {name: first(name) for name in FIELD_FLAGS if name != "resize"}
    if min(at.values()) < 0:
        missing = ", ".join(name for name, i in at.items() if i < 0)
        raise DataError(f"no preprocessing layer says the {missing}")
    at["resize"] = first("resize", upto=at["image_size"])  # -1: the crop's short side
    said: dict[str, Any] = {name: getattr(layers[i], name) for name, i in at.items() if i >= 0}
    h, w = said["image_size"]
    sizer = layers[at["image_size"]]
    origins = tuple(
        (
            name,
            Origin(layers[at[name]].origin, layers[at[name]].source) if at[name] >= 0 else Origin("crop", sizer.source),
        )
        for name in FIELD_FLAGS
    )
    return ResolvedPreprocess(
        (int(h), int(w)),
        int(said.get("resize") or min(h, w)),
        as_channels(said["mean"], channels, "the mean"),
        as_channels(said["std"], channels, "the std"),
        str(said["interpolation"]),
        str(said["crop_mode"]),
        origins,
    )


def apply_preprocess(meta: DataMeta, resolved: ResolvedPreprocess) -> DataMeta:
    """``meta`` (a model's: its classes and channels) with a resolved preprocessing.

    Args:
        meta: the model's data meta.
        resolved: from :func:`resolve_preprocess`.

    Returns:
        The meta with ``image_size``, ``resize``, ``mean``, ``std``, ``interpolation`` and ``crop_mode`` replaced.
    """
    return replace(
        meta,
        image_size=resolved.image_size,
        resize=resolved.resize,
        mean=resolved.mean,
        std=resolved.std,
        interpolation=resolved.interpolation,
        crop_mode=resolved.crop_mode,
    )


def _constants(values: tuple[float, ...]) -> str:
    """Per-channel constants for a note: one value when every channel has it, 4 decimals."""
    return ",".join(f"{v:.4f}" for v in (values[:1] if len(set(values)) == 1 else values))


def unrecorded_note(name: str, resolved: ResolvedPreprocess, *, as_stored: bool) -> str | None:
    """The note for a model whose file records no preprocessing: what was used instead, and who said it.

    Args:
        name: the checkpoint's file name.
        resolved: its resolved preprocessing.
        as_stored: the data are arrays; when the dataset says their size and nothing asks for a
            resize, they are read as stored and the size, resize, interpolation and crop mode are
            no choice (unsaid).

    Returns:
        One line, e.g. ``model.pt has no recorded preprocessing: mean 0.2860, std 0.3530 from fashion-mnist
        (pass --mean/--std to change)``; None when the flags said every field it would name.
    """
    geometry = ("image_size", "resize", "interpolation", "crop_mode")
    stored = (
        as_stored
        and resolved.origin_of("image_size").kind == "dataset"
        and resolved.origin_of("resize").kind in ("dataset", "crop")
    )
    shown = [f for f, o in resolved.origins if o.kind != "flags" and not (stored and f in geometry)]
    if not shown:
        return None
    values = {
        "image_size": "crop " + "x".join(map(str, resolved.image_size)),
        "resize": f"resize {resolved.resize}",
        "interpolation": f"interpolation {resolved.interpolation}",
        "crop_mode": f"crop mode {resolved.crop_mode}",
        "mean": f"mean {_constants(resolved.mean)}",
        "std": f"std {_constants(resolved.std)}",
    }
    by_origin: dict[str, list[str]] = {}
    for f in shown:
        o = resolved.origin_of(f)
        who = resolved.origin_of("image_size") if o.kind == "crop" else o
        by_origin.setdefault(str(who), []).append(values[f])
    said = "; ".join(f"{', '.join(parts)} from {who}" for who, parts in by_origin.items())
    flags = "/".join(FIELD_FLAGS[f] for f in shown)
    return f"{name} has no recorded preprocessing: {said} (pass {flags} to change)"


def needs_transform(shape: Sequence[int], meta: DataMeta) -> bool:
    """Whether images stored as (C, H, W) ``shape`` must be converted to be ``meta``'s input."""
    c, h, w = (int(v) for v in shape)
    return (c, h, w) != (meta.in_channels, *meta.image_size) or min(h, w) != meta.resize_to


def to_input(images: Tensor, meta: DataMeta) -> Tensor:
    """uint8 (B, C, H, W) as ``meta``'s input: its channels, resized and cropped (as image files are read).

    Args:
        images: uint8 (B, C, H, W) on any device.
        meta: the model's (resolved) data meta.

    Returns:
        uint8 (B, meta.in_channels, *meta.image_size); the input itself when nothing changes.
    """
    if not needs_transform(images.shape[1:], meta):
        return images
    x = convert_channels(images, meta.in_channels)  # (B, C', H, W)
    return resize_crop(x, meta.image_size, meta.resize_to, meta.interpolation, meta.crop_mode, meta.fill)
