"""LocalNorm: BatchNorm whose statistics come from small groups of samples.

Implements the normalisation layer of Yin et al., "LocalNorm: Robust Image
Classification through Dynamically Regularized Normalization" (arXiv 1902.06550,
ICANN 2021), faithful to the authors' Keras ``LocalNormalization`` layer
(GitHub ``byin-cwi/LocalNorm1``) and as fast as :class:`torch.nn.BatchNorm2d`:

* A batch (N, C, H, W) is cut into groups of ``group_size`` = G samples. Each
  group is normalised with its own per-channel mean and *biased* variance over
  (G, H, W), then scaled and shifted by its own affine "head" (gamma_k, beta_k).
  Group k uses head ``k mod num_heads``; the paper uses ``num_heads = N / G``,
  and ``num_heads = 1`` is Ghost BatchNorm.
* Unlike the authors' layer, which has no running statistics and no train/test
  switch, :class:`LocalNorm2d` still tracks running statistics, and chooses its
  test-time statistics (``test_stats``) and affine (``test_heads``) at run time;
  :func:`set_test_mode` sets them across a model.

Speed: all groups are normalised at once, never in a Python loop over groups.

* On CUDA (and for half types or non-contiguous input) one native training-mode
  ``F.batch_norm`` call runs on a reshaped tensor in which every (group, channel)
  pair is a channel: a zero-copy view for ``strided`` groups, a transposed copy
  for ``consecutive`` ones.
* On the CPU, where PyTorch's batch-statistics kernel is slow and the transposed
  copies dominate, :class:`_GroupedNormFn` works on copy-free views: the statistics
  come from one fused row reduction of x minus a per-group shift (which keeps float32
  accurate however far the mean is from zero), and the output and the input gradient
  are written in place, with BatchNorm's exact gradient. (``torch.var_mean`` is not
  used: it measured ~1.6x slower than BatchNorm.) ``LocalNorm2d.cpu_fast_path = False``
  switches it off.
* Training with G = N takes BatchNorm2d's own code path, so its output and gradients
  equal BN's exactly (the running statistics to rounding).
* Running statistics are updated after the forward from detached per-group statistics,
  never through the buffers handed to ``F.batch_norm``: autograd saves those for the
  backward, which would then fail after the update changed them in place.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.errors import ConfigError

__all__ = [
    "GROUPINGS",
    "NORM_KINDS",
    "TEST_HEADS",
    "TEST_STATS",
    "LocalNorm2d",
    "get_norm_layer",
    "localnorm_layers",
    "majority_predict",
    "set_test_mode",
    "vote_predict",
]

#: Where the test-time normalisation statistics come from.
#: ``running``: classic BN eval; ``batch``: the whole test batch (prediction-time BN);
#: ``local``: groups of G test images (the paper); ``single``: each image alone, over (H, W).
TEST_STATS: tuple[str, ...] = ("running", "batch", "local", "single")
#: Which affine head a test sample uses. ``position``: group k uses head k mod num_heads
#: (the paper; results depend on test-set order); ``mean``: the average of the heads
#: (order-independent); ``vote``: every head in turn, softmax averaged (see :func:`vote_predict`;
#: :func:`majority_predict` is the authors' majority of per-head argmaxes).
TEST_HEADS: tuple[str, ...] = ("position", "mean", "vote")
#: How a batch is cut into groups. ``consecutive``: group k = samples kG ... kG+G-1 (the
#: authors' choice). ``strided``: with M = N // G groups, group m = samples m, m+M, m+2M, ...;
#: this makes the grouping a zero-copy view and is faster. Training batches are shuffled, so
#: both partitions are equally faithful; the same rule is used at train and test time.
GROUPINGS: tuple[str, ...] = ("consecutive", "strided")
#: Norm layers that :func:`get_norm_layer` can build.
NORM_KINDS: tuple[str, ...] = ("batchnorm", "localnorm")
_NORM_ALIASES = {"batchnorm": "batchnorm", "bn": "batchnorm", "localnorm": "localnorm", "ln": "localnorm"}


def _check_choice(what: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def _check_positive(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


class LocalNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with per-group statistics and per-group affine heads (arXiv 1902.06550).

    **State.** All of :class:`~torch.nn.BatchNorm2d`'s state_dict keys are kept (``weight``,
    ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), plus the heads
    ``head_weight`` and ``head_bias`` of shape (num_heads, C), initialised from
    ``weight``/``bias``. A plain BatchNorm2d state_dict therefore loads with ``strict=True``:
    missing heads are filled from its ``weight``/``bias`` by a load hook.

    **weight/bias are not used by the forward pass.** They hold the *source* affine (the BN
    parameters the layer was created or converted from) and are frozen
    (``requires_grad=False``), so optimisers skip them and DDP does not see unused parameters.
    All affine transforms use the heads; :func:`lncli.convert.convert_localnorm_to_batchnorm`
    writes the head mean back into ``weight``/``bias``.

    **Training.** A batch (N, C, H, W) is cut into groups of ``group_size`` = G samples
    (see :data:`GROUPINGS` for ``consecutive`` vs ``strided``). Each group is normalised with
    its per-channel mean and biased variance over (G, H, W); group k uses head
    ``k mod num_heads``.

    **Running statistics** are updated with the *average over groups* of each group's mean
    and unbiased variance (each group's update is BatchNorm's, applied to the same old
    running value, then averaged). With G = N this is exactly BatchNorm2d. Like Ghost BN,
    the averaged within-group variance leaves out the spread between group means: it is the
    variance the network was normalised with during training.

    **Ragged batches.** If N % G = r != 0, the first N - r samples are grouped as usual and
    the last r samples form one smaller group that uses the next head (head
    ``(N // G) mod num_heads``). A batch with N < G is one group using head 0. Nothing is
    dropped. In the running-statistics update the groups are weighted by their size (a
    one-value tail group, one sample of a 1x1 map, has no variance and is left out of it).

    **Test time** (``eval()``): ``test_stats`` picks the statistics (see :data:`TEST_STATS`)
    and ``test_heads`` the affine (see :data:`TEST_HEADS`). The affine position of a sample
    always follows the G-grouping above, whatever the statistics: under ``single`` stats
    with ``position`` heads, sample i uses the head of the group it would be in under
    ``local``. ``running`` without running buffers (``track_running_stats=False``) uses
    batch statistics, as BatchNorm2d does. A plain forward with ``test_heads="vote"`` uses
    the head mean; voting itself is :func:`vote_predict` (or :func:`majority_predict`).

    ``force_head`` (``int`` or ``None``), when set, makes every group use that head, in
    training and at test time; the voting functions use it.

    **Kernels.** See the module docstring: on the CPU a copy-free custom autograd
    function is used (BatchNorm's exact gradient, but once-differentiable: double
    backward, e.g. a gradient penalty, needs ``LocalNorm2d.cpu_fast_path = False``).

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability.
        momentum: running-statistics momentum (``None``: cumulative average), as in BN.
        affine: learn affine heads. Without it there are no heads.
        track_running_stats: keep running statistics, as in BN.
        group_size: G, samples per group (the authors' ``groupsize``).
        num_heads: number of affine heads (the paper: batch size / G).
        grouping: ``"consecutive"`` or ``"strided"``.
        test_stats: one of :data:`TEST_STATS`.
        test_heads: one of :data:`TEST_HEADS`.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        group_size: int = 16,
        num_heads: int = 1,
        grouping: str = "consecutive",
        test_stats: str = "local",
        test_heads: str = "position",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.num_heads = _check_positive("num_heads", num_heads)
        self.group_size = group_size
        self.grouping = grouping
        self.test_stats = test_stats
        self.test_heads = test_heads
        self.force_head: int | None = None
        if self.affine:
            # (num_heads, C): every head starts as the source BN affine.
            self.head_weight = nn.Parameter(self.weight.detach().expand(num_heads, -1).clone())
            self.head_bias = nn.Parameter(self.bias.detach().expand(num_heads, -1).clone())
            # Source affine only (see class docstring): frozen, never in the forward graph.
            self.weight.requires_grad_(False)
            self.bias.requires_grad_(False)
        else:
            self.register_parameter("head_weight", None)
            self.register_parameter("head_bias", None)

    # -- validated run-time settings -------------------------------------------------
    @property
    def group_size(self) -> int:
        """G, the number of samples per group."""
        return self._group_size

    @group_size.setter
    def group_size(self, value: int) -> None:
        self._group_size = _check_positive("group_size", value)

    @property
    def grouping(self) -> str:
        """``consecutive`` or ``strided`` (see :data:`GROUPINGS`)."""
        return self._grouping

    @grouping.setter
    def grouping(self, value: str) -> None:
        self._grouping = _check_choice("grouping", value, GROUPINGS)

    @property
    def test_stats(self) -> str:
        """Test-time statistics, one of :data:`TEST_STATS`."""
        return self._test_stats

    @test_stats.setter
    def test_stats(self, value: str) -> None:
        self._test_stats = _check_choice("test stats", value, TEST_STATS)

    @property
    def test_heads(self) -> str:
        """Test-time affine, one of :data:`TEST_HEADS`."""
        return self._test_heads

    @test_heads.setter
    def test_heads(self, value: str) -> None:
        self._test_heads = _check_choice("test heads", value, TEST_HEADS)

    # -- parameters and state --------------------------------------------------------
    def reset_parameters(self) -> None:
        """Reset like BatchNorm2d, then copy the fresh weight/bias into every head."""
        super().reset_parameters()
        head_weight = getattr(self, "head_weight", None)  # absent while BatchNorm2d.__init__ runs
        if head_weight is not None:
            with torch.no_grad():
                head_weight.copy_(self.weight.expand_as(head_weight))
                self.head_bias.copy_(self.bias.expand_as(self.head_bias))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A BatchNorm2d checkpoint has no heads: fill them from its weight/bias, which is
        # exactly what conversion does. (state_dict is load_state_dict's private copy.)
        if self.affine:
            for head, source in (("head_weight", "weight"), ("head_bias", "bias")):
                if prefix + head not in state_dict and prefix + source in state_dict:
                    src = state_dict[prefix + source]
                    state_dict[prefix + head] = src.detach().unsqueeze(0).expand(self.num_heads, -1).clone()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, group_size={self.group_size}, num_heads={self.num_heads}, "
            f"grouping={self.grouping}, test_stats={self.test_stats}, test_heads={self.test_heads}"
        )

    # -- helpers ---------------------------------------------------------------------
    def _affine(self, n_groups: int) -> tuple[Tensor | None, Tensor | None]:
        """The affine of each group: both (C,) when shared by all groups, else (n_groups, C)."""
        if self.head_weight is None:
            return None, None
        hw, hb = self.head_weight, self.head_bias  # (num_heads, C)
        if self.force_head is not None:
            h = self.force_head
            if not 0 <= h < self.num_heads:
                raise ValueError(f"force_head={h} out of range for num_heads={self.num_heads}")
            return hw[h], hb[h]
        if not self.training and self.test_heads != "position":
            return hw.mean(0), hb.mean(0)  # "mean"; "vote" without force_head also lands here
        if self.num_heads == 1 or n_groups == 1:
            return hw[0], hb[0]
        if n_groups == self.num_heads:
            return hw, hb
        idx = torch.arange(n_groups, device=hw.device) % self.num_heads  # group k -> head k mod H
        return hw.index_select(0, idx), hb.index_select(0, idx)

    def _sample_group(self, n: int, device: torch.device) -> Tensor:
        """(n,) the affine group of each sample under the ragged G-grouping rule."""
        g = self.group_size
        m, r = divmod(n, g)
        i = torch.arange(n, device=device)
        full = i // g if self.grouping == "consecutive" else i % max(m, 1)
        return torch.where(i < m * g, full, torch.full_like(i, m)) if r else full

    def _per_sample(self, w: Tensor, n: int) -> Tensor:
        """Expand group affine (n_groups, C) to one row per sample, (n, C)."""
        return w.index_select(0, self._sample_group(n, w.device))

    def _momentum(self) -> float:
        """BatchNorm's exponential_average_factor; bumps num_batches_tracked in training."""
        if not (self.training and self.track_running_stats):
            return 0.0
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                return 1.0 / float(self.num_batches_tracked)
        return 0.0 if self.momentum is None else self.momentum

    # -- forward ---------------------------------------------------------------------
    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 (BatchNorm's argument name)
        """Normalise (N, C, H, W); see the class docstring for the train/test rules."""
        self._check_input_dim(input)
        n = input.shape[0]
        if n == 0:  # an empty batch gives an empty output, as in BatchNorm2d (no stats to take)
            if self.training:
                self._momentum()  # BN counts the batch too
            w = None if self.head_weight is None else self.head_weight[0]
            b = None if self.head_bias is None else self.head_bias[0]
            return F.batch_norm(input, None, None, w, b, True, 0.0, self.eps)  # keeps the autograd chain
        if self.training:
            return self._local(input, self.group_size, self._momentum())
        stats = self.test_stats
        if stats == "running" and self.running_mean is None:
            stats = "batch"  # BatchNorm2d's own rule when there are no running buffers
        if stats == "local":
            return self._local(input, self.group_size, 0.0)
        n_groups = -(-n // self.group_size)
        w, b = self._affine(n_groups)
        uniform = w is None or w.dim() == 1
        if stats == "single":
            # Each image is its own group of one: n groups, (1, N*C, H, W) is a view.
            c = input.shape[1]
            if w is not None:
                w = w.expand(n, c) if uniform else self._per_sample(w, n)  # (N, C)
                b = b.expand(n, c) if uniform else self._per_sample(b, n)
                w, b = w.reshape(-1), b.reshape(-1)  # (N*C,)
            return self._grouped(input, 1, n, w, b, False)[0]
        if stats == "batch":
            if uniform:
                return self._grouped(input, n, 1, w, b, False)[0]
            y = self._grouped(input, n, 1, None, None, False)[0]  # normalise, then per-sample affine
            # .to: half/bf16 activations with fp32 heads (autocast) keep the input dtype, as BN does.
            w, b = self._per_sample(w, n)[:, :, None, None], self._per_sample(b, n)[:, :, None, None]
            return torch.addcmul(b, y, w).to(input.dtype)
        # running
        if uniform:
            return F.batch_norm(input, self.running_mean, self.running_var, w, b, False, 0.0, self.eps)
        # Per-sample affine folded into one scale/shift: y = x * s + t, s, t of shape (N, C).
        inv_std = torch.rsqrt(self.running_var + self.eps)  # (C,)
        s = self._per_sample(w, n) * inv_std
        t = self._per_sample(b, n) - self.running_mean * s
        return torch.addcmul(t[:, :, None, None], input, s[:, :, None, None]).to(input.dtype)  # dtype: as above

    def _local(self, x: Tensor, g: int, momentum: float) -> Tensor:
        """Normalise every group of g samples by its own statistics (the ragged rule applies)."""
        n, c = x.shape[:2]
        m, r = divmod(n, g)
        w, b = self._affine(m + (r > 0))
        update = self.training and self.track_running_stats and self.running_mean is not None
        outs: list[Tensor] = []
        stats: list[tuple[Tensor, Tensor, int]] = []  # per part: mean, unbiased var (groups, C); group size
        if m:
            xm = x if not r else x[: m * g]
            wm = bm = None
            if w is not None:
                # Flatten the affine of the m full groups to one row per (group, channel): (m*C,)
                wm = w.repeat(m) if w.dim() == 1 else w[:m].reshape(-1)
                bm = b.repeat(m) if b.dim() == 1 else b[:m].reshape(-1)
            y, st = self._grouped(xm, g, m, wm, bm, update)
            outs.append(y)
            if st is not None:
                stats.append((*st, g))
        if r:
            xt = x[m * g :]
            wt = bt = None
            if w is not None:
                wt, bt = (w, b) if w.dim() == 1 else (w[m], b[m])
            # A one-value tail (one sample of a 1x1 map) has no variance to learn from:
            # it is normalised (to the bias) but left out of the running-stats update.
            y, st = self._grouped(xt, r, 1, wt, bt, update and not (m and xt.numel() == c))
            outs.append(y)
            if st is not None:
                stats.append((*st, r))
        if stats:
            self._update_running(stats, momentum)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @torch.no_grad()
    def _update_running(self, stats: list[tuple[Tensor, Tensor, int]], momentum: float) -> None:
        """BN's running-stats update, applied to every group from the same old value and averaged
        with weights proportional to group size; BN's update is linear, so this is one update with
        the size-weighted mean of the groups' statistics.

        ``stats`` holds, per part of the batch, the groups' means and unbiased variances (k, C) and
        the group size. They are detached values: the buffers are changed only here, in place,
        after the forward, and never reach autograd (which would refuse a backward through a
        tensor changed after it was saved).
        """
        total = sum(mean.shape[0] * size for mean, _, size in stats)
        new_mean = sum(mean.sum(0) * (size / total) for mean, _, size in stats)
        new_var = sum(var.sum(0) * (size / total) for _, var, size in stats)
        self.running_mean.mul_(1 - momentum).add_(new_mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(new_var, alpha=momentum)

    def _grouped(
        self, x: Tensor, g: int, m: int, w: Tensor | None, b: Tensor | None, stats: bool
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Normalise m groups of g samples, each by its own stats: x (m*g, C, H, W), w/b (m*C,).

        Returns the output and, if ``stats``, every group's mean and unbiased variance, (m, C)
        each and detached (for the running statistics), else None.
        """
        consecutive = self.grouping == "consecutive" and m > 1 and g > 1
        if not (self._cpu_path_ok(x) and not (m == 1 and self.training)):  # G = N training stays BN
            return self._grouped_native(x, g, m, w, b, stats, consecutive)
        if torch.is_grad_enabled() and (x.requires_grad or (w is not None and w.requires_grad)):
            y, shift, mean, var = _GroupedNormFn.apply(x, w, b, g, m, consecutive, self.eps)
        else:  # inference: skip the autograd.Function machinery
            y, shift, mean, var = _grouped_forward(x, w, b, g, m, consecutive, self.eps)
        if not stats:
            return y, None
        count = g * x.shape[2] * x.shape[3]  # >= 2: the fast path needs H*W > 1
        c = x.shape[1]
        return y, ((shift + mean).view(m, c), (var * (count / (count - 1))).view(m, c))

    def _grouped_native(
        self, x: Tensor, g: int, m: int, w: Tensor | None, b: Tensor | None, stats: bool, consecutive: bool
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """The same as :meth:`_grouped` with one native training-mode F.batch_norm call."""
        n, c, *hw = x.shape
        rm = rv = None
        if stats:
            # Fresh buffers, never changed after this call: autograd saves F.batch_norm's running
            # statistics for the backward. Momentum 1 makes F.batch_norm write each group's mean
            # and unbiased variance into them; :meth:`_update_running` does the real update.
            rm, rv = self.running_mean.new_zeros(m * c), self.running_var.new_ones(m * c)  # (m*C,)
        if consecutive:
            # Sample k*g + j is member j of group k; needs a transposed copy.
            xg = x.reshape(m, g, c, *hw).transpose(0, 1).reshape(g, m * c, *hw)  # (g, m*C, H, W)
        else:
            # Strided (or one group): sample j*m + k is member j of group k, (g, m*C, H, W), a view.
            xg = x.reshape(g, m * c, *hw)
        y = _batch_stats_norm(xg, rm, rv, w, b, 1.0, self.eps)
        y = y.view(g, m, c, *hw).transpose(0, 1).reshape(n, c, *hw) if consecutive else y.view(n, c, *hw)
        return y, None if rm is None or rv is None else (rm.view(m, c), rv.view(m, c))

    #: Use the copy-free CPU kernels (see :class:`_GroupedNormFn`); tests switch it off to
    #: compare against the native path.
    cpu_fast_path: bool = True

    def _cpu_path_ok(self, x: Tensor) -> bool:
        # CUDA's native batch-norm kernel is already fast; half types need wide accumulators.
        return (
            self.cpu_fast_path
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous()
            and x.dim() == 4
            and x.shape[2] * x.shape[3] > 1
        )


def _batch_stats_norm(
    x: Tensor, rm: Tensor | None, rv: Tensor | None, w: Tensor | None, b: Tensor | None, momentum: float, eps: float
) -> Tensor:
    """Training-mode ``F.batch_norm`` (batch statistics) that also accepts one value per channel
    when no running statistics are updated (``rm is None``, e.g. at test time).

    Such a group (one sample of a 1x1 map: ``single`` stats, or a one-sample ragged tail) has
    variance 0 and normalises to the bias. ``F.batch_norm`` refuses it only because BN's
    unbiased running-variance update would divide by zero, which does not apply here.
    """
    if rm is None and x.numel() == x.shape[1]:  # (1, C, 1, 1)-like: one value per channel
        # cudnn off: a degenerate (C-value) case, so take ATen's native kernel everywhere.
        return torch.batch_norm(x, w, b, None, None, True, 0.0, eps, False)
    return F.batch_norm(x, rm, rv, w, b, True, momentum, eps)


# ------------------------------------------------------------------------------------------
# Copy-free grouped normalisation for the CPU.
#
# Measured on the 2-core CPU (torch 2.14, 1 thread, (128, 16, 32, 32)): PyTorch's CPU
# batch_norm computes batch statistics ~4x slower than one elementwise pass, and its
# backward is slower still, while consecutive groups need transposed copies of x, y and
# both gradients. Here every tensor op runs on a view of the data (never a transposed
# copy): the statistics come from one fused row reduction (sum and sum of squares per
# (sample, channel) row, from the native batch_norm backward kernel), and the output and
# the input gradient are written in place into the one new buffer each direction needs.
#
# Precision: E[x^2] - E[x]^2 cancels in fp32 when |mean| >> std (error ~ (mean/std)^2 * 1e-7),
# and even exact statistics leave x*invstd - mean*invstd with an error ~ (mean/std) * 6e-8. So
# all the maths runs on z = x - K, K a per-(group, channel) shift near the group's mean (the
# mean of the group's first sample): x - K is exact in fp32 when x and K are within a factor 2
# of each other (Sterbenz), as they are whenever the mean is far from zero, and a per-group
# shift changes neither the output nor the gradient. z is written into the output buffer,
# which is then normalised in place; the backward rebuilds it in the input-gradient buffer.
# ------------------------------------------------------------------------------------------

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
        # (Measured 1.5x faster than torch.sum + torch.linalg.vector_norm at 32x32.)
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
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, w: Tensor | None, b: Tensor | None, g: int, m: int, consecutive: bool, eps: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        y, shift, mean, var = _grouped_forward(x, w, b, g, m, consecutive, eps)
        ctx.save_for_backward(x, w, shift, mean, var)
        ctx.args = (g, m, consecutive, eps)
        ctx.mark_non_differentiable(shift, mean, var)
        return y, shift, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: Tensor, *_: Any) -> tuple[Tensor | None, ...]:  # type: ignore[override]
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


def localnorm_layers(model: nn.Module) -> list[LocalNorm2d]:
    """All :class:`LocalNorm2d` layers of ``model``, in module order.

    Args:
        model: any module.

    Returns:
        The LocalNorm2d submodules (``model`` itself included if it is one).
    """
    return [m for m in model.modules() if isinstance(m, LocalNorm2d)]


def set_test_mode(
    model: nn.Module, stats: str | None = None, heads: str | None = None, group_size: int | None = None
) -> nn.Module:
    """Set the test-time statistics, affine heads and/or group size of every LocalNorm2d.

    Values are checked before any layer is changed. Layers that are not LocalNorm2d
    (e.g. plain BatchNorm2d) are left alone.

    Args:
        model: the model to change in place.
        stats: one of :data:`TEST_STATS`, or ``None`` to keep.
        heads: one of :data:`TEST_HEADS`, or ``None`` to keep.
        group_size: a positive G, or ``None`` to keep.

    Returns:
        ``model``, for chaining.

    Raises:
        LncliError: an unknown value (the message lists the valid ones).
    """
    if stats is not None:
        _check_choice("test stats", stats, TEST_STATS)
    if heads is not None:
        _check_choice("test heads", heads, TEST_HEADS)
    if group_size is not None:
        _check_positive("group_size", group_size)
    for layer in localnorm_layers(model):
        if stats is not None:
            layer.test_stats = stats
        if heads is not None:
            layer.test_heads = heads
        if group_size is not None:
            layer.group_size = group_size
    return model


def _per_head(model: nn.Module, x: Tensor, fn: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """``fn(logits)`` of one eval-mode forward per affine head, in head order.

    Forward h forces every LocalNorm2d to head ``h mod num_heads`` (``force_head``), over as
    many heads as the layer with the most has. The batch is never copied: this costs
    ``num_heads`` forwards of the batch, not a 128x larger one. The statistics follow each
    layer's ``test_stats``. The model's train/eval flags and ``force_head`` values are
    restored afterwards.
    """
    layers = localnorm_layers(model)
    n_heads = max((layer.num_heads for layer in layers if layer.affine), default=1)
    flags = [mod.training for mod in model.modules()]
    saved = [layer.force_head for layer in layers]
    model.eval()
    try:
        outs = []
        for h in range(n_heads):
            for layer in layers:
                layer.force_head = h % layer.num_heads if layer.affine else None
            outs.append(fn(model(x)))
        return outs
    finally:
        for layer, head in zip(layers, saved):
            layer.force_head = head
        for mod, flag in zip(model.modules(), flags):
            mod.training = flag


@torch.no_grad()
def vote_predict(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax probabilities averaged over all affine heads (lncli's voting rule, ``vote``).

    One forward per head (see :func:`_per_head`). Averaging probabilities is smoother than the
    authors' majority of per-head argmaxes (:func:`majority_predict`): a confident head
    outweighs several hesitant ones, and there are no ties to break.

    Args:
        model: a classifier returning logits (N, K).
        x: the input batch.

    Returns:
        (N, K) probabilities averaged over heads (float32 or the logits' dtype).
    """
    probs = _per_head(model, x, lambda logits: torch.softmax(logits, dim=-1))  # each (N, K)
    return sum(probs[1:], probs[0]) / len(probs)


@torch.no_grad()
def majority_predict(model: nn.Module, x: Tensor) -> Tensor:
    """Per-class counts of the heads' predictions: the authors' voting rule (``majority``).

    One forward per head (see :func:`_per_head`); each head votes for its argmax class. The
    authors' code predicts ``np.bincount(votes).argmax()``: the most-voted class, ties going to
    the lowest class index. ``counts.argmax(1)`` gives exactly that, since ``torch.argmax``
    returns the first maximal index.

    Args:
        model: a classifier returning logits (N, K).
        x: the input batch.

    Returns:
        (N, K) int64 number of heads voting for each class.
    """
    votes = _per_head(model, x, lambda logits: F.one_hot(logits.argmax(dim=-1), logits.shape[-1]))  # (N, K)
    return torch.stack(votes).sum(0)


def get_norm_layer(
    kind: str = "batchnorm", *, group_size: int = 16, num_heads: int = 1, grouping: str = "consecutive"
) -> Callable[..., nn.Module]:
    """Resolve a norm name to a layer factory ``f(num_features, **kwargs) -> nn.Module``.

    The one place where strings become norm layers, for injection into model builders
    (``create_model(..., norm_layer=get_norm_layer("localnorm", group_size=16))``).

    Args:
        kind: ``"batchnorm"`` / ``"bn"`` or ``"localnorm"`` / ``"ln"``.
        group_size: G for LocalNorm (ignored for BatchNorm).
        num_heads: affine heads for LocalNorm (ignored for BatchNorm).
        grouping: ``"consecutive"`` or ``"strided"`` for LocalNorm (ignored for BatchNorm).

    Returns:
        ``nn.BatchNorm2d`` or a partial of :class:`LocalNorm2d`.

    Raises:
        LncliError: an unknown kind or an invalid LocalNorm setting.
    """
    resolved = _NORM_ALIASES.get(str(kind).lower())
    if resolved is None:
        raise ConfigError(f"unknown norm {kind!r}; valid: {', '.join(NORM_KINDS)} (aliases bn, ln)")
    if resolved == "batchnorm":
        return nn.BatchNorm2d
    _check_positive("group_size", group_size)
    _check_positive("num_heads", num_heads)
    _check_choice("grouping", grouping, GROUPINGS)
    return functools.partial(LocalNorm2d, group_size=group_size, num_heads=num_heads, grouping=grouping)

