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
  copies dominate, :class:`_GroupedNormFn` takes the statistics from one fused
  row reduction and does both the forward and the backward as native *eval-mode*
  ``batch_norm`` passes on a copy-free view, with BatchNorm's exact gradient.
  (``torch.var_mean`` is not used: it measured ~1.6x slower than BatchNorm.)
  ``LocalNorm2d.cpu_fast_path = False`` switches it off.
* Training with G = N takes BatchNorm2d's own code path, so it equals BN exactly.
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
    "set_test_mode",
    "vote_predict",
]

#: Where the test-time normalisation statistics come from.
#: ``running``: classic BN eval; ``batch``: the whole test batch (prediction-time BN);
#: ``local``: groups of G test images (the paper); ``single``: each image alone, over (H, W).
TEST_STATS: tuple[str, ...] = ("running", "batch", "local", "single")
#: Which affine head a test sample uses. ``position``: group k uses head k mod num_heads
#: (the paper; results depend on test-set order); ``mean``: the average of the heads
#: (order-independent); ``vote``: every head in turn, softmax averaged (see :func:`vote_predict`).
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
    the head mean; voting itself is :func:`vote_predict`.

    ``force_head`` (``int`` or ``None``), when set, makes every group use that head, in
    training and at test time; :func:`vote_predict` uses it.

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
            return self._grouped(input, 1, n, w, b, None)
        if stats == "batch":
            if uniform:
                return self._grouped(input, n, 1, w, b, None)
            y = self._grouped(input, n, 1, None, None, None)  # normalise, then per-sample affine
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
        old_mean = old_var = None
        if update and r and m:
            old_mean, old_var = self.running_mean.clone(), self.running_var.clone()
        outs = []
        if m:
            xm = x if not r else x[: m * g]
            wm = bm = None
            if w is not None:
                # Flatten the affine of the m full groups to one row per (group, channel): (m*C,)
                wm = w.repeat(m) if w.dim() == 1 else w[:m].reshape(-1)
                bm = b.repeat(m) if b.dim() == 1 else b[:m].reshape(-1)
            outs.append(self._grouped(xm, g, m, wm, bm, momentum if update else None))
            if update and r:
                full_mean, full_var = self.running_mean.clone(), self.running_var.clone()
                self.running_mean.copy_(old_mean)
                self.running_var.copy_(old_var)
        if r:
            xt = x[m * g :]
            wt = bt = None
            if w is not None:
                wt, bt = (w, b) if w.dim() == 1 else (w[m], b[m])
            # A one-value tail (one sample of a 1x1 map) has no variance to learn from:
            # it is normalised (to the bias) but left out of the running-stats update.
            tail_update = update and not (m and xt.numel() == c)
            rm = self.running_mean if tail_update else None
            rv = self.running_var if tail_update else None
            outs.append(_batch_stats_norm(xt, rm, rv, wt, bt, momentum, self.eps))
            if update and m:
                # Size-weighted average of the full groups' update and the tail group's.
                with torch.no_grad():
                    if not tail_update:
                        self.running_mean.copy_(full_mean)
                        self.running_var.copy_(full_var)
                    else:
                        self.running_mean.mul_(r / n).add_(full_mean, alpha=m * g / n)
                        self.running_var.mul_(r / n).add_(full_var, alpha=m * g / n)
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _grouped(
        self, x: Tensor, g: int, m: int, w: Tensor | None, b: Tensor | None, momentum: float | None
    ) -> Tensor:
        """Normalise m groups of g samples, each by its own stats: x (m*g, C, H, W), w/b (m*C,).

        ``momentum`` is None when the running statistics must not be updated.
        """
        consecutive = self.grouping == "consecutive" and m > 1 and g > 1
        if self._cpu_path_ok(x) and not (m == 1 and self.training):  # G = N training stays exactly BN
            stats = _group_stats(x, g, m, consecutive)
            if stats is not None:
                mean, var = stats  # (m*C,) each, biased variance
                if torch.is_grad_enabled() and (x.requires_grad or (w is not None and w.requires_grad)):
                    y = _GroupedNormFn.apply(x, w, b, mean, var, g, m, consecutive, self.eps)
                else:  # inference: skip the autograd.Function machinery
                    y = _normalize(x, w, b, mean, var, g, m, consecutive, self.eps)
                y = y.view_as(x)  # row view -> (N, C, H, W)
                if momentum is not None:
                    count = g * x.shape[2] * x.shape[3]
                    c = x.shape[1]
                    with torch.no_grad():  # BN's update per group, averaged over groups
                        self.running_mean.mul_(1 - momentum).add_(mean.view(m, c).mean(0), alpha=momentum)
                        unbiased = var.view(m, c).mean(0) * (count / max(count - 1, 1))
                        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
                return y
        return self._grouped_native(x, g, m, w, b, momentum)

    def _grouped_native(
        self, x: Tensor, g: int, m: int, w: Tensor | None, b: Tensor | None, momentum: float | None
    ) -> Tensor:
        """The same as :meth:`_grouped` with one native training-mode F.batch_norm call."""
        rm = rv = None
        if m == 1:  # one group is plain BatchNorm (and updates the running stats in place)
            if momentum is not None:
                rm, rv = self.running_mean, self.running_var
            return _batch_stats_norm(x, rm, rv, w, b, momentum or 0.0, self.eps)
        n, c, *hw = x.shape
        if momentum is not None:
            # One running copy per group; each gets BN's own update, then they are averaged.
            rm, rv = self.running_mean.repeat(m), self.running_var.repeat(m)  # (m*C,)
        if self.grouping == "strided":
            # Sample j*m + k is member j of group k: (n, C, H, W) -> (g, m*C, H, W), a view.
            xg = x.reshape(g, m * c, *hw)
        else:
            # Consecutive: sample k*g + j is member j of group k; needs a transposed copy.
            xg = x.reshape(m, g, c, *hw).transpose(0, 1).reshape(g, m * c, *hw)  # (g, m*C, H, W)
        y = _batch_stats_norm(xg, rm, rv, w, b, momentum or 0.0, self.eps)
        if momentum is not None:
            with torch.no_grad():
                self.running_mean.copy_(rm.view(m, c).mean(0))
                self.running_var.copy_(rv.view(m, c).mean(0))
        if self.grouping == "strided":
            return y.view(n, c, *hw)
        return y.view(g, m, c, *hw).transpose(0, 1).reshape(n, c, *hw)

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
# both gradients. Here the statistics come from one fused row reduction (sum and sum of
# squares per (sample, channel) row), and both directions are single native eval-mode
# batch_norm passes on a view in which every row is a channel, so nothing is copied; the
# backward gets its per-row sums of dy and dy*xhat from the native batch_norm backward
# kernel. Forward + backward of one (128, 16, 32, 32) layer measured ~3x faster than the
# native grouped path for consecutive groups, and faster than BatchNorm2d itself. E[x^2] - E[x]^2 loses precision in fp32 when |mean| >>
# std; then _group_stats returns None and the native kernels are used instead.
# ------------------------------------------------------------------------------------------

