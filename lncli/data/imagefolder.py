"""Image folders in torchvision's ``ImageFolder`` layout: listed, limited per class, checked, decoded.

``PATH/<class>/<image>`` (files found recursively under each class folder), or
``PATH/<split>/<class>/<image>`` when ``PATH/train``, ``PATH/test`` or ``PATH/val`` exist. Class
indices follow the sorted folder names, as torchvision's ``ImageFolder`` (and so every model
trained through it) numbers them, and the files of a class come in ``ImageFolder``'s order
(its folders walked in sorted order, each folder's files sorted). Only files with torchvision's
image suffixes (:data:`lncli.images.IMAGE_SUFFIXES`, no ``.gif``) count: anything else
(``.DS_Store``, notes) is ignored, as torchvision does. So a folder holds the images, in the
order, that ``torchvision.datasets.ImageFolder`` lists, decoded as it decodes them
(:mod:`lncli.images`).

:func:`list_image_folder` only lists (no image is opened); :func:`stratified_subset` is what
``--limit`` keeps (:func:`subset_note` says what it kept); :func:`check_headers` opens every header (the cheap up-front check of a
sweep); :func:`load_imagefolder` decodes a whole folder into memory (training, ``corrupt``).
Evaluation streams the files instead (:mod:`lncli.jobs.evaluate.sources`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lncli.data._common import check_limit, check_split
from lncli.data.meta import DEFAULT_INTERPOLATION, IMAGENET_MEAN, IMAGENET_STD, DataMeta, ImageSet
from lncli.errors import DataError, LncliError
from lncli.images import GRAY_MODES, IMAGE_SUFFIXES, check_image_header, decode_image, is_image_file

__all__ = [
    "FolderListing",
    "check_headers",
    "folder_channels",
    "list_class_files",
    "list_image_folder",
    "load_imagefolder",
    "stratified_subset",
    "subset_note",
]

_NAMED = 10
"""Up to this many classes, :func:`subset_note` names each class's count."""

_PEEK = 32
"""How many files (spread over the folder) :func:`folder_channels` looks at."""


