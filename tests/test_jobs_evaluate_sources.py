"""Tests for lncli.jobs.evaluate.sources: the image sources the sweep reads (generated noise, CIFAR-10-C
files, the paper's rescale) and the cells they plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import cfg

from lncli.checkpoint import NormSpec, checkpoint_from_model, save_checkpoint
from lncli.data import DATASETS, load_dataset
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate import (
    CIFAR10C_PROFILE,
    CLEAN_CELL,
    Cell,
    Cifar10CFiles,
    EvalData,
    GeneratedNoise,
    MinMaxRescaled,
    evaluate_grid,
    load_checkpoints,
    open_source,
    resolve_data,
)
from lncli.models import create_model
from lncli.noise import corrupt, noise_param
from lncli.records import CLEAN


def _fake_cifar10c(folder: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Released-layout files: gaussian_noise.npy (5n, 32, 32, 3) uint8 and labels.npy (5n,)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(rng.integers(0, 10, n), 5).astype(np.int64)  # one block per severity, as released
    np.save(folder / "gaussian_noise.npy", images)
    np.save(folder / "labels.npy", labels)
    return images, labels


def test_cifar10c_files_replace_generated_noise(tmp_path: Path) -> None:
    n = 24
    c10c = tmp_path / "CIFAR-10-C"
    _fake_cifar10c(c10c, n)
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=10, in_channels=3)
    ckpt = checkpoint_from_model(
        model, arch="tiny", arch_kwargs={}, norm=NormSpec("batchnorm"), data=DATASETS["cifar10"]
    )
    save_checkpoint(ckpt, tmp_path / "c10.pt")
    models = load_checkpoints([tmp_path / "c10.pt"])
    d = resolve_data(f"cifar10c:{c10c}", models, limit=20)
    if d.clean is not None:
        pytest.skip("a real CIFAR-10 test set is installed here; its labels do not match the fake files")
    recs = evaluate_grid(models, d, cfg(modes=("running",), severities=(0, 1, 5), batch_size=8))
    assert [(r.noise, r.severity, r.profile, r.param, r.n) for r in recs] == [
        ("gaussian", 1, "cifar10c-files", None, 20),
        ("gaussian", 5, "cifar10c-files", None, 20),
    ]  # no clean row without the CIFAR-10 test set
    assert recs[0].data == "cifar10-c"
    with pytest.raises(LncliError, match="not found"):
        evaluate_grid(models, d, cfg(modes=("running",), noises=("shot",), severities=(1,), batch_size=8))
    with pytest.raises(DataError, match="not a directory"):
        resolve_data(f"cifar10c:{tmp_path / 'nope'}", models)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_noise_depends_on_the_image_index_only(seed: int) -> None:
    """Any batch of any indices holds exactly the rows of the whole set corrupted at once."""
    images = load_dataset("synthetic", "test", limit=40)
    source = GeneratedNoise(images.images, images.labels, seed, "imagenet-c")
    (cell,) = source.cells(("shot",), (4,))
    whole = corrupt(images.images, "shot", 4, seed=seed, profile="imagenet-c", indices=torch.arange(40))
    order = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
    for idx in (order[:7], order[7:23], order[23:]):
        x, y = source.batch(cell, idx)
        assert x.dtype == torch.uint8 and x.shape == (len(idx), 3, 32, 32)
        assert torch.equal(x, whole[idx]) and torch.equal(y, images.labels[idx])
    x, _ = source.batch(CLEAN_CELL, order[:5])
    assert torch.equal(x, images.images[order[:5]])  # the clean row is the clean image


def test_generated_cells_are_canonical_clean_first_and_carry_the_profile_constants() -> None:
    images = load_dataset("synthetic", "test", limit=4)
    source = GeneratedNoise(images.images, images.labels, 0, "imagenet-c")
    cells = source.cells(("gaussian_noise", "shot", "gaussian"), (3, 0, 1))
    assert [(c.noise, c.severity) for c in cells] == [
        (CLEAN, 0),
        ("gaussian", 3),
        ("gaussian", 1),
        ("shot", 3),
        ("shot", 1),
    ]
    assert (
        cells[1].param == pytest.approx(noise_param("gaussian", 3, "imagenet-c")) and cells[1].profile == "imagenet-c"
    )
    assert source.cells(("gaussian",), (2,))[0].noise == "gaussian"  # no severity 0: no clean row
    paper = GeneratedNoise(images.images, images.labels, 0, "paper")
    assert [c.noise for c in paper.cells(("shot",), (2,))] == ["poisson"]
    with pytest.raises(LncliError, match="unknown noise 'nope'"):
        source.cells(("nope",), (1,))


def test_cifar10c_files_read_the_release_blocks(tmp_path: Path) -> None:
    n, limit = 12, 10
    raw, labels = _fake_cifar10c(tmp_path, n, seed=3)
    source = Cifar10CFiles(tmp_path, None, limit)
    assert len(source) == limit and torch.equal(source.labels, torch.from_numpy(labels[:limit]))
    cells = source.cells(("gaussian_noise",), (0, 2, 5))
    assert cells == [Cell("gaussian", 2, None, CIFAR10C_PROFILE), Cell("gaussian", 5, None, CIFAR10C_PROFILE)]
    idx = torch.tensor([9, 0, 4])
    for cell in cells:
        x, y = source.batch(cell, idx)
        block = raw[(cell.severity - 1) * n : cell.severity * n]  # severities are stacked in order
        assert torch.equal(
            x, torch.from_numpy(block[idx.numpy()]).permute(0, 3, 1, 2)
        )  # (B, 32, 32, 3) -> (B, 3, 32, 32)
        assert torch.equal(y, torch.from_numpy(labels[idx.numpy()]))
    with pytest.raises(LncliError, match="severities 1-5, not 6"):
        source.cells(("gaussian",), (6,))


def test_cifar10c_blocks_must_follow_the_clean_test_order(tmp_path: Path) -> None:
    _, labels = _fake_cifar10c(tmp_path, 8)
    clean = load_dataset("synthetic", "test", limit=8)  # any 3-channel set of 8 whose labels differ
    clean = type(clean)(clean.images, torch.from_numpy((labels[:8] + 1) % 10), DATASETS["cifar10"])
    with pytest.raises(DataError, match="not in cifar10 test order"):
        Cifar10CFiles(tmp_path, clean, None)
    clean = type(clean)(clean.images, torch.from_numpy(labels[:8]), DATASETS["cifar10"])
    source = Cifar10CFiles(tmp_path, clean, None)
    assert source.cells(("gaussian",), (0, 1))[0] == CLEAN_CELL  # the clean set gives the clean row


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rescaled_batches_equal_the_whole_set_min_max_reference(seed: int) -> None:
    """Batches of the rescaled source = the whole noisy set min-max mapped per channel in float64."""
    images = load_dataset("synthetic", "test", limit=30)
    source = GeneratedNoise(images.images, images.labels, seed, "paper")
    cells = source.cells(("gaussian",), (0, 5))
    ref = (torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.6, 0.7, 0.9]))
    rescaled = source.minmax_rescaled(cells, ref)
    assert isinstance(rescaled, MinMaxRescaled) and len(rescaled) == 30
    noisy = corrupt(images.images.double() / 255.0, "gaussian", 5, seed=seed, profile="paper").numpy()  # unclipped
    lo, hi = noisy.min(axis=(0, 2, 3), keepdims=True), noisy.max(axis=(0, 2, 3), keepdims=True)  # (1, C, 1, 1)
    rlo, rhi = (t.double().numpy().reshape(1, -1, 1, 1) for t in ref)
    expected = torch.from_numpy(np.clip((noisy - lo) / (hi - lo) * (rhi - rlo) + rlo, 0.0, 1.0))
    got = torch.cat([rescaled.batch(cells[1], idx)[0] for idx in torch.arange(30).split(7)]).double()
    err = (got - expected).abs().max().item()
    torch.testing.assert_close(
        got, expected, rtol=1e-5, atol=1e-6, msg=f"max error {err:.3g} against the float64 reference"
    )
    clean, _ = rescaled.batch(cells[0], torch.arange(3))
    assert torch.equal(clean, images.images[:3])  # the clean row is never rescaled


def test_open_source_picks_the_kind_of_data(tmp_path: Path, eval_data: EvalData) -> None:
    assert isinstance(open_source(eval_data, seed=0, profile="imagenet-c"), GeneratedNoise)
    _fake_cifar10c(tmp_path, 4)
    c10c = EvalData(name="cifar10-c", synthetic=False, clean=None, cifar10c_dir=tmp_path)
    assert isinstance(open_source(c10c, seed=0, profile="imagenet-c"), Cifar10CFiles)
    with pytest.raises(LncliError, match="no test images"):
        open_source(EvalData(name="x", synthetic=False, clean=None), seed=0, profile="imagenet-c")
