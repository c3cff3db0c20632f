"""What a model knows about its data: :class:`DataMeta` (classes, input shape, preprocessing), the
registered datasets' metas (:data:`DATASETS`), in-memory splits (:class:`ImageSet`) and :func:`normalize`.

The meta travels into checkpoints (as plain types, for ``weights_only`` loading), so evaluation
reads and normalises images exactly as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from lncli.config.common import CROP_MODES, DEFAULT_CROP_MODE, INTERPOLATIONS
from lncli.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DEFAULT_INTERPOLATION",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "SYNTHETIC_CLASSES",
    "DataMeta",
    "ImageSet",
    "normalize",
]

DEFAULT_INTERPOLATION = "bilinear"
"""The resize lncli has always used for image folders (torchvision's ``Resize`` default)."""


@dataclass(frozen=True)
class DataMeta:
    """What a model needs to know about its data: classes, input shape, preprocessing and normalisation.

    Attributes:
        name: dataset name (``"fashion-mnist"``, ``"cifar10"``, ``"synthetic"``, ...).
        num_classes: number of classes.
        in_channels: image channels (1 or 3).
        image_size: (H, W) fed to the model (image files: the centre crop).
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation of [0, 1] pixels.
        classes: class names, index = label.
        synthetic: True for generated data; reports must say so.
        resize: image files: the short side they are resized to before the centre crop;
            None = the crop's short side (no margin is cut off).
        interpolation: the resize's interpolation (:data:`~lncli.config.common.INTERPOLATIONS`).
        crop_mode: how the resized image becomes the crop (:data:`~lncli.config.common.CROP_MODES`,
            timm's ``crop_mode``; :func:`lncli.images.resize_crop`).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    synthetic: bool = False
    resize: int | None = None
    interpolation: str = DEFAULT_INTERPOLATION
    crop_mode: str = DEFAULT_CROP_MODE

    @property
    def resize_to(self) -> int:
        """The short side images are resized to before the centre crop (:attr:`resize`, else the crop's)."""
        return self.resize if self.resize is not None else min(self.image_size)

    @property
    def fill(self) -> tuple[int, ...]:
        """The value per channel a crop larger than the resized image is padded with: timm's rule, the mean
        colour (``round(255 * mean)``) for ``border``, else 0 (torchvision's ``CenterCrop``)."""
        if self.crop_mode == "border":
            return tuple(round(255 * v) for v in self.mean)
        return (0,)

    def to_dict(self) -> dict[str, Any]:
        """Return the meta as plain Python types (lists, not tuples), safe for ``weights_only`` pickles.

        ``resize``, ``interpolation`` and ``crop_mode`` are left out at their defaults, so that
        checkpoints that do not use them keep the bytes they had before the fields existed.
        """
        d = asdict(self)
        for k in ("image_size", "mean", "std", "classes"):
            d[k] = list(d[k])
        if self.resize is None:
            del d["resize"]
        if self.interpolation == DEFAULT_INTERPOLATION:
            del d["interpolation"]
        if self.crop_mode == DEFAULT_CROP_MODE:
            del d["crop_mode"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        """Rebuild a meta from :meth:`to_dict` output; unknown keys are ignored (newer files).

        Args:
            d: a mapping with at least name, num_classes, in_channels, image_size, mean and std.

        Returns:
            The meta.

        Raises:
            DataError: a required key is missing or has the wrong type.
        """
        try:
            h, w = (int(v) for v in d["image_size"])
            resize = d.get("resize")
            interpolation = str(d.get("interpolation", DEFAULT_INTERPOLATION))
            if interpolation not in INTERPOLATIONS:
                raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")
            crop_mode = str(d.get("crop_mode", DEFAULT_CROP_MODE))
            if crop_mode not in CROP_MODES:
                raise ValueError(f"crop_mode {crop_mode!r} is not one of {', '.join(CROP_MODES)}")
            return cls(
                name=str(d["name"]),
                num_classes=int(d["num_classes"]),
                in_channels=int(d["in_channels"]),
                image_size=(h, w),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                classes=tuple(str(c) for c in d.get("classes", ())),
                synthetic=bool(d.get("synthetic", False)),
                resize=None if resize is None else int(resize),
                interpolation=interpolation,
                crop_mode=crop_mode,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"malformed data metadata ({type(exc).__name__}: {exc}); expected DataMeta.to_dict() output"
            ) from None


@dataclass(frozen=True)
class ImageSet:
    """A whole dataset split in memory.

    Attributes:
        images: uint8 (N, C, H, W) on the CPU.
        labels: int64 (N,).
        meta: the dataset's :class:`DataMeta`.
    """

    images: Tensor
    labels: Tensor
    meta: DataMeta

    def __len__(self) -> int:
        return int(self.labels.shape[0])


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SYNTHETIC_CLASSES = (
    "stripes-0", "stripes-45", "stripes-90", "stripes-135", "disk", "ring", "square", "cross", "checkerboard", "triangle",
)  # fmt: skip

# Why these constants: Fashion-MNIST's are the train-set pixel mean/std (computed
# here from the idx files: 0.28604, 0.35302). CIFAR-10's are the LocalNorm authors'
# ResNet constants ([125.307, 122.95, 113.865] / 255, [62.9932, 62.0887, 66.7048] / 255),
# which are the train-set per-channel mean/std. The synthetic ones are measured on
# their train split (tests check them). Image files default to the ImageNet constants,
# as torchvision's pretrained models use.
DATASETS: dict[str, DataMeta] = {
    "fashion-mnist": DataMeta("fashion-mnist", 10, 1, (28, 28), (0.2860406,), (0.3530242,), FASHION_MNIST_CLASSES),
    "cifar10": DataMeta(
        "cifar10",
        10,
        3,
        (32, 32),
        (125.307 / 255, 122.95 / 255, 113.865 / 255),
        (62.9932 / 255, 62.0887 / 255, 66.7048 / 255),
        CIFAR10_CLASSES,
    ),
    "synthetic": DataMeta(
        "synthetic", 10, 3, (32, 32), (0.5065, 0.4996, 0.4989), (0.2973, 0.2939, 0.2943), SYNTHETIC_CLASSES, True
    ),
    "synthetic-gray": DataMeta("synthetic-gray", 10, 1, (28, 28), (0.4962,), (0.3032,), SYNTHETIC_CLASSES, True),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPLITS = ("train", "test")


def normalize(images: Tensor, meta: DataMeta) -> Tensor:
    """Scale to [0, 1] (uint8 input) and standardise per channel: ``(x - mean) / std``.

    Args:
        images: uint8 (N, C, H, W) in [0, 255], or float in [0, 1]; any device.
        meta: the dataset meta holding ``mean`` and ``std`` (length C).

    Returns:
        float32 (N, C, H, W) on the same device. The input is never modified.

    Raises:
        DataError: the channel count does not match the meta.
    """
    if images.dim() != 4 or images.shape[1] != len(meta.mean) or len(meta.mean) != len(meta.std):
        raise DataError(
            f"images of shape {tuple(images.shape)} do not match {meta.name}'s "
            f"{len(meta.mean)}-channel normalisation (expected (N, {len(meta.mean)}, H, W))"
        )
    x = images.to(torch.float32).div_(255.0) if images.dtype == torch.uint8 else images.to(torch.float32)
    mean = torch.tensor(meta.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    std = torch.tensor(meta.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    return (x - mean) / std
