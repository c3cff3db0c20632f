"""The min-max rescale (lncli.noise.rescale) against a float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lncli.errors import LncliError
from lncli.noise import apply_minmax, channel_range, rescale_minmax

RTOL, ATOL = 1e-5, 1e-6  # float32 arithmetic against a float64 reference on values of order 1


def _reference(images: np.ndarray, ref: np.ndarray | None, clip: bool) -> np.ndarray:
    """Per channel c: (x - min_c) / (max_c - min_c) * (rmax_c - rmin_c) + rmin_c, in float64."""
    x = images.astype(np.float64)
    lo, hi = x.min(axis=(0, 2, 3)), x.max(axis=(0, 2, 3))
    if ref is None:
        rlo, rhi = np.zeros_like(lo), np.ones_like(hi)
    else:
        r = ref.astype(np.float64) / (255.0 if ref.dtype == np.uint8 else 1.0)
        rlo, rhi = r.min(axis=(0, 2, 3)), r.max(axis=(0, 2, 3))
    c = (None, slice(None), None, None)
    y = (x - lo[c]) / (hi - lo)[c] * (rhi - rlo)[c] + rlo[c]
    return np.clip(y, 0.0, 1.0) if clip else y


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ref_kind", ["none", "uint8", "float"])
@pytest.mark.parametrize("clip", [True, False])
def test_rescale_minmax_matches_reference(seed, ref_kind, clip):
    g = torch.Generator().manual_seed(seed)
    # Unclipped paper-profile output: beyond [0, 1], a different range per channel.
    images = torch.rand(7, 3, 5, 6, generator=g) * torch.tensor([3.0, 1.5, 0.5]).view(1, 3, 1, 1) - 0.2
    ref = {
        "none": None,
        "uint8": torch.randint(10, 240, (4, 3, 5, 6), dtype=torch.uint8, generator=g),
        "float": torch.rand(4, 3, 5, 6, generator=g) * 0.8 + 0.1,
    }[ref_kind]
    got = rescale_minmax(images, ref, clip=clip)
    want = _reference(images.numpy(), None if ref is None else ref.numpy(), clip)
    err = float(np.abs(got.double().numpy() - want).max())
    assert got.dtype == torch.float32 and got.shape == images.shape
    assert np.allclose(got.double().numpy(), want, rtol=RTOL, atol=ATOL), f"max |err| = {err:.3g}"


@pytest.mark.parametrize("seed", range(3))
def test_batched_apply_equals_whole_set(seed):
    """Ranges over the whole set, then apply_minmax batch by batch == rescale_minmax on the set."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(50, 3, 4, 4, generator=g) * 2.0
    ref = torch.rand(20, 3, 4, 4, generator=g)
    lo, hi = channel_range(images)
    rlo, rhi = channel_range(ref)
    batched = torch.cat([apply_minmax(images[i : i + 16], lo, hi, rlo, rhi) for i in range(0, 50, 16)])
    assert torch.equal(batched, rescale_minmax(images, ref))


def test_channel_range_scales_uint8_and_constant_channel():
    x = torch.zeros(2, 2, 3, 3, dtype=torch.uint8)
    x[0, 0, 0, 0], x[1, 0, 2, 2] = 51, 255  # channel 0 spans [0, 1]; channel 1 is constant 0
    lo, hi = channel_range(x)
    assert torch.equal(lo, torch.zeros(2)) and torch.equal(hi, torch.tensor([1.0, 0.0]))
    # A constant channel maps to the reference minimum instead of dividing by zero.
    y = apply_minmax(x.float() / 255, lo, hi, torch.full((2,), 0.25), torch.full((2,), 0.75))
    assert torch.equal(y[:, 1], torch.full((2, 3, 3), 0.25))
    assert abs(float(y[0, 0, 0, 0]) - (0.2 * 0.5 + 0.25)) < 1e-6


def test_rescale_minmax_refuses_non_4d():
    with pytest.raises(LncliError, match="4-D"):
        rescale_minmax(torch.zeros(3, 4, 4))
