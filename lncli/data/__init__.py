"""Datasets: in-memory splits, image folders and corruption releases, with what a model knows about them.

Every loader returns an :class:`ImageSet`: ``images`` uint8 (N, C, H, W) on the CPU,
``labels`` int64 (N,), and a :class:`DataMeta` that carries the class names, the input
shape, the preprocessing and the per-channel mean/std (on [0, 1] pixels). The meta travels
into checkpoints (as plain types, for ``weights_only`` loading), so evaluation reads and
normalises images exactly as training did (:func:`normalize`).

A spec (``--data``) is parsed once, by :class:`DataSpec` (:mod:`.spec`). Sources
(``load_dataset(spec, split)``), one module each:

- ``fashion-mnist`` (:mod:`.fashion_mnist`): the raw idx files, searched in ``data_dir``,
  ``$LNCLI_DATA``, the user cache, Debian's ``/usr/share/datasets/fashion-mnist``; or downloaded.
- ``cifar10`` (:mod:`.cifar`): torchvision's ``cifar-10-batches-py`` folder, read without unpickling code.
- ``imagefolder:PATH`` (:mod:`.imagefolder`): torchvision's ``ImageFolder`` layout, decoded whole
  (training, ``corrupt``); ``lncli evaluate`` streams it instead.
- ``synthetic`` / ``synthetic-gray`` (:mod:`.synthetic`): generated shapes and textures.

Corruption releases (:mod:`.releases`): ``cifar10c:DIR`` arrays (CIFAR-10-C, CIFAR-100-C and
``lncli corrupt --format npy`` output) and ``imagenetc:DIR`` folders (ImageNet-C, Tiny-ImageNet-C).
How images become a model's input, and who says so: :mod:`.preprocess`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lncli.data._common import cache_dir, check_split
from lncli.data.cifar import load_cifar10
from lncli.data.fashion_mnist import SYSTEM_FASHION_MNIST_DIRS, load_fashion_mnist
from lncli.data.imagefolder import folder_channels, list_image_folder, load_imagefolder
from lncli.data.meta import (
    CIFAR10_CLASSES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    SYNTHETIC_CLASSES,
    DataMeta,
    ImageSet,
    normalize,
)
from lncli.data.preprocess import IMAGENET, as_channels, resolve_preprocess
from lncli.data.releases import (
    CIFAR10C_LABELS,
    cifar10c_filename,
    list_imagenetc,
    load_cifar10c,
    open_npy_release,
)
from lncli.data.spec import DATA_FORMS, DataSpec, named_dataset
from lncli.data.synthetic import SYNTHETIC_SIZES, generate_synthetic, load_synthetic
from lncli.errors import DataError

__all__ = [
    "CIFAR10C_LABELS",
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATA_FORMS",
    "FASHION_MNIST_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SIZES",
    "SYSTEM_FASHION_MNIST_DIRS",
    "DataMeta",
    "DataSpec",
    "ImageSet",
    "cache_dir",
    "cifar10c_filename",
    "dataset_meta",
    "generate_synthetic",
    "list_datasets",
    "load_cifar10c",
    "load_dataset",
    "named_dataset",
    "normalize",
]


def list_datasets() -> list[str]:
    """Return the dataset specs :func:`load_dataset` accepts.

    Returns:
        The names of :data:`DATASETS` plus ``"imagefolder:PATH"``.
    """
    return [*DATASETS, "imagefolder:PATH"]


def load_dataset(
    spec: str | DataSpec,
    split: str = "test",
    *,
    data_dir: Path | None = None,
    download: bool = False,
    limit: int | None = None,
    image_size: int | None = None,
) -> ImageSet:
    """Load a whole dataset split into memory.

    Args:
        spec: ``"fashion-mnist"``, ``"cifar10"``, ``"synthetic"``, ``"synthetic-gray"``
            or ``"imagefolder:PATH"`` (text or a parsed :class:`DataSpec`).
        split: ``"train"`` or ``"test"``.
        data_dir: first folder to search (``--data-dir``).
        download: allow a torchvision download (fashion-mnist, cifar10) when nothing is found.
        limit: keep only the first ``limit`` samples (imagefolder: every class kept,
            :func:`~lncli.data.imagefolder.stratified_subset`).
        image_size: imagefolder only: side of the square crop (default 224).

    Returns:
        The :class:`ImageSet`.

    Raises:
        DataError: unknown spec or split, a corruption release (``cifar10c:``, ``imagenetc:``:
            ``lncli evaluate`` reads those), missing or corrupt files (the message says what was
            tried and how to fix it).
    """
    data = DataSpec.parse(spec)
    if data.kind == "imagefolder":
        return load_imagefolder(data.folder, split, limit=limit, image_size=image_size or 224)
    if image_size is not None:
        raise DataError(f"image_size applies to imagefolder only, not {data.text!r}")
    if data.kind != "dataset":
        raise DataError(f"{data.text!r} is a corruption release, not a dataset; valid: {', '.join(list_datasets())}")
    name = data.name
    check_split(split, name)
    if name.startswith("synthetic"):
        return load_synthetic(name, split, limit=limit)
    loader = load_fashion_mnist if name == "fashion-mnist" else load_cifar10
    return loader(split, data_dir=data_dir, download=download, limit=limit)


def dataset_meta(
    spec: str | DataSpec, *, data_dir: Path | None = None, download: bool = False, channels: int | None = None
) -> DataMeta:
    """What a dataset tells a model (classes, channels, input size, normalisation), without its images.

    Used where a model must be built for data before the images are read: a foreign
    checkpoint (a bare state_dict) evaluated on ``--data SPEC``. Image folders and
    ImageNet-C-style releases get ImageNet's preprocessing (:data:`~lncli.data.preprocess.IMAGENET`)
    and the channels of their files (1 when the files looked at are all grayscale, else 3);
    CIFAR-10-C-style arrays their own size and channels; a named dataset its registered meta
    (its files are read once, so that a missing dataset fails here).

    Args:
        spec: a :func:`load_dataset` spec, ``cifar10c:DIR`` or ``imagenetc:DIR`` (text or parsed).
        data_dir: first folder to search (named datasets).
        download: allow a torchvision download when nothing is found (named datasets).
        channels: ``--channels``: 1 or 3 instead of what the data says (the constants follow:
            :func:`~lncli.data.preprocess.as_channels`).

    Returns:
        The dataset's :class:`DataMeta`.

    Raises:
        DataError: unknown spec, a missing or malformed dataset, folder or release.
    """
    if channels is not None and channels not in (1, 3):
        raise DataError(f"--channels must be 1 or 3, got {channels}")
    data = DataSpec.parse(spec)
    if data.reads_image_files:
        folder = data.folder
        listing = list_image_folder(folder) if data.kind == "imagefolder" else list_imagenetc(folder).reference
        c = channels or folder_channels(listing.files)
        imagenet = resolve_preprocess([IMAGENET], c)  # ImageNet's, its constants for c channels
        return DataMeta(
            name=data.kind,
            num_classes=len(listing.classes),
            in_channels=c,
            image_size=imagenet.image_size,
            mean=imagenet.mean,
            std=imagenet.std,
            classes=listing.classes,
            resize=imagenet.resize,
        )
    if data.kind == "cifar10c":
        meta = open_npy_release(data.folder).meta()
    else:
        meta = load_dataset(data, "test", data_dir=data_dir, download=download, limit=1).meta
    if channels is None or channels == meta.in_channels:
        return meta
    return replace(
        meta,
        in_channels=channels,
        mean=as_channels(meta.mean, channels, "the mean"),
        std=as_channels(meta.std, channels, "the std"),
    )
