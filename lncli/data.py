"""Datasets as whole in-memory uint8 tensors, with their normalisation constants.

Every loader returns an :class:`ImageSet`: ``images`` uint8 (N, C, H, W) on the
CPU, ``labels`` int64 (N,), and a :class:`DataMeta` that carries the class names,
shape and the per-channel mean/std (on [0, 1] pixels). The meta travels into
checkpoints (as plain types, for ``weights_only`` loading), so evaluation
normalises exactly as training did (:func:`normalize`).

Sources (``load_dataset(spec, split)``):

- ``fashion-mnist``: the raw idx files (``.gz`` or not), searched in order in
  ``data_dir``, ``$LNCLI_DATA``, the user cache (``$XDG_CACHE_HOME/lncli`` or
  ``~/.cache/lncli``), Debian's ``/usr/share/datasets/fashion-mnist``; then a
  torchvision download into ``data_dir`` or the cache when ``download=True``.
  Each root is tried as is, then ``ROOT/fashion-mnist`` and ``ROOT/FashionMNIST/raw``
  (torchvision's layout).
- ``cifar10``: torchvision's ``cifar-10-batches-py`` folder, searched in
  ``data_dir``, ``$LNCLI_DATA``, the user cache; downloaded through
  ``torchvision.datasets.CIFAR10`` when ``download=True``. The batches are read
  with a restricted unpickler that only rebuilds numpy arrays (no code runs).
- ``imagefolder:PATH``: torchvision's ``ImageFolder`` layout (``PATH/<class>/<image>``,
  or ``PATH/<split>/<class>/<image>`` when ``PATH/train``, ``PATH/test`` or ``PATH/val``
  exist). Images are converted to RGB, resized so the shorter side is
  ``image_size`` (default 224) and centre-cropped to ``image_size`` x ``image_size``.
  Normalised with the ImageNet mean/std.
- ``synthetic`` / ``synthetic-gray``: procedurally generated, deterministic and
  learnable shapes and textures (10 classes), 32x32 RGB / 28x28 grey, 2000 train
  and 500 test images. Their meta says ``synthetic=True``, so reports can flag it.

CIFAR-10-C (Hendrycks & Dietterich 2019) is read by :func:`load_cifar10c`.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from lncli.errors import DataError

__all__ = [
    "CIFAR10C_LABELS",
    "DATASETS",
    "SYNTHETIC_SIZES",
    "DataMeta",
    "ImageSet",
    "cache_dir",
    "cifar10c_filename",
    "dataset_meta",
    "list_datasets",
    "load_cifar10c",
    "load_dataset",
    "normalize",
]


@dataclass(frozen=True)
class DataMeta:
    """What a model needs to know about its data: classes, shape and normalisation.

    Attributes:
        name: dataset name (``"fashion-mnist"``, ``"cifar10"``, ``"synthetic"``, ...).
        num_classes: number of classes.
        in_channels: image channels (1 or 3).
        image_size: (H, W).
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation of [0, 1] pixels.
        classes: class names, index = label.
        synthetic: True for generated data; reports must say so.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    synthetic: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the meta as plain Python types (lists, not tuples), safe for ``weights_only`` pickles."""
        d = asdict(self)
        for k in ("image_size", "mean", "std", "classes"):
            d[k] = list(d[k])
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
            return cls(
                name=str(d["name"]),
                num_classes=int(d["num_classes"]),
                in_channels=int(d["in_channels"]),
                image_size=(h, w),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                classes=tuple(str(c) for c in d.get("classes", ())),
                synthetic=bool(d.get("synthetic", False)),
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


# --------------------------------------------------------------------------- constants

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SYNTHETIC_CLASSES = (
    "stripes-0", "stripes-45", "stripes-90", "stripes-135", "disk", "ring", "square", "cross", "checkerboard", "triangle",
)  # fmt: skip
# Images per split of the synthetic sets: small enough to generate in well under a second.
SYNTHETIC_SIZES = {"train": 2000, "test": 500}

# Why these constants: Fashion-MNIST's are the train-set pixel mean/std (computed
# here from the idx files: 0.28604, 0.35302). CIFAR-10's are the LocalNorm authors'
# ResNet constants ([125.307, 122.95, 113.865] / 255, [62.9932, 62.0887, 66.7048] / 255),
# which are the train-set per-channel mean/std. The synthetic ones are measured on
# their train split (tests check them). ImageFolder uses the ImageNet constants,
# as torchvision's pretrained models do.
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

# Debian's dataset-fashion-mnist package. A tuple so tests can monkeypatch it.
SYSTEM_FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

SPLITS = ("train", "test")


def list_datasets() -> list[str]:
    """Return the dataset specs :func:`load_dataset` accepts.

    Returns:
        The names of :data:`DATASETS` plus ``"imagefolder:PATH"``.
    """
    return [*DATASETS, "imagefolder:PATH"]


def cache_dir() -> Path:
    """Return lncli's user cache folder (``$XDG_CACHE_HOME/lncli`` or ``~/.cache/lncli``); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lncli"


