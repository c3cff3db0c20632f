"""Seeding: which random numbers each image gets, independent of batching.

The noise of image ``i`` depends only on ``(seed, noise, severity, i, C, H, W)``,
where ``i`` is its position in the batch or ``indices[i]``. Random numbers come
from numpy's SFC64 bit generator, one per *block* of ``B = max(1, E // (C*H*W))``
consecutive indices (E = 2**18 elements of 16-bit words for uint8 input, 2**16
draws for float input), seeded with a splitmix64 hash of ``(seed, noise,
severity, block)``; image ``i`` takes row ``i % B`` of its block. The profile and
``param`` are not in the hash: they change the law, not the random numbers. The
extra 16 bits of a 32-bit uniform that a few uint8 elements need are a splitmix64
hash of (block, position in block). Hence results are bit-identical for any batch
size, chunking, order, thread count or worker split.

The random numbers are always drawn on the CPU. SFC64's raw stream is fixed
across numpy versions (the uint8 path); numpy's normal/uniform/poisson samplers
(the float path) carry no such promise.

Every constant here is part of the stream definition: changing one changes the
noise of every saved dataset (``tests/test_noise_sampling.py`` pins a digest).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Elements per random-number block of the float draws: large enough that generator set-up
# (~10 us) is amortised, small enough that the working set stays in cache and that a
# scattered ``indices`` wastes little generation.
_BLOCK_ELEMS = 1 << 16
# Elements per random-number block of the uint8 samplers (16 bits each).
_U8_BLOCK_ELEMS = 1 << 18
_MASK64 = (1 << 64) - 1
_EXTRA_SALT = 0xE7037ED1A0B428DB  # separates the refinement hash from the block seed


def _splitmix64(x: int) -> int:
    """One splitmix64 step (Steele et al.): a well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@functools.cache
def _name_key(name: str) -> int:
    # Stable across processes (unlike hash()): the seed must not depend on PYTHONHASHSEED.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def _stream_key(seed: int, noise: str, severity: int) -> int:
    """The 64-bit key of one (seed, noise name, severity) stream."""
    k = _splitmix64(seed & _MASK64)
    k = _splitmix64(k ^ _name_key(noise))
    return _splitmix64(k ^ (severity & _MASK64))


def _block_seed(key: int, block: int) -> int:
    """The seed of one block's generator (and of per-image generators, with the index as block)."""
    # 63 bits: a non-negative int64 is accepted by every seeding API (numpy, torch).
    return _splitmix64(key ^ _splitmix64(block)) >> 1


def image_seeds(seed: int, stream: str, indices: Iterable[int]) -> list[int]:
    """Per-image 63-bit seeds of a named random stream, each a function of ``(seed, stream, index)`` only.

    The noise engine's own per-image hash (the splitmix64 chain that seeds its random-number
    blocks, with the stream name in place of a noise name and severity 0), for callers that
    need randomness of their own that no batching, order or sharding can change:
    ``lncli evaluate --mix`` draws each image's cell with it. Distinct stream names give
    unrelated seeds, and a stream named like a noise is still not that noise's numbers (those
    are drawn per block of indices, not per index).

    Args:
        seed: the user's seed (``--seed``).
        stream: a name for this use, e.g. ``"mix"``.
        indices: global image indices (>= 0).

    Returns:
        One seed in ``[0, 2**63)`` per index, in order.
    """
    key = _stream_key(seed, stream, 0)
    return [_block_seed(key, int(i)) for i in indices]


@dataclass(frozen=True)
class _Ctx:
    """What a noise function needs besides the images and its constant."""

    key: int  # the stream key from _stream_key
    idx: Tensor  # int64 (N,) CPU global indices
    clip: bool = True  # clip float results to [0, 1]


#: A noise law: (images, constant, context) -> noisy images of the same dtype, shape and device.
NoiseFn = Callable[[Tensor, float, _Ctx], Tensor]


def _draw(kind: str, key: int, idx: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Per-image float random numbers that depend only on (key, index, shape).

    Each block of ``B = max(1, 65536 // prod(shape))`` consecutive indices has its
    own numpy SFC64 generator seeded with ``_block_seed(key, block)``; image ``i``
    takes row ``i % B`` of its block's draw.

    Args:
        kind: ``"uniform"`` (float32 U[0, 1)) or ``"normal"`` (float32 N(0, 1)).
        key: the stream key from :func:`_stream_key`.
        idx: int64 (N,) global image indices (CPU).
        shape: the per-image shape of the draw, e.g. (C, H, W) or (H, W).

    Returns:
        float32 CPU tensor (N, *shape).
    """
    numel = math.prod(shape)
    n = idx.numel()
    if n == 0 or numel == 0:
        return torch.from_numpy(np.zeros((n, *shape), dtype=np.float32))
    bsz = max(1, _BLOCK_ELEMS // numel)

    def block(b: int) -> np.ndarray:  # (bsz, numel)
        gen = np.random.Generator(np.random.SFC64(_block_seed(key, b)))
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
        out = np.empty((n, numel), dtype=np.float32)
        blocks = idx_np // bsz
        for b in np.unique(blocks):
            rows = np.nonzero(blocks == b)[0]
            out[rows] = block(int(b))[idx_np[rows] % bsz]
    return torch.from_numpy(np.ascontiguousarray(out)).view(n, *shape)


def _u8_words(key: int, block: int, bsz: int, numel: int) -> np.ndarray:
    """uint16 (bsz, numel): the block's 16-bit words (SFC64 raw stream, little-endian order)."""
    # Four 16-bit words per raw 64-bit output (big-endian hosts would get other bits).
    raw = np.random.SFC64(_block_seed(key, block)).random_raw((bsz * numel + 3) // 4)
    return raw.view(np.uint16)[: bsz * numel].reshape(bsz, numel)


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
