"""``corrupt()``: validate the request, pick the law and constant, and run it over the batch.

The input checks all happen before any noise is drawn, and each raises one
clear :class:`lncli.errors.LncliError`. The batch is then cut into chunks that
line up with the random-number blocks (:mod:`lncli.noise._seeding`), so that the
result never depends on the batch size, the chunking or the thread count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from lncli.errors import LncliError
from lncli.noise._sampling import _sample_u8
from lncli.noise._seeding import _BLOCK_ELEMS, NoiseFn, _Ctx, _stream_key
from lncli.noise.backend import BACKEND_CORRUPTIONS
from lncli.noise.laws import _PER_PIXEL, _U8_SAMPLERS, NOISES, _check_rate
from lncli.noise.profiles import _check_severity, _profile, canonical_noise

__all__ = ["corrupt"]


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


def _global_indices(indices: Sequence[int] | Tensor | None, n: int) -> Tensor:
    """int64 (n,) CPU: the global index of each image (default ``0..n-1``), checked."""
    if indices is None:
        return torch.arange(n, dtype=torch.int64)
    idx = torch.as_tensor(indices, dtype=torch.int64).detach().cpu().reshape(-1)
    if idx.numel() != n:
        raise LncliError(f"indices has {idx.numel()} entries for {n} images")
    if idx.numel() and int(idx.min()) < 0:
        raise LncliError("indices must be non-negative")
    return idx


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
            Python threads (the numba kernels, numpy and torch release the GIL).
            Opt-in (default 1) because callers often already run several threads;
            the output does not depend on it (measured speed-ups: benchmarks/README.md).

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
    idx = _global_indices(indices, images.shape[0])
    if sev == 0:
        return images.clone()
    fn_name, consts = prof.noises[name]
    value = float(consts[sev - 1]) if param is None else float(param)
    if not math.isfinite(value) or value < 0:
        raise LncliError(f"noise parameter must be finite and >= 0, got {value}")
    ctx = _Ctx(key=_stream_key(int(seed), name, sev), idx=idx, clip=prof.clip_float)
    with torch.no_grad():
        return _apply(NOISES[fn_name], fn_name, images, value, ctx, max(1, int(num_threads)))


def _apply(fn: NoiseFn, fn_name: str, images: Tensor, value: float, ctx: _Ctx, num_threads: int = 1) -> Tensor:
    """Run the law ``fn`` (registry name ``fn_name``) on CPU in chunks that line up with the random-number blocks.

    Why: drawing a block and consuming it at once keeps the working set (a few
    hundred KiB) in cache, and independent chunks can run on ``num_threads``
    Python threads (default 1; torch and numpy's bit generators release the GIL).
    Results are identical either way, since each image's noise depends only on
    its index. Accelerators and the per-image backend take the batch whole.
    uint8 inputs of the table noises go to :func:`_sample_u8` (its own blocks).

    Args:
        fn: the noise law.
        fn_name: its name in :data:`NOISES`.
        images: uint8 or float (N, C, H, W), already validated.
        value: the law's constant.
        ctx: the stream key, global indices and clip flag.
        num_threads: CPU threads over chunks (>= 1).

    Returns:
        A new tensor with the dtype, shape and device of ``images``.
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
    chunks = [(s, e) for s, e in itertools.pairwise(bounds) if e > s]
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
