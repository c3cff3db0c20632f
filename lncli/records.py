"""The record types lncli's jobs return, and their field lists: a leaf that imports nothing of lncli.

Compute returns flat records and :mod:`lncli.report` (and the CSV/JSON writers) render
them, so the formatter depends on these types only, never on the jobs that make them:

* :class:`EvalRecord`: one cell of ``lncli evaluate`` (checkpoint x mode x noise x severity);
* :class:`EpochRecord`: one row of ``lncli train``'s ``history.csv``;
* :class:`CorruptRecord`: one output written (or skipped) by ``lncli corrupt``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = [
    "CLEAN",
    "COMPARISON_FIELDS",
    "HISTORY_FIELDS",
    "JSON_FIELDS",
    "MIXED",
    "RECORD_FIELDS",
    "ComparisonRecord",
    "CorruptRecord",
    "EpochRecord",
    "EvalRecord",
    "pack_hits",
    "record_from_json",
    "unpack_hits",
]

CLEAN = "clean"
"""The ``noise`` value of the uncorrupted row (severity 0)."""

MIXED = "mixed"
"""The ``noise`` and ``severity`` values of a mixed stream's row (``lncli evaluate --mix``)."""


@dataclass(frozen=True)
class EvalRecord:
    """One cell of the sweep: a checkpoint in one mode on one noise at one severity.

    Fields (also the CSV columns, in this order):
        checkpoint: the file as given; sha256: first 12 hex digits of its SHA-256.
        arch, norm: the checkpoint's architecture and norm kind (``batchnorm``/``localnorm``/``groupnorm``).
        mode: see :data:`MODES`; heads: ``position``/``mean`` (the mode's name for ``vote``/``majority``;
            ``none`` for ``groupnorm``, a GroupNorm checkpoint's only mode).
        group_size: how many images share statistics: ``None`` for running
            statistics and for ``groupnorm`` (no test-time statistics), the batch size for
            ``batch``, G for ``local``, 1 for ``single``/``vote``/``majority``. The last batch
            may be smaller (module docstring).
            LocalNorm head positions follow G (the checkpoint's, or ``--group-size``) in every mode.
        batch_size: test batch size.
        noise: noise name (``clean`` for severity 0, ``mixed`` for a mixed stream); profile: noise
            constants (``none`` for clean, ``cifar10c-files`` for released CIFAR-10-C data);
            severity: an int (0 = clean), or the text ``mixed`` for a mixed stream, whose images each
            drew their own noise and severity (see ``mix``); param: the noise constant (sigma, lambda,
            amount; ``None`` if unknown or mixed).
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
        order: the test stream's order: ``shuffled`` (with ``order_seed``), ``sorted`` (by label,
            stable within a class; ``order_seed`` is then ``None``) or ``dataset``.
        mix: whether the row is a mixed stream (noise and severity ``mixed``).
        prior_n: ``prior`` mode's N (the training statistics' weight in images); ``None`` in other modes.
        tent_lr, tent_steps: ``tent`` mode's Adam learning rate and steps per batch; ``None`` in other modes.
        image_size, resize, interpolation, mean, std, channels: the preprocessing the column's
            model read its images with (:mod:`lncli.data.preprocess`): the crop
            (``"HxW"``), the short side resized to before it, the resize's interpolation, the
            per-channel mean and std of [0, 1] pixels (comma lists of exact floats) and the
            channel count; ``None`` when unknown (older records).
        crop_mode: how the resized image became the crop (``center``, ``squash``, ``border``: timm's
            ``crop_mode``); ``center`` in records written before it existed, which is what they did.
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
    severity: int | str
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
    order: str = "shuffled"
    mix: bool = False
    prior_n: float | None = None
    tent_lr: float | None = None
    tent_steps: int | None = None
    image_size: str | None = None
    resize: int | None = None
    interpolation: str | None = None
    mean: str | None = None
    std: str | None = None
    channels: int | None = None
    skipped: int = 0
    crop_mode: str = "center"

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


@dataclass(frozen=True)
class ComparisonRecord:
    """One cell of a run compared with the same cell of a baseline run (``lncli evaluate --compare``).

    Fields:
        checkpoint, mode, noise, severity, batch_size: the cell in this run (as in :class:`EvalRecord`).
        sha256, baseline_sha256: the checkpoint's hash now and in the baseline (they differ when the
            model changed, which is what a regression check is for).
        baseline_checkpoint: the baseline column's checkpoint (matched by label, else by hash).
        baseline_n, baseline_correct, baseline_accuracy; n, correct, accuracy: the two runs' counts.
        delta: ``accuracy - baseline_accuracy`` (negative: it fell).
        lost, gained: images right in the baseline and wrong now, and the reverse (the paired
            comparison); ``None`` when either run lacks per-image results.
        test: ``mcnemar`` (paired, exact) or ``two-proportion`` (counts only); p_value: its one-sided
            p-value that accuracy fell (:func:`lncli.stats.drop_p_value`).
        max_regression, significance: the gate; regressed: ``-delta > max_regression`` and
            ``p_value < significance``.
    """

    checkpoint: str
    mode: str
    noise: str
    severity: int | str
    batch_size: int
    sha256: str
    baseline_checkpoint: str
    baseline_sha256: str
    baseline_n: int
    baseline_correct: int
    baseline_accuracy: float
    n: int
    correct: int
    accuracy: float
    delta: float
    lost: int | None
    gained: int | None
    test: str
    p_value: float
    max_regression: float
    significance: float
    regressed: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (a JSON entry; :data:`COMPARISON_FIELDS` are its CSV columns)."""
        return asdict(self)


COMPARISON_FIELDS: tuple[str, ...] = (
    "baseline_sha256",
    "baseline_n",
    "baseline_correct",
    "baseline_accuracy",
    "delta",
    "lost",
    "gained",
    "test",
    "p_value",
    "regressed",
)
"""What ``--compare`` adds to each row of the long-format CSV (the rest of a comparison is already in the row)."""


def record_from_json(entry: Mapping[str, Any]) -> EvalRecord:
    """An :class:`~lncli.records.EvalRecord` from a JSON record; fields it lacks take their defaults.

    Args:
        entry: one record of an ``lncli evaluate`` JSON (see :func:`lncli.report.read_json`).

    Returns:
        The record.

    Raises:
        ValueError: a field this lncli does not know, a required field missing, or counts that are not counts.
    """
    unknown = [k for k in entry if k not in JSON_FIELDS]
    if unknown:
        raise ValueError(f"unknown record field {unknown[0]!r} (written by another lncli?)")
    required = [f.name for f in fields(EvalRecord) if f.default is MISSING and f.default_factory is MISSING]
    missing = [f for f in required if f not in entry]
    if missing:
        raise ValueError(f"record lacks the field {missing[0]!r}")
    values = dict(entry)
    if values.get("accuracy") is None:
        values["accuracy"] = math.nan  # an empty cell: written as null
    for key in ("n", "correct"):
        if not isinstance(values[key], int) or isinstance(values[key], bool) or values[key] < 0:
            raise ValueError(f"record field {key!r} is {values[key]!r}, not a count")
    return EvalRecord(**values)