def _search_roots(data_dir: Path | None) -> list[tuple[str, Path]]:
    """(label, folder) pairs in search order: --data-dir, $LNCLI_DATA, user cache."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    env = os.environ.get("LNCLI_DATA")
    if env:
        roots.append(("$LNCLI_DATA", Path(env).expanduser()))
    roots.append(("user cache", cache_dir()))
    return roots


def _apply_limit(images: Tensor, labels: Tensor, limit: int | None) -> tuple[Tensor, Tensor]:
    if limit is None:
        return images, labels
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    return images[:limit].contiguous(), labels[:limit].contiguous()


def _check_split(split: str, spec: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {spec}; valid: {', '.join(SPLITS)}")


# --------------------------------------------------------------------------- public entry point


def load_dataset(
    spec: str,
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
            or ``"imagefolder:PATH"``.
        split: ``"train"`` or ``"test"``.
        data_dir: first folder to search (``--data-dir``).
        download: allow a torchvision download (fashion-mnist, cifar10) when nothing is found.
        limit: keep only the first ``limit`` samples (imagefolder: an evenly spaced
            subset, because ImageFolder sorts samples by class).
        image_size: imagefolder only: side of the square crop (default 224).

    Returns:
        The :class:`ImageSet`.

    Raises:
        DataError: unknown spec or split, missing or corrupt files (the message says
            what was tried and how to fix it).
    """
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "imagefolder":
        if not arg:
            raise DataError("imagefolder needs a path: use imagefolder:PATH")
        return _load_imagefolder(Path(arg).expanduser(), split, limit=limit, image_size=image_size or 224)
    if image_size is not None:
        raise DataError(f"image_size applies to imagefolder only, not {spec!r}")
    loaders: dict[str, Callable[..., ImageSet]] = {
        "fashion-mnist": _load_fashion_mnist,
        "fashionmnist": _load_fashion_mnist,
        "cifar10": _load_cifar10,
        "cifar-10": _load_cifar10,
        "synthetic": _load_synthetic,
        "synthetic-gray": _load_synthetic,
    }
    if name not in loaders or arg:
        raise DataError(f"unknown dataset {spec!r}; valid: {', '.join(list_datasets())}")
    _check_split(split, name)
    if name.startswith("synthetic"):
        return _load_synthetic(name, split, limit=limit)
    return loaders[name](split, data_dir=data_dir, download=download, limit=limit)


def dataset_meta(spec: str, *, data_dir: Path | None = None, download: bool = False) -> DataMeta:
    """What a dataset tells a model (classes, channels, image size, normalisation), without its images.

    Used where a model must be built for data before the images are read, e.g. a foreign
    checkpoint (a bare state_dict) evaluated on ``--data SPEC``.

    Args:
        spec: as for :func:`load_dataset`.
        data_dir: first folder to search.
        download: allow a torchvision download when nothing is found.

    Returns:
        The dataset's :class:`DataMeta`.

    Raises:
        DataError: as :func:`load_dataset`.
    """
    # Loading one test image gives the metadata (imagefolder: the class folders are listed).
    return load_dataset(spec, "test", data_dir=data_dir, download=download, limit=1).meta


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


