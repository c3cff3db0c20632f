"""The numba kernels (lncli.noise._kernels) are bit-identical to the numpy reference path.

The numpy path is itself tested against the exact inverse CDF and against
imagecorruptions (test_noise_sampling.py, test_noise_laws.py), so equality here
carries those guarantees over to the fast path that users get by default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lncli.noise._kernels as K
from lncli.noise import corrupt
from lncli.noise._sampling import _gaussian_sampler, _impulse_sampler, _ImpulseSampler, _InvTable, _shot_sampler
from lncli.noise._seeding import _EXTRA_SALT, _block_seed, _Positions, _splitmix64, _stream_key
from lncli.noise._tables import _SHIFT_FLAG, _SHIFT_MULTI
from lncli.noise.laws import _U8_SAMPLERS

pytestmark = pytest.mark.skipif(not K.enabled(), reason=f"numba kernels off: {K.reason_disabled()}")

# Constants span the regimes: no noise, mild and heavy noise (heavy gaussian has
# multi-breakpoint cells in the tails), everything replaced (impulse 1.0).
_CASES = [
    ("gaussian", 0.0),
    ("gaussian", 0.04),
    ("gaussian", 0.18),
    ("gaussian", 0.38),
    ("gaussian", 2.0),
    ("speckle", 0.35),
    ("shot", 3.0),
    ("shot", 60.0),
    ("shot", 500.0),
    ("impulse", 0.01),
    ("impulse", 0.27),
    ("impulse", 1.0),
]


def _block(seed: int, numel: int, nrows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A block's state, its 16-bit words (nrows, numel) as numpy draws them, and a refinement key."""
    block_seed = _block_seed(_stream_key(seed, "test", 1), 0)
    raw = np.random.SFC64(block_seed).random_raw((nrows * numel + 3) // 4)
    words = raw.view(np.uint16)[: nrows * numel].reshape(nrows, numel)
    ekey = _splitmix64(block_seed ^ _EXTRA_SALT)
    return K.sfc64_state(block_seed), words, ekey


def _numpy_rows(sampler, x: np.ndarray, words: np.ndarray, rows: np.ndarray, ekey: int) -> np.ndarray:
    """The numpy reference on rows ``rows`` of a block: x (k, numel) uint8 -> (k, numel) uint8."""
    k, numel = x.shape
    at = _Positions(np.full(k, ekey, dtype=np.uint64), rows.astype(np.int64), numel)
    out = np.empty(k * numel, dtype=np.uint8)
    sampler.sample_np(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(words[rows]).reshape(-1), at, out)
    return out.reshape(k, numel)


def test_sfc64_stream_matches_numpy():
    for seed in (0, 1, 2**62 + 12345):
        st = K.sfc64_state(seed)
        h = np.empty(4 * 1001, dtype=np.uint16)
        K._fill16(st.copy(), h, 1001)
        assert np.array_equal(h, np.random.SFC64(seed).random_raw(1001).view(np.uint16))
        # skipping words then filling continues the same stream
        st2 = st.copy()
        K._skip(st2, 500)
        h2 = np.empty(4 * 501, dtype=np.uint16)
        K._fill16(st2, h2, 501)
        assert np.array_equal(h2, h[4 * 500 :])


@pytest.mark.parametrize(("builder", "param"), _CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_equals_numpy_on_consecutive_rows(builder, param, seed):
    """Rows r0.. of a block, with numel not a multiple of 4 and r0 > 0 (the stream starts mid-word)."""
    sampler = _U8_SAMPLERS[builder](param)
    numel, nrows = 3 * 37 * 29, 24  # 3219 elements: chunks end mid-row and mid-word
    state, words, ekey = _block(seed, numel, nrows)
    rng = np.random.default_rng(seed)
    for r0, k in ((0, nrows), (3, 17), (nrows - 1, 1)):
        rows = np.arange(r0, r0 + k, dtype=np.int64)
        x = rng.integers(0, 256, (k, numel), dtype=np.uint8)
        want = _numpy_rows(sampler, x, words, rows, ekey)
        got = np.empty(k * numel, dtype=np.uint8)
        sampler.run_kernel(state, rows, x.reshape(-1), got, numel, ekey)
        mism = int((got.reshape(k, numel) != want).sum())
        assert mism == 0, f"{builder}({param}) rows {r0}..{r0 + k}: {mism} elements differ"


@pytest.mark.parametrize(("builder", "param"), _CASES)
def test_kernel_equals_numpy_on_scattered_rows(builder, param):
    """Rows in any order, with repeats (one image index asked for twice gets the same noise)."""
    sampler = _U8_SAMPLERS[builder](param)
    numel, nrows = 5000, 40  # rows longer than a chunk
    state, words, ekey = _block(7, numel, nrows)
    rows = np.array([5, 1, 39, 1, 20, 0, 6], dtype=np.int64)
    x = np.random.default_rng(3).integers(0, 256, (len(rows), numel), dtype=np.uint8)
    want = _numpy_rows(sampler, x, words, rows, ekey)
    got = np.empty(x.size, dtype=np.uint8)
    sampler.run_kernel(state, rows, x.reshape(-1), got, numel, ekey)
    assert np.array_equal(got.reshape(x.shape), want)


def test_slow_paths_are_exercised_and_exact():
    """On 2**20 elements every rare branch fires: gaussian single- and multi-breakpoint
    cells, shot impure cells, impulse threshold edges; outputs still equal numpy's."""
    numel, nrows = 1 << 14, 64
    state, words, ekey = _block(11, numel, nrows)
    rows = np.arange(nrows, dtype=np.int64)
    h = words.reshape(-1)
    x = np.random.default_rng(0).integers(0, 256, (nrows, numel), dtype=np.uint8)
    g = _gaussian_sampler(0.18)  # 16 multi-breakpoint cells in the tails (0.38 has none: they clip)
    fast = g.fast.numpy()[h]
    assert (fast == _SHIFT_MULTI).sum() > 10 and ((fast >= _SHIFT_FLAG) & (fast != _SHIFT_MULTI)).sum() > 1000
    imp = _impulse_sampler(0.09)
    assert np.isin(h, imp._edges()).sum() > 10
    for sampler in (g, imp, _shot_sampler(60.0)):
        want = _numpy_rows(sampler, x, words, rows, ekey)
        got = np.empty(x.size, dtype=np.uint8)
        sampler.run_kernel(state, rows, x.reshape(-1), got, numel, ekey)
        assert np.array_equal(got.reshape(x.shape), want), type(sampler).__name__


@pytest.mark.parametrize("profile", ["imagenet-c", "cifar-10-c"])
@pytest.mark.parametrize("shape", [(300, 3, 17, 19), (50, 1, 28, 28), (2, 3, 300, 300)])
def test_corrupt_identical_with_and_without_numba(monkeypatch, profile, shape):
    """Whole corrupt() calls, over block boundaries (300 images of 969 elements span two
    blocks; a 270000-element image is a block of its own), contiguous and scattered indices."""
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    n = shape[0]
    for noise in ("gaussian", "shot", "impulse"):
        for indices in (
            None,
            torch.arange(n) + 777,
            torch.randperm(n, generator=torch.Generator().manual_seed(2)) * 13,
        ):
            for threads in (1, 2):
                monkeypatch.setenv("LNCLI_NUMBA", "1")
                fast = corrupt(x, noise, 4, seed=5, profile=profile, indices=indices, num_threads=threads)
                monkeypatch.setenv("LNCLI_NUMBA", "0")
                ref = corrupt(x, noise, 4, seed=5, profile=profile, indices=indices, num_threads=threads)
                assert torch.equal(fast, ref), (noise, profile, shape, indices is None, threads)


def test_env_switch_disables_kernels(monkeypatch):
    monkeypatch.setenv("LNCLI_NUMBA", "0")
    assert not K.enabled() and "LNCLI_NUMBA=0" in K.reason_disabled()

    def boom(*args, **kwargs):
        raise AssertionError("kernel called while disabled")

    monkeypatch.setattr(K, "shift_run", boom)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    corrupt(x, "gaussian", 3, seed=0)  # numpy path: no kernel call
    monkeypatch.setenv("LNCLI_NUMBA", "1")
    with pytest.raises(AssertionError, match="kernel called"):
        corrupt(x, "gaussian", 3, seed=0)


def test_compile_failure_falls_back_to_numpy(monkeypatch):
    """A numba compile error (odd CPU, broken LLVM) warns once and gives the numpy path's bits."""
    x = torch.randint(0, 256, (30, 3, 9, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    monkeypatch.setenv("LNCLI_NUMBA", "0")
    want = corrupt(x, "shot", 2, seed=1)
    monkeypatch.setenv("LNCLI_NUMBA", "1")

    def fail(*args, **kwargs):
        raise K.CompileError("cannot lower this here")

    monkeypatch.setattr(_InvTable, "run_kernel", fail)
    monkeypatch.setattr(K, "_DISABLED", None)
    with pytest.warns(RuntimeWarning, match="failed to compile: cannot lower"):
        got = corrupt(x, "shot", 2, seed=1)
    assert torch.equal(got, want)
    assert not K.enabled() and "failed to compile" in K.reason_disabled()


def test_other_kernel_errors_are_not_swallowed(monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError("a real bug")

    monkeypatch.setattr(_ImpulseSampler, "run_kernel", fail)
    with pytest.raises(ValueError, match="a real bug"):
        corrupt(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "impulse", 2, seed=1)


def test_no_writable_cache_still_works():
    """Where numba finds no writable cache location (read-only install and home), the
    kernels compile in memory instead of failing lncli's import, and give the same bits."""
    import os
    import subprocess
    import sys

    code = (
        "import os, torch, lncli.noise._kernels as K\n"
        "from lncli.noise import corrupt\n"
        "assert not K._CACHE and K.enabled(), K.reason_disabled()\n"
        "x = torch.randint(0, 256, (3, 1, 9, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))\n"
        "fast = corrupt(x, 'gaussian', 3, seed=0)\n"
        "os.environ['LNCLI_NUMBA'] = '0'\n"
        "assert torch.equal(fast, corrupt(x, 'gaussian', 3, seed=0))\n"
        "print('ok')\n"
    )
    # The IPython locator never applies to a .py file: numba then has no cache location at all.
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "numba.core.caching.IPythonCacheLocator", "LNCLI_NUMBA": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_shift_flags_are_found_word_wise():
    """The kernels' 16-at-a-time flag test finds exactly the entries >= _SHIFT_FLAG, for every
    pure shift D in [-255, 255] and both flag kinds (it relies on the flags' bit pattern)."""
    rng = np.random.default_rng(0)
    values = np.concatenate([np.arange(-255, 256), [_SHIFT_FLAG, _SHIFT_FLAG + 509, _SHIFT_MULTI]]).astype(np.int16)
    for _ in range(20):
        d = rng.choice(values, size=K._CHUNK).astype(np.int16)
        d[rng.random(K._CHUNK) < 0.9] = rng.integers(-255, 256)  # mostly pure, as in real tables
        for m in (K._CHUNK, 1000, 17):  # whole 16-lane groups and a tail
            bad = np.empty(K._CHUNK, dtype=np.int64)
            nb = K._flagged(d, m, bad)
            assert np.array_equal(bad[:nb], np.flatnonzero(d[:m] >= _SHIFT_FLAG))
