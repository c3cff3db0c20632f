"""CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder.

Searched in ``data_dir``, ``$LNCLI_DATA``, the user cache; downloaded through
``torchvision.datasets.CIFAR10`` when ``download=True``. The batches are read with a
restricted unpickler that only rebuilds numpy arrays (no code runs).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from lncli.data._common import apply_limit, cache_dir, search_roots
from lncli.data.meta import DATASETS, ImageSet
from lncli.errors import DataError

__all__ = ["load_cifar10"]

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


def load_cifar10(split: str, *, data_dir: Path | None, download: bool, limit: int | None) -> ImageSet:
    """One split of CIFAR-10, searched as the module docstring says.

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: first folder to search.
        download: allow a torchvision download when nothing is found.
        limit: keep the first ``limit`` images.

    Returns:
        uint8 (N, 3, 32, 32) images and their labels.

    Raises:
        DataError: not found (the message lists what was tried), or damaged files.
    """
    tried: list[str] = []
    folder: Path | None = None
    for label, root in search_roots(data_dir):
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
    x, y = apply_limit(x, y, limit)
    return ImageSet(x, y, DATASETS["cifar10"])
