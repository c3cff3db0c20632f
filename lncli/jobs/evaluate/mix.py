"""Mixed streams (``lncli evaluate --mix``): each image draws its own noise and severity.

A deployed model rarely sees one corruption at a time: a batch may mix clean images with several
kinds and levels of noise. :func:`mixed_cell` turns the sweep's cells (clean, and each noise x
severity) into one :class:`MixedCell` whose image ``i`` takes cell ``draws[i]``, drawn uniformly
from a hash of ``(seed, i)``: the draw depends only on the noise seed and the image's global
index, never on the order, the batch size or the sharding.

:func:`mixed_batch` reads a batch of the mixed row from any
:class:`~lncli.jobs.evaluate.sources.ImageSource`: the batch's images are split by the cell they
drew, each part is read from that cell with its own global indices, and the parts are put back
in place. Since a source's batch depends only on the cell and the indices, every mixed image
equals, bit for bit, what that image is in its own cell's row. (When the parts differ in dtype,
the paper's rescale giving float noisy images and uint8 clean ones, the uint8 parts are scaled
to float [0, 1] as :func:`lncli.data.normalize` does, so the normalised batch is the same.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lncli.jobs.evaluate.sources import CLEAN_CELL, Cell, ImageSource
from lncli.noise import image_seeds  # the noise engine's own per-image hash
from lncli.records import CLEAN, MIXED

__all__ = ["MixedCell", "draw_cells", "mixed_batch", "mixed_cell"]

_MIX_STREAM = "mix"
"""The name hashed with the seed: a stream of its own, unrelated to any noise's random numbers."""


@dataclass(frozen=True, eq=False)
class MixedCell:
    """The one row of a mixed stream: image ``i`` is image ``i`` of ``cells[draws[i]]``.

    ``noise``, ``severity``, ``param`` and ``profile`` are what its records say.
    """

    cells: tuple[Cell, ...]  # the candidates: clean (when severity 0 was asked) and each noise x severity
    draws: Tensor  # (N,) int64: each image's cell, by global index
    profile: str  # the noisy candidates' profile ("none" when only clean was asked)
    noise: str = MIXED
    severity: str = MIXED
    param: float | None = None


def draw_cells(n_cells: int, indices: Tensor, seed: int) -> Tensor:
    """Each image's cell: uniform over ``n_cells``, a function of ``(seed, global index)`` only.

    Args:
        n_cells: how many cells to draw from (>= 1).
        indices: (B,) int64 global image indices.
        seed: the noise seed.

    Returns:
        (B,) int64 cell numbers in [0, n_cells).
    """
    # 63-bit hashes: the modulo bias is below n_cells / 2**63.
    return torch.tensor([h % n_cells for h in image_seeds(seed, _MIX_STREAM, indices.tolist())], dtype=torch.int64)


def mixed_cell(cells: Sequence[Cell], n: int, seed: int) -> MixedCell:
    """The mixed row over ``cells`` for a source of ``n`` images.

    Args:
        cells: the candidate cells (clean first when asked, then noise x severity).
        n: the number of images.
        seed: the noise seed.

    Returns:
        The row, every image's draw made once.
    """
    profile = next((c.profile for c in cells if c.noise != CLEAN), CLEAN_CELL.profile)
    return MixedCell(tuple(cells), draw_cells(len(cells), torch.arange(n), seed), profile)


def mixed_batch(
    source: ImageSource, mix: MixedCell, indices: Tensor, clean: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Images (B, C, H, W) and labels (B,) of ``indices`` (B,) in the mixed row.

    Args:
        source: where each cell's images come from.
        mix: the mixed row.
        indices: (B,) int64 global indices.
        clean: the batch's clean images (B, C, H, W) from ``source.clean_batches``, or None.

    Returns:
        The images (uint8, or float [0, 1] when any part is float) and the labels.
    """
    which = mix.draws[indices]  # (B,) each image's cell
    parts = []
    for k in torch.unique(which).tolist():
        at = (which == k).nonzero().squeeze(1)  # (b,) positions in the batch
        x, y = source.batch(mix.cells[k], indices[at], None if clean is None else clean[at])
        parts.append((at, x, y))
    floats = any(x.is_floating_point() for _, x, _ in parts)
    if floats:  # normalize()'s own scaling of uint8, so the normalised batch does not change
        parts = [(at, x if x.is_floating_point() else x.to(torch.float32).div_(255.0), y) for at, x, y in parts]
    first = parts[0][1]
    images = first.new_empty((len(indices), *first.shape[1:]))  # (B, C, H, W)
    labels = parts[0][2].new_empty(len(indices))  # (B,)
    for at, x, y in parts:
        images[at] = x
        labels[at] = y
    return images, labels
