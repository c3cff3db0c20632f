"""The exact uint8 samplers (lncli.noise._sampling) and the pinned uint8 noise streams."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from lncli.noise import corrupt
from lncli.noise._sampling import _gaussian_sampler, _impulse_sampler
from lncli.noise._seeding import _Positions
from lncli.noise._tables import _K, _V, _level_cdf_from_z, _pmf_from_cdf, _shot_pmf, _speckle_pmf, _weights_from_pmf
from lncli.noise.laws import _U8_SAMPLERS


def _random_sampler_inputs(n: int, seed: int):
    """Random uint8 levels, 16-bit words and block positions for the fast uint8 samplers."""
    rng = np.random.default_rng(seed)
    numel = 97  # odd on purpose: positions cross image rows
    v = rng.integers(0, 256, n * numel, dtype=np.uint8)
    h = rng.integers(0, 1 << 16, n * numel, dtype=np.uint16)
    at = _Positions(rng.integers(0, 1 << 63, n, dtype=np.uint64), rng.integers(0, 1000, n).astype(np.int64), numel)
    return v, h, at


@pytest.mark.parametrize(
    ("builder", "param"),
    [
        ("gaussian", 0.08),
        ("gaussian", 0.38),
        ("gaussian", 0.0),
        ("speckle", 0.35),
        ("shot", 12.0),
        ("shot", 500.0),
        ("impulse", 0.09),
        ("impulse", 1.0),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_samplers_equal_exact_inverse_cdf(builder, param, seed):
    """Fast table + slow path == the plain inverse CDF of the 2**-32-grid law at the full 32-bit u,
    element by element (impure cells included), and the torch (accelerator) path is bit-identical."""
    v, h, at = _random_sampler_inputs(4000, seed)
    sampler = _U8_SAMPLERS[builder](param)
    got = np.empty_like(v)
    sampler.sample_np(v, h, at, got)
    allpos = np.arange(v.size, dtype=np.int64)
    u = at.u(h, allpos)  # (E,) int64 in [0, 2**32)
    if builder == "gaussian":
        d = np.searchsorted(sampler.cdf, u, side="right") - 255
        want = np.clip(v.astype(np.int64) + d, 0, 255)
    elif builder == "impulse":
        want = np.where(u < sampler.w, 255, np.where(u < 2 * sampler.w, 0, v))
    else:
        w = _weights_from_pmf(_speckle_pmf(param) if builder == "speckle" else _shot_pmf(param))
        cdf = np.cumsum(w, axis=1)  # the same integer weights as the alias tables
        want = (cdf[v.astype(np.int64), :255] <= u[:, None]).sum(axis=1)
    mism = int((got != want).sum())
    assert mism == 0, f"{builder}({param}): {mism} of {v.size} elements differ from the exact inverse CDF"
    t = sampler.sample_t(torch.from_numpy(v), torch.from_numpy(h.astype(np.int32)), at).numpy()
    assert np.array_equal(t, got), f"torch path differs in {int((t != got).sum())} elements"


@pytest.mark.parametrize("sigma", [0.04, 0.18, 0.38])
def test_gaussian_shift_law_matches_pmf(sigma):
    """clamp(v + D): the implied (256, 256) law is within 2**-32 of the float64 pmf, tails included."""
    cdf = np.concatenate([[0], _gaussian_sampler(sigma).cdf]).astype(np.float64) / 2.0**32
    p_d = np.diff(cdf)  # P(D = d), d = -255..255
    law = np.zeros((256, 256))
    for v in range(256):
        np.add.at(law[v], np.clip(v + np.arange(-255, 256), 0, 255), p_d)
    pmf = _pmf_from_cdf(_level_cdf_from_z(((_K + 1) / 255.0 - _V / 255.0) / sigma))
    err = np.abs(law - pmf).max()
    assert err <= 2.0**-32, f"max |implied - pmf| = {err:.3g}"


def test_impulse_thresholds_match_pmf():
    for a in (0.01, 0.09, 0.27, 1.0):
        w = _impulse_sampler(a).w
        assert abs(w / 2.0**32 - a / 2) <= 2.0**-33, a


@pytest.mark.parametrize("numba_on", ["1", "0"])
def test_uint8_streams_are_pinned(monkeypatch, numba_on):
    """The uint8 noise streams are a contract (saved dataset-C files and committed results
    depend on them): this digest was taken from the release before the numba kernels and
    must not change with the backend, a table layout or a refactor."""
    monkeypatch.setenv("LNCLI_NUMBA", numba_on)
    x = torch.arange(2 * 3 * 11 * 13).remainder(256).to(torch.uint8).view(2, 3, 11, 13).repeat(40, 1, 1, 1)
    digest = hashlib.blake2b(digest_size=8)
    for noise in ("gaussian", "shot", "impulse", "speckle"):
        digest.update(corrupt(x, noise, 3, seed=2026, indices=torch.arange(80) * 3 + 100000).numpy().tobytes())
    assert digest.hexdigest() == "2a7a39d422d15931"
