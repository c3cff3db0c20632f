"""Seedable, vectorised image noise that matches imagecorruptions in distribution.

The robustness numbers in lncli (and in LocalNorm, arXiv 1902.06550) are only as
good as the noise. This module is the noise engine behind ``lncli corrupt`` and
``lncli evaluate``:

* :func:`corrupt` takes a batch ``(N, C, H, W)`` of uint8 or float-in-[0, 1]
  images on any device and returns the same dtype, shape and device. Grayscale
  stays one channel, any H and W works (28x28 included), severity 0 is clean.
* ``gaussian``, ``shot``, ``impulse`` and ``speckle`` are written in torch.
  For uint8 input they reproduce imagecorruptions 1.1.2 (ImageNet-C) exactly in
  distribution: compute on [0, 1], clip, x255 and **truncate** to uint8. Since a
  uint8 input has only 256 intensities, the output law of each intensity is
  computed once in float64 (e.g. Poisson(v/255 l)/l pushed through the truncation),
  rounded to integer weights on a 2**-32 grid, and sampled exactly by inverse
  CDF at a 32-bit uniform u: a fast table on the top bits of u (taken from one
  16-bit random word per element) settles all but ~0.1-5 % of the elements in
  one gather; the rest, whose table cell straddles a CDF breakpoint, are
  finished with the full u. Gaussian uses that out = clamp(v + D, 0, 255) with
  D = floor(255 sigma Z) independent of v (one 128 KiB table); impulse is two
  threshold compares. No per-pixel ``poisson`` call, no float round trip, no
  approximation beyond the 2**-32 grid (the Walker/Vose alias tables below
  hold the same integer law and serve as the reference in the tests).
  On the CPU these samplers run as fused numba kernels (:mod:`lncli._kernels`:
  draw, look up and finish in one pass over cache-sized chunks), bit-identical
  to the numpy code here, which is the reference and the fallback when numba
  cannot load or ``LNCLI_NUMBA=0``.
* Every other imagecorruptions corruption (blurs, weather, digital) is served
  per image through the installed package; the ones broken on the current
  numpy / scikit-image stack fail with a clear :class:`LncliError`.

Profiles map a noise name and a severity 1..5 to a constant:

* ``imagenet-c``: imagecorruptions' (Hendrycks & Dietterich) constants;
* ``cifar-10-c``: the milder constants of Hendrycks' CIFAR-10-C release;
* ``paper``: the LocalNorm authors' own protocol (see ``shared/PAPER.md``):
  multiplicative uniform "gaussian" ``x(1 + s U[0,1))``, multiplicative Poisson
  ``x(1 + Poisson(l))`` and pixel dropout shared across channels, plus their
  dataset-level min-max rescale (:func:`rescale_minmax`), which is an explicit
  separate step;
* custom: pass ``param=`` to use an explicit constant instead.

Float inputs are *not* quantised: the float result of the same formula is
returned (clipped to [0, 1], except for the ``paper`` profile, whose values are
left unclipped so that :func:`rescale_minmax` can see the real range, as the
authors' code does). uint8 inputs are always clipped and truncated.

Seeding. The noise of image ``i`` depends only on ``(seed, noise, severity, i,
C, H, W)`` where ``i`` is its position in the batch or ``indices[i]``. Random
numbers come from numpy's SFC64 bit generator, one per *block* of
``B = max(1, E // (C*H*W))`` consecutive indices (E = 2**18 elements of 16-bit
words for uint8 input, 2**16 draws for float input), seeded with a splitmix64
hash of ``(seed, noise, severity, block)``; image ``i`` takes row ``i % B`` of its
block (the profile and ``param`` are not in the hash: they change the law, not
the random numbers). The extra 16 bits of u that a few uint8 elements need are a
splitmix64 hash of (block, position in block). Hence results are bit-identical
for any batch size, chunking, order, thread count or worker split. The random
numbers are always drawn on the CPU. For uint8 images everything after that is
integer table lookups (on the device) plus an integer slow path (on the CPU),
so CUDA output is bit-identical to CPU output by construction (a ``cuda`` test
checks it, and a CPU test runs the torch code path against the numpy one; the
CUDA test has not been run on a GPU here). Float images use float32 arithmetic
after the draw, so CUDA may differ from CPU in the last bit.
SFC64's raw stream is fixed across numpy versions (uint8 path); numpy's
normal/uniform/poisson samplers (float path) carry no such promise.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from lncli import _kernels
from lncli.errors import LncliError

__all__ = [
    "NOISES",
    "PROFILES",
    "PAPER_LEVELS",
    "Profile",
    "corrupt",
    "list_noises",
    "list_profiles",
    "noise_param",
    "canonical_noise",
    "parse_severities",
    "rescale_minmax",
]

# Elements per random-number block: large enough that generator set-up (~10 us)
# is amortised, small enough that the working set stays in cache and that a
# scattered ``indices`` wastes little generation.  Changing it changes the streams.
_BLOCK_ELEMS = 1 << 16
_MASK64 = (1 << 64) - 1

# ---------------------------------------------------------------------------
# Hash-based seeding: one generator per (seed, noise, severity, block)
# ---------------------------------------------------------------------------


def _splitmix64(x: int) -> int:
    """One splitmix64 step (Steele et al.): a well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=None)
def _name_key(name: str) -> int:
    # Stable across processes (unlike hash()): the seed must not depend on PYTHONHASHSEED.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _stream_key(seed: int, noise: str, severity: int) -> int:
    k = _splitmix64(seed & _MASK64)
    k = _splitmix64(k ^ _name_key(noise))
    return _splitmix64(k ^ (severity & _MASK64))


def _block_seed(key: int, block: int) -> int:
    # 63 bits: a non-negative int64 is accepted by every seeding API (numpy, torch).
    return _splitmix64(key ^ _splitmix64(block)) >> 1


