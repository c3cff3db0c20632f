"""The image sources a sweep reads its batches from: one interface, one class per kind of data.

An :class:`ImageSource` plans its cells (which noise x severity rows it can serve, with
their constants) and hands out one batch of a cell at a time by global image index, so the
grid never knows where the pixels come from. The grid walks the batches once, in order
(:meth:`ImageSource.clean_batches`: what every cell of a batch starts from, read or decoded
once), and asks for each cell of a batch in turn (:meth:`ImageSource.batch`). Today: :class:`GeneratedNoise` (a decoded set
whose noise is made on the fly, seeded per image), :class:`Cifar10CFiles` (the released
CIFAR-10-C ``.npy`` blocks) and :class:`MinMaxRescaled` (the paper's dataset-level rescale
over a :class:`GeneratedNoise`). :func:`open_source` picks one for an :class:`EvalData`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from lncli.config.common import MAX_SEVERITY
from lncli.data import ImageSet, load_cifar10c
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.testset import RANGE_CHUNK, EvalData, check_data_matches, image_range
from lncli.noise import apply_minmax, canonical_noise, corrupt, noise_param
from lncli.records import CLEAN

__all__ = [
    "CIFAR10C_PROFILE",
    "CLEAN_CELL",
    "Cell",
    "Cifar10CFiles",
    "GeneratedNoise",
    "ImageSource",
    "MinMaxRescaled",
    "open_source",
]

CIFAR10C_PROFILE = "cifar10c-files"
"""The ``profile`` value recorded when the noise comes from released CIFAR-10-C files."""

_CIFAR10C_NAMING = "imagenet-c"
"""The profile whose noise names the CIFAR-10-C release uses (``gaussian_noise.npy``, ...)."""


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

        Read lazily, one batch ahead at most, so that memory stays O(batch) for sources that
        stream from disk.
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
    """A decoded test set whose noise is generated per batch, seeded by each image's global index.

    The noise of image ``i`` depends only on ``(seed, noise, severity, i)``
    (:func:`lncli.noise.corrupt` with ``indices``), so it does not depend on the order or the batch size.
    """

    images: Tensor  # (N, C, H, W) uint8, the clean test set
    labels: Tensor  # (N,) int64
    seed: int
    profile: str  # the noise constants (lncli.noise.PROFILES)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """Clean, then every noise x severity with its constant from the profile."""
        return _plan(noises, severities, self.profile, True, self._cell)

    def _cell(self, noise: str, severity: int) -> Cell:
        return Cell(noise, severity, float(noise_param(noise, severity, self.profile)), self.profile)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """The clean images of each index batch: uint8 (B, C, H, W)."""
        return (self.images[idx] for idx in batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The clean images of ``indices`` (B,), corrupted unless ``cell`` is the clean row: uint8 (B, C, H, W)."""
        x = self.images[indices] if clean is None else clean  # (B, C, H, W) uint8
        if cell.noise != CLEAN:
            x = corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)
        return x, self.labels[indices]

    def unclipped(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> Tensor:
        """The paper's noise on float [0, 1] input, unclipped so that a rescale sees the real range: (B, C, H, W)."""
        x = (self.images[indices] if clean is None else clean).to(torch.float32).div_(255.0)  # (B, C, H, W) in [0, 1]
        return corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)

    def clean_range(self) -> tuple[Tensor, Tensor]:
        """The clean test set's per-channel (min, max), each (C,) float32 on the [0, 1] scale."""
        return image_range(self.images.split(RANGE_CHUNK))

    def minmax_rescaled(self, cells: Sequence[Cell], reference: tuple[Tensor, Tensor]) -> MinMaxRescaled:
        """The paper's dataset-level rescale of every noisy cell onto ``reference`` (PAPER.md, "Rescale").

        One pass per noisy cell takes its per-channel range over the WHOLE test set (on every
        rank, so that sharded runs rescale exactly like one process).

        Args:
            cells: the sweep's cells.
            reference: (C,) min and (C,) max the noisy ranges map onto.

        Returns:
            The rescaled source.
        """
        n = len(self)
        spans = [torch.arange(s, min(s + RANGE_CHUNK, n)) for s in range(0, n, RANGE_CHUNK)]
        ranges = {c: image_range(self.unclipped(c, idx) for idx in spans) for c in cells if c.noise != CLEAN}
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
    """Released CIFAR-10-C ``.npy`` blocks, each read once when first asked for.

    The clean row comes from CIFAR-10's test set when it is installed (none otherwise).
    Each block is checked against the models and the clean set when it is first read.
    """

    def __init__(self, directory: Path, clean: ImageSet | None, limit: int | None, models: Sequence[LoadedCheckpoint]):
        """Args: the release folder, CIFAR-10's test set (or None), the image limit, the models to match."""
        self.directory = directory
        self.clean = clean
        self.limit = limit
        self.models = list(models)
        self._lock = threading.Lock()  # prefetch threads share the block cache
        self._blocks: dict[tuple[str, int], ImageSet] = {}
        self._size: int | None = None

    def __len__(self) -> int:
        if self._size is None:
            self._size = len(self.clean) if self.clean is not None else len(self._release_labels())
        return self._size

    @property
    def labels(self) -> Tensor:
        """(N,) int64: CIFAR-10's test labels, or the first block's of ``labels.npy`` without them."""
        return (
            self.clean.labels if self.clean is not None else torch.from_numpy(self._release_labels().astype(np.int64))
        )

    def _release_labels(self) -> np.ndarray:
        """The first block of ``labels.npy`` (the release stacks severities 1-5 of N images: N = len / 5), limited."""
        try:
            labels = np.load(self.directory / "labels.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.directory}: cannot read CIFAR-10-C labels.npy ({exc})") from None
        n = len(labels) // MAX_SEVERITY
        return np.asarray(labels[: min(n, self.limit) if self.limit else n])

    def cells(self, noises: Sequence[str], severities: Sequence[int]) -> list[Cell]:
        """Clean when CIFAR-10's test set is there, then every noise x severity 1-5 of the release."""
        return _plan(noises, severities, _CIFAR10C_NAMING, self.clean is not None, self._cell)

    @staticmethod
    def _cell(noise: str, severity: int) -> Cell:
        if severity > MAX_SEVERITY:
            raise LncliError(f"CIFAR-10-C files hold severities 1-{MAX_SEVERITY}, not {severity}")
        return Cell(noise, severity, None, CIFAR10C_PROFILE)

    def clean_batches(self, batches: Sequence[Tensor]) -> Iterator[Tensor | None]:
        """CIFAR-10's clean test images of each index batch, or None without them (the noisy cells are read from the release)."""
        return (None if self.clean is None else self.clean.images[idx] for idx in batches)

    def batch(self, cell: Cell, indices: Tensor, clean: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Images uint8 (B, C, H, W) and labels (B,) of ``indices`` in the cell's block (or the clean set)."""
        if cell.noise == CLEAN:
            if self.clean is None:
                raise DataError(f"{self.directory}: no clean CIFAR-10 test set to read")
            return (self.clean.images[indices] if clean is None else clean), self.clean.labels[indices]
        with self._lock:
            block = self._read(cell.noise, cell.severity)
        return block.images[indices], block.labels[indices]

    def _read(self, noise: str, severity: int) -> ImageSet:
        """The block of one noise x severity, read and checked on first use, then kept: the sweep
        visits every cell of each batch in turn (a block is N images: 30 MB for CIFAR-10-C)."""
        if (noise, severity) in self._blocks:
            return self._blocks[(noise, severity)]
        block = load_cifar10c(self.directory, noise, severity, limit=self.limit)
        check_data_matches(self.models, block.meta)
        if len(block) != len(self):
            raise DataError(f"CIFAR-10-C {noise} severity {severity} holds {len(block)} images, expected {len(self)}")
        if self.clean is not None and not torch.equal(block.labels, self.clean.labels):
            # The release follows CIFAR-10's test order; anything else would compare different images.
            raise DataError(f"CIFAR-10-C labels in {self.directory} are not in CIFAR-10 test order")
        self._blocks[(noise, severity)] = block
        return block


def open_source(data: EvalData, models: Sequence[LoadedCheckpoint], *, seed: int, profile: str) -> ImageSource:
    """The image source of an :class:`EvalData` (nothing is read until the sweep asks).

    Args:
        data: the test data (see :func:`~lncli.jobs.evaluate.testset.resolve_data`).
        models: the checkpoints, against which released files are checked.
        seed: the noise seed (generated noise).
        profile: the noise constants (generated noise; released files carry their own).

    Returns:
        The source.

    Raises:
        LncliError: no test images at all.
    """
    if data.cifar10c_dir is not None:
        return Cifar10CFiles(data.cifar10c_dir, data.clean, data.limit, models)
    if data.clean is None:
        raise LncliError("no test images")
    return GeneratedNoise(data.clean.images, data.clean.labels, seed, profile)
