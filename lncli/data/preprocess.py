"""How images become a model's input, and who says so: the preprocessing resolver.

Preprocessing is data about the model: the centre crop's size (``image_size``), the short
side resized to before it (``resize``), the ``interpolation``, and the per-channel ``mean``
and ``std`` of [0, 1] pixels. Several places may say what they are; each field takes the
first of these that says it (:func:`resolve_preprocess`), highest first:

1. the command line's flags (:func:`parse_flags`);
2. the checkpoint's recorded preprocessing (its :class:`~lncli.data.meta.DataMeta`; not for a
   foreign state_dict, whose meta was made up from ``--data``:
   :func:`lncli.jobs.evaluate.testset.has_recorded_preprocessing`);
3. a named dataset's own (fashion-mnist, cifar10, ..., and a CIFAR-10-C release's arrays:
   their size as stored);
4. timm's config for ``timm:`` archs (``timm.data.resolve_data_config`` on the arch's
   pretrained config; nothing is downloaded: :func:`timm_layer`);
5. ImageNet's (:data:`IMAGENET`: resize 256, crop 224, bilinear, ImageNet mean/std).

``resize`` goes with ``image_size``: it is taken from the layer that gave ``image_size`` or a
higher one (so ``--image-size 160`` alone crops 160 of a 160 resize, not of timm's 235); when
none says it, the crop's short side. A preset name for ``--mean`` (``imagenet``, ``cifar10``,
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

from torch import Tensor

from lncli.config.common import INTERPOLATIONS, NORMALIZATION_PRESETS
from lncli.data.meta import DATASETS, DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD, DataMeta
from lncli.errors import DataError, LncliError
from lncli.images import convert_channels, resize_crop

__all__ = [
    "IMAGENET",
    "LUMA",
    "PRESETS",
    "Preprocess",
    "apply_preprocess",
    "as_channels",
    "needs_transform",
    "parse_flags",
    "resolve_preprocess",
    "timm_layer",
    "to_input",
]

PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": (DATASETS["cifar10"].mean, DATASETS["cifar10"].std),
    "none": ((0.0,), (1.0,)),
}
"""The (mean, std) of each :data:`~lncli.config.common.NORMALIZATION_PRESETS` name."""

LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights (Pillow's ``convert("L")``): how three-channel constants become one."""


@dataclass(frozen=True)
class Preprocess:
    """One layer's say on preprocessing; None = this layer does not say.

    Attributes:
        image_size: (H, W) of the centre crop.
        resize: the short side before the crop.
        mean: per-channel mean of [0, 1] pixels (one value: every channel).
        std: per-channel standard deviation.
        interpolation: the resize's (:data:`~lncli.config.common.INTERPOLATIONS`).
        origin: who says it (``flags``, ``checkpoint``, ``dataset``, ``timm``, ``imagenet``).
    """

    image_size: tuple[int, int] | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    origin: str = ""

    @classmethod
    def of_meta(cls, meta: DataMeta, origin: str) -> Preprocess:
        """Everything a :class:`DataMeta` says (a checkpoint's recorded preprocessing, a dataset's own)."""
        return cls(meta.image_size, meta.resize, meta.mean, meta.std, meta.interpolation, origin)


