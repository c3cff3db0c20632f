"""Fused CPU kernels (numba) for the exact uint8 noise samplers in :mod:`lncli.noise._sampling`.

Why: the numpy path of a uint8 sampler makes about eight passes over memory per
block (draw the words, widen them, gather, flag, add, clip, narrow, finish the
flagged elements): 2.5 ns per element for gaussian on one core. These kernels do
the same arithmetic in one loop over cache-sized chunks: draw SFC64 words,
look the table up and finish the rare flagged elements with the full 32-bit u:
0.7 (impulse), 0.9 (gaussian) and 1.9 (shot) ns per element through corrupt()
at 32 px (benchmarks/results/bench_corrupt.md, 1 thread).

They are an accelerator, not a second definition: every output is bit-identical
to the numpy path (tests compare the two on many seeds, shapes and index
patterns), which stays the reference and the fallback when numba is missing,
fails to import, or ``LNCLI_NUMBA=0`` is set.

The random stream is numpy's: an SFC64 generator started from
``np.random.SFC64(seed).state`` and stepped here with the same recurrence, so
16-bit word ``p`` of a block is ``random_raw()[p // 4] >> (16 * (p % 4))``
(little-endian word order, as ``random_raw().view(np.uint16)`` reads it).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

# The shift table's flag encoding has one home. numba freezes module globals into the
# compiled code, and its on-disk cache watches only this file: after changing these
# values in _tables.py, touch this file (or delete its __pycache__) to recompile.
from lncli.noise._tables import _SHIFT_FLAG, _SHIFT_MULTI

_nb: ModuleType | None
try:  # numba is optional at import time: a broken or missing install falls back to numpy.
    import numba

    _nb = numba
    _IMPORT_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 - any import failure (ImportError, numpy ABI mismatch) means "no numba"
    _nb = None
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

__all__ = [
    "CompileError",
    "disable",
    "enabled",
    "impulse_run",
    "inv_run",
    "reason_disabled",
    "sfc64_state",
    "shift_run",
]

# Set by disable(): a kernel failed to compile on this machine, so the process uses numpy.
_DISABLED: str | None = None
# numba's own compile-time failures (typing, lowering, LLVM); anything else is a real error.
CompileError: type[Exception] = Exception

# Elements per chunk: the chunk's words (8 KiB), inputs, outputs and scratch
# stay in L1/L2 while the tables stay in L2. Not part of the stream definition.
_CHUNK = 4096


def enabled() -> bool:
    """True when the numba kernels are used (numba imported, compiled, and ``LNCLI_NUMBA`` is not ``0``)."""
    return _nb is not None and _DISABLED is None and os.environ.get("LNCLI_NUMBA", "1") != "0"


def reason_disabled() -> str | None:
    """Why the kernels are off (None when they are on): for benchmarks and reports."""
    if _nb is None:
        return f"numba unavailable ({_IMPORT_ERROR})"
    if _DISABLED is not None:
        return _DISABLED
    if os.environ.get("LNCLI_NUMBA", "1") == "0":
        return "disabled by LNCLI_NUMBA=0"
    return None


def disable(reason: str) -> None:
    """Turn the kernels off for this process (after a compile failure); the numpy path takes over."""
    global _DISABLED
    _DISABLED = reason


def sfc64_state(seed: int) -> np.ndarray:
    """uint64 (4,): the (a, b, c, counter) state numpy's ``SFC64(seed)`` starts from."""
    return np.array(np.random.SFC64(seed).state["state"]["state"], dtype=np.uint64)


