"""Corruption releases on disk: CIFAR-10-C-style ``.npy`` arrays and ImageNet-C-style image folders.

**Arrays** (``cifar10c:DIR``; Hendrycks & Dietterich, ICLR 2019): ``<corruption>.npy`` holds uint8
(5N, H, W, C), C in {1, 3}, with severities 1-5 stacked in order, and ``labels.npy`` (5N,) holds
one block of N labels repeated per severity. The release names its noises ``<noise>_noise.npy``
(:func:`cifar10c_filename`); ``lncli corrupt --format npy`` writes the same layout for any
dataset (Fashion-MNIST: (50000, 28, 28, 1)). ``DIR`` may be the folder holding ``labels.npy`` or
one above it holding ``CIFAR-10-C/`` or ``CIFAR-100-C/`` (RobustBench's layout). Arrays are
memory-mapped (:func:`numpy.load` with ``mmap_mode="r"``): only the rows asked for are read.

**Folders** (``imagenetc:DIR``): ``DIR/<corruption>/<severity>/<class>/<image>``, the released
ImageNet-C and Tiny-ImageNet-C layout (and ``lncli corrupt``'s image output of a class folder).
Every cell folder holds the same class folders and files; classes are numbered in sorted
folder order, as torchvision's ``ImageFolder`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lncli.config.common import MAX_SEVERITY
from lncli.data._common import check_limit
from lncli.data.imagefolder import FolderListing, list_class_files, stratified_subset
from lncli.data.meta import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataMeta, ImageSet
from lncli.data.preprocess import as_channels
from lncli.errors import DataError

__all__ = [
    "CIFAR10C_LABELS",
    "ImageNetCListing",
    "NpyRelease",
    "cifar10c_filename",
    "list_imagenetc",
    "load_cifar10c",
    "open_npy_release",
    "release_name",
]

CIFAR10C_LABELS = "labels.npy"
"""The CIFAR-10-C file holding the (5N,) labels, shared by every corruption's array."""

_SUFFIXED = ("gaussian", "shot", "impulse", "speckle")
"""The release's noise corruptions: their files and folders carry a ``_noise`` suffix."""

RELEASE_CLASSES = {"CIFAR-10-C": 10, "CIFAR-100-C": 100}
"""RobustBench's folder names of the array releases, with their number of classes."""


def release_name(noise: str) -> str:
    """A corruption's name in the releases: ``gaussian`` -> ``gaussian_noise``, ``fog`` -> ``fog``.

    Args:
        noise: a corruption name, with or without the ``_noise`` suffix.

    Returns:
        The release's file stem / folder name.
    """
    base = noise.strip().lower().removesuffix("_noise")
    return f"{base}_noise" if base in _SUFFIXED else base


