"""Frozen configuration for ``lncli corrupt``: :class:`CorruptConfig` and its output formats.

The job itself is :func:`lncli.jobs.corrupt.run_corrupt`; it checks every field
(noise names, paths, format against severities) before it reads an image.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_JPEG_QUALITY", "CorruptConfig", "OutputFormat"]

DEFAULT_JPEG_QUALITY = 85
"""ImageNet-C saved its corrupted images as JPEG at quality 85; lncli's JPEGs follow it."""


class OutputFormat(str, enum.Enum):
    """How ``lncli corrupt`` writes its results: one image file per result, or CIFAR-10-C arrays."""

    png = "png"
    jpeg = "jpeg"
    npy = "npy"


@dataclass(frozen=True)
class CorruptConfig:
    """Everything ``lncli corrupt`` needs. Frozen: one run, one config."""

    # Where every result goes; required, there is no safe default folder to write into.
    out: Path
    # The three noises LocalNorm is evaluated on (arXiv 1902.06550).
    noises: tuple[str, ...] = ("gaussian", "shot", "impulse")
    # The full ImageNet-C / CIFAR-10-C range.
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    # Image files or folders; exclusive with ``data`` (exactly one source per run).
    inputs: tuple[Path, ...] = ()
    # Dataset spec for lncli.data.load_dataset (its test split): None = corrupt ``inputs``.
    data: str | None = None
    # Searched first for the dataset's files (then $LNCLI_DATA, the cache, the system copy).
    data_dir: Path | None = None
    # Off: never touch the network unless asked.
    download: bool = False
    # imagecorruptions' constants are the common reference of published robustness numbers.
    profile: str = "imagenet-c"
    # The noise of image i depends only on (seed, noise, severity, i): 0 makes runs repeatable by default.
    seed: int = 0
    # Lossless by default; jpeg adds its own artefacts on top of the noise.
    format: OutputFormat = OutputFormat.png
    # ImageNet-C's setting (used only with format jpeg).
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    # Contact sheet path; None = no sheet (it costs a matplotlib render).
    preview: Path | None = None
    # Sample images per preview row: enough to judge the noise, narrow enough to read.
    preview_columns: int = 8
    # Never clobber earlier results silently.
    overwrite: bool = False
    # None = every image; a small N gives a quick look.
    limit: int | None = None
    # Off: a broken file is an error, not a silent gap in the results.
    skip_unreadable: bool = False
    # Images corrupted per call: bounds memory, not results (the noise is seeded per image).
    batch_size: int = 256
    # CPU threads inside corrupt(); results do not depend on it, 1 keeps a shared machine quiet.
    num_threads: int = 1