@dataclass(frozen=True)
class FolderListing:
    """The images of a folder dataset, in index order (class by class, files sorted within a class).

    Attributes:
        root: the folder whose subfolders are the classes.
        classes: the class folder names, sorted: index = label.
        files: every image file, in index order.
        targets: each file's label.
        skipped: one-line reasons for the unreadable files left out (``--skip-unreadable``).
    """

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    targets: tuple[int, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, keep: Sequence[int], skipped: Sequence[str] = ()) -> FolderListing:
        """The listing of the files at positions ``keep`` (in that order), with more skipped files noted."""
        return FolderListing(
            self.root,
            self.classes,
            tuple(self.files[i] for i in keep),
            tuple(self.targets[i] for i in keep),
            (*self.skipped, *skipped),
        )


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` in ``ImageFolder``'s order: ``sorted(os.walk(...))`` (links followed), each
    folder's file names sorted (torchvision's ``make_dataset``)."""
    found: list[Path] = []
    for dirpath, _, names in sorted(os.walk(folder, followlinks=True)):
        found.extend(Path(dirpath) / n for n in sorted(names) if is_image_file(n))
    return found


def list_class_files(folder: Path, what: str) -> FolderListing:
    """List ``folder/<class>/<image>``: sorted class folders, their image files sorted.

    Args:
        folder: the folder holding one subfolder per class.
        what: how errors name the folder (``imagefolder PATH``).

    Returns:
        The listing (nothing is opened).

    Raises:
        DataError: not a folder, no class folders, or a class folder without images.
    """
    if not folder.is_dir():
        raise DataError(f"{what} is not a folder")
    try:
        classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    except OSError as exc:
        raise DataError(f"{what}: cannot list it ({exc.strerror or exc})") from None
    if not classes:
        raise DataError(f"{what} has no class folders; expected {folder}/<class>/<image>")
    files: list[Path] = []
    targets: list[int] = []
    empty: list[str] = []
    for k, name in enumerate(classes):
        found = _image_files(folder / name)
        if not found:
            empty.append(name)
        files.extend(found)
        targets.extend([k] * len(found))
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(
            f"{what}: class folder(s) {shown} hold no image files ({', '.join(IMAGE_SUFFIXES)}); "
            "every class needs at least one image"
        )
    return FolderListing(folder, tuple(classes), tuple(files), tuple(targets))


def list_image_folder(root: Path, split: str = "test") -> FolderListing:
    """List an image folder dataset's split (see the module docstring for the layout).

    Args:
        root: ``PATH`` of ``imagefolder:PATH``.
        split: ``"train"`` or ``"test"`` (``test`` reads ``PATH/test`` or ``PATH/val`` when there).

    Returns:
        The listing.

    Raises:
        DataError: a missing or empty folder, a class folder without images.
    """
    check_split(split, "imagefolder")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a folder")
    folder = root
    for sub in (split, "val") if split == "test" else (split,):
        if (root / sub).is_dir():
            folder = root / sub
            break
    return list_class_files(folder, f"imagefolder {folder}")


def stratified_subset(targets: Sequence[int], limit: int | None) -> list[int]:
    """The positions ``--limit`` keeps: proportional to each class's size, at least one per class.

    Each class k of n_k files gets ``floor(limit * n_k / N)`` of its first files (at least 1
    while ``limit`` allows, taken back from the largest classes), and what is left goes, one
    each, to the classes furthest below their share (ties: lower class first). So no class gets
    more than its share rounded up (or 1), deterministic, and every class is kept when
    ``limit`` >= the number of classes.

    Args:
        targets: each position's class, grouped by class (a :class:`FolderListing`'s order).
        limit: how many to keep (None: all).

    Returns:
        The kept positions, ascending.

    Raises:
        DataError: a negative limit.
    """
    check_limit(limit)
    n = len(targets)
    if limit is None or limit >= n:
        return list(range(n))
    counts = np.bincount(np.asarray(targets, dtype=np.int64))
    present = np.flatnonzero(counts)
    share = limit * counts[present] / n
    quota = np.floor(share).astype(np.int64)
    if limit >= len(present):
        quota = np.maximum(quota, 1)
    while quota.sum() > limit:  # the floor of one per class may overshoot: take from the largest
        quota[int(np.argmax(quota))] -= 1
    leftover = limit - int(quota.sum())
    # What is left goes to the classes furthest below their share (a class lifted to one is above it).
    order = sorted(range(len(present)), key=lambda i: (-(share[i] - quota[i]), i))
    for i in order[:leftover]:
        quota[i] += 1
    taken = dict(zip(present.tolist(), quota.tolist()))
    seen: dict[int, int] = {}
    keep = []
    for pos, t in enumerate(targets):
        seen[t] = seen.get(t, 0) + 1
        if seen[t] <= taken.get(t, 0):
            keep.append(pos)
    return keep


def subset_note(listing: FolderListing, total: int, limit: int) -> str:
    """What ``--limit`` kept of a folder, in one line (compact for many classes).

    Args:
        listing: the kept files (:func:`stratified_subset` of the whole listing).
        total: how many files the whole listing held.
        limit: the ``--limit`` asked for.

    Returns:
        e.g. ``--limit 20 kept 20 of 300 images, stratified by class: 2 of each of the 10 classes``.
    """
    counts = np.bincount(np.asarray(listing.targets, dtype=np.int64), minlength=len(listing.classes))
    lo, hi, k = int(counts.min()), int(counts.max()), len(listing.classes)
    if lo == hi:
        detail = f"{lo} of each of the {k} classes"
    elif k <= _NAMED:
        detail = ", ".join(f"{name} {int(n)}" for name, n in zip(listing.classes, counts))
    else:
        none = int((counts == 0).sum())
        detail = f"{lo}-{hi} per class over {k} classes" + (f" ({none} kept none)" if none else "")
    return f"--limit {limit} kept {len(listing):,} of {total:,} images, stratified by class: {detail}"


def check_headers(files: Sequence[Path], threads: int = 4) -> list[tuple[int, str]]:
    """Open every file's image header (no pixels decoded), a few threads at a time.

    Args:
        files: the image files.
        threads: how many headers are opened at once (opening is I/O bound).

    Returns:
        ``(position, one-line reason)`` of each file that is not a readable image, in order.
    """
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="lncli-headers") as pool:
        reasons = list(pool.map(check_image_header, files, chunksize=256))
    return [(i, r) for i, r in enumerate(reasons) if r is not None]


def folder_channels(files: Sequence[Path]) -> int:
    """1 when every one of up to 32 files spread over ``files`` is stored grayscale, else 3 (headers only)."""
    from PIL import Image

    if not files:
        return 3
    picks = sorted(set(np.linspace(0, len(files) - 1, num=min(_PEEK, len(files))).round().astype(int).tolist()))
    for i in picks:
        try:
            with Image.open(files[i]) as im:
                if im.mode not in GRAY_MODES:
                    return 3
        except (OSError, SyntaxError, ValueError):
            continue  # an unreadable file says nothing about the rest; the sweep's own check names it
    return 1


def load_imagefolder(root: Path, split: str, *, limit: int | None, image_size: int) -> ImageSet:
    """Decode a whole image folder split into memory (training and ``lncli corrupt``; evaluation streams).

    Each image is read as RGB, resized so that its short side is ``image_size`` and
    centre-cropped to ``image_size`` x ``image_size`` (:func:`lncli.images.decode_image`).

    Args:
        root: ``PATH`` of ``imagefolder:PATH``.
        split: ``"train"`` or ``"test"``.
        limit: keep :func:`stratified_subset` of the files.
        image_size: side of the square crop.

    Returns:
        The images, normalised later with the ImageNet mean/std (the meta's).

    Raises:
        DataError: a bad folder or an unreadable image (named).
    """
    listing = list_image_folder(root, split)
    listing = listing.subset(stratified_subset(listing.targets, limit))
    size = (image_size, image_size)
    images = torch.empty((len(listing), 3, *size), dtype=torch.uint8)
    for i, path in enumerate(listing.files):
        try:
            images[i] = decode_image(
                path, channels=3, image_size=size, resize=image_size, interpolation=DEFAULT_INTERPOLATION
            )
        except LncliError as exc:
            raise DataError(str(exc)) from None
    labels = torch.tensor(listing.targets, dtype=torch.int64)
    meta = DataMeta("imagefolder", len(listing.classes), 3, size, IMAGENET_MEAN, IMAGENET_STD, listing.classes)
    return ImageSet(images, labels, meta)
