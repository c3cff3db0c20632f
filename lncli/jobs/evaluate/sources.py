"""What an evaluation sweep reads: the checkpoints, the test data, and the image source the grid draws batches from.

* Checkpoints: :func:`resolve_checkpoint_paths` expands CKPT arguments (files, folders,
  globs) and :func:`load_checkpoints` loads them (:class:`LoadedCheckpoint`).
* Data: :func:`resolve_data` picks and decodes the test set once (:class:`EvalData`),
  with the training split's range for ``--rescale`` (:func:`load_train_range`).
* Image sources (:class:`ImageSource`): the one interface the grid reads through. A
  source plans its cells (which noise x severity rows it can serve, and their constants)
  and hands out one batch of a cell at a time by global image index, so the grid never
  knows where the pixels come from. Today: :class:`GeneratedNoise` (a decoded set whose
  noise is made on the fly, seeded per image), :class:`Cifar10CFiles` (the released
  CIFAR-10-C ``.npy`` blocks) and :class:`MinMaxRescaled` (the paper's dataset-level
  rescale over a :class:`GeneratedNoise`). :func:`open_source` picks one for an
  :class:`EvalData`.
"""

from __future__ import annotations

import glob
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from lncli.checkpoint import Checkpoint, file_sha256, load_checkpoint
from lncli.config.common import MAX_SEVERITY
from lncli.data import DataMeta, ImageSet, load_cifar10c, load_dataset
from lncli.errors import CheckpointError, DataError, LncliError
from lncli.noise import apply_minmax, canonical_noise, channel_range, corrupt, noise_param
from lncli.records import CLEAN

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CIFAR10C_PROFILE",
    "CLEAN_CELL",
    "Cell",
    "Cifar10CFiles",
    "EvalData",
    "GeneratedNoise",
    "ImageSource",
    "LoadedCheckpoint",
    "MinMaxRescaled",
    "check_data_matches",
    "image_range",
    "load_checkpoints",
    "load_train_range",
    "natural_key",
    "open_source",
    "resolve_checkpoint_paths",
    "resolve_data",
]

# Kept here until the issue-12 merge, where lncli.checkpoint becomes its one home (the train helper adds it there).
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt")
"""File suffixes picked up when a directory is given as a checkpoint argument."""

CIFAR10C_PROFILE = "cifar10c-files"
"""The ``profile`` value recorded when the noise comes from released CIFAR-10-C files."""

_CIFAR10C_NAMING = "imagenet-c"
"""The profile whose noise names the CIFAR-10-C release uses (``gaussian_noise.npy``, ...)."""

