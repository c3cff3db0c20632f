"""Models, data and small helpers shared by the ``lncli.jobs.evaluate`` and ``lncli evaluate`` tests.

Models are the ``tiny`` test net on the synthetic dataset, fitted for a few steps so that
every mode gives distinct, non-trivial predictions. (A helper module, not a test file:
tests/ is on sys.path under pytest; the session fixtures built from it are in conftest.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lncli.checkpoint import NormSpec, checkpoint_from_model, save_checkpoint
from lncli.config.evaluate import EvalConfig
from lncli.data import DATASETS, load_dataset, normalize
from lncli.models import create_model
from lncli.nn import LocalNorm2d
from lncli.records import EvalRecord

META = DATASETS["synthetic"]
LIMIT = 60  # 60 = 3 batches of 16 + a ragged batch of 12


def _fit(model: torch.nn.Module, seed: int, steps: int = 40) -> torch.nn.Module:
    """A few Adam steps on synthetic train images (~1 s), so that predictions are far from chance
    and modes really differ; the tests compare counts and predictions, never accuracy levels."""
    train = load_dataset("synthetic", "train", limit=1024)
    x_all, y_all = normalize(train.images, META), train.labels
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y_all), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_bn(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = _fit(create_model("tiny", num_classes=10, in_channels=3), seed)
    ckpt = checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=META)
    save_checkpoint(ckpt, path)
    return path


def make_ln(path: Path, seed: int = 0, *, group_size: int = 8, num_heads: int = 2) -> Path:
    """A LocalNorm tiny net whose heads differ strongly (so the head choice changes predictions)."""
    from lncli.nn import convert_batchnorm_to_localnorm

    # Fitted as BN then converted: these tests are about evaluation, not LocalNorm training.
    torch.manual_seed(seed)
    bn = _fit(create_model("tiny", num_classes=10, in_channels=3), seed)
    model = convert_batchnorm_to_localnorm(bn, group_size=group_size, num_heads=num_heads).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LocalNorm2d):
                m.head_weight.mul_(1 + 0.5 * torch.randn_like(m.head_weight))
                m.head_bias.add_(0.5 * torch.randn_like(m.head_bias))
    norm = NormSpec("localnorm", group_size=group_size, num_heads=num_heads)
    save_checkpoint(checkpoint_from_model(model, arch="tiny", arch_kwargs={}, norm=norm, data=META), path)
    return path


def fmnist_ckpt(path: Path) -> Path:
    """An untrained 1-channel tiny BN net saved as a Fashion-MNIST checkpoint."""
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=10, in_channels=1).eval()
    ckpt = checkpoint_from_model(
        model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=DATASETS["fashion-mnist"]
    )
    save_checkpoint(ckpt, path)
    return path


def write_fmnist(folder: Path) -> Path:
    """A Fashion-MNIST folder whose train split spans 10..200 and whose test split spans 0..255."""
    from test_data import _write_idx

    rng = np.random.default_rng(0)
    for prefix, n, (lo, hi) in (("train", 50, (10, 200)), ("t10k", 40, (0, 255))):
        images = rng.integers(lo, hi + 1, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, :2] = (lo, hi)  # both ends present
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=(n,), dtype=np.uint8))
    return folder


def cfg(**kw: object) -> EvalConfig:
    base = {"noises": ("gaussian",), "severities": (0, 3), "batch_size": 16, "device": "cpu"}
    base.update(kw)
    return EvalConfig(**base)  # type: ignore[arg-type]


def counts(records: list[EvalRecord]) -> dict[tuple[str, str, str, int], int]:
    return {(Path(r.checkpoint).name, r.mode, r.noise, r.severity): r.correct for r in records}
