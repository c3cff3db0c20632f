"""Shared fixtures: RNG hygiene and the CUDA auto-skip (after torchvision's test/conftest.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

# Two cores on CI: more threads than cores only adds contention.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``cuda`` when no GPU is present (they are also deselected by default)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Tests must not leak global RNG state into each other."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.random.set_rng_state(torch_state)


# --- image files (tests/test_images.py, tests/test_jobs_corrupt.py, tests/test_cli_corrupt.py) ---


@pytest.fixture()
def rgb_array():
    """A factory of seeded random uint8 RGB arrays: ``rgb_array(seed, size=(20, 16))`` -> (H, W, 3)."""

    def make(seed: int, size: tuple[int, int] = (20, 16)) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)

    return make


@pytest.fixture()
def sample_images(tmp_path, rgb_array):
    """A folder of three images: ``a.png``, ``sub/b.png`` (RGB 20x16), ``sub/gray.png`` (L), plus a ``notes.txt``."""
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rgb_array(0)).save(root / "a.png")
    Image.fromarray(rgb_array(1)).save(root / "sub" / "b.png")
    Image.fromarray(rgb_array(2)[..., 0]).save(root / "sub" / "gray.png")  # mode L, 1 channel
    (root / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    return root
