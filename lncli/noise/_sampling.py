"""The exact uint8 samplers: what :func:`lncli.noise.corrupt` runs for gaussian, shot, impulse, speckle.

For uint8 input these reproduce imagecorruptions 1.1.2 (ImageNet-C) exactly in
distribution, the law of each intensity being computed once
(:mod:`lncli.noise._tables`). Each element gets a 32-bit uniform ``u = h << 16 | e``:
``h`` is a 16-bit word from the block's SFC64 stream (16 bits per element) and
``e`` a 16-bit splitmix64 hash of (block, position in block), computed only for
the rare elements that need it (:mod:`lncli.noise._seeding`). The output is the
inverse CDF at u of the law rounded to the 2**-32 grid. A fast table on the top
bits of u (taken from h alone) settles all but ~0.1-5 % of the elements in one
gather; the elements whose table cell straddles a CDF breakpoint ("impure"
cells, marked in the table) are finished exactly with the full u. Gaussian uses
that out = clamp(v + D, 0, 255) with D = floor(255 sigma Z) independent of v (one
128 KiB table); impulse is two threshold compares. Nothing is approximated: the
per-element law is the 2**-32-grid law exactly.

Each sampler has three bit-identical paths: ``sample_np`` (numpy, the reference
and the fallback), ``run_kernel`` (fused numba, :mod:`lncli.noise._kernels`, the
CPU default) and ``sample_t`` (torch, for accelerators: table lookups on the
device, the rare exact finish on the CPU, so CUDA output equals CPU output by
construction).
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lncli.noise import _kernels
from lncli.noise._seeding import _EXTRA_SALT, _U8_BLOCK_ELEMS, _block_seed, _Positions, _splitmix64, _u8_words
from lncli.noise._tables import (
    _FAST_BITS,
    _SHIFT_FLAG,
    _SHIFT_MULTI,
    _TOTAL_BITS,
    _level_cdf_from_z,
    _shot_pmf,
    _speckle_pmf,
    _weights_from_pmf,
)


@functools.cache
def _on_device(t: Tensor, device: torch.device) -> Tensor:
    """Cached copy of an (immutable, cached) table on ``device``."""
    return t.to(device)


def _dev(t: Tensor, device: torch.device) -> Tensor:
    return t if device.type == "cpu" else _on_device(t, device)


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
    def from_weights(w: np.ndarray) -> _InvTable:
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

    def run_kernel(
        self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int
    ) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli.noise._kernels`)."""
        _kernels.inv_run(
            state,
            rows,
            x,
            out,
            numel,
            np.uint64(ekey),
            self.fast.numpy(),
            np.uint8(self.marker),
            self.flat,
            self.first,
            self.nbreak,
        )

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
    def build(sigma: float) -> _ShiftTable:
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

    def run_kernel(
        self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int
    ) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli.noise._kernels`)."""
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

    def run_kernel(
        self, state: np.ndarray, rows: np.ndarray, x: np.ndarray, out: np.ndarray, numel: int, ekey: int
    ) -> None:
        """Fused numba version of sample_np over one block's rows (see :mod:`lncli.noise._kernels`)."""
        e = [*self._edges(), -1, -1]
        _kernels.impulse_run(
            state, rows, x, out, numel, np.uint64(ekey), np.int64(self.w), np.int32(e[0]), np.int32(e[1])
        )

    def sample_t(self, v: Tensor, h: Tensor, at: _Positions) -> Tensor:
        """Torch version for accelerators: v uint8 (E,), h int32 (E,) -> uint8 (E,), bit-identical to sample_np."""
        t1, t2 = self.w >> 16, (2 * self.w) >> 16
        out = v.masked_fill(h < t2, 0).masked_fill_(h < t1, 255)
        edges = self._edges()
        if not edges:
            return out
        on_edge = h == edges[0] if len(edges) == 1 else (h == edges[0]) | (h == edges[1])
        return _fix_slow(out, on_edge, v, h, at, self._slow)


def _fix_slow(
    out: Tensor, flag: Tensor, v: Tensor, h: Tensor, at: _Positions, slow: Callable[..., np.ndarray]
) -> Tensor:
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
    return _ImpulseSampler(min(round(a / 2 * (1 << _TOTAL_BITS)), 1 << (_TOTAL_BITS - 1)))


# (block, batch positions of the images drawn from it): one unit of work.
_Task = tuple[int, slice | np.ndarray]


@dataclass(frozen=True)
class _Plan:
    """How a batch of ``numel``-element uint8 images maps onto the blocks of one stream.

    Image i uses row ``i % B`` of block ``i // B`` (``B = max(1, 2**18 // numel)``).
    """

    key: int  # stream key from _stream_key
    numel: int  # elements per image
    bsz: int  # B: images per block
    blocks: np.ndarray  # int64 (N,): block of each image
    rows: np.ndarray  # int64 (N,): row of each image in its block
    ekeys: dict[int, int]  # block -> refinement key of its extra 16 bits
    tasks: list[_Task]

    @staticmethod
    def make(key: int, idx: Tensor, numel: int) -> _Plan:
        """Plan for global indices ``idx`` (int64 (N,), CPU, N >= 1)."""
        n = idx.numel()
        bsz = max(1, _U8_BLOCK_ELEMS // numel)
        gidx = idx.numpy()
        blocks, rows = gidx // bsz, gidx % bsz
        ekeys = {int(b): _splitmix64(_block_seed(key, int(b)) ^ _EXTRA_SALT) for b in np.unique(blocks)}
        tasks: list[_Task]
        if n == 1 or bool((np.diff(gidx) == 1).all()):  # contiguous indices: one slice per block
            cuts = [0, *(np.flatnonzero(np.diff(blocks)) + 1).tolist(), n]
            tasks = [(int(blocks[a]), slice(a, b)) for a, b in itertools.pairwise(cuts)]
        else:
            tasks = [(b, np.flatnonzero(blocks == b)) for b in ekeys]
        return _Plan(key, numel, bsz, blocks, rows, ekeys, tasks)

    def positions(self, b: int, pos: slice | np.ndarray) -> _Positions:
        """Where the images at batch positions ``pos`` (all in block ``b``) draw from."""
        r = self.rows[pos].astype(np.int64)
        return _Positions(np.full(len(r), self.ekeys[b], dtype=np.uint64), r, self.numel)

    def words(self, b: int) -> np.ndarray:
        """uint16 (B, numel): block ``b``'s 16-bit words."""
        return _u8_words(self.key, b, self.bsz, self.numel)


def _sample_u8(x: Tensor, sampler: _Sampler, key: int, idx: Tensor, num_threads: int = 1) -> Tensor:
    """Run a uint8 sampler over a batch, block by block.

    Image i's output depends only on (key, i): any batch size, chunking, order or
    thread count gives the same bits. On an accelerator the random words are drawn
    on the CPU, the table lookups run on the device and the rare slow-path
    elements are finished on the CPU with the same code, so the output is bit-identical.

    Args:
        x: uint8 (N, C, H, W) on any device.
        sampler: the noise's table sampler.
        key: stream key from :func:`lncli.noise._seeding._stream_key`.
        idx: int64 (N,) CPU global indices.
        num_threads: CPU only: Python threads over blocks (the numba kernels, numpy and torch release the GIL).

    Returns:
        uint8 (N, C, H, W) on the device of ``x``.
    """
    n, numel = x.shape[0], math.prod(x.shape[1:])
    if n == 0 or numel == 0:
        return x.clone()
    plan = _Plan.make(key, idx, numel)
    if x.device.type != "cpu":
        return _sample_device(x, sampler, plan)
    xs = x.reshape(n, numel).contiguous().numpy()  # (N, numel)
    out = np.empty_like(xs)

    def work(task: _Task) -> None:
        _run_task(sampler, plan, task, xs, out)

    workers = min(max(1, num_threads), len(plan.tasks))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, plan.tasks))  # list(): re-raise the first worker exception here
    else:
        for task in plan.tasks:
            work(task)
    return torch.from_numpy(out).view(x.shape)


def _sample_device(x: Tensor, sampler: _Sampler, plan: _Plan) -> Tensor:
    """The whole batch in one pass on the device; its words (N, numel) assembled on the CPU."""
    n = x.shape[0]
    words = np.empty((n, plan.numel), dtype=np.uint16)
    for b, pos in plan.tasks:
        words[pos] = plan.words(b)[plan.rows[pos]]
    ek = np.array([plan.ekeys[int(b)] for b in plan.blocks], dtype=np.uint64)
    h = torch.from_numpy(words.view(np.int16)).to(x.device).to(torch.int32).bitwise_and_(0xFFFF)  # (N, numel)
    at = _Positions(ek, plan.rows.astype(np.int64), plan.numel)
    return sampler.sample_t(x.reshape(-1), h.view(-1), at).view(x.shape)


def _run_task(sampler: _Sampler, plan: _Plan, task: _Task, xs: np.ndarray, out: np.ndarray) -> None:
    """Sample one block's images: xs, out uint8 (N, numel) of the whole batch; writes out[pos]."""
    b, pos = task
    at = plan.positions(b, pos)
    if _run_fused(sampler, plan, task, at, xs, out):
        return
    words = plan.words(b)
    if isinstance(pos, slice):  # consecutive rows: everything is a view
        h, o = words[int(at.rows[0]) : int(at.rows[-1]) + 1], out[pos]
        sampler.sample_np(xs[pos].reshape(-1), h.reshape(-1), at, o.reshape(-1))
    else:
        o = np.empty((len(pos), plan.numel), dtype=np.uint8)
        sampler.sample_np(xs[pos].reshape(-1), words[at.rows].reshape(-1), at, o.reshape(-1))
        out[pos] = o


def _run_fused(sampler: _Sampler, plan: _Plan, task: _Task, at: _Positions, xs: np.ndarray, out: np.ndarray) -> bool:
    """One fused numba pass over the task, bit-identical to the numpy path; False if the kernels are off."""
    if not _kernels.enabled():
        return False
    b, pos = task
    state = _kernels.sfc64_state(_block_seed(plan.key, b))
    dest = out[pos] if isinstance(pos, slice) else np.empty((len(pos), plan.numel), dtype=np.uint8)
    try:
        sampler.run_kernel(state, at.rows, xs[pos].reshape(-1), dest.reshape(-1), plan.numel, plan.ekeys[b])
    except _kernels.CompileError as exc:  # numba cannot compile here: same bits from numpy
        _kernels.disable(f"numba kernel failed to compile: {str(exc).splitlines()[0]}")
        warnings.warn(f"lncli: {_kernels.reason_disabled()}; using the numpy noise path", RuntimeWarning, stacklevel=3)
        return False
    if not isinstance(pos, slice):
        out[pos] = dest
    return True
