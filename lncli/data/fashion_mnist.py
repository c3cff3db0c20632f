"""Fashion-MNIST from its raw idx files (``.gz`` or not).

The files are searched in order in ``data_dir``, ``$LNCLI_DATA``, the user cache
(``$XDG_CACHE_HOME/lncli`` or ``~/.cache/lncli``), Debian's ``/usr/share/datasets/fashion-mnist``;
then a torchvision download into ``data_dir`` or the cache when ``download=True``. Each root is
tried as is, then ``ROOT/fashion-mnist`` and ``ROOT/FashionMNIST/raw`` (torchvision's layout).
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lncli.data._common import apply_limit, cache_dir, search_roots
from lncli.data.meta import DATASETS, ImageSet
from lncli.errors import DataError

__all__ = ["SYSTEM_FASHION_MNIST_DIRS", "load_fashion_mnist", "read_idx"]

# Debian's dataset-fashion-mnist package. Read at call time from this module, so that a test can put
# the system copy out of reach (monkeypatch lncli.data.fashion_mnist.SYSTEM_FASHION_MNIST_DIRS).
SYSTEM_FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
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


def load_fashion_mnist(split: str, *, data_dir: Path | None, download: bool, limit: int | None) -> ImageSet:
    """One split of Fashion-MNIST, searched as the module docstring says.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: first folder to search.
        download: allow a torchvision download when nothing is found.
        limit: keep the first ``limit`` images.

    Returns:
        uint8 (N, 1, 28, 28) images and their labels.

    Raises:
        DataError: not found (the message lists what was tried), or damaged files.
    """
    img_stem, lbl_stem = _IDX_FILES[split]
    roots = search_roots(data_dir) + [("system", d) for d in SYSTEM_FASHION_MNIST_DIRS]
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
    images = read_idx(img_path)  # (N, 28, 28)
    labels = read_idx(lbl_path)  # (N,)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{img_path} and {lbl_path} do not match: shapes {images.shape} and {labels.shape}")
    if labels.size and labels.max() >= 10:
        raise DataError(f"{lbl_path} has label {int(labels.max())}; Fashion-MNIST has 10 classes")
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    x, y = apply_limit(x, y, limit)
    meta = replace(DATASETS["fashion-mnist"], image_size=(int(images.shape[1]), int(images.shape[2])))
    return ImageSet(x, y, meta)
