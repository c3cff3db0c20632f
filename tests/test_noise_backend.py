"""The imagecorruptions backend (lncli.noise.backend): shapes, determinism, clear errors."""

from __future__ import annotations

import pytest
import torch

from lncli.errors import LncliError
from lncli.noise import NOISES, PROFILES, corrupt


def test_backend_corruptions():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = corrupt(x, "contrast", 3, seed=0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    g = corrupt(x[:, :1], "motion_blur", 2, seed=0)
    assert g.shape == (2, 1, 32, 32)
    assert torch.equal(corrupt(x, "motion_blur", 2, seed=0), corrupt(x, "motion_blur", 2, seed=0))
    with pytest.raises(LncliError, match="broken"):
        corrupt(x, "glass_blur", 1, seed=0)
    with pytest.raises(LncliError, match="32x32"):
        corrupt(x[:, :, :28, :28], "contrast", 1, seed=0)
    assert set(NOISES) >= {"gaussian", "shot", "impulse"} and set(PROFILES) == {"imagenet-c", "cifar-10-c", "paper"}
