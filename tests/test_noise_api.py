"""corrupt() (lncli.noise.api): seeding invariances, dtypes, shapes, input checks, threads, devices."""

from __future__ import annotations

import pytest
import torch

from lncli.errors import LncliError
from lncli.noise import corrupt, list_noises


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seeding_invariant_to_batch_size(noise, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (70, 3, 12, 10), dtype=torch.uint8, generator=g)
    full = corrupt(x, noise, 3, seed=seed)
    for chunk in (1, 16, 33):
        parts = [
            corrupt(x[i : i + chunk], noise, 3, seed=seed, indices=range(i, min(i + chunk, 70)))
            for i in range(0, 70, chunk)
        ]
        assert torch.equal(torch.cat(parts), full), f"chunk {chunk} differs"
    perm = torch.randperm(70, generator=g)
    assert torch.equal(corrupt(x[perm], noise, 3, seed=seed, indices=perm), full[perm])
    assert torch.equal(corrupt(x, noise, 3, seed=seed), full)  # deterministic
    assert not torch.equal(corrupt(x, noise, 3, seed=seed + 100), full)
    assert not torch.equal(corrupt(x, noise, 2, seed=seed), full)
    xf = x.to(torch.float32) / 255  # float path: its own draws, same invariance
    ff = corrupt(xf, noise, 3, seed=seed)
    parts = [corrupt(xf[i : i + 16], noise, 3, seed=seed, indices=range(i, min(i + 16, 70))) for i in range(0, 70, 16)]
    assert torch.equal(torch.cat(parts), ff)
    assert torch.equal(corrupt(xf[perm], noise, 3, seed=seed, indices=perm), ff[perm])


@pytest.mark.parametrize("profile", ["imagenet-c", "cifar-10-c", "paper"])
def test_grayscale_and_28x28(profile):
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    for noise in list_noises(profile)[:3]:
        y = corrupt(x, noise, 4, seed=0, profile=profile)
        assert y.shape == x.shape and y.dtype == torch.uint8
        assert not torch.equal(y, x)


@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse", "speckle"])
def test_float_input(noise):
    x = torch.rand(6, 3, 20, 20, dtype=torch.float64)
    y = corrupt(x, noise, 3, seed=0)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.equal(y, x)
    # Same law as the uint8 path: the mean shift is small compared with the noise.
    xu = (x * 255).to(torch.uint8)
    yu = corrupt(xu, noise, 3, seed=0).double() / 255
    assert abs(float(y.mean() - yu.mean())) < 0.02


def test_float_input_not_modified_in_place():
    x = torch.rand(4, 3, 8, 8)
    x0 = x.clone()
    for noise in ("gaussian", "speckle", "impulse"):
        corrupt(x, noise, 5, seed=0)
    corrupt(x, "gaussian", 5, seed=0, profile="paper")
    assert torch.equal(x, x0)


def test_severity_zero_is_clean_copy():
    x = torch.randint(0, 256, (3, 3, 9, 9), dtype=torch.uint8)
    y = corrupt(x, "shot", 0, seed=0)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_custom_param():
    x = torch.full((2, 1, 30, 30), 128, dtype=torch.uint8)
    a = corrupt(x, "impulse", 1, seed=0, param=0.5)
    assert 0.4 < float((a != 128).float().mean()) < 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.zeros(2, 3, 8, 8, dtype=torch.int32)}, "dtype"),
        ({"images": torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8)}, "4-D"),
        ({"images": torch.full((1, 3, 8, 8), 2.0)}, r"\[0, 1\]"),
        ({"severity": 6}, "severity"),
        ({"severity": -1}, "severity"),
        ({"noise": "pink"}, "gaussian, shot, impulse"),
        ({"profile": "imagenet"}, "imagenet-c, cifar-10-c, paper"),
        ({"indices": [0]}, "indices"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "noise": "gaussian", "severity": 1, **kwargs}
    with pytest.raises(LncliError, match=match):
        corrupt(args.pop("images"), args.pop("noise"), args.pop("severity"), seed=0, **args)


@pytest.mark.cuda
@pytest.mark.parametrize("noise", ["gaussian", "shot", "impulse"])
def test_cuda_matches_cpu(noise):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    cpu = corrupt(x, noise, 3, seed=0)
    gpu = corrupt(x.cuda(), noise, 3, seed=0)
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu), f"max diff {(gpu.cpu().int() - cpu.int()).abs().max()}"


def test_threads_do_not_change_results():
    x = torch.randint(0, 256, (300, 3, 16, 16), dtype=torch.uint8)
    for n in ("gaussian", "shot", "impulse"):
        assert torch.equal(corrupt(x, n, 4, seed=3), corrupt(x, n, 4, seed=3, num_threads=3)), n


def test_uint8_threads_and_scattered_indices_identical():
    x = torch.randint(0, 256, (200, 3, 33, 31), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    idx = torch.arange(1000, 1200)
    for noise in ("gaussian", "shot", "impulse", "speckle"):
        full = corrupt(x, noise, 5, seed=9, indices=idx)
        assert torch.equal(full, corrupt(x, noise, 5, seed=9, indices=idx, num_threads=2)), noise
        perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
        assert torch.equal(corrupt(x[perm], noise, 5, seed=9, indices=idx[perm]), full[perm]), noise