_RANGE_CHUNK = 4096
"""Images per step when taking a range: keeps the float32 copy small (a uint8 set is 4x smaller than its floats)."""


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint together with where it came from."""

    path: str
    sha256: str  # full hex digest of the file
    checkpoint: Checkpoint


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``ep2`` before ``ep10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def resolve_checkpoint_paths(specs: Sequence[str | Path]) -> list[Path]:
    """Expand CKPT arguments: files, directories (natural sort) and globs.

    Args:
        specs: paths, directories (every ``.pt``/``.pth``/``.ckpt`` inside, natural
            sorted) or glob patterns (``runs/*/best.pt``; ``**`` recurses).

    Returns:
        The files, in argument order, duplicates removed.

    Raises:
        LncliError: a path does not exist, a glob matches nothing, a directory
            holds no checkpoint.
    """
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]
            if not files:
                raise LncliError(f"directory {text} holds no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
            found.extend(sorted(files, key=lambda p: natural_key(p.name)))
        elif glob.has_magic(text):
            files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
            if not files:
                raise LncliError(f"no checkpoint matches {text!r}")
            found.extend(sorted(files, key=lambda p: natural_key(str(p))))
        else:
            raise LncliError(f"checkpoint not found: {text}")
    return list(dict.fromkeys(found))


def load_checkpoints(specs: Sequence[str | Path]) -> list[LoadedCheckpoint]:
    """Resolve CKPT arguments and load each file with :func:`lncli.checkpoint.load_checkpoint`.

    Args:
        specs: see :func:`resolve_checkpoint_paths`.

    Returns:
        One :class:`LoadedCheckpoint` per file.

    Raises:
        CheckpointError: a file is not a usable checkpoint.
    """
    loaded = []
    for path in resolve_checkpoint_paths(specs):
        try:
            ckpt = load_checkpoint(path)
        except LncliError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user file can fail torch.load in many ways; none is our bug
            raise CheckpointError(f"{path}: not a readable lncli checkpoint ({type(exc).__name__}: {exc})") from None
        loaded.append(LoadedCheckpoint(path=str(path), sha256=file_sha256(path), checkpoint=ckpt))
    return loaded


# ---------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalData:
    """The test images of a sweep.

    Either ``clean`` holds the decoded test set and noise is generated, or
    ``cifar10c_dir`` points at released CIFAR-10-C ``.npy`` files (then ``clean``
    is the matching CIFAR-10 test set when available, else ``None``).

    ``train_range`` is the training split's per-channel ``(min, max)``, each (C,)
    float32 on the [0, 1] scale (:func:`image_range`): what ``--rescale`` maps the
    noisy test set onto. ``None`` falls back to the clean test set's range (the
    records say which was used). It is passed in rather than loaded by
    :func:`~lncli.jobs.evaluate.grid.evaluate_grid`, which does no data I/O of its own.
    """

    name: str
    synthetic: bool
    clean: ImageSet | None
    cifar10c_dir: Path | None = None
    limit: int | None = None
    meta: DataMeta | None = field(default=None)  # when known up front
    train_range: tuple[Tensor, Tensor] | None = None  # (C,) min, (C,) max of the training split, [0, 1] scale

    def __post_init__(self) -> None:
        # A wrong shape would only fail deep inside the sweep, after the noisy ranges were computed.
        if self.train_range is None:
            return
        channels = self.clean.images.shape[1] if self.clean is not None else None
        shapes = [tuple(t.shape) for t in self.train_range]
        if len(shapes) != 2 or shapes[0] != shapes[1] or len(shapes[0]) != 1 or channels not in (None, shapes[0][0]):
            raise LncliError(f"train_range must be (min, max), each of shape ({channels or 'C'},); got shapes {shapes}")

    @classmethod
    def from_imageset(cls, images: ImageSet, *, train_range: tuple[Tensor, Tensor] | None = None) -> EvalData:
        """Wrap an :class:`lncli.data.ImageSet` whose noise will be generated.

        Args:
            images: the clean test set.
            train_range: the training split's per-channel range for ``--rescale`` (see the class docstring).

        Returns:
            The :class:`EvalData`.
        """
        meta = images.meta
        return cls(name=meta.name, synthetic=bool(meta.synthetic), clean=images, meta=meta, train_range=train_range)


def resolve_data(
    spec: str | None,
    checkpoints: Sequence[LoadedCheckpoint],
    *,
    limit: int | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    with_train_range: bool = False,
) -> EvalData:
    """Pick and decode the test set (once) for a sweep.

    Args:
        spec: ``None`` (the dataset named in the checkpoints, which must agree),
            ``fashion-mnist``, ``cifar10``, ``synthetic``, ``imagefolder:PATH`` or
            ``cifar10c:DIR`` (released CIFAR-10-C files instead of generated noise).
        checkpoints: the models, used for the default and for the match check.
        limit: keep only the first ``limit`` test images (before shuffling).
        data_dir: where to look for dataset files first.
        download: let torchvision download a missing dataset (needs the network).
        with_train_range: also read the training split's per-channel range, the
            reference of ``--rescale`` (:func:`load_train_range`; generated noise only).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: the dataset cannot be loaded or does not match a model.
        LncliError: the checkpoints disagree on the dataset and no spec was given.
    """
    if limit is not None and limit < 1:
        raise LncliError(f"--limit must be >= 1, got {limit}")
    spec = spec if spec is not None else _checkpoints_dataset(checkpoints)
    if spec.startswith("cifar10c:"):
        return _cifar10c_data(Path(spec.split(":", 1)[1]), spec, checkpoints, limit, data_dir, download)
    if spec == "imagefolder":
        raise LncliError("the checkpoints were trained on an image folder; pass --data imagefolder:PATH")
    # An image folder is decoded at the size the models were trained at (the first checkpoint's;
    # mismatches are caught below); the named datasets have one size.
    folder_size = (
        int(checkpoints[0].checkpoint.data.image_size[0]) if spec.startswith("imagefolder:") and checkpoints else None
    )
    images = load_dataset(spec, "test", data_dir=data_dir, download=download, limit=limit, image_size=folder_size)
    check_data_matches(checkpoints, images.meta)
    train_range = (
        load_train_range(spec, images.meta, data_dir=data_dir, download=download) if with_train_range else None
    )
    return EvalData.from_imageset(images, train_range=train_range)


def _checkpoints_dataset(checkpoints: Sequence[LoadedCheckpoint]) -> str:
    """The one dataset every checkpoint names (the default ``--data``)."""
    names = {ck.checkpoint.data.name for ck in checkpoints}
    if len(names) != 1:
        detail = ", ".join(f"{Path(ck.path).name}: {ck.checkpoint.data.name}" for ck in checkpoints)
        raise LncliError(f"the checkpoints were trained on different datasets ({detail}); pass --data")
    return names.pop()


def _cifar10c_data(
    directory: Path,
    spec: str,
    checkpoints: Sequence[LoadedCheckpoint],
    limit: int | None,
    data_dir: Path | None,
    download: bool,
) -> EvalData:
    """``--data cifar10c:DIR``: the released files, with CIFAR-10's clean test set when it is installed."""
    if not directory.is_dir():
        raise DataError(f"--data {spec}: {directory} is not a directory of CIFAR-10-C .npy files")
    try:  # the released files carry no clean split; use CIFAR-10's test set when we have it
        clean: ImageSet | None = load_dataset("cifar10", "test", data_dir=data_dir, download=download, limit=limit)
    except DataError:
        clean = None
    if clean is not None:
        check_data_matches(checkpoints, clean.meta)
    return EvalData(name="cifar10-c", synthetic=False, clean=clean, cifar10c_dir=directory, limit=limit)


def image_range(chunks: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-channel (min, max) over batches of images: :func:`lncli.noise.channel_range` of their concatenation.

    Args:
        chunks: at least one uint8 or float (N_i, C, H, W) batch (e.g. ``images.split(4096)``).

    Returns:
        ``(lo, hi)``, each (C,) float32 on the [0, 1] scale.

    Raises:
        ValueError: no batch.
    """
    lo: Tensor | None = None
    hi: Tensor | None = None
    for chunk in chunks:
        clo, chi = channel_range(chunk)  # (C,), (C,)
        lo = clo if lo is None else torch.minimum(lo, clo)
        hi = chi if hi is None else torch.maximum(hi, chi)
    if lo is None or hi is None:
        raise ValueError("image_range needs at least one batch of images")
    return lo, hi


def load_train_range(
    spec: str, test_meta: DataMeta, *, data_dir: Path | None = None, download: bool = False
) -> tuple[Tensor, Tensor] | None:
    """The training split's per-channel range, the reference of the paper's ``--rescale`` (PAPER.md, "Rescale").

    The range is taken over the whole training split (``--limit`` cuts the test set only).
    Only the two (C,) vectors are kept; the split itself is dropped as soon as they are taken.

    Args:
        spec: the test set's dataset spec (``fashion-mnist``, ``cifar10``, ``synthetic``, ...).
        test_meta: the test set's :class:`lncli.data.DataMeta` (the channel counts must agree).
        data_dir, download: as for :func:`lncli.data.load_dataset`.

    Returns:
        ``(lo, hi)``, each (C,) float32 on the [0, 1] scale, or ``None`` when there is no
        training split to read: not found, unreadable, empty or of another channel count,
        and always for ``imagefolder:`` data (decoding a whole folder of full-size images
        only for its range could take more memory than the machine has, and a folder
        without ``train/`` has no separate training split). The caller then falls back to
        the clean test set's range, and the records say so.
    """
    if spec.startswith("imagefolder"):
        return None
    try:
        train = load_dataset(spec, "train", data_dir=data_dir, download=download)
    except DataError:
        return None
    if len(train) == 0 or train.images.shape[1] != test_meta.in_channels:
        return None
    return image_range(train.images.split(_RANGE_CHUNK))


def check_data_matches(checkpoints: Sequence[LoadedCheckpoint], meta: DataMeta) -> None:
    """Raise :class:`DataError` when a dataset's classes, channels or image size differ from a model's."""
    for ck in checkpoints:
        want = ck.checkpoint.data
        for attr, label in (("num_classes", "classes"), ("in_channels", "channels"), ("image_size", "image size")):
            got, exp = _plain(getattr(meta, attr)), _plain(getattr(want, attr))
            if got != exp:
                raise DataError(
                    f"dataset {meta.name!r} does not match {Path(ck.path).name} (trained on {want.name!r}): "
                    f"{label} {_fmt(got)} in the data, {_fmt(exp)} in the model"
                )


def _plain(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _fmt(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


# ---------------------------------------------------------------------------
# Image sources
# ---------------------------------------------------------------------------


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

    def batch(self, cell: Cell, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, C, H, W) uint8 (float in [0, 1] after a rescale) and (B,) labels of ``indices`` (B,) in ``cell``."""
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

    def batch(self, cell: Cell, indices: Tensor) -> tuple[Tensor, Tensor]:
        """The clean images of ``indices`` (B,), corrupted unless ``cell`` is the clean row: uint8 (B, C, H, W)."""
        x = self.images[indices]  # (B, C, H, W) uint8
        if cell.noise != CLEAN:
            x = corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)
        return x, self.labels[indices]

    def unclipped(self, cell: Cell, indices: Tensor) -> Tensor:
        """The paper's noise on float [0, 1] input, unclipped so that a rescale sees the real range: (B, C, H, W)."""
        x = self.images[indices].to(torch.float32).div_(255.0)  # (B, C, H, W) float in [0, 1]
        return corrupt(x, cell.noise, cell.severity, seed=self.seed, profile=self.profile, indices=indices)

    def clean_range(self) -> tuple[Tensor, Tensor]:
        """The clean test set's per-channel (min, max), each (C,) float32 on the [0, 1] scale."""
        return image_range(self.images.split(_RANGE_CHUNK))

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
        spans = [torch.arange(s, min(s + _RANGE_CHUNK, n)) for s in range(0, n, _RANGE_CHUNK)]
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

    def batch(self, cell: Cell, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Clean rows as they are; noisy ones float (B, C, H, W) in [0, 1], rescaled onto the reference."""
        if cell.noise == CLEAN:
            return self.inner.batch(cell, indices)
        lo, hi = self.ranges[cell]
        x = apply_minmax(self.inner.unclipped(cell, indices), lo, hi, *self.reference)
        return x, self.inner.labels[indices]


class Cifar10CFiles:
    """Released CIFAR-10-C ``.npy`` blocks: one noise x severity block in memory at a time.

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
        self._block: tuple[tuple[str, int], ImageSet] | None = None
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

    def batch(self, cell: Cell, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images uint8 (B, C, H, W) and labels (B,) of ``indices`` in the cell's block (or the clean set)."""
        if cell.noise == CLEAN:
            if self.clean is None:
                raise DataError(f"{self.directory}: no clean CIFAR-10 test set to read")
            return self.clean.images[indices], self.clean.labels[indices]
        with self._lock:
            block = self._read(cell.noise, cell.severity)
        return block.images[indices], block.labels[indices]

    def _read(self, noise: str, severity: int) -> ImageSet:
        """The block of one noise x severity; one block at a time keeps memory flat (cells run in turn)."""
        if self._block is not None and self._block[0] == (noise, severity):
            return self._block[1]
        self._block = None
        block = load_cifar10c(self.directory, noise, severity, limit=self.limit)
        check_data_matches(self.models, block.meta)
        if len(block) != len(self):
            raise DataError(f"CIFAR-10-C {noise} severity {severity} holds {len(block)} images, expected {len(self)}")
        if self.clean is not None and not torch.equal(block.labels, self.clean.labels):
            # The release follows CIFAR-10's test order; anything else would compare different images.
            raise DataError(f"CIFAR-10-C labels in {self.directory} are not in CIFAR-10 test order")
        self._block = ((noise, severity), block)
        return block


def open_source(data: EvalData, models: Sequence[LoadedCheckpoint], *, seed: int, profile: str) -> ImageSource:
    """The image source of an :class:`EvalData` (nothing is read until the sweep asks).

    Args:
        data: the test data (see :func:`resolve_data`).
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