_CANCEL = 1e-3  # var < 1e-3 * E[x^2], i.e. |mean| > ~30 std: fp32 cancellation could bite


def _row_view(x: Tensor, g: int, m: int, consecutive: bool) -> Tensor:
    """A view of x (m*g, C, H, W) in which dim 1 enumerates rows that share parameters.

    Strided (or trivial) grouping: (g, m*C, H, W), dim 1 = (group, channel).
    Consecutive grouping: (1, N*C, H, W), dim 1 = (sample, channel).
    """
    n, c, h, w = x.shape
    return x.view(1, n * c, h, w) if consecutive else x.view(g, m * c, h, w)


def _expand_all(vs: list[Tensor | None], g: int, m: int, consecutive: bool) -> list[Tensor | None]:
    """Per-(group, channel) vectors (m*C,) -> one value per channel of :func:`_row_view`.

    Several vectors are expanded with one copy (fewer small ops); None stays None.
    """
    if not consecutive:
        return vs
    present = [v for v in vs if v is not None]
    k, mc = len(present), present[0].numel()
    packed = torch.stack(present).view(k, m, 1, mc // m).expand(k, m, g, mc // m).reshape(k, -1)  # (k, N*C)
    it = iter(packed.unbind(0))
    return [None if v is None else next(it) for v in vs]


def _normalize(
    x: Tensor, w: Tensor | None, b: Tensor | None, mean: Tensor, var: Tensor, g: int, m: int, consecutive: bool, eps: float
) -> Tensor:
    """Forward of :class:`_GroupedNormFn`: one eval-mode batch_norm pass on the row view.

    Returns the output in the row view's shape: reshaping it back is left to the caller,
    outside the autograd.Function, so that in-place ops (``ReLU(inplace=True)``) on the
    result stay legal (a custom Function must not return a view).
    """
    mean_e, var_e, we, be = _expand_all([mean, var, w, b], g, m, consecutive)
    return F.batch_norm(_row_view(x, g, m, consecutive), mean_e, var_e, we, be, False, 0.0, eps)


def _reduce(rows: Tensor, g: int, m: int, consecutive: bool) -> Tensor:
    """Per-channel sums of :func:`_row_view`, (k, rows) -> per-(group, channel) sums (k, m*C)."""
    if not consecutive:
        return rows
    k = rows.shape[0]
    return rows.view(k, m, g, -1).sum(2).view(k, -1)


@torch.no_grad()
def _group_stats(x: Tensor, g: int, m: int, consecutive: bool) -> tuple[Tensor, Tensor] | None:
    """Mean and biased variance of every (group, channel), each (m*C,); None if imprecise."""
    n, c, h, w = x.shape
    if h * w >= 64:
        # Per-row sum(x) and sum(x^2) in ONE fused pass: BN's eval-mode backward kernel with
        # grad_out = x, mean 0 and var 1 returns grad_bias = sum(x) and grad_weight = sum(x*x).
        # (Measured 1.5x faster than torch.sum + torch.linalg.vector_norm at 32x32.)
        xv = x.view(1, n * c, h, w)  # one channel per (sample, channel) row
        _, sum_sq, sum_x = torch.ops.aten.native_batch_norm_backward(
            xv, xv, None, x.new_zeros(n * c), x.new_ones(n * c), None, None, False, 0.0, [False, True, True]
        )
        sums = torch.stack([sum_x, sum_sq])  # (2, N*C)
    else:  # tiny maps: that kernel's per-channel overhead dominates; two plain reductions
        rows = x.view(n * c, h * w)
        sums = torch.stack([rows.sum(1), torch.linalg.vector_norm(rows, dim=1).square_()])  # (2, N*C)
    if consecutive:  # sample k*g + j is member j of group k
        sums = sums.view(2, m, g, c).sum(2).view(2, m * c)
    else:  # sample j*m + k is member j of group k
        sums = sums.view(2, g, m * c).sum(1)
    sums.mul_(1.0 / (g * h * w))
    mean, ex2 = sums[0], sums[1]  # E[x], E[x^2]
    var = torch.addcmul(ex2, mean, mean, value=-1.0)  # (m*C,)
    if bool((var < ex2 * _CANCEL).any()):
        return None
    return mean, var


class _GroupedNormFn(torch.autograd.Function):
    """y = (x - mean_k) / sqrt(var_k + eps) * w_k + b_k per group k, with BN's exact gradient.

    ``mean``/``var`` come from :func:`_group_stats` (computed outside, without autograd);
    the backward accounts for their dependence on x, as BatchNorm's training backward does.
    The output has the shape of :func:`_row_view` (the caller reshapes it). Once
    differentiable only (no double backward).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        w: Tensor | None,
        b: Tensor | None,
        mean: Tensor,
        var: Tensor,
        g: int,
        m: int,
        consecutive: bool,
        eps: float,
    ) -> Tensor:
        ctx.save_for_backward(x, w, mean, var)
        ctx.args = (g, m, consecutive, eps)
        return _normalize(x, w, b, mean, var, g, m, consecutive, eps)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w, mean, var = ctx.saved_tensors
        g, m, consecutive, eps = ctx.args
        n, c, h, wd = x.shape
        count = g * h * wd
        gy = gy.contiguous().view(n, c, h, wd)  # arrives in the row view's shape
        xv, gv = _row_view(x, g, m, consecutive), _row_view(gy, g, m, consecutive)
        rows = xv.shape[1]
        mean_e, var_e = _expand_all([mean, var], g, m, consecutive)
        # Per-row sum(dy * xhat) and sum(dy) from the native kernel (eval mode: stats constant).
        ones = x.new_ones(rows)
        _, s_dy_xhat, s_dy = torch.ops.aten.native_batch_norm_backward(
            gv, xv, ones, mean_e, var_e, None, None, False, eps, [False, True, True]
        )
        sums = _reduce(torch.stack([s_dy, s_dy_xhat]), g, m, consecutive)  # (2, m*C)
        s1, s2 = sums[0], sums[1]
        invstd = torch.rsqrt(var + eps)  # (m*C,)
        k = invstd if w is None else w * invstd
        # dx = k * (dy - s1/count - xhat * s2/count) = k*dy + a*x + q, per (group, channel)
        a = -k * invstd * s2 / count
        q = -k * s1 / count - a * mean
        gx = None
        if ctx.needs_input_grad[0]:
            # k*dy + q as one eval-mode batch_norm pass (mean 0, var 1, eps 0), then + a*x in place.
            zeros = x.new_zeros(rows)
            k_e, q_e = _expand_all([k, q], g, m, consecutive)
            gx = F.batch_norm(gv, zeros, ones, k_e, q_e, False, 0.0, 0.0)
            if consecutive:
                gx.view(m, g, c, h * wd).addcmul_(x.view(m, g, c, h * wd), a.view(m, 1, c, 1))
            else:
                gx.view(g, m * c, h * wd).addcmul_(x.view(g, m * c, h * wd), a.view(1, m * c, 1))
            gx = gx.view(n, c, h, wd)
        gw = s2 if ctx.needs_input_grad[1] else None
        gb = s1 if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None, None, None, None, None


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


@torch.no_grad()
def vote_predict(model: nn.Module, x: Tensor) -> Tensor:
    """Softmax probabilities averaged over all affine heads (the paper's voting).

    Runs one eval-mode forward per head h, with every LocalNorm2d forced to use head h
    (``force_head = h mod num_heads``), and averages the softmax outputs. The batch is
    never copied: this costs ``num_heads`` forwards of the batch, not a 128x larger one.
    The statistics follow each layer's ``test_stats``. The model's train/eval flags and
    ``force_head`` values are restored afterwards.

    Args:
        model: a classifier returning logits (N, K).
        x: the input batch.

    Returns:
        (N, K) probabilities averaged over heads (float32 or the logits' dtype).
    """
    layers = localnorm_layers(model)
    n_votes = max((layer.num_heads for layer in layers if layer.affine), default=1)
    flags = [mod.training for mod in model.modules()]
    saved = [layer.force_head for layer in layers]
    model.eval()
    try:
        total: Tensor | None = None
        for h in range(n_votes):
            for layer in layers:
                layer.force_head = h % layer.num_heads if layer.affine else None
            p = torch.softmax(model(x), dim=-1)  # (N, K)
            total = p if total is None else total + p
        assert total is not None
        return total / n_votes
    finally:
        for layer, head in zip(layers, saved):
            layer.force_head = head
        for mod, flag in zip(model.modules(), flags):
            mod.training = flag


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

