"""The test set of a sweep: which dataset, decoded once, checked against the models.

:func:`resolve_data` picks the test set from ``--data`` (or the checkpoints) and decodes it
once (:class:`EvalData`); with ``--rescale`` it also takes the training split's per-channel
range (:func:`load_train_range`), the reference the paper's rescale maps onto.
:func:`check_data_matches` refuses data whose classes, channels or size differ from a model's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lncli.data import DataMeta, ImageSet, load_dataset
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.noise import channel_range

__all__ = ["RANGE_CHUNK", "EvalData", "check_data_matches", "image_range", "load_train_range", "resolve_data"]

RANGE_CHUNK = 4096
"""Images per step when taking a range: keeps the float32 copy small (a uint8 set is 4x smaller than its floats)."""


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
    return image_range(train.images.split(RANGE_CHUNK))


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
