"""Tests for lncli.jobs.evaluate.mix: per-image draws and the mixed batches, bit for bit against the single cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import cfg

from lncli.jobs.evaluate import EvalData, evaluate_grid, load_checkpoints
from lncli.jobs.evaluate.mix import draw_cells, mixed_batch, mixed_cell
from lncli.jobs.evaluate.sources import GeneratedNoise
from lncli.records import CLEAN, MIXED, unpack_hits


def _source(eval_data: EvalData, seed: int, profile: str = "imagenet-c") -> GeneratedNoise:
    assert eval_data.clean is not None
    return GeneratedNoise(eval_data.clean.images, eval_data.clean.labels, seed, profile)


@pytest.mark.parametrize("seed", range(3))
def test_draws_depend_on_the_index_and_seed_only(seed: int) -> None:
    n = 500
    all_draws = draw_cells(7, torch.arange(n), seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw_cells(7, perm, seed), all_draws[perm])  # any order
    for size in (1, 16, 128):  # any batching
        assert torch.equal(torch.cat([draw_cells(7, b, seed) for b in perm.split(size)]), all_draws[perm])
    assert not torch.equal(draw_cells(7, torch.arange(n), seed + 1), all_draws)


def test_draws_are_uniform() -> None:
    draws = draw_cells(7, torch.arange(70_000), 0)
    counts = np.bincount(draws.numpy(), minlength=7)
    # Binomial(70000, 1/7): sd ~ 92.6; 5 sd either way.
    assert counts.min() > 10_000 - 463 and counts.max() < 10_000 + 463, counts


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("profile", ["imagenet-c", "paper"])
def test_mixed_images_equal_their_own_cells_bit_for_bit(eval_data: EvalData, seed: int, profile: str) -> None:
    source = _source(eval_data, seed, profile)
    noises = ("gaussian", "impulse") if profile == "imagenet-c" else ("gaussian", "dropout")
    cells = source.cells(noises, (0, 2, 5))
    mix = mixed_cell(cells, len(source), seed)
    assert len(mix.cells) == 5 and mix.cells[0].noise == CLEAN and len(set(mix.draws.tolist())) == 5
    order = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))
    for indices in order.split(16):
        x, y = mixed_batch(source, mix, indices, eval_data.clean.images[indices] if seed % 2 else None)
        for i, idx in enumerate(indices.tolist()):
            one = torch.tensor([idx])
            want, label = source.batch(mix.cells[int(mix.draws[idx])], one)
            assert torch.equal(x[i : i + 1], want) and int(y[i]) == int(label[0])


def test_mixed_rescaled_parts_normalise_as_their_cells(eval_data: EvalData) -> None:
    """The paper's rescale makes noisy cells float and the clean cell uint8: the mix scales uint8 as normalize does."""
    from lncli.data import normalize

    source = _source(eval_data, 0, "paper")
    cells = source.cells(("gaussian",), (0, 3))
    rescaled = source.minmax_rescaled(cells, source.clean_range())
    mix = mixed_cell(cells, len(source), 0)
    indices = torch.arange(len(source))
    x, _ = mixed_batch(rescaled, mix, indices)
    meta = eval_data.clean.meta
    for i in range(len(source)):
        want, _ = rescaled.batch(mix.cells[int(mix.draws[i])], indices[i : i + 1])
        assert torch.equal(normalize(x[i : i + 1], meta), normalize(want, meta))


@pytest.mark.parametrize("seed", range(2))
def test_mixed_stream_hits_are_each_images_own_cell(
    eval_ckpts: dict[str, Path], eval_data: EvalData, seed: int
) -> None:
    """End to end: in running mode (no batch dependence) the mixed row's per-image hits are those of the cell
    each image drew, in any order and at any batch size."""
    models = load_checkpoints([eval_ckpts["bn"]])
    base = {"modes": ("running",), "noises": ("gaussian", "shot"), "severities": (0, 3, 5), "seed": seed}
    cells = evaluate_grid(models, eval_data, cfg(**base))
    mixed = [
        evaluate_grid(models, eval_data, cfg(**base, mix=True, order=order, batch_size=b))
        for order, b in (("shuffled", 16), ("sorted", 7), ("dataset", 60))
    ]
    n = len(eval_data.clean)
    per_cell = np.stack([unpack_hits(r.hits, n) for r in cells])  # (cells, N), in the source's cell order
    draws = draw_cells(len(cells), torch.arange(n), seed).numpy()
    want = per_cell[draws, np.arange(n)]
    for recs in mixed:
        (rec,) = recs
        assert rec.noise == MIXED and rec.severity == MIXED and rec.mix and rec.param is None
        np.testing.assert_array_equal(unpack_hits(rec.hits, n), want)
