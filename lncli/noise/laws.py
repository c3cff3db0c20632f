"""The noise laws: one function per noise, and the :data:`NOISES` registry that profiles pick from.

Each law has the signature ``(x, param, ctx) -> Tensor`` (:data:`NoiseFn`) and
returns the dtype, shape and device of ``x``:

* ``gaussian``, ``shot``, ``impulse`` and ``speckle``: ImageNet-C's noises
  (imagecorruptions 1.1.2). uint8 input goes to the exact table samplers
  (:mod:`lncli.noise._sampling`): compute on [0, 1], clip, x255 and
  **truncate**, exactly in distribution. Float input is *not* quantised: the
  float result of the same formula, clipped to [0, 1].
* ``paper_uniform``, ``paper_poisson``, ``paper_dropout``: the LocalNorm authors'
  protocol (arXiv 1902.06550, as their code implements it: github.com/byin-cwi/LocalNorm1):
  multiplicative uniform ``x(1 + s U[0,1))``, multiplicative Poisson ``x(1 + Poisson(l))`` and pixel
  dropout shared across channels. Their float results are left unclipped when
  ``ctx.clip`` is off, so that :func:`lncli.noise.rescale_minmax` sees the real range.
* every other imagecorruptions corruption, through :mod:`lncli.noise.backend`.

Float images use float32 arithmetic after the draw, so an accelerator may differ
from the CPU in the last bit (uint8 output is bit-identical on every device).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from lncli.errors import LncliError
from lncli.noise._sampling import (
    _gaussian_sampler,
    _impulse_sampler,
    _sample_u8,
    _Sampler,
    _shot_sampler,
    _speckle_sampler,
)
from lncli.noise._seeding import NoiseFn, _block_seed, _Ctx, _draw
from lncli.noise.backend import BACKEND_CORRUPTIONS, backend_noise

__all__ = ["NOISES", "NoiseFn"]


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


#: Registry: noise function by name. Profiles pick a function and a constant per severity.
NOISES: dict[str, NoiseFn] = {
    "gaussian": _gaussian,
    "shot": _shot,
    "impulse": _impulse,
    "speckle": _speckle,
    "paper_uniform": _paper_uniform,
    "paper_poisson": _paper_poisson,
    "paper_dropout": _paper_dropout,
    **{name: backend_noise(name) for name in BACKEND_CORRUPTIONS},
}

# uint8 table samplers by registry name: corrupt() calls them directly, to pass num_threads.
_U8_SAMPLERS: dict[str, Callable[[float], _Sampler]] = {
    "gaussian": _gaussian_sampler,
    "speckle": _speckle_sampler,
    "shot": _shot_sampler,
    "impulse": _impulse_sampler,
}

# Laws that draw one number per pixel (H, W) instead of per element (C, H, W).
_PER_PIXEL = ("paper_dropout",)
