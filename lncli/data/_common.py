"""Pieces every dataset loader shares: where dataset files are searched, the ``limit`` and ``split`` checks."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from lncli.data.meta import SPLITS
from lncli.errors import DataError

__all__ = ["apply_limit", "cache_dir", "check_limit", "check_split", "search_roots"]


def cache_dir() -> Path:
    """Return lncli's user cache folder (``$XDG_CACHE_HOME/lncli`` or ``~/.cache/lncli``); not created."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lncli"


def search_roots(data_dir: Path | None) -> list[tuple[str, Path]]:
    """(label, folder) pairs in search order: --data-dir, $LNCLI_DATA, user cache."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("--data-dir", Path(data_dir).expanduser()))
    env = os.environ.get("LNCLI_DATA")
    if env:
        roots.append(("$LNCLI_DATA", Path(env).expanduser()))
    roots.append(("user cache", cache_dir()))
    return roots


def check_limit(limit: int | None) -> None:
    """Refuse a negative ``limit`` (None = everything)."""
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")


def apply_limit(images: Tensor, labels: Tensor, limit: int | None) -> tuple[Tensor, Tensor]:
    """The first ``limit`` images and labels (all of them for None)."""
    check_limit(limit)
    if limit is None:
        return images, labels
    return images[:limit].contiguous(), labels[:limit].contiguous()


def check_split(split: str, spec: str) -> None:
    """Refuse a split other than :data:`~lncli.data.meta.SPLITS`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {spec}; valid: {', '.join(SPLITS)}")
