"""Where a sweep's clean images come from, batch by batch: memory, or image files decoded by DataLoader workers.

A :class:`CleanImages` reads the images of a batch of global indices (:meth:`~CleanImages.read`)
or streams a whole sequence of batches in order (:meth:`~CleanImages.stream`), already the
models' input (channels, size: :func:`lncli.data.preprocess.to_input`).

* :class:`InMemoryImages`: a decoded set (Fashion-MNIST, CIFAR-10, synthetic): indexing, and
  :func:`~lncli.data.preprocess.to_input` only when the models read another size.
* :class:`ImageFiles`: image files, decoded, converted, resized and cropped in the worker
  processes of a ``torch.utils.data.DataLoader`` (``workers`` of them; 0 = in this process)
  whose ``batch_sampler`` is exactly the sweep's batches, so the batches and their order do
  not change. Memory is O(batch x workers): at most ``2 x workers`` batches are decoded ahead
  (DataLoader's prefetch), whatever the number of files. Batches are pinned for CUDA.
* :class:`KeyedFiles`: the same for releases whose every cell is its own set of files
  (ImageNet-C): one DataLoader over (cell, batch) keys in the sweep's order, handed out by key.

A file that cannot be decoded raises one :class:`~lncli.errors.LncliError` line naming it
(worker errors come back as text: DataLoader would wrap them in a multi-line traceback).

:func:`return_freed_buffers` keeps a long stream's memory flat under glibc (see there).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lncli.data import DataMeta
from lncli.data.preprocess import needs_transform, to_input
from lncli.errors import LncliError
from lncli.images import decode_image, image_to_input

__all__ = ["CleanImages", "ImageFiles", "InMemoryImages", "KeyedFiles", "return_freed_buffers"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_MMAP_THRESHOLD = 1 << 20


def return_freed_buffers() -> bool:
    """Make glibc give every freed allocation of 1 MB or more back to the system at once (process-wide).

    Why: a sweep makes tens of MB per batch (decoded images, noise, normalised floats) in
    prefetch threads and frees them in the main thread. glibc's default raises its mmap
    threshold after such frees up to 32 MB, so these buffers then come from per-thread heaps
    that fragment, and the peak RSS of a streamed ImageNet-size folder grew with the number of
    batches (about +600 MB from 500 to 5,000 images at 224 px; flat with this:
    benchmarks/bench_stream.py). A fixed threshold keeps large buffers mmapped and unmapped.

    Returns:
        Whether it applied (False where the C library has no ``mallopt``: not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


class CleanImages(Protocol):
    """A fixed set of clean images, each with a global index, read as the models' input."""

    def __len__(self) -> int: ...

    def read(self, indices: Tensor) -> Tensor:
        """uint8 (B, C, H, W) of ``indices`` (B,), in this thread."""
        ...

    def stream(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """uint8 (B, C, H, W) of each index batch, in order, read ahead where the source can."""
        ...


@dataclass(frozen=True, eq=False)
class InMemoryImages:
    """A decoded set; ``meta`` (the models' input) when it must be converted, resized or cropped."""

    images: Tensor  # (N, C, H, W) uint8
    meta: DataMeta | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def read(self, indices: Tensor) -> Tensor:
        """The images of ``indices`` (B,) as the models' input: uint8 (B, C, H, W)."""
        x = self.images[indices]  # (B, C, H, W)
        return x if self.meta is None else to_input(x, self.meta)

    def stream(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """:meth:`read` of each batch, lazily."""
        return (self.read(idx) for idx in batches)

    @classmethod
    def of(cls, images: Tensor, meta: DataMeta | None) -> InMemoryImages:
        """``images`` read as ``meta`` says, keeping ``meta`` only when it changes them (the fast path)."""
        return cls(images, meta if meta is not None and needs_transform(images.shape[1:], meta) else None)


def _decode(path: Path, meta: DataMeta) -> Tensor:
    """One file as ``meta``'s input: uint8 (C, H, W)."""
    return decode_image(
        path,
        channels=meta.in_channels,
        image_size=meta.image_size,
        resize=meta.resize_to,
        interpolation=meta.interpolation,
        crop_mode=meta.crop_mode,
        fill=meta.fill,
    )


class _Files(Dataset[Any]):
    """Files by key, decoded in a DataLoader worker; ``paths(key)`` names the file of a key."""

    def __init__(self, files: Sequence[Sequence[Path]], meta: DataMeta):
        self.files = [list(f) for f in files]  # files[cell][index]
        self.meta = meta

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[int, int], Tensor | str]:
        cell, index = key
        try:
            return key, _decode(self.files[cell][index], self.meta)
        except LncliError as exc:  # returned, not raised: the main process raises it as one line
            return key, str(exc)


def _collate(items: list[tuple[tuple[int, int], Tensor | str]]) -> tuple[tuple[int, ...], int, Tensor | str]:
    """A batch of decoded files: (indices, cell, uint8 (B, C, H, W)), or the first error's text."""
    keys = [k for k, _ in items]
    errors = [x for _, x in items if isinstance(x, str)]
    stacked: Tensor | str = errors[0] if errors else torch.stack([x for _, x in items])  # type: ignore[misc]
    return tuple(i for _, i in keys), keys[0][0], stacked


def _one_thread(_: int) -> None:
    # Each worker decodes one image at a time; torch's own threads would only contend for the cores.
    torch.set_num_threads(1)


class _Keys:
    """The DataLoader's batch sampler: the (cell, index) keys of each (cell, batch) job, made lazily
    (an ImageNet-C sweep has batches x cells jobs: no need to hold every key at once)."""

    def __init__(self, jobs: Sequence[tuple[int, Tensor]]):
        self.jobs = jobs

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return ([(cell, int(i)) for i in idx] for cell, idx in self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


def _loader(dataset: Dataset[Any], jobs: Sequence[tuple[int, Tensor]], workers: int, pin: bool) -> Iterator[Any]:
    """A DataLoader over exactly ``jobs`` ((cell, indices (B,)), one batch each), in order."""
    return iter(
        DataLoader(
            dataset,
            batch_sampler=_Keys(jobs),
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin,
            worker_init_fn=_one_thread if workers else None,
        )
    )


def _checked(batch: Tensor | str) -> Tensor:
    if isinstance(batch, str):
        raise LncliError(batch)
    return batch


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Image files, decoded by DataLoader workers as ``meta`` says (see the module docstring)."""

    files: tuple[Path, ...]  # in global index order
    meta: DataMeta  # the models' input: channels, size, resize, interpolation
    workers: int = 0
    pin: bool = False

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Tensor) -> Tensor:
        """The files of ``indices`` (B,) decoded here: uint8 (B, C, H, W)."""
        return torch.stack([_decode(self.files[int(i)], self.meta) for i in indices])

    def stream(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """Each batch decoded by the workers, in order: uint8 (B, C, H, W)."""
        jobs = [(0, idx) for idx in batches]
        for _, _, batch in _loader(_Files([self.files], self.meta), jobs, self.workers, self.pin):
            yield _checked(batch)


def _item_input(dataset: Any, index: int, meta: DataMeta) -> Tensor:
    """One dataset item's image as ``meta``'s input: uint8 (C, H, W) (:func:`lncli.images.image_to_input`)."""
    image = dataset[index][0]
    return image_to_input(
        image,
        channels=meta.in_channels,
        image_size=meta.image_size,
        resize=meta.resize_to,
        interpolation=meta.interpolation,
        crop_mode=meta.crop_mode,
        fill=meta.fill,
    )


class _Items(Dataset[Any]):
    """A caller's Dataset read by sweep index (``indices[i]`` is the dataset's item), in a DataLoader worker."""

    def __init__(self, dataset: Any, indices: Sequence[int], meta: DataMeta):
        self.dataset, self.indices, self.meta = dataset, list(indices), meta

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[int, int], Tensor | str]:
        try:
            return key, _item_input(self.dataset, self.indices[key[1]], self.meta)
        except LncliError as exc:  # returned, not raised: the main process raises it as one line
            return key, f"dataset item {self.indices[key[1]]}: {exc}"


@dataclass(frozen=True, eq=False)
class DatasetImages:
    """A Python caller's torch Dataset of ``(image, label)``: each image (a PIL image, a uint8 HWC array or a
    CHW tensor) read as ``meta`` says, exactly as an image file is, by DataLoader workers."""

    dataset: Any
    indices: tuple[int, ...]  # the dataset's item of each global index
    meta: DataMeta
    workers: int = 0
    pin: bool = False

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, indices: Tensor) -> Tensor:
        """The items of ``indices`` (B,) read here: uint8 (B, C, H, W)."""
        return torch.stack([_item_input(self.dataset, self.indices[int(i)], self.meta) for i in indices])

    def stream(self, batches: Sequence[Tensor]) -> Iterator[Tensor]:
        """Each batch read by the workers, in order: uint8 (B, C, H, W)."""
        jobs = [(0, idx) for idx in batches]
        for _, _, batch in _loader(_Items(self.dataset, self.indices, self.meta), jobs, self.workers, self.pin):
            yield _checked(batch)


class KeyedFiles:
    """Cells of files streamed in the sweep's (batch, cell) order by one DataLoader, handed out by key.

    The sweep asks for each cell of each batch in turn, possibly from prefetch threads (so a
    little out of order): :meth:`take` pulls from the loader until its key arrives and keeps
    what arrived first. A key the loader was not started for is decoded in the caller's thread.
    """

    def __init__(self, files: Sequence[Sequence[Path]], meta: DataMeta, workers: int = 0, pin: bool = False):
        """Args: ``files[cell][index]``, the models' input meta, DataLoader workers, pinned batches."""
        self.dataset = _Files(files, meta)
        self.workers = workers
        self.pin = pin
        self._lock = threading.Lock()
        self._it: Iterator[Any] | None = None
        self._pending: set[Hashable] = set()
        self._ready: dict[Hashable, Tensor | str] = {}

    def start(self, jobs: Sequence[tuple[int, Tensor]]) -> None:
        """Begin decoding ``(cell, indices (B,))`` jobs, in this order."""
        with self._lock:
            self._it = _loader(self.dataset, jobs, self.workers, self.pin)
            self._pending = {(cell, tuple(int(i) for i in idx)) for cell, idx in jobs}
            self._ready = {}

    def take(self, cell: int, indices: Tensor) -> Tensor:
        """uint8 (B, C, H, W): the files of ``indices`` in cell ``cell``."""
        key = (cell, tuple(int(i) for i in indices))
        with self._lock:
            if key in self._pending and self._it is not None:
                while key not in self._ready:
                    got, c, batch = next(self._it)
                    self._ready[(c, got)] = batch
                self._pending.discard(key)
                return _checked(self._ready.pop(key))
        return torch.stack([_decode(self.dataset.files[cell][int(i)], self.dataset.meta) for i in indices])
