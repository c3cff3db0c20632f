"""The integer laws of the uint8 noises, and the table encodings shared by samplers and kernels.

A uint8 input has only 256 intensities, so the output law of each intensity is
computed once in float64 (e.g. Poisson(v/255 l)/l pushed through
imagecorruptions' clip, x255 and truncate), a (256, 256) pmf with rows the input
level, and rounded to integer weights on a 2**-32 grid (:func:`_weights_from_pmf`).
The samplers in :mod:`lncli.noise._sampling` draw from exactly that rounded law.

The Walker/Vose alias tables here (:class:`_AliasTable`) hold the same integer
law in another form; they are the reference the tests check the pmfs and the
fast samplers against, not what :func:`lncli.noise.corrupt` runs.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_CELL_BITS = 24  # acceptance threshold resolution; 8 bits pick one of 256 cells
_TOTAL_BITS = 32  # each output probability is a multiple of 2**-32
_FAST_BITS = 12  # general fast tables: (2**12 cells x 256 levels) uint8 = 1 MiB, about L2-sized
# Gaussian shift table entries >= _SHIFT_FLAG mark impure cells: _SHIFT_FLAG + j
# when the cell holds one breakpoint, cdf[j] (out is j or j + 1), _SHIFT_MULTI
# when it holds several (far tails: binary search). Pure entries are D in [-255, 255].
# The numba kernels import these two (their word-wise flag test needs every flag to
# be an int16 with bit 14 set and bit 15 clear, i.e. in [0x4000, 0x7FFF]).
_SHIFT_FLAG = 0x4000
_SHIFT_MULTI = 0x7FFF
_SLICE = 1 << 16  # elements per CPU slice of _AliasTable.sample (results do not depend on it)

# ---------------------------------------------------------------------------
# Laws: float64 (256, 256) pmfs, rows = input level, and their 2**-32-grid weights
# ---------------------------------------------------------------------------


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


def _speckle_pmf(sigma: float) -> np.ndarray:
    """Law of ``uint8(clip(x + x sigma Z, 0, 1) * 255)``, x = v/255: out <= k iff v (1 + sigma Z) < k+1."""
    if sigma == 0:
        return np.eye(256)
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = ((_K + 1) / _V - 1.0) / sigma  # v = 0 row: +inf -> CDF 1 at every k (all mass on 0)
    return _pmf_from_cdf(_level_cdf_from_z(cut))


def _truncate_levels(y: np.ndarray) -> np.ndarray:
    """imagecorruptions' float64 -> uint8 step: clip to [0, 1], x255, truncate."""
    return np.floor(np.clip(y, 0.0, 1.0) * 255.0).astype(np.int64)


def _shot_pmf(lam: float) -> np.ndarray:
    """Exact law of ``uint8(clip(Poisson(v/255 * lam) / lam, 0, 1) * 255)`` for each v: (256, 256)."""
    kmax = math.ceil(lam)  # every k >= lam maps to 255
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


# ---------------------------------------------------------------------------
# Reference: Walker/Vose alias tables of the same integer laws
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _AliasTable:
    """Walker/Vose alias tables for a uint8 -> uint8 channel given as a (256, 256) pmf.

    Reference representation of the integer law (tests check it against the
    pmf); :func:`lncli.noise.corrupt` samples the same law with the faster
    inverse-CDF samplers of :mod:`lncli.noise._sampling` (``_InvTable``,
    ``_ShiftTable``, ``_ImpulseSampler``).

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
        step = _SLICE if x.device.type == "cpu" else max(1, xf.numel())
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


@functools.lru_cache(maxsize=64)
def _gaussian_table(sigma: float) -> _AliasTable:
    """Law of ``uint8(clip(v/255 + sigma Z, 0, 1) * 255)``: out <= k iff v/255 + sigma Z < (k+1)/255."""
    if sigma == 0:
        return _alias_from_pmf(np.eye(256))
    return _alias_from_pmf(_pmf_from_cdf(_level_cdf_from_z(((_K + 1) / 255.0 - _V / 255.0) / sigma)))


@functools.lru_cache(maxsize=64)
def _speckle_table(sigma: float) -> _AliasTable:
    """Alias tables of :func:`_speckle_pmf`."""
    return _alias_from_pmf(_speckle_pmf(sigma))


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