if _nb is not None:
    # The jitted entry points (shift_run, inv_run, impulse_run) and the optional table/d
    # parameters of _fill16/_chunk carry no annotations on purpose: numba ignores them and
    # types each call from its arguments, and mypy would check numba's scalar arithmetic
    # against numpy's Python-level stubs, which disagree with it (np.int64 vs int, min()).
    from numba import int64, njit, uint64
    from numba.core.errors import NumbaError

    CompileError = NumbaError

    def _probe() -> None:  # pragma: no cover - never called, only decorated
        pass

    def _can_cache() -> bool:
        # numba picks its on-disk cache location when a function is decorated and raises
        # if none is writable (read-only install and home): then compile in memory instead.
        try:
            njit(cache=True)(_probe)
        except RuntimeError:
            return False
        return True

    _CACHE = _can_cache()
    _jit = njit(cache=_CACHE, nogil=True, error_model="numpy")

    @njit(cache=_CACHE, nogil=True, inline="always")
    def _step(st: np.ndarray) -> np.uint64:
        # One SFC64 step (Doty-Humphrey), as numpy's sfc64_next64.
        a, b, c, w = st[0], st[1], st[2], st[3]
        tmp = a + b + w
        st[0] = b ^ (b >> uint64(11))
        st[1] = c + (c << uint64(3))
        st[2] = ((c << uint64(24)) | (c >> uint64(40))) + tmp
        st[3] = w + uint64(1)
        return tmp

    @_jit
    def _skip(st: np.ndarray, nwords: int) -> None:
        for _ in range(nwords):
            _step(st)

    @_jit
    def _fill16(st: np.ndarray, h16: np.ndarray, nwords: int, table=None, d=None) -> None:
        """h16[4 i + k] = bits 16k..16k+15 of word i, i < nwords; with a table, also d[.] = table[h16[.]].

        Fusing the lookup into the generator loop overlaps SFC64's dependency
        chain with the gathers (faster than a separate gather loop over h16).
        """
        a, b, c, w = st[0], st[1], st[2], st[3]
        for i in range(nwords):
            tmp = a + b + w
            w += uint64(1)
            a = b ^ (b >> uint64(11))
            b = c + (c << uint64(3))
            c = ((c << uint64(24)) | (c >> uint64(40))) + tmp
            h0 = tmp & uint64(0xFFFF)
            h1 = (tmp >> uint64(16)) & uint64(0xFFFF)
            h2 = (tmp >> uint64(32)) & uint64(0xFFFF)
            h3 = tmp >> uint64(48)
            h16[4 * i] = h0
            h16[4 * i + 1] = h1
            h16[4 * i + 2] = h2
            h16[4 * i + 3] = h3
            if table is not None:  # resolved at compile time
                d[4 * i] = table[h0]
                d[4 * i + 1] = table[h1]
                d[4 * i + 2] = table[h2]
                d[4 * i + 3] = table[h3]
        st[0], st[1], st[2], st[3] = a, b, c, w

    @_jit
    def _start(state: np.ndarray, rows: np.ndarray, numel: int):
        """Set up a task's word source; returns (state copy, words buffer, consecutive, number of chunks).

        Item i of the task is row ``rows[i]`` of the block: its elements are
        flat ``i*numel .. (i+1)*numel`` of the task's inputs and outputs and
        block positions ``rows[i]*numel ..``. Consecutive rows (the common case)
        stream the words chunk by chunk (state advanced to the first word);
        any other pattern draws the block's words once into the buffer.
        """
        st = state.copy()
        k = rows.size
        consecutive = True
        for i in range(1, k):
            if rows[i] != rows[0] + i:
                consecutive = False
                break
        if consecutive:
            p0 = rows[0] * numel
            w0 = p0 // 4
            _skip(st, w0)
            nchunks = ((p0 + k * numel + 3) // 4 - w0 + _CHUNK // 4 - 1) // (_CHUNK // 4)
            return st, np.empty(_CHUNK, np.uint16), True, nchunks
        nwords = ((rows.max() + 1) * numel + 3) // 4
        hall = np.empty(4 * nwords, np.uint16)
        _fill16(st, hall, nwords)
        return st, hall, False, k * ((numel + _CHUNK - 1) // _CHUNK)

    @njit(cache=_CACHE, nogil=True, inline="always")
    def _chunk(
        c: int, st: np.ndarray, buf: np.ndarray, consecutive: bool, rows: np.ndarray, numel: int, table=None, d=None
    ):
        """Chunk c (taken in order) of a task: (its words, flat lo, flat hi, block position of lo).

        With a table, also d[:hi - lo] = table[words] (the lookup fused into the generator).
        """
        if consecutive:
            p0 = rows[0] * numel
            p1 = p0 + rows.size * numel
            w = p0 // 4 + c * (_CHUNK // 4)
            nw = min(_CHUNK // 4, (p1 + 3) // 4 - w)
            _fill16(st, buf, nw, table, d)
            lo = max(p0, 4 * w)
            hi = min(p1, 4 * (w + nw))
            off = lo - 4 * w  # > 0 only in a task's first chunk, when it starts mid-word
            if table is not None and off:
                for j in range(hi - lo):
                    d[j] = d[off + j]
            return buf[off : off + hi - lo], lo - p0, hi - p0, lo
        per_row = (numel + _CHUNK - 1) // _CHUNK
        i = c // per_row
        col = (c % per_row) * _CHUNK
        m = min(_CHUNK, numel - col)
        base = rows[i] * numel + col
        h = buf[base : base + m]
        if table is not None:
            for j in range(m):
                d[j] = table[h[j]]
        return h, i * numel + col, i * numel + col + m, base

    @njit(cache=_CACHE, nogil=True, inline="always")
    def _u32(h: int, ekey: np.uint64, pos: int) -> np.int64:
        # Full 32-bit uniform: h on top, the low 16 bits a splitmix64 hash of the
        # block position (lncli.noise._seeding._extra16).
        z = uint64(pos) * uint64(0x9E3779B97F4A7C15) + ekey
        z ^= z >> uint64(30)
        z *= uint64(0xBF58476D1CE4E5B9)
        z ^= z >> uint64(27)
        z *= uint64(0x94D049BB133111EB)
        z ^= z >> uint64(31)
        return (int64(h) << 16) | int64(z >> uint64(48))

    @_jit
    def _bsearch_right(a: np.ndarray, n: int, v: int) -> int:
        # np.searchsorted(a[:n], v, side="right") for sorted a.
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if a[mid] <= v:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @_jit
    def _flagged(d: np.ndarray, m: int, bad: np.ndarray) -> int:
        """Write the j < m with d[j] >= _SHIFT_FLAG to bad[:count]; return count.

        Flags are rare (~0.5 %), so 16 elements at a time are tested with
        64-bit words (SWAR): as uint16, a flag has bit 14 set and bit 15 clear,
        while shifts D in [-255, 255] never do. Only groups with a flag run the
        branch-free compaction.
        """
        d64 = d.view(np.uint64)  # 4 int16 lanes per word
        mask = uint64(0x4000400040004000)
        nb = 0
        ng = m // 16
        for g in range(ng):
            w0, w1, w2, w3 = d64[4 * g], d64[4 * g + 1], d64[4 * g + 2], d64[4 * g + 3]
            acc = (
                (w0 & ~(w0 >> uint64(1)))
                | (w1 & ~(w1 >> uint64(1)))
                | (w2 & ~(w2 >> uint64(1)))
                | (w3 & ~(w3 >> uint64(1)))
            )
            if acc & mask:
                for j in range(16 * g, 16 * g + 16):
                    bad[nb] = j
                    nb += d[j] >= _SHIFT_FLAG
        for j in range(16 * ng, m):
            bad[nb] = j
            nb += d[j] >= _SHIFT_FLAG
        return nb

    @_jit
    def shift_run(state, rows, x, out, numel, ekey, fast, cdf):
        """Gaussian (_sampling._ShiftTable): out = clamp(x + D, 0, 255) for flat uint8 x, out (k*numel,)."""
        d = np.empty(_CHUNK, np.int16)  # (m,) shifts D, or flags
        bad = np.empty(_CHUNK, np.int64)  # flagged positions in the chunk
        ncut = cdf.size - 1
        st, buf, consecutive, nchunks = _start(state, rows, numel)
        for c in range(nchunks):
            h, lo, hi, p = _chunk(c, st, buf, consecutive, rows, numel, fast, d)
            m = hi - lo
            nb = _flagged(d, m, bad)
            # One breakpoint cdf[jj] in the cell: D = jj - 255 + (u >= cdf[jj]), branch-free.
            nmulti = 0
            for t in range(nb):
                j = bad[t]
                dj = int64(d[j])
                jj = min(dj - _SHIFT_FLAG, ncut - 1)  # multi-cells get a placeholder, fixed below
                u = _u32(int64(h[j]), ekey, p + j)
                d[j] = jj - 255 + (u >= cdf[jj])
                bad[nmulti] = j
                nmulti += dj == _SHIFT_MULTI
            for t in range(nmulti):  # several breakpoints (far tails): binary search
                j = bad[t]
                # numba types the int64 scalar; numpy's stubs call it a signedinteger
                d[j] = _bsearch_right(cdf, ncut, _u32(int64(h[j]), ekey, p + j)) - 255  # type: ignore[arg-type]
            xs = x[lo:hi]
            os_ = out[lo:hi]
            for j in range(m):  # int16 arithmetic: vectorises (int32 min/max did not)
                v = np.int16(np.int16(xs[j]) + d[j])
                os_[j] = np.uint8(min(max(v, np.int16(0)), np.int16(255)))

    @_jit
    def _marked(o: np.ndarray, m: int, bad: np.ndarray, marker: np.uint8) -> int:
        """Write the j < m with o[j] == marker to bad[:count]; return count.

        As :func:`_flagged`, 16 bytes at a time: a byte of w ^ (marker * 0x01..01)
        is zero iff it held the marker, and (v - 0x01..01) & ~v & 0x80..80 is
        nonzero iff v has a zero byte.
        """
        o64 = o.view(np.uint64)  # 8 uint8 lanes per word
        pat = uint64(marker) * uint64(0x0101010101010101)
        ones = uint64(0x0101010101010101)
        highs = uint64(0x8080808080808080)
        nb = 0
        ng = m // 16
        for g in range(ng):
            v0 = o64[2 * g] ^ pat
            v1 = o64[2 * g + 1] ^ pat
            if ((v0 - ones) & ~v0 & highs) | ((v1 - ones) & ~v1 & highs):
                for j in range(16 * g, 16 * g + 16):
                    bad[nb] = j
                    nb += o[j] == marker
        for j in range(16 * ng, m):
            bad[nb] = j
            nb += o[j] == marker
        return nb

    @_jit
    def inv_run(state, rows, x, out, numel, ekey, fast, marker, flat, first, nbreak):
        """Inverse-CDF table (_sampling._InvTable: shot, speckle) on flat uint8 x, out (k*numel,)."""
        o = np.empty(_CHUNK, np.uint8)  # (m,) table outputs (aligned, for the word-wise marker test)
        bad = np.empty(_CHUNK, np.int64)
        st, buf, consecutive, nchunks = _start(state, rows, numel)
        for c in range(nchunks):
            h, lo, hi, p = _chunk(c, st, buf, consecutive, rows, numel)
            m = hi - lo
            xs = x[lo:hi]
            for j in range(m):
                o[j] = fast[(np.int32(xs[j]) << 12) | (np.int32(h[j]) >> 4)]
            nb = _marked(o, m, bad, marker)
            for t in range(nb):
                j = bad[t]
                v = int64(xs[j])
                hj = int64(h[j])
                cell = (v << 12) | (hj >> 4)
                kk = int64(first[cell])
                nbr = nbreak[cell]
                if nbr:  # else a pure cell whose output is the marker itself
                    key = _u32(hj, ekey, p + j) + (v << 32)
                    kk += key >= flat[v * 255 + min(kk, 254)]
                    if nbr > 1:  # several breakpoints in the cell: binary search
                        kk = _bsearch_right(flat, flat.size, key) - v * 255
                o[j] = kk
            os_ = out[lo:hi]
            for j in range(m):
                os_[j] = o[j]

    @_jit
    def impulse_run(state, rows, x, out, numel, ekey, w, e1, e2):
        """Salt and pepper (_sampling._ImpulseSampler) on flat uint8 x, out (k*numel,); e1/e2: edge cells or -1."""
        t1 = np.int32(min(w >> 16, 1 << 16))
        t2 = np.int32(min((2 * w) >> 16, 1 << 16))
        st, buf, consecutive, nchunks = _start(state, rows, numel)
        for c in range(nchunks):
            h, lo, hi, p = _chunk(c, st, buf, consecutive, rows, numel)
            m = hi - lo
            xs = x[lo:hi]
            os_ = out[lo:hi]
            for j in range(m):
                hj = np.int32(h[j])
                keep = np.uint8(0) if hj < t2 else np.uint8(255)
                salt = np.uint8(255) if hj < t1 else np.uint8(0)
                os_[j] = (xs[j] & keep) | salt
            nedge = 0
            for j in range(m):  # separate loop: a reduction in the loop above stops it vectorising
                hj = np.int32(h[j])
                nedge += (hj == e1) | (hj == e2)
            if nedge:  # h on a threshold's own cell (<= 2 in 65536): decide with the full u
                for j in range(m):
                    hj = np.int32(h[j])
                    if hj == e1 or hj == e2:
                        u = _u32(hj, ekey, p + j)
                        os_[j] = 255 if u < w else (0 if u < 2 * w else xs[j])

else:  # pragma: no cover - exercised only where numba is absent
    # None keeps the names defined; nothing calls them, since enabled() is False.
    shift_run = inv_run = impulse_run = None  # type: ignore[assignment]  # mypy types them as numba Dispatchers
