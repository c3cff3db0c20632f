"""Shared fixtures: RNG hygiene and the CUDA auto-skip (after torchvision's test/conftest.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

if TYPE_CHECKING:
    from lncli.jobs.evaluate import EvalData

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


@pytest.fixture(params=["cpu-fast", "native"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a LocalNorm test through the copy-free CPU kernels and through the native F.batch_norm path."""
    from lncli.nn import LocalNorm2d

    monkeypatch.setattr(LocalNorm2d, "cpu_fast_path", request.param == "cpu-fast")
    return request.param


@pytest.fixture()
def bn_checkpoint(tmp_path):
    """A saved lncli checkpoint of the ``tiny`` model with BatchNorm (synthetic data, seed 0): ``tmp_path/bn.pt``."""
    from lncli.checkpoint import NormSpec, checkpoint_from_model, save_checkpoint
    from lncli.data import DATASETS
    from lncli.models import create_model

    data = DATASETS["synthetic"]
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=data.num_classes, in_channels=data.in_channels)
    path = tmp_path / "bn.pt"
    save_checkpoint(checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec(), data=data), path)
    return path


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


# --- lncli.jobs.evaluate / lncli evaluate (models and data from tests/evaluate_helpers.py) ---


@pytest.fixture(scope="session")
def eval_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fitted BN and a LocalNorm (G 8, 2 strongly different heads) tiny synthetic checkpoint, built once."""
    from evaluate_helpers import make_bn, make_ln

    d = tmp_path_factory.mktemp("eval_ckpts")
    return {"bn": make_bn(d / "bn.pt"), "ln": make_ln(d / "ln.pt")}


@pytest.fixture(scope="session")
def eval_data() -> EvalData:
    """The first 60 synthetic test images (3 batches of 16 and a ragged 12), noise generated."""
    from evaluate_helpers import LIMIT

    from lncli.data import load_dataset
    from lncli.jobs.evaluate import EvalData

    return EvalData.from_imageset(load_dataset("synthetic", "test", limit=LIMIT))


@pytest.fixture
def fmnist_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Fashion-MNIST folder whose train split spans 10..200 and whose test split spans 0..255,
    with the user's cache, $LNCLI_DATA and the system copy out of reach."""
    from evaluate_helpers import write_fmnist

    from lncli.data import fashion_mnist

    monkeypatch.delenv("LNCLI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", (tmp_path / "no-system-copy",))
    return write_fmnist(tmp_path / "fmnist")


# --- GroupNorm checkpoints (issue 14: the batch-independent control) ---


@pytest.fixture(scope="session")
def gn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny`` GroupNorm checkpoint (default groups) fitted a few steps on synthetic data: ``.../gn.pt``."""
    from evaluate_helpers import META, _fit

    from lncli.checkpoint import NormSpec, checkpoint_from_model, save_checkpoint
    from lncli.models import build_model

    torch.manual_seed(0)
    spec = NormSpec("groupnorm")
    model = _fit(build_model("tiny", norm=spec, num_classes=META.num_classes, in_channels=META.in_channels), 0)
    path = tmp_path_factory.mktemp("gn_ckpt") / "gn.pt"
    save_checkpoint(checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=spec, data=META), path)
    return path