# --------------------------------------------------------------------------- Fashion-MNIST

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (LeCun's MNIST format, optionally gzip-compressed) of unsigned bytes."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise DataError(f"cannot read {path}: {exc}") from None
    # Header: 2 zero bytes, a type code (0x08 = ubyte), the number of dims, then one
    # big-endian uint32 per dim.
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: {len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(split: str, *, data_dir: Path | None, download: bool, limit: int | None) -> ImageSet:
    img_stem, lbl_stem = _IDX_FILES[split]
    roots = _search_roots(data_dir) + [("system", d) for d in SYSTEM_FASHION_MNIST_DIRS]
    tried: list[str] = []
    for label, root in roots:
        for folder in (root, root / "fashion-mnist", root / "FashionMNIST" / "raw"):
            img, lbl = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
            if img is not None and lbl is not None:
                return _fashion_from_files(img, lbl, limit)
        tried.append(f"{root} ({label})")
    if download:
        target = Path(data_dir).expanduser() if data_dir is not None else cache_dir()
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(target), train=split == "train", download=True)
        except Exception as exc:  # noqa: BLE001 - network and archive errors come in many types
            raise DataError(f"Fashion-MNIST download into {target} failed ({type(exc).__name__}: {exc})") from None
        folder = target / "FashionMNIST" / "raw"
        img, lbl = _find_idx(folder, img_stem), _find_idx(folder, lbl_stem)
        if img is not None and lbl is not None:
            return _fashion_from_files(img, lbl, limit)
        tried.append(f"torchvision download into {target}")
    raise DataError(
        f"Fashion-MNIST {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found; tried: {'; '.join(tried)}. "
        "Fix: pass --data-dir DIR holding the idx files, set LNCLI_DATA, "
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or add --download when online"
    )


def _fashion_from_files(img_path: Path, lbl_path: Path, limit: int | None) -> ImageSet:
    images = _read_idx(img_path)  # (N, 28, 28)
    labels = _read_idx(lbl_path)  # (N,)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path} and {lbl_path} do not match: shapes {images.shape} and {labels.shape}")
    if labels.size and labels.max() >= 10:
        raise DataError(f"{lbl_path} has label {int(labels.max())}; Fashion-MNIST has 10 classes")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    x, y = _apply_limit(x, y, limit)
    meta = replace(DATASETS["fashion-mnist"], image_size=(int(images.shape[1]), int(images.shape[2])))
    return ImageSet(x, y, meta)


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batch dicts, refusing any global but numpy's array rebuilders.

    The released batches are Python 2 pickles of ``{"data": ndarray, "labels": list}``.
    A plain ``pickle.load`` would run whatever code a crafted file names.
    """

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in pickle protocol 2
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            entry = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 batch file ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch file (not a dict)")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or ("labels" not in entry and "fine_labels" not in entry):
        raise DataError(f"{path} is not a CIFAR-10 batch file (keys: {sorted(entry)[:5]})")
    data = np.asarray(entry["data"], dtype=np.uint8)
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(f"{path} has data of shape {data.shape} and {labels.shape[0]} labels; expected (N, 3072) and N")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_folder(root: Path) -> Path | None:
    for folder in (root / _CIFAR_FOLDER, root):
        if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
            return folder
    return None


def _load_cifar10(split: str, *, data_dir: Path | None, download: bool, limit: int | None) -> ImageSet:
    tried: list[str] = []
    folder: Path | None = None
    for label, root in _search_roots(data_dir):
        folder = _cifar_folder(root)
        if folder is not None:
            break
        tried.append(f"{root} ({label})")
    if folder is None and download:
        target = Path(data_dir).expanduser() if data_dir is not None else cache_dir()
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(target), train=split == "train", download=True)
        except Exception as exc:  # noqa: BLE001 - network and archive errors come in many types
            raise DataError(f"CIFAR-10 download into {target} failed ({type(exc).__name__}: {exc})") from None
        folder = _cifar_folder(target)
        tried.append(f"torchvision download into {target}")
    if folder is None:
        raise DataError(
            f"CIFAR-10 ({_CIFAR_FOLDER}) not found; tried: {'; '.join(tried)}. "
            f"Fix: pass --data-dir DIR containing {_CIFAR_FOLDER}/ (torchvision's python version), "
            "set LNCLI_DATA, or add --download when online"
        )
    missing = [b for b in _CIFAR_BATCHES[split] if not (folder / b).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {folder} lacks {', '.join(missing)} for the {split} split")
    parts = [_read_cifar_batch(folder / b) for b in _CIFAR_BATCHES[split]]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]))  # (N, 3, 32, 32)
    y = torch.from_numpy(np.concatenate([p[1] for p in parts]))  # (N,)
    if y.numel() and int(y.max()) >= 10:
        raise DataError(f"CIFAR-10 folder {folder} has label {int(y.max())}; CIFAR-10 has 10 classes")
    x, y = _apply_limit(x, y, limit)
    return ImageSet(x, y, DATASETS["cifar10"])


_C10C_NOISES = ("gaussian", "shot", "impulse", "speckle")
"""The release's noise corruptions: their files carry a ``_noise`` suffix."""

CIFAR10C_LABELS = "labels.npy"
"""The CIFAR-10-C file holding the (5N,) labels, shared by every corruption's array."""


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
    return f"{noise}_noise.npy" if noise in _C10C_NOISES else f"{noise}.npy"


def load_cifar10c(directory: Path, noise: str, severity: int, *, limit: int | None = None) -> ImageSet:
    """Read one noise and severity of the released CIFAR-10-C arrays.

    The release (Hendrycks & Dietterich, ICLR 2019) holds ``<noise>_noise.npy``, uint8
    (5N, 32, 32, 3) with severities 1..5 stacked in order, and ``labels.npy`` (5N,).
    Arrays are memory-mapped, so only the requested severity is read.

    Args:
        directory: the CIFAR-10-C folder.
        noise: ``"gaussian"``, ``"shot"``, ``"impulse"`` or ``"speckle"`` (a trailing ``_noise`` is accepted).
        severity: 1..5.
        limit: keep only the first ``limit`` images of that severity.

    Returns:
        An :class:`ImageSet` with CIFAR-10's meta (same classes and normalisation).

    Raises:
        DataError: unknown noise or severity, missing files or inconsistent shapes.
    """
    base = noise.lower().removesuffix("_noise")
    if base not in _C10C_NOISES:
        raise DataError(f"unknown CIFAR-10-C noise {noise!r}; valid: {', '.join(_C10C_NOISES)}")
    if not 1 <= int(severity) <= 5:
        raise DataError(f"CIFAR-10-C severity must be 1..5, got {severity}")
    directory = Path(directory).expanduser()
    data_path, label_path = directory / cifar10c_filename(base), directory / CIFAR10C_LABELS
    for p in (data_path, label_path):
        if not p.is_file():
            raise DataError(f"CIFAR-10-C file {p} not found; point --cifar10c at the folder of the released .npy files")
    try:
        data = np.load(data_path, mmap_mode="r", allow_pickle=False)
        labels = np.load(label_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"cannot read CIFAR-10-C arrays in {directory}: {exc}") from None
    if data.ndim != 4 or data.shape[3] != 3 or data.shape[0] % 5 or labels.shape != (data.shape[0],):
        raise DataError(
            f"CIFAR-10-C arrays in {directory} have shapes {data.shape} and {labels.shape}; "
            "expected (5N, 32, 32, 3) and (5N,)"
        )
    n = data.shape[0] // 5
    lo, hi = (int(severity) - 1) * n, int(severity) * n
    if limit is not None:
        if limit < 0:
            raise DataError(f"limit must be >= 0, got {limit}")
        hi = min(hi, lo + limit)
    x = torch.from_numpy(np.array(data[lo:hi], dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()  # (n, 3, 32, 32)
    y = torch.from_numpy(np.array(labels[lo:hi], dtype=np.int64))
    meta = replace(DATASETS["cifar10"], image_size=(int(data.shape[1]), int(data.shape[2])))
    return ImageSet(x, y, meta)


# --------------------------------------------------------------------------- ImageFolder


def _load_imagefolder(root: Path, split: str, *, limit: int | None, image_size: int) -> ImageSet:
    _check_split(split, "imagefolder")
    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a folder")
    folder = root
    for sub in (split, "val") if split == "test" else (split,):
        if (root / sub).is_dir():
            folder = root / sub
            break
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    try:
        ds = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder {folder}: {exc}") from None
    samples = ds.samples
    if limit is not None:
        if limit < 0:
            raise DataError(f"limit must be >= 0, got {limit}")
        if limit < len(samples):
            # ImageFolder sorts by class: an evenly spaced subset keeps every class.
            idx = np.linspace(0, len(samples) - 1, num=limit).round().astype(int) if limit else []
            samples = [samples[i] for i in idx]
    tf = transforms.Compose(
        [transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.PILToTensor()]
    )
    images = torch.empty((len(samples), 3, image_size, image_size), dtype=torch.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            images[i] = tf(ds.loader(path))  # the default loader converts to RGB
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
    labels = torch.tensor([t for _, t in samples], dtype=torch.int64)
    meta = DataMeta(
        "imagefolder", len(ds.classes), 3, (image_size, image_size), IMAGENET_MEAN, IMAGENET_STD, tuple(ds.classes)
    )
    return ImageSet(images, labels, meta)


# --------------------------------------------------------------------------- synthetic


def _load_synthetic(name: str, split: str, *, limit: int | None) -> ImageSet:
    gray = name == "synthetic-gray"
    images, labels = _synthetic_arrays(split, gray)
    x, y = _apply_limit(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), limit)
    return ImageSet(x, y, DATASETS[name])


@lru_cache(maxsize=4)
def _synthetic_arrays(split: str, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """Generate a synthetic split; cached because it is a pure function of (split, gray).

    Ten balanced classes: stripes at 0/45/90/135 degrees (random period and phase),
    disk, ring, square, cross, checkerboard and triangle (random centre, size and small
    rotation). Each image has random foreground/background colours with a minimum
    contrast and Gaussian pixel noise of a random strength, so colour and brightness
    carry no class information: only shape and texture do.

    Returns:
        uint8 (N, C, S, S) and int64 (N,), with S = 28 (grey) or 32 (RGB).
    """
    n = SYNTHETIC_SIZES[split]
    size, channels = (28, 1) if gray else (32, 3)
    rng = np.random.default_rng([0x5EED, SPLITS.index(split), int(gray)])
    labels = np.arange(n, dtype=np.int64) % 10
    rng.shuffle(labels)
    # Pixel centres in [-1, 1]; one unit is size/2 pixels.
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # (S, S)
    px = size / 2  # pixels per unit, for 1-pixel anti-aliased edges
    out = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        k = int(labels[i])
        if k < 4 or k == 8:
            # Textures fill the image: the period (in pixels) and phase are random.
            period = rng.uniform(4.0, 8.0) / px
            phase = rng.uniform(0, 2 * np.pi)
            jitter = np.deg2rad(rng.uniform(-8, 8))
            if k < 4:
                theta = np.deg2rad(45.0 * k) + jitter
                wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
            else:
                u, v = xx * np.cos(jitter) + yy * np.sin(jitter), -xx * np.sin(jitter) + yy * np.cos(jitter)
                wave = np.sin(np.pi * u / period + phase) * np.sin(np.pi * v / period + phase)
            alpha = np.clip(0.5 + 2.0 * wave, 0.0, 1.0)
        else:
            cx, cy = rng.uniform(-0.35, 0.35, size=2)
            r = rng.uniform(0.35, 0.6)
            rot = np.deg2rad(rng.uniform(-15, 15))
            dx, dy = xx - cx, yy - cy
            u, v = dx * np.cos(rot) + dy * np.sin(rot), -dx * np.sin(rot) + dy * np.cos(rot)
            dist = np.hypot(dx, dy)
            # margin: > 0 inside the shape, in units; alpha ramps over one pixel.
            if k == 4:
                margin = r - dist
            elif k == 5:
                width = r * rng.uniform(0.3, 0.45)
                margin = np.minimum(r - dist, dist - (r - width))
            elif k == 6:
                margin = 0.85 * r - np.maximum(np.abs(u), np.abs(v))
            elif k == 7:
                t = 0.3 * r
                margin = np.maximum(np.minimum(t - np.abs(u), r - np.abs(v)), np.minimum(t - np.abs(v), r - np.abs(u)))
            else:  # triangle: apex up at v = -r, base at v = 0.7 r
                half = (v + r) / 1.7 * 1.1  # half-width grows linearly from the apex
                margin = np.minimum(np.minimum(v + r, 0.7 * r - v), (half - np.abs(u)) * 0.8)
            alpha = np.clip(margin * px + 0.5, 0.0, 1.0)
        fg, bg = _contrasting_colours(rng, channels)
        img = bg[:, None, None] * (1 - alpha) + fg[:, None, None] * alpha  # (C, S, S)
        img = img + rng.normal(0.0, rng.uniform(0.02, 0.1), size=img.shape)
        out[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return out, labels


def _contrasting_colours(rng: np.random.Generator, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Random foreground and background colours whose mean absolute difference is at least 0.3."""
    while True:
        fg, bg = rng.uniform(0, 1, size=channels), rng.uniform(0, 1, size=channels)
        if np.abs(fg - bg).mean() >= 0.3:
            return fg, bg