IMAGENET = Preprocess((224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, DEFAULT_INTERPOLATION, "imagenet")
"""The last layer: torchvision's ImageNet evaluation (resize 256, centre crop 224, bilinear)."""


def _parse_stats(text: str | None, flag: str) -> tuple[float, ...] | str | None:
    """A preset name, or a comma list of numbers; None when not given."""
    if text is None:
        return None
    name = text.strip().lower()
    if name in PRESETS:
        return name
    try:
        values = tuple(float(v) for v in name.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
        raise LncliError(
            f"{flag} {text!r} is not 1 or 3 comma-separated numbers nor one of {', '.join(NORMALIZATION_PRESETS)}"
        )
    return values


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
) -> Preprocess:
    """The flags' layer, checked (one line per bad value).

    Args:
        image_size: ``--image-size``: side of the square crop.
        resize: ``--resize``: the short side before the crop.
        mean: ``--mean``: numbers (``0.5`` or ``0.485,0.456,0.406``) or a preset name.
        std: ``--std``: the same grammar.
        interpolation: ``--interpolation``.

    Returns:
        The layer (``origin="flags"``).

    Raises:
        LncliError: a size below 1, an unknown interpolation, a bad mean or std.
    """
    for flag, value in (("--image-size", image_size), ("--resize", resize)):
        if value is not None and value < 1:
            raise LncliError(f"{flag} must be >= 1, got {value}")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise LncliError(f"unknown --interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
    pm, ps = _parse_stats(mean, "--mean"), _parse_stats(std, "--std")
    # A preset names a pair: it also sets the other flag when that one is not given.
    m, s = _stats_value(pm, ps, 0), _stats_value(ps, pm, 1)
    if s is not None and any(v <= 0 for v in s):
        raise LncliError(f"--std must be > 0, got {std!r}")
    size = None if image_size is None else (image_size, image_size)
    return Preprocess(size, resize, m, s, interpolation, "flags")


def timm_layer(arch: str) -> Preprocess | None:
    """timm's preprocessing for a ``timm:NAME`` arch, from its pretrained config (nothing is downloaded).

    ``timm.data.resolve_data_config`` gives the input size, interpolation, mean, std and
    ``crop_pct``; the resize is timm's ``floor(size / crop_pct)``.

    Args:
        arch: the arch string; anything not starting with ``timm:`` gives None.

    Returns:
        The layer, or None (not a timm arch, or a name timm has no pretrained config for).

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
    cfg = timm.models.get_pretrained_cfg(arch.removeprefix("timm:"))
    if cfg is None:
        return None
    conf = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    _, h, w = (int(v) for v in conf["input_size"])
    interpolation = str(conf.get("interpolation", DEFAULT_INTERPOLATION))
    if interpolation not in INTERPOLATIONS:
        interpolation = DEFAULT_INTERPOLATION  # timm's rarer ones (lanczos, random) are not offered here
    crop_pct = float(conf.get("crop_pct") or 1.0)
    return Preprocess(
        (h, w),
        math.floor(min(h, w) / crop_pct),
        tuple(float(v) for v in conf["mean"]),
        tuple(float(v) for v in conf["std"]),
        interpolation,
        "timm",
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


def resolve_preprocess(layers: Sequence[Preprocess], channels: int) -> Preprocess:
    """Each field from the first layer that says it (see the module docstring), checked.

    Args:
        layers: highest first; the last should say everything (:data:`IMAGENET`).
        channels: the model's input channels (mean and std get one value each).

    Returns:
        A complete layer; its ``origin`` lists, per field, who said it.

    Raises:
        DataError: nothing says a field, a resize below the crop, or constants for another channel count.
    """

    def first(field: str, upto: int | None = None) -> int:
        """Index of the first layer (up to ``upto``) that says ``field``; -1 for none."""
        stop = len(layers) if upto is None else upto + 1
        return next((i for i, layer in enumerate(layers[:stop]) if getattr(layer, field) is not None), -1)

    at_size, at_mean, at_std, at_interp = first("image_size"), first("mean"), first("std"), first("interpolation")
    if min(at_size, at_mean, at_std, at_interp) < 0:
        raise DataError("no preprocessing layer says the image size, mean, std and interpolation")
    at_resize = first("resize", upto=at_size)
    size, mean, std = layers[at_size].image_size, layers[at_mean].mean, layers[at_std].std
    assert size is not None and mean is not None and std is not None  # found above
    h, w = size
    resize_to = layers[at_resize].resize if at_resize >= 0 else None
    resize_to = min(h, w) if resize_to is None else int(resize_to)
    if resize_to < max(h, w):
        raise DataError(f"resize {resize_to} is smaller than the {h}x{w} crop; pass a larger --resize")
    origin = ",".join(
        f"{field}={layers[i].origin if i >= 0 else 'crop'}"
        for field, i in (("image_size", at_size), ("resize", at_resize), ("mean", at_mean), ("std", at_std))
    )
    return Preprocess(
        (int(h), int(w)),
        resize_to,
        as_channels(mean, channels, "the mean"),
        as_channels(std, channels, "the std"),
        str(layers[at_interp].interpolation),
        f"{origin},interpolation={layers[at_interp].origin}",
    )


def apply_preprocess(meta: DataMeta, resolved: Preprocess) -> DataMeta:
    """``meta`` (a model's: its classes and channels) with a resolved preprocessing.

    Args:
        meta: the model's data meta.
        resolved: from :func:`resolve_preprocess`.

    Returns:
        The meta with ``image_size``, ``resize``, ``mean``, ``std`` and ``interpolation`` replaced.
    """
    assert resolved.image_size is not None and resolved.mean is not None and resolved.std is not None
    return replace(
        meta,
        image_size=resolved.image_size,
        resize=resolved.resize,
        mean=resolved.mean,
        std=resolved.std,
        interpolation=resolved.interpolation or DEFAULT_INTERPOLATION,
    )


def needs_transform(shape: Sequence[int], meta: DataMeta) -> bool:
    """Whether images stored as (C, H, W) ``shape`` must be converted to be ``meta``'s input."""
    c, h, w = (int(v) for v in shape)
    return (c, h, w) != (meta.in_channels, *meta.image_size) or min(h, w) != meta.resize_to


def to_input(images: Tensor, meta: DataMeta) -> Tensor:
    """uint8 (B, C, H, W) as ``meta``'s input: its channels, resized and centre-cropped (as image files are read).

    Args:
        images: uint8 (B, C, H, W) on any device.
        meta: the model's (resolved) data meta.

    Returns:
        uint8 (B, meta.in_channels, *meta.image_size); the input itself when nothing changes.
    """
    if not needs_transform(images.shape[1:], meta):
        return images
    x = convert_channels(images, meta.in_channels)  # (B, C', H, W)
    return resize_crop(x, meta.image_size, meta.resize_to, meta.interpolation)  # (B, C', *image_size)