def _draw(kind: str, key: int, idx: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Per-image random numbers that depend only on (key, index, shape).

    Each block of ``B = max(1, 65536 // prod(shape))`` consecutive indices has its
    own numpy SFC64 generator seeded with ``_block_seed(key, block)``; image ``i``
    takes row ``i % B`` of its block's draw.

    Args:
        kind: ``"bits"`` (raw 32-bit words as int32, for table sampling),
            ``"uniform"`` (float32 U[0, 1)) or ``"normal"`` (float32 N(0, 1)).
        key: the stream key from :func:`_stream_key`.
        idx: int64 (N,) global image indices (CPU).
        shape: the per-image shape of the draw, e.g. (C, H, W) or (H, W).

    Returns:
        CPU tensor (N, *shape): int32 for ``"bits"``, else float32.
    """
    numel = math.prod(shape)
    n = idx.numel()
    dtype = np.int32 if kind == "bits" else np.float32
    if n == 0 or numel == 0:
        return torch.from_numpy(np.zeros((n, *shape), dtype=dtype))
    bsz = max(1, _BLOCK_ELEMS // numel)
    words = (numel + 1) // 2  # 64-bit words per image for "bits"

    def block(b: int) -> np.ndarray:  # (bsz, numel)
        bitgen = np.random.SFC64(_block_seed(key, b))
        if kind == "bits":
            # Two 32-bit draws per raw 64-bit output (little-endian word order; big-endian
            # hosts would get other bits). SFC64's raw stream is stable across numpy versions.
            return bitgen.random_raw(bsz * words).view(np.int32).reshape(bsz, 2 * words)[:, :numel]
        gen = np.random.Generator(bitgen)
        if kind == "uniform":
            return gen.random(bsz * numel, dtype=np.float32).reshape(bsz, numel)
        return gen.standard_normal(bsz * numel, dtype=np.float32).reshape(bsz, numel)

    first = int(idx[0])
    if n == 1 or bool((idx[1:] - idx[:-1] == 1).all()):
        # Contiguous indices (the common case): whole blocks, then one slice.
        b0, b1 = first // bsz, (first + n - 1) // bsz
        buf = np.concatenate([block(b) for b in range(b0, b1 + 1)]) if b1 > b0 else block(b0)
        start = first - b0 * bsz
        out = buf[start : start + n]
    else:
        # Arbitrary indices: draw each needed block once.
        idx_np = idx.numpy()
        out = np.empty((n, numel), dtype=dtype)
        blocks = idx_np // bsz
        for b in np.unique(blocks):
            rows = np.nonzero(blocks == b)[0]
            out[rows] = block(int(b))[idx_np[rows] % bsz]
    return torch.from_numpy(np.ascontiguousarray(out)).view(n, *shape)


# ---------------------------------------------------------------------------
# Exact sampling for uint8 inputs: per-intensity alias tables
# ---------------------------------------------------------------------------

_CELL_BITS = 24  # acceptance threshold resolution; 8 bits pick one of 256 cells
_TOTAL_BITS = 32  # each output probability is a multiple of 2**-32


@dataclass(frozen=True)
class _AliasTable:
    """Walker/Vose alias tables for a uint8 -> uint8 channel given as a (256, 256) pmf.

    Reference representation of the integer law (tests check it against the
    pmf); :func:`corrupt` samples the same law with the faster inverse-CDF
    samplers further down (:class:`_InvTable`, :class:`_ShiftTable`,
    :class:`_ImpulseSampler`).

    With 32 random bits ``m`` per element: cell ``k = m & 255``, threshold
    ``t = m >> 8`` (24 bits); the output is ``k`` if ``t < Q[v, k]`` else
    ``A[v, k]`` (packed into one int32 per cell so each element costs one gather).
    Built with integer arithmetic from the pmf rounded to multiples
    of 2**-32, so the sampled law equals that rounded pmf exactly (no
    approximation beyond float64 evaluation of the pmf and the 2**-32 grid).
    """

    q: Tensor  # int32 (256 * 256,): acceptance thresholds in [0, 2**24]
    alias: Tensor  # int32 (256 * 256,): alias outputs
    packed: Tensor  # int32 (256 * 256,): see _pack; one gather instead of two

    def sample(self, x: Tensor, m: Tensor) -> Tensor:
        """Map uint8 ``x`` with int32 random words ``m`` (same shape and device) to uint8.

        ``m`` is used as scratch space and overwritten.
        """
        packed = self.packed.to(x.device)
        xf, mf = x.reshape(-1), m.reshape(-1)
        out = torch.empty_like(xf)
        # CPU: slices of 64K elements with reused per-thread scratch buffers, so that
        # the ~10 integer passes stay in cache and allocate nothing.
        step = _BLOCK_ELEMS if x.device.type == "cpu" else max(1, xf.numel())
        bufs = _scratch(min(step, xf.numel()), x.device)
        for s in range(0, xf.numel(), step):
            e = min(s + step, xf.numel())
            self._sample_flat(xf[s:e], mf[s:e], packed, out[s:e], [b[: e - s] for b in bufs])
        return out.view(x.shape)

    @staticmethod
    def _sample_flat(x: Tensor, m: Tensor, packed: Tensor, out: Tensor, bufs: list[Tensor]) -> None:
        """One flat slice: x uint8 (E,), m int32 (E,) (clobbered), out uint8 (E,)."""
        k, idx, e, keep = bufs  # int32, int32, int32, bool; each (E,)
        torch.bitwise_and(m, 255, out=k)  # cell
        idx.copy_(x).bitwise_left_shift_(8).bitwise_or_(k)  # v * 256 + k
        torch.index_select(packed, 0, idx, out=e)  # (Q << 8 | A) with the sign bit flipped
        # Keep cell k iff t < Q, i.e. iff (t << 8 | 255) < (Q << 8 | A) unsigned, i.e.
        # iff (m | 255) < e after flipping both sign bits (signed compare == unsigned).
        torch.lt(m.bitwise_or_(255).bitwise_xor_(_SIGN), e, out=keep)
        mask = idx.copy_(keep).neg_()  # -1 keep, 0 alias
        a = e.bitwise_and_(255)  # alias output
        out.copy_(k.bitwise_xor_(a).bitwise_and_(mask).bitwise_xor_(a))  # keep ? k : a


_SCRATCH = threading.local()


def _scratch(size: int, device: torch.device) -> list[Tensor]:
    """Per-thread reusable buffers (3 x int32, 1 x bool) of ``size`` elements."""

    def fresh() -> list[Tensor]:
        ints = [torch.empty(size, dtype=torch.int32, device=device) for _ in range(3)]
        return [*ints, torch.empty(size, dtype=torch.bool, device=device)]

    if torch.device(device).type != "cpu":
        return fresh()  # the CUDA caching allocator already reuses memory; don't pin GPU memory here
    cache: dict[int, list[Tensor]] = _SCRATCH.__dict__.setdefault("bufs", {})
    if size not in cache:
        if len(cache) >= 8:  # bounded: at most 8 x 64K x 13 bytes per thread
            cache.clear()
        cache[size] = fresh()
    return cache[size]


_SIGN = -(1 << 31)  # int32 sign bit


def _pack(q: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """Pack (Q, A) into one int32 per cell: ((min(Q, 2**24 - 1) << 8) | A) ^ 2**31.

    A cell with Q = 2**24 (always keep) becomes Q = 2**24 - 1 with alias = itself,
    which samples the same output. The sign flip makes signed int32 comparison
    act as unsigned comparison.
    """
    cells = np.tile(np.arange(256, dtype=np.int64), (q.shape[0], 1))
    full = q >= (1 << _CELL_BITS)
    qq = np.where(full, (1 << _CELL_BITS) - 1, q)
    aa = np.where(full, cells, alias)
    e = ((qq << 8) | aa) ^ (1 << 31)  # in [0, 2**32)
    return e.astype(np.uint32).view(np.int32)


def _weights_from_pmf(pmf: np.ndarray) -> np.ndarray:
    """Round a float64 (256, 256) pmf (rows: input level) to int64 weights summing to 2**32 per row."""
    total = 1 << _TOTAL_BITS
    p = np.clip(pmf, 0.0, None)
    p = p / p.sum(axis=1, keepdims=True)
    w = np.floor(p * total).astype(np.int64)
    # Largest remainder: give the rounding deficit to the largest fractional parts.
    deficit = total - w.sum(axis=1)
    order = np.argsort(-(p * total - w), axis=1, kind="stable")
    for v in range(256):
        if deficit[v] >= 0:
            w[v, order[v, : deficit[v]]] += 1
        else:  # float rounding pushed the sum over 2**32: take the excess from the largest weights
            w[v, np.argsort(-w[v], kind="stable")[: -deficit[v]]] -= 1
    return w


def _alias_from_pmf(pmf: np.ndarray) -> _AliasTable:
    """Build exact integer alias tables from a float64 (256, 256) pmf (rows: input level)."""
    cap = 1 << _CELL_BITS
    w = _weights_from_pmf(pmf)
    q = np.full((256, 256), cap, dtype=np.int64)
    alias = np.tile(np.arange(256, dtype=np.int64), (256, 1))
    for v in range(256):
        wv = w[v].tolist()
        small = [k for k in range(256) if wv[k] < cap]
        large = [k for k in range(256) if wv[k] >= cap]
        while small and large:
            s, lg = small.pop(), large[-1]
            q[v, s], alias[v, s] = wv[s], lg
            wv[lg] -= cap - wv[s]
            if wv[lg] < cap:
                small.append(large.pop())
        # Whatever remains holds exactly one cell's worth: q = cap (always keep).
    return _AliasTable(
        torch.from_numpy(q.astype(np.int32).reshape(-1)),
        torch.from_numpy(alias.astype(np.int32).reshape(-1)),
        torch.from_numpy(_pack(q, alias).reshape(-1)),
    )


def _level_cdf_from_z(zcut: np.ndarray) -> np.ndarray:
    """Standard normal CDF (float64) of an array of cut points, via torch's ndtr."""
    return torch.special.ndtr(torch.from_numpy(zcut)).numpy()


def _pmf_from_cdf(cdf: np.ndarray) -> np.ndarray:
    """(256, 256) CDF over output levels (last column forced to 1) -> pmf."""
    cdf = np.concatenate([cdf[:, :255], np.ones((256, 1))], axis=1)
    cdf = np.maximum.accumulate(cdf, axis=1)
    return np.diff(cdf, axis=1, prepend=0.0)


_V = np.arange(256, dtype=np.float64)[:, None]  # input level, (256, 1)
_K = np.arange(256, dtype=np.float64)[None, :]  # output level, (1, 256)


@functools.lru_cache(maxsize=64)
def _gaussian_table(sigma: float) -> _AliasTable:
    """Law of ``uint8(clip(v/255 + sigma Z, 0, 1) * 255)``: out <= k iff v/255 + sigma Z < (k+1)/255."""
    if sigma == 0:
        return _alias_from_pmf(np.eye(256))
    return _alias_from_pmf(_pmf_from_cdf(_level_cdf_from_z(((_K + 1) / 255.0 - _V / 255.0) / sigma)))


def _speckle_pmf(sigma: float) -> np.ndarray:
    """Law of ``uint8(clip(x + x sigma Z, 0, 1) * 255)``, x = v/255: out <= k iff v (1 + sigma Z) < k+1."""
    if sigma == 0:
        return np.eye(256)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = ((_K + 1) / _V - 1.0) / sigma  # v = 0 row: +inf -> CDF 1 at every k (all mass on 0)
    return _pmf_from_cdf(_level_cdf_from_z(cut))


@functools.lru_cache(maxsize=64)
def _speckle_table(sigma: float) -> _AliasTable:
    """Alias tables of :func:`_speckle_pmf`."""
    return _alias_from_pmf(_speckle_pmf(sigma))


def _truncate_levels(y: np.ndarray) -> np.ndarray:
    """imagecorruptions' float64 -> uint8 step: clip to [0, 1], x255, truncate."""
    return np.floor(np.clip(y, 0.0, 1.0) * 255.0).astype(np.int64)


def _shot_pmf(lam: float) -> np.ndarray:
    """Exact law of ``uint8(clip(Poisson(v/255 * lam) / lam, 0, 1) * 255)`` for each v: (256, 256)."""
    kmax = int(math.ceil(lam))  # every k >= lam maps to 255
    k = np.arange(kmax + 1, dtype=np.float64)
    levels = _truncate_levels(k / float(lam))  # the same float64 ops as imagecorruptions
    lgam = np.array([math.lgamma(j + 1.0) for j in k])
    pmf = np.zeros((256, 256))
    for v in range(256):
        mu = v / 255.0 * lam
        if mu == 0.0:
            pk = np.zeros(kmax + 1)
            pk[0] = 1.0
        else:
            pk = np.exp(k * math.log(mu) - mu - lgam)
            pk[kmax] = max(0.0, 1.0 - pk[:kmax].sum())  # the whole tail lands on 255
        np.add.at(pmf[v], levels, pk)
    return pmf


@functools.lru_cache(maxsize=64)
def _shot_table(lam: float) -> _AliasTable:
    """Alias tables of :func:`_shot_pmf`."""
    return _alias_from_pmf(_shot_pmf(lam))


@functools.lru_cache(maxsize=64)
def _impulse_table(amount: float) -> _AliasTable:
    """skimage s&p law: keep v with prob 1 - a, else 0 or 255 with equal odds."""
    a = min(max(amount, 0.0), 1.0)
    pmf = np.eye(256) * (1.0 - a)
    pmf[:, 0] += a / 2
    pmf[:, 255] += a / 2
    return _alias_from_pmf(pmf)


# ---------------------------------------------------------------------------
# Fast exact samplers for uint8 inputs (what corrupt() uses)
# ---------------------------------------------------------------------------
#
# Each element gets a 32-bit uniform ``u = h << 16 | e``: ``h`` is a 16-bit word
# from the block's SFC64 stream (one ``random_raw`` call per block, 16 bits per
# element) and ``e`` a 16-bit splitmix64 hash of (block, position in block),
# computed only for the rare elements that need it. The output is the inverse
# CDF at u of the law rounded to the 2**-32 grid (the *same* integer weights as
# the alias tables above, :func:`_weights_from_pmf`). A fast table on the top
# bits of u (taken from h alone) gives the output for almost every element; the
# elements whose table cell straddles a CDF breakpoint ("impure" cells, marked
# in the table) are finished by an exact ``searchsorted`` on the full u.
# Nothing is approximated: the per-element law is the 2**-32-grid law exactly.

_FAST_BITS = 12  # general tables: (2**12 cells x 256 levels) uint8 = 1 MiB, about L2-sized
# Gaussian shift table entries >= _SHIFT_FLAG mark impure cells: _SHIFT_FLAG + j
# when the cell holds one breakpoint, cdf[j] (out is j or j + 1), _SHIFT_MULTI
# when it holds several (far tails: binary search). Pure entries are D in [-255, 255].
_SHIFT_FLAG = 0x4000
_SHIFT_MULTI = 0x7FFF
# Elements per random-number block of the uint8 samplers (16 bits each). Changing it changes the streams.
_U8_BLOCK_ELEMS = 1 << 18
_EXTRA_SALT = 0xE7037ED1A0B428DB  # separates the refinement hash from the block seed


@functools.lru_cache(maxsize=None)
def _on_device(t: Tensor, device: torch.device) -> Tensor:
    """Cached copy of an (immutable, cached) table on ``device``."""
    return t.to(device)


def _dev(t: Tensor, device: torch.device) -> Tensor:
    return t if device.type == "cpu" else _on_device(t, device)


def _extra16(ekey: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Low 16 bits of u at positions ``pos`` (int64) of blocks with keys ``ekey`` (uint64): splitmix64, as int64."""
    z = pos.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + ekey  # wraps mod 2**64
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(48)).astype(np.int64)


@dataclass(frozen=True)
class _Positions:
    """Where flat elements sit: flat j belongs to image j // numel, which is row ``rows[.]`` of
    the block with refinement key ``ekeys[.]``; its position in the block is ``row * numel + j % numel``."""

    ekeys: np.ndarray  # uint64 (k,): per image, _splitmix64(block seed ^ _EXTRA_SALT)
    rows: np.ndarray  # int64 (k,): per image, its row in its block
    numel: int

    def u(self, hb: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """Full 32-bit uniforms (int64) of the flat elements ``bad`` (int64), given their 16-bit words ``hb``."""
        img, col = np.divmod(bad, self.numel)
        pos = self.rows[img] * self.numel + col
        return (hb.astype(np.int64) << 16) | _extra16(self.ekeys[img], pos)


@dataclass(frozen=True, eq=False)
class _InvTable:
    """Inverse-CDF sampler of a uint8 -> uint8 law given by (256, 256) integer weights.

    ``fast[(v << 12) | s]`` (s = top 12 bits of u = ``h >> 4``) is the output for
    every u in cell s of row v, or ``marker`` when the cell is impure. Rows are
    v-major so that neighbouring pixels of similar intensity read the same
    4 KiB row (cache locality on real images). Pure cells
    whose output happens to equal ``marker`` take the exact slow path too (it
    returns the same value), so one compare finds every element to finish.
    """

    fast: Tensor  # uint8 (2**20,): index (v << 12) | s
    marker: int
    flat: np.ndarray  # int64 (256 * 255,): v * 2**32 + cdf[v, k], k = 0..254 (sorted)
    first: np.ndarray  # uint8 (2**20,): per cell, the output at the cell's first u
    nbreak: np.ndarray  # int8 (2**20,): breakpoints inside the cell, capped at 2

    @staticmethod
    def from_weights(w: np.ndarray) -> "_InvTable":
        """Build from int64 (256, 256) weights, each row summing to 2**32."""
        cdf = np.cumsum(w, axis=1)  # (256, 256), last column 2**32
        if not (cdf[:, -1] == 1 << _TOTAL_BITS).all():
            raise AssertionError("weights must sum to 2**32 per row")
        sh = _TOTAL_BITS - _FAST_BITS
        s = np.arange(1 << _FAST_BITS, dtype=np.int64)
        fast = np.empty((256, 1 << _FAST_BITS), dtype=np.int64)  # (v, cell)
        nbreak = np.empty((256, 1 << _FAST_BITS), dtype=np.int64)
        for v in range(256):
            c = cdf[v, :255]
            lo = np.searchsorted(c, s << sh, side="right")  # output at the cell's first u
            hi = np.searchsorted(c, ((s + 1) << sh) - 1, side="right")  # ... and at its last u
            fast[v], nbreak[v] = lo, hi - lo
        first = fast.astype(np.uint8).reshape(-1)
        impure = nbreak > 0
        # Marker: the level that fills the fewest pure cells (those join the slow path).
        marker = int(np.argmin(np.bincount(fast[~impure], minlength=256)))
        fast[impure] = marker
        flat = (np.arange(256, dtype=np.int64)[:, None] << 32) + cdf[:, :255]
        return _InvTable(
            torch.from_numpy(fast.astype(np.uint8).reshape(-1)),
            marker,
            flat.reshape(-1),
            first,
            np.minimum(nbreak, 2).astype(np.int8).reshape(-1),
        )

    def sample_np(self, v: np.ndarray, h: np.ndarray, at: _Positions, out: np.ndarray) -> None:
        """v uint8 (E,), h uint16 (E,) -> out uint8 (E,) (contiguous)."""
        idx = np.left_shift(v, 12, dtype=np.int32)  # (E,) int32: (v << 12) | s
        np.bitwise_or(idx, h >> 4, out=idx)
        torch.index_select(self.fast, 0, torch.from_numpy(idx), out=torch.from_numpy(out))
        bad = np.flatnonzero(out == self.marker)
        if bad.size:
            out[bad] = self._slow(v[bad], h[bad], bad, at)

    def _slow(self, vb: np.ndarray, hb: np.ndarray, bad: np.ndarray, at: _Positions) -> np.ndarray:
        """Exact outputs of the flagged elements (uint8 inputs vb, words hb, flat positions bad)."""
        vb = vb.astype(np.int64)
        cell = (vb << 12) | (hb.astype(np.intp) >> 4)
        k = self.first[cell].astype(np.int64)  # the answer for pure cells (output == marker)
        nb = self.nbreak[cell]
        need = np.flatnonzero(nb)  # cells with breakpoints (the rest are pure marker cells)
        if need.size:
            vn, kn, nbn = vb[need], k[need], nb[need]
            key = at.u(hb[need], bad[need]) + (vn << 32)
            # One breakpoint in the cell, cdf[v, k] (the usual case): one compare.
            kn += key >= self.flat[vn * 255 + np.minimum(kn, 254)]
            many = np.flatnonzero(nbn > 1)  # several (rare): binary search
            if many.size:
                kn[many] = np.searchsorted(self.flat, key[many], side="right") - vn[many] * 255
            k[need] = kn
        return k.astype(np.uint8)

    def run_kernel(self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli._kernels`)."""
        _kernels.inv_run(state, rows, x, out, numel, np.uint64(ekey), self.fast.numpy(), np.uint8(self.marker), self.flat, self.first, self.nbreak)

    def sample_t(self, v: Tensor, h: Tensor, at: _Positions) -> Tensor:
        """Torch version for accelerators: v uint8 (E,), h int32 (E,) -> uint8 (E,), bit-identical to sample_np."""
        idx = torch.bitwise_right_shift(h, 4).bitwise_or_(v.to(torch.int32).bitwise_left_shift_(12))
        out = torch.index_select(_dev(self.fast, v.device), 0, idx)
        return _fix_slow(out, out == self.marker, v, h, at, self._slow)


@dataclass(frozen=True, eq=False)
class _ShiftTable:
    """Gaussian noise on uint8 as a shift: ``out = clamp(v + D, 0, 255)``, D = floor(255 sigma Z).

    Why exact: ``v/255 + sigma Z < (k+1)/255`` iff ``255 sigma Z < k + 1 - v`` for
    integer v, k, so out <= k iff D <= k - v; D only matters in [-255, 255] (the
    ends absorb the tails, which clip to 0 or 255 for every v). One 128 KiB table
    indexed by h (the top 16 bits of u) serves all 256 intensities; it holds D,
    or a flag >= ``_SHIFT_FLAG`` where the cell straddles a breakpoint of D's CDF
    (the flag carries the breakpoint's index, so finishing needs no other table).
    """

    fast: Tensor  # int16 (2**16,)
    cdf: np.ndarray  # int64 (511,): cdf[j] = 2**32 P(D <= j - 255), rounded, j = 0..509; cdf[510] = 2**32

    @staticmethod
    def build(sigma: float) -> "_ShiftTable":
        """Tables for noise level ``sigma`` (on the [0, 1] scale)."""
        d = np.arange(-255, 255, dtype=np.float64)  # P(D <= d), d = -255..254
        p = (d >= 0).astype(np.float64) if sigma == 0 else _level_cdf_from_z((d + 1.0) / (255.0 * sigma))
        # Rounding the CDF (not the pmf) keeps every output probability, clipped
        # tails included, within 2**-32 of the exact value.
        cdf = np.maximum.accumulate(np.rint(p * float(1 << _TOTAL_BITS)).astype(np.int64))
        s = np.arange(1 << 16, dtype=np.int64)
        lo = np.searchsorted(cdf, s << 16, side="right")
        hi = np.searchsorted(cdf, ((s + 1) << 16) - 1, side="right")
        fast = np.where(lo == hi, lo - 255, np.where(hi - lo == 1, _SHIFT_FLAG + lo, _SHIFT_MULTI)).astype(np.int16)
        return _ShiftTable(torch.from_numpy(fast), np.append(cdf, 1 << _TOTAL_BITS))

    def sample_np(self, v: np.ndarray, h: np.ndarray, at: _Positions, out: np.ndarray) -> None:
        """v uint8 (E,), h uint16 (E,) -> out uint8 (E,)."""
        d = torch.index_select(self.fast, 0, torch.from_numpy(h.astype(np.int32))).numpy()  # (E,) int16
        bad = np.flatnonzero(d >= _SHIFT_FLAG)
        if bad.size:
            d[bad] = self._slow(v[bad], h[bad], bad, at)
        np.add(d, v, out=d)
        np.clip(d, 0, 255, out=d)
        np.copyto(out, d, casting="unsafe")

    def _slow(self, vb: np.ndarray, hb: np.ndarray, bad: np.ndarray, at: _Positions) -> np.ndarray:
        """Exact shifts D (int16) of the flagged elements."""
        u = at.u(hb, bad)
        flag = self.fast.numpy()[hb.astype(np.intp)].astype(np.int64)  # _SHIFT_FLAG + j, or _SHIFT_MULTI
        j = np.minimum(flag - _SHIFT_FLAG, len(self.cdf) - 2)  # multi cells: a placeholder, replaced below
        j += u >= self.cdf[j]  # one breakpoint cdf[j] in the cell (the usual case): one compare
        multi = np.flatnonzero(flag == _SHIFT_MULTI)
        if multi.size:  # several breakpoints (far tails): binary search
            j[multi] = np.searchsorted(self.cdf[:-1], u[multi], side="right")
        return (j - 255).astype(np.int16)

    def run_kernel(self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli._kernels`)."""
        _kernels.shift_run(state, rows, x, out, numel, np.uint64(ekey), self.fast.numpy(), self.cdf)

    def sample_t(self, v: Tensor, h: Tensor, at: _Positions) -> Tensor:
        """Torch version for accelerators: v uint8 (E,), h int32 (E,) -> uint8 (E,), bit-identical to sample_np."""
        d = torch.index_select(_dev(self.fast, v.device), 0, h)  # (E,) int16
        d = _fix_slow(d, d >= _SHIFT_FLAG, v, h, at, self._slow)
        return d.add_(v).clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True, eq=False)
class _ImpulseSampler:
    """Salt and pepper on uint8: u < w -> 255, w <= u < 2w -> 0, else keep (w = round(a/2 2**32))."""

    w: int  # <= 2**31

    def sample_np(self, v: np.ndarray, h: np.ndarray, at: _Positions, out: np.ndarray) -> None:
        """v uint8 (E,), h uint16 (E,) -> out uint8 (E,). Branch-free: out = (v & keep_mask) | salt_mask."""
        w1, w2 = self.w, 2 * self.w
        t1, t2 = w1 >> 16, w2 >> 16  # u < w iff h < w >> 16, or h == w >> 16 and e < w & 0xFFFF
        rep = np.ones(v.shape, bool) if t2 >= 1 << 16 else np.less(h, t2)
        keep = np.subtract(rep.view(np.uint8), 1, dtype=np.uint8)  # 0 where replaced, else 255
        np.bitwise_and(v, keep, out=out)
        np.bitwise_or(out, np.multiply(np.less(h, t1).view(np.uint8), 255, dtype=np.uint8), out=out)
        edges = self._edges()
        if edges:  # h on a threshold's own cell (2 in 65536): decide with the full u
            on_edge = np.equal(h, edges[0]) if len(edges) == 1 else np.equal(h, edges[0]) | np.equal(h, edges[1])
            bad = np.flatnonzero(on_edge)
            if bad.size:
                out[bad] = self._slow(v[bad], h[bad], bad, at)

    def _edges(self) -> list[int]:
        return [w >> 16 for w in (self.w, 2 * self.w) if w & 0xFFFF and w >> 16 < 1 << 16]

    def _slow(self, vb: np.ndarray, hb: np.ndarray, bad: np.ndarray, at: _Positions) -> np.ndarray:
        u = at.u(hb, bad)
        return np.where(u < self.w, 255, np.where(u < 2 * self.w, 0, vb)).astype(np.uint8)

    def run_kernel(self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli._kernels`)."""
        e = [*self._edges(), -1, -1]
        _kernels.impulse_run(state, rows, x, out, numel, np.uint64(ekey), np.int64(self.w), np.int32(e[0]), np.int32(e[1]))

    def sample_t(self, v: Tensor, h: Tensor, at: _Positions) -> Tensor:
        """Torch version for accelerators: v uint8 (E,), h int32 (E,) -> uint8 (E,), bit-identical to sample_np."""
        t1, t2 = self.w >> 16, (2 * self.w) >> 16
        out = v.masked_fill(h < t2, 0).masked_fill_(h < t1, 255)
        edges = self._edges()
        if not edges:
            return out
        on_edge = h == edges[0] if len(edges) == 1 else (h == edges[0]) | (h == edges[1])
        return _fix_slow(out, on_edge, v, h, at, self._slow)


def _fix_slow(out: Tensor, flag: Tensor, v: Tensor, h: Tensor, at: _Positions, slow: Callable[..., np.ndarray]) -> Tensor:
    """Overwrite the flagged elements of ``out`` with the exact slow-path values, computed on the CPU."""
    bad = torch.nonzero(flag).view(-1)
    if bad.numel():
        b = bad.cpu().numpy()
        res = slow(v[bad].cpu().numpy(), h[bad].cpu().numpy(), b, at)
        out.index_copy_(0, bad, torch.from_numpy(res).to(out.device))
    return out


_Sampler = _InvTable | _ShiftTable | _ImpulseSampler


@functools.lru_cache(maxsize=64)
def _gaussian_sampler(sigma: float) -> _ShiftTable:
    return _ShiftTable.build(sigma)


@functools.lru_cache(maxsize=16)  # ~3.5 MiB each
def _speckle_sampler(sigma: float) -> _InvTable:
    return _InvTable.from_weights(_weights_from_pmf(_speckle_pmf(sigma)))


@functools.lru_cache(maxsize=16)  # ~3.5 MiB each
def _shot_sampler(lam: float) -> _InvTable:
    return _InvTable.from_weights(_weights_from_pmf(_shot_pmf(lam)))


@functools.lru_cache(maxsize=64)
def _impulse_sampler(amount: float) -> _ImpulseSampler:
    a = min(max(amount, 0.0), 1.0)
    return _ImpulseSampler(min(int(round(a / 2 * (1 << _TOTAL_BITS))), 1 << (_TOTAL_BITS - 1)))


def _u8_words(key: int, block: int, bsz: int, numel: int) -> np.ndarray:
    """uint16 (bsz, numel): the block's 16-bit words (SFC64 raw stream, little-endian order)."""
    raw = np.random.SFC64(_block_seed(key, block)).random_raw((bsz * numel + 3) // 4)
    return raw.view(np.uint16)[: bsz * numel].reshape(bsz, numel)


def _sample_u8(x: Tensor, sampler: _Sampler, key: int, idx: Tensor, num_threads: int = 1) -> Tensor:
    """Run a uint8 sampler over a batch, block by block.

    Image i uses row ``i % B`` of block ``i // B`` (``B = max(1, 2**18 // (C*H*W))``),
    so its output depends only on (key, i): any batch size, chunking, order or
    thread count gives the same bits. On CUDA the random words are drawn on the
    CPU, the table lookups run on the device and the rare slow-path elements
    are finished on the CPU with the same code, so the output is bit-identical.

    Args:
        x: uint8 (N, C, H, W) on any device.
        sampler: the noise's table sampler.
        key: stream key from :func:`_stream_key`.
        idx: int64 (N,) CPU global indices.
        num_threads: CPU only: Python threads over blocks (numpy / torch kernels release the GIL).

    Returns:
        uint8 (N, C, H, W) on the device of ``x``.
    """
    n, numel = x.shape[0], math.prod(x.shape[1:])
    if n == 0 or numel == 0:
        return x.clone()
    bsz = max(1, _U8_BLOCK_ELEMS // numel)
    gidx = idx.numpy()
    blocks, rows = gidx // bsz, gidx % bsz
    ekeys = {int(b): _splitmix64(_block_seed(key, int(b)) ^ _EXTRA_SALT) for b in np.unique(blocks)}
    # Tasks: (block, batch positions). Contiguous indices give one slice per block.
    if n == 1 or bool((np.diff(gidx) == 1).all()):
        cuts = [0, *(np.flatnonzero(np.diff(blocks)) + 1).tolist(), n]
        tasks: list[tuple[int, slice | np.ndarray]] = [(int(blocks[a]), slice(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]
    else:
        tasks = [(b, np.flatnonzero(blocks == b)) for b in ekeys]

    def positions(b: int, pos: slice | np.ndarray) -> _Positions:
        r = rows[pos].astype(np.int64)
        return _Positions(np.full(len(r), ekeys[b], dtype=np.uint64), r, numel)

    if x.device.type != "cpu":
        # Whole batch in one pass on the device: words (N, numel) assembled on the CPU.
        words = np.empty((n, numel), dtype=np.uint16)
        for b, pos in tasks:
            words[pos] = _u8_words(key, b, bsz, numel)[rows[pos]]
        ek = np.array([ekeys[int(b)] for b in blocks], dtype=np.uint64)
        h = torch.from_numpy(words.view(np.int16)).to(x.device).to(torch.int32).bitwise_and_(0xFFFF)
        at = _Positions(ek, rows.astype(np.int64), numel)
        return sampler.sample_t(x.reshape(-1), h.view(-1), at).view(x.shape)

    xs = x.reshape(n, numel).contiguous().numpy()  # (N, numel)
    out = np.empty_like(xs)

    def fused(b: int, pos: slice | np.ndarray, at: _Positions) -> bool:
        """One fused pass over the block's rows, bit-identical to the numpy path; False if unavailable."""
        if not _kernels.enabled():
            return False
        state = _kernels.sfc64_state(_block_seed(key, b))
        dest = out[pos] if isinstance(pos, slice) else np.empty((len(pos), numel), dtype=np.uint8)
        try:
            sampler.run_kernel(state, at.rows, xs[pos].reshape(-1), dest.reshape(-1), numel, ekeys[b])
        except _kernels.CompileError as exc:  # numba cannot compile here: same bits from numpy
            _kernels.disable(f"numba kernel failed to compile: {str(exc).splitlines()[0]}")
            warnings.warn(f"lncli: {_kernels.reason_disabled()}; using the numpy noise path", RuntimeWarning, stacklevel=2)
            return False
        if not isinstance(pos, slice):
            out[pos] = dest
        return True

    def work(task: tuple[int, slice | np.ndarray]) -> None:
        b, pos = task
        at = positions(b, pos)
        if fused(b, pos, at):
            return
        words = _u8_words(key, b, bsz, numel)
        if isinstance(pos, slice):  # consecutive rows: everything is a view
            h, o = words[int(at.rows[0]) : int(at.rows[-1]) + 1], out[pos]
            sampler.sample_np(xs[pos].reshape(-1), h.reshape(-1), at, o.reshape(-1))
        else:
            o = np.empty((len(pos), numel), dtype=np.uint8)
            sampler.sample_np(xs[pos].reshape(-1), words[at.rows].reshape(-1), at, o.reshape(-1))
            out[pos] = o

    workers = min(max(1, num_threads), len(tasks))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, tasks))  # list(): re-raise the first worker exception here
    else:
        for task in tasks:
            work(task)
    return torch.from_numpy(out).view(x.shape)


# ---------------------------------------------------------------------------
# Noise functions. Signature: (x, param, ctx) -> Tensor, same dtype/shape/device.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    """What a noise function needs besides the images and its constant."""

    key: int
    idx: Tensor  # int64 (N,) CPU global indices
    severity: int
    clip: bool = True  # clip float results to [0, 1]


NoiseFn = Callable[[Tensor, float, _Ctx], Tensor]


def _finish(y: Tensor, like: Tensor, clip: bool = True) -> Tensor:
    """float result on [0, 1] -> the input's dtype: uint8 gets clip, x255, truncate; float gets clip (optional)."""
    if like.dtype == torch.uint8:
        # clamp then cast: the cast truncates toward zero, which is floor on [0, 255].
        return y.mul_(255.0).clamp_(0.0, 255.0).to(torch.uint8)
    if clip:
        y = y.clamp_(0.0, 1.0)
    return y.to(like.dtype)


def _float_input(x: Tensor) -> Tensor:
    return x.to(torch.float32, copy=True)


def _gaussian(x: Tensor, sigma: float, ctx: _Ctx) -> Tensor:
    """ImageNet-C gaussian noise: clip(x + N(0, sigma^2), 0, 1)."""
    if x.dtype == torch.uint8:
        return _sample_u8(x, _gaussian_sampler(float(sigma)), ctx.key, ctx.idx)
    z = _draw("normal", ctx.key, ctx.idx, tuple(x.shape[1:])).to(x.device)  # (N, C, H, W)
    return _finish(_float_input(x).add_(z.mul_(sigma)), x)


def _speckle(x: Tensor, sigma: float, ctx: _Ctx) -> Tensor:
    """ImageNet-C speckle noise: clip(x + x N(0, sigma^2), 0, 1)."""
    if x.dtype == torch.uint8:
        return _sample_u8(x, _speckle_sampler(float(sigma)), ctx.key, ctx.idx)
    z = _draw("normal", ctx.key, ctx.idx, tuple(x.shape[1:])).to(x.device)
    y = _float_input(x)
    return _finish(y.add_(y * z.mul_(sigma)), x)


def _check_rate(lam: float) -> None:
    if lam <= 0:
        raise LncliError(f"shot noise needs a positive rate, got {lam}")


def _shot(x: Tensor, lam: float, ctx: _Ctx) -> Tensor:
    """ImageNet-C shot noise: clip(Poisson(x lam) / lam, 0, 1)."""
    _check_rate(lam)
    if x.dtype == torch.uint8:
        return _sample_u8(x, _shot_sampler(float(lam)), ctx.key, ctx.idx)
    # Float input has no finite set of intensities: one numpy Poisson draw per
    # image, from a generator seeded by the same (seed, noise, severity, i) key.
    rates = x.detach().to("cpu", torch.float64).mul(lam).numpy()  # (N, C, H, W)
    out = np.empty(rates.shape, dtype=np.float32)
    for r, i in enumerate(ctx.idx.tolist()):
        out[r] = np.random.Generator(np.random.SFC64(_block_seed(ctx.key ^ 0x5A5A5A5A, i))).poisson(rates[r])
    return _finish(torch.from_numpy(out).div_(lam).to(x.device), x)


def _impulse(x: Tensor, amount: float, ctx: _Ctx) -> Tensor:
    """ImageNet-C impulse (salt & pepper) noise, as skimage's ``random_noise(mode='s&p')``.

    Each element (each channel independently) is replaced with probability
    ``amount``; a replaced element is salt (1) or pepper (0) with equal odds.
    """
    if x.dtype == torch.uint8:
        return _sample_u8(x, _impulse_sampler(float(amount)), ctx.key, ctx.idx)
    u = _draw("uniform", ctx.key, ctx.idx, tuple(x.shape[1:])).to(x.device)  # (N, C, H, W)
    # One uniform does both draws: u < a/2 -> salt, a/2 <= u < a -> pepper.
    return x.masked_fill(u < amount, 0.0).masked_fill_(u < amount / 2, 1.0)


def _paper_uniform(x: Tensor, sigma: float, ctx: _Ctx) -> Tensor:
    """LocalNorm authors' "gaussian": multiplicative uniform noise x (1 + sigma U[0, 1))."""
    u = _draw("uniform", ctx.key, ctx.idx, tuple(x.shape[1:])).to(x.device)
    y = _float_input(x)
    if x.dtype == torch.uint8:
        y.div_(255.0)
    return _finish(y.mul_(u.mul_(sigma).add_(1.0)), x, clip=ctx.clip)


@functools.lru_cache(maxsize=64)
def _poisson_cdf(lam: float) -> Tensor:
    kmax = int(lam + 12.0 * math.sqrt(lam) + 12.0)  # the tail beyond is < 1e-12
    k = torch.arange(kmax + 1, dtype=torch.float64)
    cdf = torch.cumsum(torch.exp(k * math.log(lam) - lam - torch.lgamma(k + 1)), 0)
    return (cdf / cdf[-1]).to(torch.float32)


def _paper_poisson(x: Tensor, lam: float, ctx: _Ctx) -> Tensor:
    """LocalNorm authors' "Poisson": multiplicative x (1 + Poisson(lam)), per element."""
    y = _float_input(x)
    if x.dtype == torch.uint8:
        y.div_(255.0)
    if lam > 0:
        u = _draw("uniform", ctx.key, ctx.idx, tuple(x.shape[1:]))
        # Exact inverse CDF of a scalar-rate Poisson (small support at the paper's rates).
        k = torch.searchsorted(_poisson_cdf(float(lam)), u.view(-1), right=True).view(u.shape)
        y.mul_(k.to(torch.float32).add_(1.0).to(x.device))
    return _finish(y, x, clip=ctx.clip)


def _paper_dropout(x: Tensor, p: float, ctx: _Ctx) -> Tensor:
    """LocalNorm authors' "MBN": zero each pixel with probability p, mask shared across channels."""
    u = _draw("uniform", ctx.key, ctx.idx, tuple(x.shape[2:])).to(x.device)  # (N, H, W)
    return x.masked_fill(u.unsqueeze(1) < p, 0)


# ---------------------------------------------------------------------------
# imagecorruptions backend (per image, uint8 HWC numpy)
# ---------------------------------------------------------------------------

# Broken on numpy >= 2 / scikit-image >= 0.19 (checked with imagecorruptions 1.1.2).
_BROKEN = {
    "gaussian_blur": "calls skimage.filters.gaussian(multichannel=...), removed in scikit-image 0.19",
    "glass_blur": "calls skimage.filters.gaussian(multichannel=...), removed in scikit-image 0.19",
    "fog": "uses np.float_, removed in NumPy 2.0",
}
BACKEND_CORRUPTIONS = (
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
    "snow", "frost", "fog", "spatter",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate",
)  # fmt: skip


def _import_backend() -> Callable[..., np.ndarray]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation inside imagecorruptions
            from imagecorruptions import corrupt as ic_corrupt
    except Exception as exc:  # ImportError, or pkg_resources missing with setuptools>=81
        raise LncliError(
            f"the imagecorruptions backend cannot be imported ({type(exc).__name__}: {exc}); "
            "install imagecorruptions and setuptools<81"
        ) from None
    return ic_corrupt


def _backend(name: str) -> NoiseFn:
    def fn(x: Tensor, severity: float, ctx: _Ctx) -> Tensor:
        if name in _BROKEN:
            raise LncliError(f"corruption {name!r} is broken in imagecorruptions on this stack: {_BROKEN[name]}")
        if x.shape[-1] < 32 or x.shape[-2] < 32:
            raise LncliError(f"corruption {name!r} (imagecorruptions) needs images of at least 32x32 px, got {tuple(x.shape[-2:])}")
        if x.shape[1] not in (1, 3):
            raise LncliError(f"corruption {name!r} (imagecorruptions) needs 1 or 3 channels, got {x.shape[1]}")
        ic_corrupt = _import_backend()
        sev = int(severity)
        if sev != severity or not 1 <= sev <= 5:
            raise LncliError(f"corruption {name!r} only has severities 1..5 (no custom param), got {severity}")
        u8 = x if x.dtype == torch.uint8 else x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        arr = u8.detach().cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        out = np.empty_like(arr)
        # imagecorruptions draws from numpy's global RNG; seed it per image from our
        # key and put the caller's state back afterwards.
        state = np.random.get_state()
        try:
            for r, i in enumerate(ctx.idx.tolist()):
                np.random.seed(_block_seed(ctx.key, i) & 0xFFFFFFFF)
                res = ic_corrupt(arr[r], severity=sev, corruption_name=name)  # (H, W, 3) uint8
                # Grayscale was stacked to RGB by imagecorruptions: average back to one channel.
                out[r] = res.mean(axis=2, keepdims=True).astype(np.uint8) if arr.shape[3] == 1 else res
        except LncliError:
            raise
        except Exception as exc:
            raise LncliError(f"imagecorruptions failed on {name!r}: {type(exc).__name__}: {exc}") from None
        finally:
            np.random.set_state(state)
        y = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)
        return y if x.dtype == torch.uint8 else y.to(x.dtype).div_(255.0)

    fn.__name__ = f"backend_{name}"
    return fn


#: Registry: noise function by name. Profiles pick a function and a constant per severity.
NOISES: dict[str, NoiseFn] = {
    "gaussian": _gaussian,
    "shot": _shot,
    "impulse": _impulse,
    "speckle": _speckle,
    "paper_uniform": _paper_uniform,
    "paper_poisson": _paper_poisson,
    "paper_dropout": _paper_dropout,
    **{name: _backend(name) for name in BACKEND_CORRUPTIONS},
}

# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A named set of (noise name -> registry function, constants for severities 1..5)."""

    name: str
    description: str
    noises: dict[str, tuple[str, tuple[float, ...]]] = field(default_factory=dict)
    clip_float: bool = True  # clip float outputs to [0, 1]


_IC_BACKEND = {name: (name, (1.0, 2.0, 3.0, 4.0, 5.0)) for name in BACKEND_CORRUPTIONS}

#: The LocalNorm authors' full level lists (shared/PAPER.md); reach any level with ``param=``.
PAPER_LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.0, 0.1, 0.2, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0),  # CIFAR sigma levels
    "poisson": (0.0, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0),  # lambda
    "dropout": tuple(round(0.05 * i, 2) for i in range(20)),  # p = 0, .05, ..., .95
}

PROFILES: dict[str, Profile] = {
    "imagenet-c": Profile(
        "imagenet-c",
        "imagecorruptions 1.1.2 / ImageNet-C constants (Hendrycks & Dietterich 2019)",
        {
            "gaussian": ("gaussian", (0.08, 0.12, 0.18, 0.26, 0.38)),
            "shot": ("shot", (60.0, 25.0, 12.0, 5.0, 3.0)),
            "impulse": ("impulse", (0.03, 0.06, 0.09, 0.17, 0.27)),
            "speckle": ("speckle", (0.15, 0.2, 0.35, 0.45, 0.6)),
            **_IC_BACKEND,
        },
    ),
    "cifar-10-c": Profile(
        "cifar-10-c",
        "Hendrycks' CIFAR-10-C constants (milder than ImageNet-C)",
        {
            "gaussian": ("gaussian", (0.04, 0.06, 0.08, 0.09, 0.10)),
            "shot": ("shot", (500.0, 250.0, 100.0, 75.0, 50.0)),
            "impulse": ("impulse", (0.01, 0.02, 0.03, 0.05, 0.07)),
        },
    ),
    "paper": Profile(
        "paper",
        "LocalNorm authors' protocol (arXiv 1902.06550): multiplicative uniform, multiplicative Poisson, "
        "pixel dropout; five of their levels as severities 1..5, float results unclipped",
        {
            "gaussian": ("paper_uniform", (0.2, 0.5, 1.0, 2.0, 5.0)),
            "poisson": ("paper_poisson", (0.05, 0.1, 0.25, 0.5, 1.0)),
            "dropout": ("paper_dropout", (0.1, 0.2, 0.3, 0.5, 0.7)),
        },
        clip_float=False,
    ),
}

# Paper aliases so that one sweep (--noise gaussian,shot,impulse) runs under every profile.
_PAPER_ALIASES = {"shot": "poisson", "impulse": "dropout", "mbn": "dropout"}


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return list(PROFILES)


def list_noises(profile: str = "imagenet-c") -> list[str]:
    """Noise names a profile knows (``_noise`` suffixes, e.g. ``gaussian_noise``, are also accepted).

    Args:
        profile: a name from :data:`PROFILES`.

    Returns:
        The noise names, the torch-native ones first.
    """
    return list(_profile(profile).noises)


def _profile(profile: str) -> Profile:
    try:
        return PROFILES[profile]
    except KeyError:
        raise LncliError(f"unknown noise profile {profile!r}; valid: {', '.join(PROFILES)}") from None


def canonical_noise(noise: str, profile: str = "imagenet-c") -> str:
    """Resolve a user noise name (``gaussian_noise``, case, paper aliases) to the profile's name.

    Raises:
        LncliError: unknown name; the message lists the valid ones.
    """
    prof = _profile(profile)
    name = noise.strip().lower().replace("-", "_")
    if name not in prof.noises and name.endswith("_noise"):
        name = name[: -len("_noise")]
    if profile == "paper":
        name = _PAPER_ALIASES.get(name, name)
    if name not in prof.noises:
        raise LncliError(f"unknown noise {noise!r} for profile {profile!r}; valid: {', '.join(prof.noises)}")
    return name


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise LncliError(f"severity must be an integer 0..5 (0 = clean), got {severity!r}")
    return int(severity)


def noise_param(noise: str, severity: int, profile: str = "imagenet-c") -> float:
    """The constant a profile uses for a noise at a severity.

    Args:
        noise: noise name (see :func:`list_noises`).
        severity: 1..5 (0 = clean, returns 0.0).
        profile: profile name.

    Returns:
        sigma for gaussian/speckle, the rate lambda for shot, the amount for
        impulse; paper: sigma, lambda, p; backend corruptions: the severity itself.
    """
    sev = _check_severity(severity)
    name = canonical_noise(noise, profile)
    if sev == 0:
        return 0.0
    return float(_profile(profile).noises[name][1][sev - 1])


def _validate_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise LncliError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise LncliError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise LncliError(f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {images.dtype}")
    if images.is_floating_point() and images.numel():
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0 or math.isnan(lo) or math.isnan(hi):
            raise LncliError(f"float images must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def corrupt(
    images: Tensor,
    noise: str,
    severity: int,
    *,
    seed: int,
    profile: str = "imagenet-c",
    indices: Sequence[int] | Tensor | None = None,
    param: float | None = None,
    num_threads: int = 1,
) -> Tensor:
    """Corrupt a batch of images with a seeded, vectorised noise.

    Args:
        images: uint8 (N, C, H, W) in [0, 255] or float (N, C, H, W) in [0, 1], CPU or CUDA.
        noise: a name from :func:`list_noises` for ``profile`` (e.g. ``"gaussian"``,
            ``"shot_noise"``, ``"impulse"``, ``"motion_blur"``).
        severity: 0 (clean: an unchanged copy) to 5.
        seed: the experiment seed. Image i's noise depends only on
            (seed, noise, severity, index of i, C, H, W).
        profile: ``"imagenet-c"``, ``"cifar-10-c"`` or ``"paper"``.
        indices: the global index of each image (default ``0..N-1``); pass the
            dataset positions when corrupting a dataset in chunks.
        param: an explicit constant (sigma, lambda, amount, p) instead of the
            profile's value for ``severity`` (custom noise). Ignored when severity is 0.
        num_threads: CPU only: run independent blocks of the batch on this many
            Python threads (numpy / torch kernels release the GIL). Opt-in
            (default 1) because callers often already run several threads, and
            on the shared 2-vCPU benchmark machine 2 threads gave no speed-up;
            the output does not depend on it.

    Returns:
        A new tensor with the dtype, shape and device of ``images``. uint8 input:
        clip, x255, truncate (as imagecorruptions). Float input: float result,
        not quantised; clipped to [0, 1] except under the ``paper`` profile.

    Raises:
        LncliError: bad dtype/shape/range, severity outside 0..5, unknown noise or
            profile, a broken or unsuitable imagecorruptions corruption.
    """
    _validate_images(images)
    sev = _check_severity(severity)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise LncliError(f"seed must be an integer, got {seed!r}")
    prof = _profile(profile)
    name = canonical_noise(noise, profile)
    n = images.shape[0]
    if indices is None:
        idx = torch.arange(n, dtype=torch.int64)
    else:
        idx = torch.as_tensor(indices, dtype=torch.int64).detach().cpu().reshape(-1)
        if idx.numel() != n:
            raise LncliError(f"indices has {idx.numel()} entries for {n} images")
        if idx.numel() and int(idx.min()) < 0:
            raise LncliError("indices must be non-negative")
    if sev == 0:
        return images.clone()
    fn_name, consts = prof.noises[name]
    value = float(consts[sev - 1]) if param is None else float(param)
    if not math.isfinite(value) or value < 0:
        raise LncliError(f"noise parameter must be finite and >= 0, got {value}")
    ctx = _Ctx(key=_stream_key(int(seed), name, sev), idx=idx, severity=sev, clip=prof.clip_float)
    with torch.no_grad():
        return _apply(NOISES[fn_name], fn_name, images, value, ctx, max(1, int(num_threads)))


# uint8 table samplers by registry function name (used by _apply with threads).
_U8_SAMPLERS: dict[str, Callable[[float], _Sampler]] = {
    "gaussian": _gaussian_sampler,
    "speckle": _speckle_sampler,
    "shot": _shot_sampler,
    "impulse": _impulse_sampler,
}

# Noises that draw one number per pixel (H, W) instead of per element (C, H, W).
_PER_PIXEL = ("paper_dropout",)


def _apply(fn: NoiseFn, fn_name: str, images: Tensor, value: float, ctx: _Ctx, num_threads: int = 1) -> Tensor:
    """Run ``fn`` on CPU in chunks that line up with the random-number blocks.

    Why: drawing a block and consuming it at once keeps the working set (a few
    hundred KiB) in cache, and independent chunks can run on
    ``torch.get_num_threads()`` Python threads (torch and numpy's bit generators
    release the GIL). Results are identical either way, since each image's noise
    depends only on its index. CUDA and the per-image backends take the batch whole.
    uint8 inputs of the table noises go to :func:`_sample_u8` (its own blocks).
    """
    if images.dtype == torch.uint8 and fn_name in _U8_SAMPLERS:
        if fn_name == "shot":
            _check_rate(value)
        return _sample_u8(images, _U8_SAMPLERS[fn_name](float(value)), ctx.key, ctx.idx, num_threads)
    n = images.shape[0]
    draw_numel = math.prod(images.shape[2:] if fn_name in _PER_PIXEL else images.shape[1:])
    bsz = max(1, _BLOCK_ELEMS // max(1, draw_numel))
    if images.device.type != "cpu" or fn_name in BACKEND_CORRUPTIONS or n <= bsz:
        return fn(images, value, ctx)
    idx = ctx.idx
    contiguous = bool((idx[1:] - idx[:-1] == 1).all())
    first = int(idx[0])
    # Chunk starts on block boundaries when indices are contiguous.
    starts = [0, *range(bsz - first % bsz if first % bsz else bsz, n, bsz)] if contiguous else list(range(0, n, bsz))
    bounds = [*starts, n]
    chunks = [(s, e) for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    out = torch.empty_like(images)

    def work(span: tuple[int, int]) -> None:
        s, e = span
        out[s:e] = fn(images[s:e], value, replace(ctx, idx=idx[s:e]))

    workers = min(num_threads, len(chunks))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, chunks))  # list(): re-raise the first worker exception here
    else:
        for span in chunks:
            work(span)
    return out


def channel_range(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel (min, max) of float (N, C, H, W) or uint8 images, as float32 on [0, 1] scale; each (C,)."""
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x / 255.0
    return x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))


def apply_minmax(
    images: Tensor, lo: Tensor, hi: Tensor, ref_lo: Tensor, ref_hi: Tensor, *, clip: bool = True
) -> Tensor:
    """Map each channel's [lo, hi] onto [ref_lo, ref_hi]: the arithmetic of :func:`rescale_minmax`.

    Separate so that a caller that streams a dataset in batches (``lncli evaluate --rescale``)
    can take the ranges over the whole set first and rescale batch by batch, exactly.

    Args:
        images: float (N, C, H, W).
        lo, hi: (C,) range of the whole noisy set.
        ref_lo, ref_hi: (C,) the reference range to map onto.
        clip: clip the result to [0, 1].

    Returns:
        float32 (N, C, H, W).
    """
    c = (slice(None), None, None)  # (C,) -> (C, 1, 1)
    span = (hi - lo).clamp_min(1e-12)  # a constant channel maps to the reference minimum
    y = (images.to(torch.float32) - lo[c]) / span[c] * (ref_hi - ref_lo)[c] + ref_lo[c]
    return y.clamp_(0.0, 1.0) if clip else y


def rescale_minmax(images: Tensor, reference: Tensor | None = None, *, clip: bool = True) -> Tensor:
    """The LocalNorm authors' dataset-level min-max rescale (PAPER.md, "Rescale").

    After noise, the *whole* noisy test set is rescaled per channel so that its
    minimum and maximum map onto the reference (training) set's per-channel
    range. Call it once on the full corrupted set (not per batch): it is a
    dataset-level statistic, which is exactly why it shifts intensity and
    contrast for BN's fixed statistics.

    Args:
        images: float (N, C, H, W), e.g. :func:`corrupt` output under the ``paper`` profile.
        reference: float or uint8 (M, C, H, W) training images, or None for the range [0, 1].
        clip: clip the result to [0, 1] (uint8 references are scaled to [0, 1] first).

    Returns:
        float32 (N, C, H, W) on the device of ``images``.
    """
    if images.dim() != 4:
        raise LncliError(f"images must be 4-D (N, C, H, W), got shape {tuple(images.shape)}")
    lo, hi = channel_range(images.to(torch.float32))
    if reference is None:
        rlo, rhi = torch.zeros_like(lo), torch.ones_like(hi)
    else:
        rlo, rhi = (t.to(lo.device) for t in channel_range(reference))
    return apply_minmax(images, lo, hi, rlo, rhi, clip=clip)


def parse_severities(spec: str) -> tuple[int, ...]:
    """Parse a severity list such as ``"1-5"``, ``"1,3,5"`` or ``"0-2,5"``.

    Args:
        spec: comma-separated integers and inclusive ranges ``a-b``, each in 0..5.

    Returns:
        The sorted, de-duplicated severities.

    Raises:
        LncliError: malformed item, reversed range or a value outside 0..5.
    """
    out: set[int] = set()
    for item in str(spec).replace(" ", "").split(","):
        if not item:
            continue
        lo_s, sep, hi_s = item.partition("-")
        if not lo_s.isdigit() or (sep and not hi_s.isdigit()):
            raise LncliError(f"bad severity {item!r} in {spec!r}; use e.g. 1-5, 1,3,5 or 0-2,5")
        lo, hi = int(lo_s), int(hi_s) if sep else int(lo_s)
        if lo > hi:
            raise LncliError(f"bad severity range {item!r}: start is after end")
        if hi > 5:
            raise LncliError(f"severity {hi} is out of range; severities are 0..5 (0 = clean)")
        out.update(range(lo, hi + 1))
    if not out:
        raise LncliError(f"no severity in {spec!r}; use e.g. 1-5")
    return tuple(sorted(out))
