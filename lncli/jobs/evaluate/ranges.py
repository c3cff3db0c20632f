"""The per-channel range of images, and the training split's: the reference of the paper's ``--rescale``.

The authors min-max rescale the whole noisy test set onto a reference range (arXiv 1902.06550's
protocol; :mod:`lncli.noise.rescale`): lncli takes the training split's per-channel (min, max)
(:func:`load_train_range`), or the clean test set's when there is none (:func:`image_range` of it,
:meth:`~lncli.jobs.evaluate.sources.GeneratedNoise.clean_range`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from lncli.data import DataMeta, DataSpec, load_dataset
from lncli.errors import DataError
from lncli.noise import channel_range

__all__ = ["RANGE_CHUNK", "image_range", "load_train_range"]

RANGE_CHUNK = 4096
"""Images per step when taking a range: keeps the float32 copy small (a uint8 set is 4x smaller than its floats)."""


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
    spec: str | DataSpec, test_meta: DataMeta, *, data_dir: Path | None = None, download: bool = False
) -> tuple[Tensor, Tensor] | None:
    """The training split's per-channel range, the reference of the paper's ``--rescale``.

    The authors' protocol (arXiv 1902.06550; their code, github.com/byin-cwi/LocalNorm1) min-max
    rescales the whole noisy test set per channel onto the training set's range.

    The range is taken over the whole training split (``--limit`` cuts the test set only).
    Only the two (C,) vectors are kept; the split itself is dropped as soon as they are taken.

    Args:
        spec: the test set's dataset spec (``fashion-mnist``, ``cifar10``, ``synthetic``, ..., text or parsed).
        test_meta: the test set's :class:`lncli.data.DataMeta` (the channel counts must agree).
        data_dir, download: as for :func:`lncli.data.load_dataset`.

    Returns:
        ``(lo, hi)``, each (C,) float32 on the [0, 1] scale, or ``None`` when there is no
        training split to read: not found, unreadable, empty or of another channel count,
        and always for ``imagefolder:`` data (decoding a whole folder of full-size images
        only for its range could take more memory than the machine has, and a folder
        without ``train/`` has no separate training split) and corruption releases.

    Raises:
        DataError: ``spec`` is no valid spec (:class:`lncli.data.DataSpec`). The caller then falls back to
        the clean test set's range, and the records say so.
    """
    data = DataSpec.parse(spec)
    if data.kind != "dataset":
        return None
    try:
        train = load_dataset(data, "train", data_dir=data_dir, download=download)
    except DataError:
        return None
    if len(train) == 0 or train.images.shape[1] != test_meta.in_channels:
        return None
    return image_range(train.images.split(RANGE_CHUNK))
