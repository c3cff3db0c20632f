"""Copy-free grouped normalisation for the CPU: LocalNorm2d's training and ``local`` kernel.

:func:`grouped_norm` normalises every group of a batch by its own statistics, with
BatchNorm's exact gradient, without the transposed copies that the native
``F.batch_norm`` route needs for consecutive groups. :class:`~lncli.nn.LocalNorm2d`
calls it for contiguous float32/float64 CPU input with more than one pixel per map.

Why a kernel of its own: PyTorch's CPU batch_norm computes batch statistics several
times slower than one elementwise pass, its backward is slower still, and consecutive
groups need transposed copies of x, y and both gradients (benchmarks/bench_norm.py
times the result against BatchNorm). Here every tensor op runs on a view of the data:
the statistics come from one fused row reduction (sum and sum of squares per
(sample, channel) row, from the native batch_norm backward kernel), and the output and
the input gradient are written in place into the one new buffer each direction needs.
(``torch.var_mean`` is not used: it was slower than BatchNorm's own statistics.)

Precision: E[x^2] - E[x]^2 cancels in fp32 when |mean| >> std (error ~ (mean/std)^2 * 1e-7),
and even exact statistics leave x*invstd - mean*invstd with an error ~ (mean/std) * 6e-8. So
all the maths runs on z = x - K, K a per-(group, channel) shift near the group's mean (the
mean of the group's first sample): x - K is exact in fp32 when x and K are within a factor 2
of each other (Sterbenz), as they are whenever the mean is far from zero, and a per-group
shift changes neither the output nor the gradient. z is written into the output buffer,
which is then normalised in place; the backward rebuilds it in the input-gradient buffer.

Layout: x is (m*g, C, H, W), m groups of g samples. ``consecutive``: sample k*g + j is
member j of group k. Otherwise (strided, or one group): sample j*m + k is member j of
group k. Per-(group, channel) vectors are (m*C,), group-major.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["group_moments", "grouped_norm"]

#: Re-centre (see :func:`_shifted_stats`) when a shift is more than sqrt(16) = 4 std from its
#: group's mean: E[z^2] - E[z]^2 then loses up to ~17 * 1e-7 of the variance. The mean of one
#: member's map is at most sqrt(G - 1) std from its group's mean, so for G <= 17 it never fires.
_RECENTRE = 16.0


def _row_view(x: Tensor, g: int, m: int, consecutive: bool) -> Tensor:
    """A view of x (m*g, C, H, W) in which dim 1 enumerates rows that share parameters.

    Strided (or trivial) grouping: (g, m*C, H, W), dim 1 = (group, channel).
    Consecutive grouping: (1, N*C, H, W), dim 1 = (sample, channel).
    """
    n, c, h, w = x.shape
    return x.view(1, n * c, h, w) if consecutive else x.view(g, m * c, h, w)


def _group_view(x: Tensor, v: Tensor, g: int, m: int, consecutive: bool) -> tuple[Tensor, Tensor]:
    """x (m*g, C, H, W) and a per-(group, channel) vector v (m*C,) as views that broadcast.

    Consecutive: x as (m, g, C, H*W), v as (m, 1, C, 1). Strided (or trivial): x as
    (g, m*C, H*W), v as (1, m*C, 1).
    """
    c, h, w = x.shape[1:]
    if consecutive:
        return x.view(m, g, c, h * w), v.view(m, 1, c, 1)
    return x.view(g, m * c, h * w), v.view(1, m * c, 1)


def _expand_all(vs: list[Tensor], g: int, m: int, consecutive: bool) -> list[Tensor]:
    """Per-(group, channel) vectors (m*C,) -> one value per channel of :func:`_row_view`.

    Several vectors are expanded with one copy (fewer small ops).
    """
    if not consecutive:
        return vs
    k, mc = len(vs), vs[0].numel()
    packed = torch.stack(vs).view(k, m, 1, mc // m).expand(k, m, g, mc // m).reshape(k, -1)  # (k, N*C)
    return list(packed.unbind(0))


def _reduce(rows: Tensor, g: int, m: int, consecutive: bool) -> Tensor:
    """Per-channel sums of :func:`_row_view`, (k, rows) -> per-(group, channel) sums (k, m*C)."""
    if not consecutive:
        return rows
    k = rows.shape[0]
    return rows.view(k, m, g, -1).sum(2).view(k, -1)


def _shift_into(out: Tensor, x: Tensor, shift: Tensor, g: int, m: int, consecutive: bool) -> Tensor:
    """out = x - shift per (group, channel), written into ``out`` (x's shape); returns ``out``."""
    xg, sg = _group_view(x, shift, g, m, consecutive)
    torch.sub(xg, sg, out=_group_view(out, shift, g, m, consecutive)[0])
    return out


def _moments(z: Tensor, g: int, m: int, consecutive: bool) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of every (group, channel) of z (m*g, C, H, W), each (m*C,).

    Uses E[z^2] - E[z]^2: accurate because z is centred (see :func:`_shifted_stats`).
    """
    n, c, h, w = z.shape
    if h * w >= 64:
        # Per-row sum(z) and sum(z^2) in ONE fused pass: BN's eval-mode backward kernel with
        # grad_out = z, mean 0 and var 1 returns grad_bias = sum(z) and grad_weight = sum(z*z).
        # (Faster than torch.sum + torch.linalg.vector_norm once maps are this large.)
        zv = z.view(1, n * c, h, w)  # one channel per (sample, channel) row
        _, sum_sq, sum_z = torch.ops.aten.native_batch_norm_backward(
            zv, zv, None, z.new_zeros(n * c), z.new_ones(n * c), None, None, False, 0.0, [False, True, True]
        )
        sums = torch.stack([sum_z, sum_sq])  # (2, N*C)
    else:  # tiny maps: that kernel's per-channel overhead dominates; two plain reductions
        rows = z.view(n * c, h * w)
        sums = torch.stack([rows.sum(1), torch.linalg.vector_norm(rows, dim=1).square_()])  # (2, N*C)
    if consecutive:  # sample k*g + j is member j of group k
        sums = sums.view(2, m, g, c).sum(2).view(2, m * c)
    else:  # sample j*m + k is member j of group k
        sums = sums.view(2, g, m * c).sum(1)
    sums.mul_(1.0 / (g * h * w))
    mean, ez2 = sums[0], sums[1]  # E[z], E[z^2]
    return mean, torch.addcmul(ez2, mean, mean, value=-1.0).clamp_min_(0.0)  # (m*C,) each


@torch.no_grad()
def _shifted_stats(x: Tensor, g: int, m: int, consecutive: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The shifted input z = x - K and the statistics of every (group, channel).

    Returns:
        z (a new tensor of x's shape), K, and the mean and biased variance of z, each (m*C,).
        K is the mean of the first member's map in each (group, channel) (re-centred on the
        group's mean if that is far from it); the mean of x is K + mean(z).
    """
    c = x.shape[1]
    first = x[::g] if consecutive else x[:m]  # (m, C, H, W): member 0 of every group
    shift = first.mean((2, 3)).reshape(m * c)
    z = _shift_into(torch.empty_like(x), x, shift, g, m, consecutive)
    mean, var = _moments(z, g, m, consecutive)
    if bool((mean * mean > _RECENTRE * var).any()):
        shift = shift + mean  # close to each group's mean now
        mean, var = _moments(_shift_into(z, x, shift, g, m, consecutive), g, m, consecutive)
    return z, shift, mean, var


@torch.no_grad()
def _grouped_forward(
    x: Tensor, w: Tensor | None, b: Tensor | None, g: int, m: int, consecutive: bool, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward of the CPU fast path: every group normalised by its own statistics.

    Args:
        x: (m*g, C, H, W), contiguous; w, b: affine per (group, channel), (m*C,), or None.

    Returns:
        y (a new tensor of x's shape) and, each (m*C,), the shift K, the mean of x - K and
        the biased variance of every (group, channel).
    """
    z, shift, mean, var = _shifted_stats(x, g, m, consecutive)
    s = torch.rsqrt(var + eps)  # (m*C,)
    if w is not None:
        s = s * w
    t = -mean * s if b is None else b - mean * s  # y = z * s + t
    zg, sg = _group_view(z, s, g, m, consecutive)
    zg.mul_(sg).add_(_group_view(z, t, g, m, consecutive)[1])
    return z, shift, mean, var


class _GroupedNormFn(torch.autograd.Function):
    """y = (x - mean_k) / sqrt(var_k + eps) * w_k + b_k per group k, with BN's exact gradient.

    Returns y (x's shape) and, not differentiable, the (m*C,) shift, mean of x - shift and
    biased variance of :func:`_grouped_forward` (for the running statistics). The backward
    accounts for the dependence of the statistics on x, as BatchNorm's training backward does;
    it works on z = x - shift, which has the same gradient. Once differentiable only.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, w: Tensor | None, b: Tensor | None, g: int, m: int, consecutive: bool, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        y, shift, mean, var = _grouped_forward(x, w, b, g, m, consecutive, eps)
        ctx.save_for_backward(x, w, shift, mean, var)
        ctx.args = (g, m, consecutive, eps)
        ctx.mark_non_differentiable(shift, mean, var)
        return y, shift, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        x, w, shift, mean, var = ctx.saved_tensors
        g, m, consecutive, eps = ctx.args
        count = g * x.shape[2] * x.shape[3]
        gy = gy.contiguous()
        z = _shift_into(torch.empty_like(x), x, shift, g, m, consecutive)  # bitwise the forward's z
        zv, gv = _row_view(z, g, m, consecutive), _row_view(gy, g, m, consecutive)
        mean_e, var_e = _expand_all([mean, var], g, m, consecutive)
        # Per-row sum(dy * xhat) and sum(dy) from the native kernel (eval mode: stats constant).
        _, s_dy_xhat, s_dy = torch.ops.aten.native_batch_norm_backward(
            gv, zv, z.new_ones(zv.shape[1]), mean_e, var_e, None, None, False, eps, [False, True, True]
        )
        sums = _reduce(torch.stack([s_dy, s_dy_xhat]), g, m, consecutive)  # (2, m*C)
        s1, s2 = sums[0], sums[1]
        invstd = torch.rsqrt(var + eps)  # (m*C,)
        k = invstd if w is None else w * invstd
        # dx = k * (dy - s1/count - xhat * s2/count) = a*z + q + k*dy, per (group, channel),
        # written in place over z.
        a = -k * invstd * s2 / count
        q = -k * s1 / count - a * mean
        gx = None
        if ctx.needs_input_grad[0]:
            zg, ag = _group_view(z, a, g, m, consecutive)
            zg.mul_(ag).add_(q.view_as(ag)).addcmul_(gy.view_as(zg), k.view_as(ag))
            gx = z
        gw = s2 if ctx.needs_input_grad[1] else None
        gb = s1 if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None


def grouped_norm(
    x: Tensor, w: Tensor | None, b: Tensor | None, g: int, m: int, consecutive: bool, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalise m groups of g samples of x, each by its own statistics, on the CPU.

    Differentiable (BatchNorm's exact gradient, once) when x or w needs a gradient; otherwise
    the forward runs without the autograd.Function machinery.

    Args:
        x: (m*g, C, H, W), contiguous float32/float64 on the CPU, H*W > 1.
        w: per-(group, channel) scale (m*C,), or None.
        b: per-(group, channel) shift (m*C,), or None.
        g: samples per group.
        m: number of groups.
        consecutive: the layout of the groups (see the module docstring).
        eps: added to the variance.

    Returns:
        y (x's shape) and, each (m*C,) and detached, the shift K, the mean of x - K and the
        biased variance of every (group, channel): the group mean is K + mean.
    """
    if torch.is_grad_enabled() and (x.requires_grad or (w is not None and w.requires_grad)):
        return _GroupedNormFn.apply(x, w, b, g, m, consecutive, eps)
    return _grouped_forward(x, w, b, g, m, consecutive, eps)


def group_moments(x: Tensor, g: int, m: int, consecutive: bool) -> tuple[Tensor, Tensor]:
    """The statistics :func:`grouped_norm` normalises with, without normalising (no gradient).

    Args:
        x: (m*g, C, H, W), as for :func:`grouped_norm`.
        g: samples per group.
        m: number of groups.
        consecutive: the layout of the groups.

    Returns:
        The mean and the biased variance of every (group, channel), (m*C,) each.
    """
    _, shift, mean, var = _shifted_stats(x, g, m, consecutive)
    return shift + mean, var