def cifar10c_filename(noise: str) -> str:
    """The CIFAR-10-C file name of one corruption's (5N, H, W, C) array.

    The release names its noises ``<noise>_noise.npy`` (``gaussian_noise.npy``) and its
    other corruptions ``<name>.npy`` (``contrast.npy``); ``lncli corrupt --format npy``
    writes the same names, so :func:`load_cifar10c` and RobustBench read its output.

    Args:
        noise: a canonical corruption name, without the ``_noise`` suffix.

    Returns:
        The file name, without a folder.
    """
    return f"{release_name(noise)}.npy"


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` memory-mapped, never unpickling, with one-line errors."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@dataclass(frozen=True, eq=False)
class NpyRelease:
    """An opened array release: its folder, labels and image shape, checked.

    Attributes:
        directory: the folder holding ``labels.npy``.
        kind: ``CIFAR-10-C``, ``CIFAR-100-C`` (by folder name, or 32x32 RGB arrays with labels
            below 10 for CIFAR-10-C) or ``""`` (another release, such as ``lncli corrupt``'s).
        labels: (N,) int64, one block (the release repeats it per severity).
        shape: (H, W, C) of every image.
    """

    directory: Path
    kind: str
    labels: np.ndarray
    shape: tuple[int, int, int]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def name(self) -> str:
        """What the records call it: ``cifar10-c``, ``cifar100-c``, or ``npy`` for another release."""
        return {"CIFAR-10-C": "cifar10-c", "CIFAR-100-C": "cifar100-c"}.get(self.kind, "npy")

    @property
    def num_classes(self) -> int:
        """The release's classes: 10 or 100 for the named releases, else the largest label + 1."""
        return RELEASE_CLASSES.get(self.kind, int(self.labels.max(initial=-1)) + 1)

    def array(self, noise: str) -> np.ndarray:
        """One corruption's (5N, H, W, C) uint8 array, memory-mapped and checked against the release.

        Raises:
            DataError: the file is missing, unreadable, or of another shape or dtype.
        """
        path = self.directory / cifar10c_filename(noise)
        if not path.is_file():
            raise DataError(f"{path} not found; the release in {self.directory} has no {release_name(noise)} array")
        arr = _load_npy(path)
        expected = (MAX_SEVERITY * len(self), *self.shape)
        if arr.dtype != np.uint8 or tuple(arr.shape) != expected:
            raise DataError(
                f"{path} is {arr.dtype} {tuple(arr.shape)}; expected uint8 {expected} "
                f"(severities 1-{MAX_SEVERITY} of the {len(self)} images in {CIFAR10C_LABELS})"
            )
        return arr

    def meta(self) -> DataMeta:
        """What the release tells a model: CIFAR-10's meta at the arrays' size for CIFAR-10-C; else
        its classes and shape with ImageNet's constants (luma for one channel)."""
        h, w, c = self.shape
        if self.kind == "CIFAR-10-C" and c == 3:
            return replace(DATASETS["cifar10"], image_size=(h, w))
        mean, std = as_channels(IMAGENET_MEAN, c, "the mean"), as_channels(IMAGENET_STD, c, "the std")
        return DataMeta(self.name, self.num_classes, c, (h, w), mean, std)


def _release_folder(directory: Path) -> tuple[Path, str]:
    """The folder holding ``labels.npy`` (DIR itself, or DIR/CIFAR-10-C or DIR/CIFAR-100-C), and its kind by name."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory of CIFAR-10-C-style .npy files")
    if (directory / CIFAR10C_LABELS).is_file():
        return directory, directory.name if directory.name in RELEASE_CLASSES else ""
    inner = [directory / name for name in RELEASE_CLASSES if (directory / name / CIFAR10C_LABELS).is_file()]
    if len(inner) > 1:
        raise DataError(f"{directory} holds both {' and '.join(p.name for p in inner)}; name one: cifar10c:{inner[-1]}")
    if not inner:
        tried = ", ".join(f"{name}/{CIFAR10C_LABELS}" for name in RELEASE_CLASSES)
        raise DataError(f"{directory} has no {CIFAR10C_LABELS} (nor {tried}); point cifar10c: at the release folder")
    return inner[0], inner[0].name


def open_npy_release(directory: Path) -> NpyRelease:
    """Find and check an array release (see the module docstring); the images are not read.

    The labels must be integers >= 0 whose five blocks are equal, and the first corruption
    array (sorted by name) gives the image shape, which must be (5N, H, W, C) uint8 with C in {1, 3}.

    Args:
        directory: ``DIR`` of ``cifar10c:DIR``.

    Returns:
        The release.

    Raises:
        DataError: a missing folder or file, or arrays of the wrong shape or dtype.
    """
    folder, kind = _release_folder(directory)
    raw = _load_npy(folder / CIFAR10C_LABELS)
    if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer) or len(raw) == 0 or len(raw) % MAX_SEVERITY:
        raise DataError(
            f"{folder / CIFAR10C_LABELS} is {raw.dtype} {tuple(raw.shape)}; expected integer labels (5N,), "
            f"one block of N per severity 1-{MAX_SEVERITY}"
        )
    blocks = np.asarray(raw, dtype=np.int64).reshape(MAX_SEVERITY, -1)  # (5, N)
    if (blocks != blocks[0]).any() or blocks.min() < 0:
        raise DataError(f"{folder / CIFAR10C_LABELS} does not repeat one block of labels >= 0 for each severity")
    arrays = sorted(p for p in folder.glob("*.npy") if p.name != CIFAR10C_LABELS)
    if not arrays:
        raise DataError(f"{folder} holds {CIFAR10C_LABELS} but no corruption array (<corruption>.npy)")
    first = _load_npy(arrays[0])
    if first.dtype != np.uint8 or first.ndim != 4 or first.shape[3] not in (1, 3) or first.shape[0] != len(raw):
        raise DataError(
            f"{arrays[0]} is {first.dtype} {tuple(first.shape)}; expected uint8 ({len(raw)}, H, W, C) with C 1 or 3"
        )
    h, w, c = (int(v) for v in first.shape[1:])
    labels = blocks[0].copy()
    if not kind and (h, w, c) == (32, 32, 3) and labels.max() < 10:
        kind = "CIFAR-10-C"  # the release itself, in a folder of another name
    return NpyRelease(folder, kind, labels, (h, w, c))


def load_cifar10c(directory: Path, noise: str, severity: int, *, limit: int | None = None) -> ImageSet:
    """Read one corruption and severity of an array release into memory.

    Args:
        directory: the release folder (or one holding ``CIFAR-10-C/`` or ``CIFAR-100-C/``).
        noise: the corruption (``gaussian``, ``gaussian_noise``, ``fog``, ...).
        severity: 1..5.
        limit: keep only the first ``limit`` images of that severity.

    Returns:
        An :class:`ImageSet`, uint8 (n, C, H, W), with the release's meta (:meth:`NpyRelease.meta`).

    Raises:
        DataError: a bad severity, missing files or inconsistent shapes.
    """
    if not 1 <= int(severity) <= MAX_SEVERITY:
        raise DataError(f"CIFAR-10-C severity must be 1..{MAX_SEVERITY}, got {severity}")
    check_limit(limit)
    release = open_npy_release(directory)
    data = release.array(noise)
    n = len(release)
    lo = (int(severity) - 1) * n
    hi = lo + (n if limit is None else min(n, limit))
    x = torch.from_numpy(np.array(data[lo:hi], dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()  # (n, C, H, W)
    y = torch.from_numpy(release.labels[: hi - lo].copy())
    return ImageSet(x, y, release.meta())


@dataclass(frozen=True)
class ImageNetCListing:
    """An ImageNet-C-style folder release, listed (no image opened).

    Attributes:
        root: ``DIR`` of ``imagenetc:DIR``.
        corruptions: the corruption folder names found (with at least one severity folder).
        reference: the class structure and files (after ``--limit``) of the first corruption's
            lowest severity; every cell must hold the same files.
        rel: each kept file's path relative to its cell folder, in index order.
        total: how many files the reference holds before ``--limit`` (0: not counted).
    """

    root: Path
    corruptions: tuple[str, ...]
    reference: FolderListing
    rel: tuple[Path, ...]
    total: int = 0

    def __len__(self) -> int:
        return len(self.rel)

    def cell_folder(self, noise: str, severity: int) -> Path:
        """``DIR/<corruption>/<severity>``: the release's name (``gaussian_noise``) or lncli's (``gaussian``).

        Raises:
            DataError: no such folder.
        """
        for name in dict.fromkeys((release_name(noise), noise)):
            folder = self.root / name / str(severity)
            if folder.is_dir():
                return folder
        have = ", ".join(self.corruptions[:8]) + (", ..." if len(self.corruptions) > 8 else "")
        raise DataError(f"{self.root} has no {release_name(noise)}/{severity} folder (corruptions: {have})")

    def cell_files(self, noise: str, severity: int) -> tuple[Path, ...]:
        """The kept files of one cell, in index order, after checking that the cell holds them all.

        Raises:
            DataError: a missing folder, other classes, or a missing file.
        """
        folder = self.cell_folder(noise, severity)
        cell = list_class_files(folder, f"imagenetc cell {folder}")
        if cell.classes != self.reference.classes:
            raise DataError(f"{folder} has other class folders than {self.reference.root}")
        present = {f.relative_to(folder) for f in cell.files}
        missing = [r for r in self.rel if r not in present]
        if missing:
            raise DataError(
                f"{folder} lacks {missing[0]} (and {len(missing) - 1} more); every cell needs the same files"
            )
        return tuple(folder / r for r in self.rel)


def list_imagenetc(root: Path, limit: int | None = None) -> ImageNetCListing:
    """List an ImageNet-C-style release: its corruptions and the reference files (see the module docstring).

    Args:
        root: ``DIR`` of ``imagenetc:DIR``.
        limit: keep :func:`~lncli.data.imagefolder.stratified_subset` of the files (every class).

    Returns:
        The listing.

    Raises:
        DataError: not a folder, no ``<corruption>/<severity>/`` folders, or an empty reference.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagenetc path {root} is not a folder")
    severities = [str(s) for s in range(1, MAX_SEVERITY + 1)]
    corruptions = tuple(
        sorted(e.name for e in os.scandir(root) if e.is_dir() and any((root / e.name / s).is_dir() for s in severities))
    )
    if not corruptions:
        raise DataError(f"imagenetc {root} has no <corruption>/<severity>/ folders (e.g. gaussian_noise/1/<class>/)")
    first = next(root / corruptions[0] / s for s in severities if (root / corruptions[0] / s).is_dir())
    whole = list_class_files(first, f"imagenetc cell {first}")
    listing = whole.subset(stratified_subset(whole.targets, limit))
    return ImageNetCListing(root, corruptions, listing, tuple(f.relative_to(first) for f in listing.files), len(whole))
