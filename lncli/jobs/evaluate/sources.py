"""The image sources a sweep reads its batches from: one interface, one class per kind of data.

An :class:`ImageSource` plans its cells (which noise x severity rows it can serve, with
their constants) and hands out one batch of a cell at a time by global image index, so the
grid never knows where the pixels come from. The grid walks the batches once, in order
(:meth:`ImageSource.clean_batches`: what every cell of a batch starts from, read or decoded
once), and asks for each cell of a batch in turn (:meth:`ImageSource.batch`).

* :class:`GeneratedNoise`: clean images (in memory, or image files decoded by DataLoader
  workers: :mod:`.loaders`) whose noise is made on the fly, seeded per image;
* :class:`MinMaxRescaled`: the paper's dataset-level rescale over a :class:`GeneratedNoise`;
* :class:`Cifar10CFiles`: an array release (CIFAR-10-C, CIFAR-100-C, ``lncli corrupt --format
  npy``), read row by row through a memory map;
* :class:`ImageNetCFiles`: a folder release (ImageNet-C, Tiny-ImageNet-C), decoded by DataLoader workers.

Every source hands out the models' input (channels, size: the data's ``input_meta``), so the
noise is made at the resolution the model sees, as ImageNet-C's was. :func:`open_source`
picks one for an :class:`EvalData`. What ``--workers`` means: DataLoader processes that
decode image files, and (for every source) the sweep's threads that make the next noisy
batches (:func:`lncli.distributed.prefetch`); in-memory sets use the threads only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from lncli.config.common import MAX_SEVERITY
from lncli.data import DataMeta, ImageSet
from lncli.data.preprocess import to_input
from lncli.data.releases import ImageNetCListing, open_npy_release
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate.loaders import (
    CleanImages,
    DatasetImages,
    ImageFiles,
    InMemoryImages,
    KeyedFiles,
    return_freed_buffers,
)
from lncli.jobs.evaluate.ranges import RANGE_CHUNK, image_range
from lncli.jobs.evaluate.testset import DatasetItems, EvalData, check_clean_order
from lncli.noise import apply_minmax, canonical_noise, corrupt, noise_param
from lncli.records import CLEAN

__all__ = [
    "CIFAR10C_PROFILE",
    "CLEAN_CELL",
    "IMAGENETC_PROFILE",
    "Cell",
    "Cifar10CFiles",
    "GeneratedNoise",
    "ImageNetCFiles",
    "ImageSource",
    "MinMaxRescaled",
    "open_source",
]

CIFAR10C_PROFILE = "cifar10c-files"
"""The ``profile`` value recorded when the noise comes from an array release (``cifar10c:DIR``)."""

IMAGENETC_PROFILE = "imagenetc-files"
"""The ``profile`` value recorded when the noise comes from a folder release (``imagenetc:DIR``)."""

_CIFAR10C_NAMING = "imagenet-c"
"""The profile whose corruption names the releases use (``gaussian_noise.npy``, ``fog/``, ...)."""


@dataclass(frozen=True)
class Cell:
    """One row of the sweep: a noise at a severity, with the constants the records report."""

    noise: str  # canonical name, or CLEAN
    severity: int  # 0 for the clean row
    param: float | None  # the noise constant (sigma, lambda, amount); None when unknown (released files)
    profile: str  # the noise constants' profile; "none" for clean, CIFAR10C_PROFILE for the released files


CLEAN_CELL = Cell(CLEAN, 0, 0.0, "none")
"""The uncorrupted row."""


class ImageSource(Protocol):
    """Where the grid's batches come from: a fixed set of ``len`` images, each with a global index.

    A batch of a cell must depend only on the cell and the indices asked for (never on the
    batch's size or on which batches came before), so that any batching, order or sharding
    of the indices sees the same images. ``batch`` may be called from prefetch threads.
    """

    def __len__(self) -> int: ...

    @property
    def labels(self) -> Tensor:
        """(N,) int64: every image's label, in global index order."""
        ...

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """The cells this source serves for the asked noises and severities (clean first), checked up front."""
        ...

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor | None]:
        """For each index batch (B,), in order: its clean images (B, C, H, W) uint8, or None when
        the source's cells do not start from clean images (released noisy files).

        Read lazily, a bounded number of batches ahead (image files: DataLoader's prefetch),
        so that memory stays O(batch x workers) for sources that stream from disk.
        """
        ...

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Images (B, C, H, W) and labels (B,) of ``indices`` (B,) in ``cell``.

        ``clean`` is what :meth:`clean_batches` gave for these indices (read here when None).
        The images are uint8, or float in [0, 1] once rescaled (:class:`MinMaxRescaled`).
        """
        ...


def _plan(
    noises: Sequence[str], severities: Sequence[int], naming: str, with_clean: bool, noisy: Callable[[str, int], Cell]
) -> list[Cell]:
    """Clean first (when asked for and available), then each noise by severity.

    Noise names are canonicalised in ``naming``'s vocabulary (``gaussian_noise`` -> ``gaussian``;
    the paper profile's ``shot`` -> ``poisson``) and de-duplicated; ``noisy(noise, severity)``
    makes each noisy cell (and raises for one the source cannot serve).
    """
    canonical = tuple(dict.fromkeys(canonical_noise(n, naming) for n in noises))
    cells = [CLEAN_CELL] if 0 in severities and with_clean else []
    cells += [noisy(noise, sev) for noise in canonical for sev in severities if sev != 0]
    return cells


@dataclass(frozen=True, eq=False)
class GeneratedNoise:
    """A clean test set whose noise is generated per batch, seeded by each image's global index.

    The noise of image ``i`` depends only on ``(seed, noise, severity, i)``
    (:func:`lncli.noise.corrupt` with ``indices``), so it does not depend on the order or the batch size.
    The clean images come from memory or from image files (:mod:`.loaders`); a plain tensor is
    taken as an in-memory set, read as stored.
    """

    images: Tensor | CleanImages  # uint8 (N, C, H, W), or a reader of the clean images
    labels: Tensor  # (N,) int64
    seed: int
    profile: str  # the noise constants (lncli.noise.PROFILES)

    def __post_init__(self) -> None:
        if isinstance(self.images, Tensor):
            object.__setattr__(self, "images", InMemoryImages(self.images))

    @property
    def reader(self) -> CleanImages:
        """Where the clean images come from."""
        assert not isinstance(self.images, Tensor)  # wrapped in __post_init__
        return self.images

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """Clean, then every noise x severity with its constant from the profile."""
        return _plan(noises, severities, self.profile, True, self._cell)

    def _cell(self, noise: str, severity: int) -> Cell:
        return Cell(noise, severity, float(noise_param(noise, severity, self.profile)), self.profile)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """The clean images of each index batch, streamed: uint8 (B, C, H, W)."""
        return self.reader.stream(batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The clean images of ``indices`` (B,), corrupted unless ``cell`` is the clean row: uint8 (B, C, H, W)."""
        x = self.reader.read(indices) if clean is None else clean  # (B, C, H, W) uint8
        if cell.noise != CLEAN:
            x = corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)
        return x, self.labels[indices]

    def unclipped(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> Tensor:
        """The paper's noise on float [0, 1] input, unclipped so that a rescale sees the real range: (B, C, H, W)."""
        x = (self.reader.read(indices) if clean is None else clean).to(torch.float32).div_(255.0)  # [0, 1]
        return corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)

    def _spans(self) -> list[Tensor]:
        """The whole set in index order, cut so that one span's float copy stays near 16 MB."""
        n = len(self)
        c, h, w = self.reader.read(torch.arange(min(n, 1))).shape[1:] if n else (1, 1, 1)
        step = max(1, min(RANGE_CHUNK, (16 << 20) // (4 * int(c) * int(h) * int(w))))
        return [torch.arange(s, min(s + step, n)) for s in range(0, n, step)]

    def clean_range(self) -> tuple[Tensor, Tensor]:
        """The clean test set's per-channel (min, max), each (C,) float32 on the [0, 1] scale (one streamed pass)."""
        spans = self._spans()
        return image_range(self.reader.stream(spans))

    def minmax_rescaled(self, cells: Sequence[Cell], reference: tuple[Tensor, Tensor]) -> MinMaxRescaled:
        """The paper's dataset-level rescale of every noisy cell onto ``reference`` (:mod:`lncli.noise.rescale`).

        One streamed pass over the WHOLE test set takes every noisy cell's per-channel range
        (on every rank, so that sharded runs rescale exactly like one process).

        Args:
            cells: the sweep's cells.
            reference: (C,) min and (C,) max the noisy ranges map onto.

        Returns:
            The rescaled source.
        """
        noisy = [c for c in cells if c.noise != CLEAN]
        ranges: dict[Cell, tuple[Tensor, Tensor]] = {}
        spans = self._spans()
        for idx, clean in zip(spans, self.reader.stream(spans)):
            for c in noisy:
                lo, hi = image_range([self.unclipped(c, idx, clean)])  # (C,), (C,)
                if c in ranges:
                    lo, hi = torch.minimum(ranges[c][0], lo), torch.maximum(ranges[c][1], hi)
                ranges[c] = (lo, hi)
        return MinMaxRescaled(self, ranges, reference)


@dataclass(frozen=True, eq=False)
class MinMaxRescaled:
    """A :class:`GeneratedNoise` whose noisy cells are min-max rescaled per channel onto a reference range."""

    inner: GeneratedNoise
    ranges: dict[Cell, tuple[Tensor, Tensor]]  # each noisy cell's (C,) min, (C,) max over the whole noisy set
    reference: tuple[Tensor, Tensor]  # (C,) min, (C,) max that the noisy ranges map onto

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def labels(self) -> Tensor:
        """(N,) int64 labels."""
        return self.inner.labels

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """As the inner source's."""
        return self.inner.cells(noises, severities)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """As the inner source's."""
        return self.inner.clean_batches(batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Clean rows as they are; noisy ones float (B, C, H, W) in [0, 1], rescaled onto the reference."""
        if cell.noise == CLEAN:
            return self.inner.batch(cell, indices, clean)
        lo, hi = self.ranges[cell]
        x = apply_minmax(self.inner.unclipped(cell, indices, clean), lo, hi, *self.reference)
        return x, self.inner.labels[indices]


class Cifar10CFiles:
    """An array release (CIFAR-10-C, CIFAR-100-C, ``lncli corrupt --format npy``), read row by row.

    Each batch of a cell reads only its rows, through the memory-mapped array
    (:meth:`lncli.data.releases.NpyRelease.array`): memory is O(batch), whatever the release's
    size. The clean row comes from the release's clean test set when there is one (see
    :func:`~lncli.jobs.evaluate.testset.resolve_data`; none otherwise). Every asked array is
    opened and checked when the cells are planned, before the sweep.
    """

    def __init__(self, directory: Path, clean: ImageSet | None, limit: int | None, meta: DataMeta | None = None):
        """Args: the release folder, its clean test set (or None), the image limit, the models' input (or None: as stored).

        Raises:
            DataError: a bad release, or a clean set that is not the release's images in order.
        """
        self.release = open_npy_release(directory)
        self.clean = clean
        n = len(self.release)
        self._size = n if limit is None else min(n, limit)
        self.meta = meta
        if clean is not None:
            check_clean_order(self.release, clean, self._size)
        self._arrays: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self._size

    @property
    def labels(self) -> Tensor:
        """(N,) int64: the release's labels (one block; the clean set's are the same)."""
        return torch.from_numpy(self.release.labels[: self._size].copy())

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """Clean when there is a clean set, then every noise x severity 1-5 of the release (arrays checked now)."""
        return _plan(noises, severities, _CIFAR10C_NAMING, self.clean is not None, self._cell)

    def _cell(self, noise: str, severity: int) -> Cell:
        if severity > MAX_SEVERITY:
            raise LncliError(f"CIFAR-10-C files hold severities 1-{MAX_SEVERITY}, not {severity}")
        if noise not in self._arrays:
            self._arrays[noise] = self.release.array(noise)
        return Cell(noise, severity, None, CIFAR10C_PROFILE)

    def _input(self, x: Tensor) -> Tensor:
        return x if self.meta is None else to_input(x, self.meta)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor | None]:
        """The clean images of each index batch, or None without a clean set (the noisy cells are read from the release)."""
        return (None if self.clean is None else self._input(self.clean.images[idx]) for idx in batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Images uint8 (B, C, H, W) and labels (B,) of ``indices`` in the cell's rows (or the clean set)."""
        if cell.noise == CLEAN:
            if self.clean is None:
                raise DataError(f"{self.release.directory}: no clean test set to read")
            return (self._input(self.clean.images[indices]) if clean is None else clean), self.labels[indices]
        if cell.noise not in self._arrays:
            self._cell(cell.noise, cell.severity)
        rows = (cell.severity - 1) * len(self.release) + indices.numpy()  # severities are stacked in order
        x = torch.from_numpy(np.ascontiguousarray(self._arrays[cell.noise][rows]))  # (B, H, W, C): only these rows
        return self._input(x.permute(0, 3, 1, 2).contiguous()), self.labels[indices]  # (B, C, H, W)


class ImageNetCFiles:
    """An ImageNet-C-style folder release: every cell (corruption x severity) is a folder of image files.

    The cells' files are listed and checked when the cells are planned, before the sweep; the
    sweep's batches are decoded by DataLoader workers, every cell of each batch in turn
    (:class:`~lncli.jobs.evaluate.loaders.KeyedFiles`). There is no clean row (the releases
    carry none: evaluate the clean set with ``--data imagefolder:PATH``).
    """

    def __init__(self, listing: ImageNetCListing, meta: DataMeta, workers: int = 0, pin: bool = False):
        """Args: the listed release, the models' input, DataLoader workers, pinned batches."""
        self.listing = listing
        self.meta = meta
        self.workers = workers
        self.pin = pin
        self._planned: list[Cell] = []
        self._files: list[tuple[Path, ...]] = []
        self._keyed: KeyedFiles | None = None
        self._labels = torch.tensor(listing.reference.targets, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.listing)

    @property
    def labels(self) -> Tensor:
        """(N,) int64: each kept file's class (sorted folder order)."""
        return self._labels

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """Every asked corruption x severity 1-5 (no clean row), each cell's files checked now."""
        cells = _plan(noises, severities, _CIFAR10C_NAMING, False, self._cell)
        self._planned = cells
        self._files = [self.listing.cell_files(c.noise, c.severity) for c in cells]
        self._keyed = KeyedFiles(self._files, self.meta, self.workers, self.pin)
        return cells

    @staticmethod
    def _cell(noise: str, severity: int) -> Cell:
        if severity > MAX_SEVERITY:
            raise LncliError(f"ImageNet-C folders hold severities 1-{MAX_SEVERITY}, not {severity}")
        return Cell(noise, severity, None, IMAGENETC_PROFILE)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[None]:
        """None for each batch (no clean images); starts decoding every planned cell of the batches, in order."""
        if self._keyed is not None:
            self._keyed.start([(k, idx) for idx in batches for k in range(len(self._planned))])
        return (None for _ in batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The files of ``indices`` (B,) in ``cell``'s folder: uint8 (B, C, H, W), and their labels."""
        if cell in self._planned and self._keyed is not None:
            return self._keyed.take(self._planned.index(cell), indices), self._labels[indices]
        files = self.listing.cell_files(cell.noise, cell.severity)  # a cell not planned: read here
        return ImageFiles(files, self.meta).read(indices), self._labels[indices]


def open_source(data: EvalData, *, seed: int, profile: str, workers: int = 0, pin: bool = False) -> ImageSource:
    """The image source of an :class:`EvalData` (nothing is decoded until the sweep asks).

    Args:
        data: the test data (see :func:`~lncli.jobs.evaluate.testset.resolve_data`).
        seed: the noise seed (generated noise).
        profile: the noise constants (generated noise; released files carry their own).
        workers: DataLoader worker processes that decode image files (0: in this process).
        pin: pin the decoded batches (CUDA).

    Image files also set glibc's mmap threshold for the process
    (:func:`~lncli.jobs.evaluate.loaders.return_freed_buffers`).

    Returns:
        The source.

    Raises:
        LncliError: no test images at all.
    """
    meta = data.input_meta
    files = data.files  # its type is the kind of data (EvalData.kind)
    if isinstance(files, Path):
        return Cifar10CFiles(files, data.clean, data.limit, meta)
    if files is None:
        if data.clean is None:  # EvalData refuses this when it is made
            raise LncliError("no test images")
        return GeneratedNoise(InMemoryImages.of(data.clean.images, meta), data.clean.labels, seed, profile)
    if meta is None:
        raise LncliError(f"{data.name}: image files are read at the models' size; build the data with resolve_data")
    return_freed_buffers()  # a long stream's peak memory stays flat (see there)
    if isinstance(files, ImageNetCListing):
        return ImageNetCFiles(files, meta, workers, pin)
    if isinstance(files, DatasetItems):
        labels = torch.tensor(files.targets, dtype=torch.int64)
        return GeneratedNoise(DatasetImages(files.dataset, files.indices, meta, workers, pin), labels, seed, profile)
    labels = torch.tensor(files.targets, dtype=torch.int64)
    return GeneratedNoise(ImageFiles(files.files, meta, workers, pin), labels, seed, profile)
