"""The record types lncli's jobs return, and their field lists: a leaf that imports nothing of lncli.

Compute returns flat records and :mod:`lncli.report` (and the CSV/JSON writers) render
them, so the formatter depends on these types only, never on the jobs that make them:

* :class:`EvalRecord`: one cell of ``lncli evaluate`` (checkpoint x mode x noise x severity);
* :class:`EpochRecord`: one row of ``lncli train``'s ``history.csv``;
* :class:`CorruptRecord`: one output written (or skipped) by ``lncli corrupt``.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CLEAN",
    "HISTORY_FIELDS",
    "JSON_FIELDS",
    "RECORD_FIELDS",
    "CorruptRecord",
    "EpochRecord",
    "EvalRecord",
    "pack_hits",
    "unpack_hits",
]

CLEAN = "clean"
"""The ``noise`` value of the uncorrupted row (severity 0)."""


@dataclass(frozen=True)
class EvalRecord:
    """One cell of the sweep: a checkpoint in one mode on one noise at one severity.

    Fields (also the CSV columns, in this order):
        checkpoint: the file as given; sha256: first 12 hex digits of its SHA-256.
        arch, norm: the checkpoint's architecture and norm kind (``batchnorm``/``localnorm``).
        mode: see :data:`MODES`; heads: ``position``/``mean`` (the mode's name for ``vote``/``majority``).
        group_size: how many images share statistics: ``None`` for running
            statistics, the batch size for ``batch``, G for ``local``, 1 for
            ``single``/``vote``/``majority``. The last batch may be smaller (module docstring).
            LocalNorm head positions follow G (the checkpoint's, or ``--group-size``) in every mode.
        batch_size: test batch size.
        noise: noise name (``clean`` for severity 0); profile: noise constants
            (``none`` for clean, ``cifar10c-files`` for released CIFAR-10-C data);
            severity; param: the noise constant (sigma, lambda, amount; ``None`` if unknown).
        n, correct, accuracy, ci_low, ci_high: counts, accuracy and its Wilson 95% interval.
        noise_seed, order_seed: the seeds (``order_seed`` ``None`` = dataset order).
        device, amp, world_size: where it ran (``world_size`` > 1 under torchrun).
        data, synthetic: test set name, and whether it is generated data.
        lncli_version: the version that produced the record.
        rescale: whether the paper's dataset-level min-max rescale was applied (noisy cells of ``--rescale``).
        rescale_range: the per-channel range the rescale mapped onto: ``train`` (the training
            split's, as the authors did), ``test`` (the clean test set's, when no training split
            could be loaded) or ``None`` (no rescale).
        hits: which images were predicted right, in global index order (:func:`pack_hits`);
            ``None`` when unknown. In the JSON, not in the CSV (it is one value per image).
        image_size, resize, interpolation, mean, std, channels: the preprocessing the column's
            model read its images with (:mod:`lncli.data.preprocess`): the centre crop
            (``"HxW"``), the short side resized to before it, the resize's interpolation, the
            per-channel mean and std of [0, 1] pixels (comma lists of exact floats) and the
            channel count; ``None`` when unknown (older records).
        skipped: image files left out as unreadable (``--skip-unreadable``); 0 otherwise.
    """

    checkpoint: str
    sha256: str
    arch: str
    norm: str
    mode: str
    heads: str
    group_size: int | None
    batch_size: int
    noise: str
    profile: str
    severity: int
    param: float | None
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    noise_seed: int
    order_seed: int | None
    device: str
    amp: bool
    world_size: int
    data: str
    synthetic: bool
    lncli_version: str
    rescale: bool = False
    rescale_range: str | None = None
    hits: str | None = field(default=None, repr=False)
    image_size: str | None = None
    resize: int | None = None
    interpolation: str | None = None
    mean: str | None = None
    std: str | None = None
    channels: int | None = None
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed dict (a JSON record; the CSV row is its :data:`RECORD_FIELDS`)."""
        return asdict(self)


JSON_FIELDS: tuple[str, ...] = tuple(EvalRecord.__dataclass_fields__)
"""Fields of a JSON record: every field of :class:`EvalRecord`."""

RECORD_FIELDS: tuple[str, ...] = tuple(f for f in JSON_FIELDS if f != "hits")
"""Column order of the long-format CSV: every field but the per-image ``hits``."""


HISTORY_FIELDS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class EpochRecord:
    """One row of ``history.csv``. Accuracies are fractions in [0, 1]."""

    epoch: int  # 1-based: the number of epochs completed
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    lr: float  # the rate of the epoch's last step
    seconds: float  # wall time of the epoch (training + evaluation)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (a ``history.csv`` row)."""
        return asdict(self)


@dataclass(frozen=True)
class CorruptRecord:
    """One written (or skipped) output: flat, so that a list of them is a long-format table."""

    noise: str
    severity: int
    profile: str
    seed: int
    output: str  # path written ("" when skipped)
    source: str  # input file, or "<dataset>[i]", or the dataset spec for npy
    index: int  # global image index (-1 for a whole npy array)
    count: int  # images in this output
    status: str = "written"  # "written" | "skipped"
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for csv.DictWriter / JSON)."""
        return asdict(self)


def pack_hits(hits: np.ndarray) -> str:
    """Per-image correctness as text: base64 of the bits, image 0 in the lowest bit of the first byte.

    Args:
        hits: (N,) bool, image i predicted right (i = global index).

    Returns:
        The ASCII text (about N / 6 characters).
    """
    return base64.b64encode(np.packbits(np.asarray(hits, dtype=bool), bitorder="little").tobytes()).decode("ascii")


def unpack_hits(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_hits`.

    Args:
        text: the packed bits.
        n: the number of images.

    Returns:
        (n,) bool.

    Raises:
        ValueError: the text is not base64, or holds fewer than ``n`` bits.
    """
    raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size * 8 < n:
        raise ValueError(f"{raw.size * 8} bits packed, {n} images expected")
    return np.unpackbits(raw, bitorder="little", count=n).astype(bool)
