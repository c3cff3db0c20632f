"""The LocalNorm authors' dataset-level min-max rescale, and the arithmetic it is made of.

Under the ``paper`` profile the authors rescale the *whole* noisy test set per
channel onto the training set's range after adding noise (arXiv 1902.06550's noise
experiments, as the authors' code does it: github.com/byin-cwi/LocalNorm1).
:func:`rescale_minmax` does that on a tensor holding the set; :func:`channel_range`
and :func:`apply_minmax` let a caller that streams the set in batches
(``lncli evaluate --rescale``) take the ranges first and rescale batch by batch,
with the same arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lncli.errors import LncliError

__all__ = ["apply_minmax", "channel_range", "rescale_minmax"]


def channel_range(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (min, max) of float (N, C, H, W) or uint8 images, as float32 on [0, 1] scale; each (C,)."""
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x / 255.0
    return x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))


def apply_minmax(
    images: Tensor, lo: Tensor, hi: Tensor, ref_lo: Tensor, ref_hi: Tensor, *, clip: bool = True
) -> Tensor:
    """Map each channel's [lo, hi] onto [ref_lo, ref_hi]: the arithmetic of :func:`rescale_minmax`.

    Separate so that a caller that streams a dataset in batches (``lncli evaluate --rescale``)
    can take the ranges over the whole set first and rescale batch by batch, exactly.

    Args:
        images: float (N, C, H, W).
        lo, hi: (C,) range of the whole noisy set.
        ref_lo, ref_hi: (C,) the reference range to map onto.
        clip: clip the result to [0, 1].

    Returns:
        float32 (N, C, H, W).
    """
    c = (slice(None), None, None)  # (C,) -> (C, 1, 1)
    span = (hi - lo).clamp_min(1e-12)  # a constant channel maps to the reference minimum
    y = (images.to(torch.float32) - lo[c]) / span[c] * (ref_hi - ref_lo)[c] + ref_lo[c]
    return y.clamp_(0.0, 1.0) if clip else y


def rescale_minmax(images: Tensor, reference: Tensor | None = None, *, clip: bool = True) -> Tensor:
    """The LocalNorm authors' dataset-level min-max rescale (see the module docstring for the source).

    After noise, the *whole* noisy test set is rescaled per channel so that its
    minimum and maximum map onto the reference (training) set's per-channel
    range. Call it once on the full corrupted set (not per batch): it is a
    dataset-level statistic, which is exactly why it shifts intensity and
    contrast for BN's fixed statistics.

    Args:
        images: float (N, C, H, W), e.g. :func:`corrupt` output under the ``paper`` profile.
        reference: float or uint8 (M, C, H, W) training images, or None for the range [0, 1].
        clip: clip the result to [0, 1] (uint8 references are scaled to [0, 1] first).

    Returns:
        float32 (N, C, H, W) on the device of ``images``.
    """
    if images.dim() != 4:
        raise LncliError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    lo, hi = channel_range(images.to(torch.float32))
    if reference is None:
        rlo, rhi = torch.zeros_like(lo), torch.ones_like(hi)
    else:
        rlo, rhi = (t.to(lo.device) for t in channel_range(reference))
    return apply_minmax(images, lo, hi, rlo, rhi, clip=clip)
