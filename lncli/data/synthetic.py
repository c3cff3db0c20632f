"""Synthetic data: procedurally generated, deterministic and learnable shapes and textures.

``synthetic`` / ``synthetic-gray``: 10 classes, 32x32 RGB / 28x28 grey, 2000 train and
500 test images. Their meta says ``synthetic=True``, so reports can flag it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from lncli.data._common import apply_limit
from lncli.data.meta import DATASETS, SPLITS, ImageSet

__all__ = ["SYNTHETIC_SIZES", "generate_synthetic", "load_synthetic"]

# Images per split of the synthetic sets: small enough to generate in well under a second.
SYNTHETIC_SIZES = {"train": 2000, "test": 500}


def load_synthetic(name: str, split: str, *, limit: int | None) -> ImageSet:
    """A split of ``synthetic`` or ``synthetic-gray`` (the first ``limit`` images)."""
    gray = name == "synthetic-gray"
    images, labels = _cached(split, gray)
    x, y = apply_limit(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), limit)
    return ImageSet(x, y, DATASETS[name])


def generate_synthetic(split: str, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """Generate a synthetic split from scratch (:func:`load_synthetic` caches the result).

    Ten balanced classes: stripes at 0/45/90/135 degrees (random period and phase),
    disk, ring, square, cross, checkerboard and triangle (random centre, size and small
    rotation). Each image has random foreground/background colours with a minimum
    contrast and Gaussian pixel noise of a random strength, so colour and brightness
    carry no class information: only shape and texture do.

    Args:
        split: ``"train"`` or ``"test"`` (seeded apart).
        gray: one 28x28 channel (``synthetic-gray``) instead of 32x32 RGB (``synthetic``).

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


# A pure function of (split, gray), so its result is kept: the tests and the demo load the same splits often.
_cached = lru_cache(maxsize=4)(generate_synthetic)
