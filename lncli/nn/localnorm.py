"""LocalNorm2d: BatchNorm whose statistics come from small groups of samples.

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
  :func:`lncli.nn.set_test_mode` sets them across a model.
* ``prior`` test statistics (Schneider et al. 2020, "Improving robustness against common
  corruptions by covariate shift adaptation", NeurIPS) mix the running and the test batch's
  statistics: (N * running + n * batch) / (N + n) for the mean and the variance, n the batch
  size and N = ``prior_n``. N = 0 is ``batch``, N -> infinity is ``running``.

Speed: all groups are normalised at once, never in a Python loop over groups.

* On CUDA (and for half types or non-contiguous input) one native training-mode
  ``F.batch_norm`` call runs on a reshaped tensor in which every (group, channel)
  pair is a channel: a zero-copy view for ``strided`` groups, a transposed copy
  for ``consecutive`` ones.
* On the CPU, where PyTorch's batch-statistics kernel is slow and the transposed
  copies dominate, :mod:`lncli.nn._grouped_cpu` works on copy-free views with
  BatchNorm's exact gradient and shifted statistics that keep float32 accurate
  however far the mean is from zero. ``LocalNorm2d.cpu_fast_path = False``
  switches it off.
* Training with G = N takes BatchNorm2d's own code path, so its output and gradients
  equal BN's exactly (the running statistics to rounding).
* Running statistics are updated after the forward from detached per-group statistics,
  never through the buffers handed to ``F.batch_norm``: autograd saves those for the
  backward, which would then fail after the update changed them in place.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.config.common import DEFAULT_GROUP_SIZE, DEFAULT_PRIOR_N, GROUPINGS
from lncli.errors import ConfigError
from lncli.nn._grouped_cpu import group_moments, grouped_norm

__all__ = [
    "GROUPINGS",
    "PER_IMAGE_STATS",
    "TEST_HEADS",
    "TEST_STATS",
    "LocalNorm2d",
    "check_choice",
    "check_positive",
    "check_prior_n",
    "localnorm_layers",
]

#: Where the test-time normalisation statistics come from.
#: ``running``: classic BN eval; ``batch``: the whole test batch (prediction-time BN);
#: ``local``: groups of G test images (the paper); ``single``: each image alone, over (H, W);
#: ``prior``: the running statistics and the whole test batch's, mixed with weights N and n
#: (Schneider et al. 2020; N = ``LocalNorm2d.prior_n``).
TEST_STATS: tuple[str, ...] = ("running", "batch", "local", "single", "prior")
#: The test statistics that do not come from the batch: each image is normalised on its own
#: (``single``) or with fixed statistics (``running``), so no test image belongs to a group, and
#: an image's prediction must not depend on its batch, its place in it or the stream's order.
PER_IMAGE_STATS: tuple[str, ...] = ("running", "single")
#: Which affine head a test sample uses. ``position``: group k uses head k mod num_heads
#: (the paper; results depend on test-set order), where test images form groups (``local``,
#: ``batch``, ``prior``); under :data:`PER_IMAGE_STATS` there is no group, and ``position``
#: takes the mean of the heads as ``mean`` does. ``mean``: the average of the heads
#: (order-independent); ``vote``: every head in turn, softmax averaged (see
#: :func:`lncli.nn.vote_predict`; :func:`lncli.nn.majority_predict` is the authors' majority
#: of per-head argmaxes).
TEST_HEADS: tuple[str, ...] = ("position", "mean", "vote")


def check_choice(what: str, value: Any, valid: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``valid``.

    Args:
        what: the setting's name, for the message.
        value: the value given.
        valid: the accepted values.

    Returns:
        ``value``.

    Raises:
        ConfigError: ``value`` is not in ``valid`` (the message lists them).
    """
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def check_prior_n(value: Any) -> float:
    """Return ``value`` as a float if it is a finite number >= 0 (``prior`` mode's N).

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"prior N must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(what: str, value: Any) -> int:
    """Return ``value`` if it is a positive ``int`` (not a bool).

    Args:
        what: the setting's name, for the message.
        value: the value given.

    Returns:
        ``value``.

    Raises:
        ConfigError: anything else.
    """
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
    All affine transforms use the heads; :func:`lncli.nn.convert_localnorm_to_batchnorm`
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
    and ``test_heads`` the affine (see :data:`TEST_HEADS`). With ``position`` heads, the affine of
    a sample follows the G-grouping above where the statistics come from the batch (``local``,
    ``batch``, ``prior``): under ``batch`` stats, sample i uses the head of the group it would be
    in under ``local``. Under :data:`PER_IMAGE_STATS` (``running``, ``single``) no image belongs to
    a group, so every sample takes the mean of the heads: a sample's output then depends on the
    sample alone, never on the batch size or its position in the batch.
    ``running`` (and ``prior``) without running buffers (``track_running_stats=False``)
    uses batch statistics, as BatchNorm2d does. ``prior`` normalises with
    (N * running + n * batch) / (N + n) for the mean and the variance (n the batch size, N =
    ``prior_n``, a run-time setting like ``test_stats``), the batch variance being the biased
    one that ``batch`` normalises with, so that N = 0 is ``batch`` (to rounding). Schneider et
    al.'s code takes the unbiased batch variance; the two differ by a factor nHW / (nHW - 1). A plain forward with ``test_heads="vote"`` uses
    the head mean; voting itself is :func:`lncli.nn.vote_predict` (or :func:`lncli.nn.majority_predict`).

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
        group_size: int = DEFAULT_GROUP_SIZE,
        num_heads: int = 1,
        grouping: str = "consecutive",
        test_stats: str = "local",
        test_heads: str = "position",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.num_heads = check_positive("num_heads", num_heads)
        self.group_size = group_size
        self.grouping = grouping
        self.test_stats = test_stats
        self.test_heads = test_heads
        self.force_head: int | None = None
        self.prior_n = DEFAULT_PRIOR_N
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
        self._group_size = check_positive("group_size", value)

    @property
    def grouping(self) -> str:
        """``consecutive`` or ``strided`` (see :data:`GROUPINGS`)."""
        return self._grouping

    @grouping.setter
    def grouping(self, value: str) -> None:
        self._grouping = check_choice("grouping", value, GROUPINGS)

    @property
    def test_stats(self) -> str:
        """Test-time statistics, one of :data:`TEST_STATS`."""
        return self._test_stats

    @test_stats.setter
    def test_stats(self, value: str) -> None:
        self._test_stats = check_choice("test stats", value, TEST_STATS)

    @property
    def test_heads(self) -> str:
        """Test-time affine, one of :data:`TEST_HEADS`."""
        return self._test_heads

    @test_heads.setter
    def test_heads(self, value: str) -> None:
        self._test_heads = check_choice("test heads", value, TEST_HEADS)

    @property
    def prior_n(self) -> float:
        """N of ``prior`` test statistics: the running statistics' weight, in images (>= 0)."""
        return self._prior_n

    @prior_n.setter
    def prior_n(self, value: float) -> None:
        self._prior_n = check_prior_n(value)

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
        ) + (f", prior_n={self.prior_n:g}" if self.test_stats == "prior" else "")

    # -- helpers ---------------------------------------------------------------------
    def _affine(self, n_groups: int, per_image: bool = False) -> tuple[Tensor | None, Tensor | None]:
        """The affine of each group: both (C,) when shared by all groups, else (n_groups, C).

        ``per_image``: the test statistics do not come from the batch (:data:`PER_IMAGE_STATS`), so
        there are no groups to take a head by position from: the heads' mean.
        """
        if self.head_weight is None:
            return None, None
        hw, hb = self.head_weight, self.head_bias  # (num_heads, C)
        if self.force_head is not None:
            h = self.force_head
            if not 0 <= h < self.num_heads:
                raise ValueError(f"force_head={h} out of range for num_heads={self.num_heads}")
            return hw[h], hb[h]
        if not self.training and (self.test_heads != "position" or per_image):
            return hw.mean(0), hb.mean(0)  # "mean"; per-image stats and "vote" without force_head also land here
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

    def _running_buffers(self) -> tuple[Tensor, Tensor]:
        """``running_mean`` and ``running_var``; only asked for where they exist."""
        if self.running_mean is None or self.running_var is None:  # a bug in the caller, not user input
            raise RuntimeError("this LocalNorm2d keeps no running statistics (track_running_stats=False)")
        return self.running_mean, self.running_var

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
    def forward(self, input: Tensor) -> Tensor:
        """Normalise (N, C, H, W); see the class docstring for the train/test rules."""
        self._check_input_dim(input)
        n = input.shape[0]
        if n == 0:  # an empty batch gives an empty output, as in BatchNorm2d (no stats to take)
            if self.training:
                self._momentum()  # BN counts the batch too
            w0 = None if self.head_weight is None else self.head_weight[0]
            b0 = None if self.head_bias is None else self.head_bias[0]
            return F.batch_norm(input, None, None, w0, b0, True, 0.0, self.eps)  # keeps the autograd chain
        if self.training:
            return self._local(input, self.group_size, self._momentum())
        stats = self.test_stats
        if stats in ("running", "prior") and self.running_mean is None:
            stats = "batch"  # BatchNorm2d's own rule when there are no running buffers
        if stats == "local":
            return self._local(input, self.group_size, 0.0)
        w, b = self._affine(-(-n // self.group_size), stats in PER_IMAGE_STATS)  # the affine of every G-group
        if w is None or b is None or w.dim() == 1:  # no affine, or one (C,) shared by every sample
            return self._eval_shared(input, stats, w, b)
        return self._eval_per_sample(input, stats, self._per_sample(w, n), self._per_sample(b, n))

    def _eval_shared(self, x: Tensor, stats: str, w: Tensor | None, b: Tensor | None) -> Tensor:
        """Test-time ``single``, ``batch`` or ``running`` forward with one affine (C,) for all samples, or none."""
        n, c = x.shape[:2]
        if stats == "single":
            # Each image is its own group of one: n groups, (1, N*C, H, W) is a view.
            if w is not None and b is not None:  # both or neither (see _affine)
                w, b = w.expand(n, c).reshape(-1), b.expand(n, c).reshape(-1)  # (N*C,)
            return self._grouped(x, 1, n, w, b, False)[0]
        if stats == "batch":
            return self._grouped(x, n, 1, w, b, False)[0]
        mean, var = self._fixed_moments(x, stats)  # running or prior
        if stats == "running":
            return F.batch_norm(x, mean, var, w, b, False, 0.0, self.eps)
        # prior: folded by hand, since F.batch_norm refuses statistics that carry a gradient (y = x * s + t)
        s = torch.rsqrt(var + self.eps) if w is None else w * torch.rsqrt(var + self.eps)  # (C,)
        t = -mean * s if b is None else b - mean * s
        return torch.addcmul(t[:, None, None], x, s[:, None, None]).to(x.dtype)

    def _eval_per_sample(self, x: Tensor, stats: str, w: Tensor, b: Tensor) -> Tensor:
        """The same as :meth:`_eval_shared` with one affine row per sample, w and b (N, C).

        The outputs keep the input's dtype (``.to``): half/bf16 activations with fp32 heads
        (autocast) stay half/bf16, as BatchNorm2d's do.
        """
        n = x.shape[0]
        if stats == "single":
            return self._grouped(x, 1, n, w.reshape(-1), b.reshape(-1), False)[0]  # w, b: (N*C,)
        if stats == "batch":
            y = self._grouped(x, n, 1, None, None, False)[0]  # normalise, then per-sample affine
            return torch.addcmul(b[:, :, None, None], y, w[:, :, None, None]).to(x.dtype)
        # running or prior: the per-sample affine folded into one scale/shift, y = x * s + t, s, t (N, C).
        mean, var = self._fixed_moments(x, stats)
        inv_std = torch.rsqrt(var + self.eps)  # (C,)
        s = w * inv_std
        t = b - mean * s
        return torch.addcmul(t[:, :, None, None], x, s[:, :, None, None]).to(x.dtype)

    def _fixed_moments(self, x: Tensor, stats: str) -> tuple[Tensor, Tensor]:
        """The (C,) mean and variance that ``running`` or ``prior`` normalise x (N, C, H, W) with.

        ``prior`` (Schneider et al. 2020): (N * running + n * batch) / (N + n) for both, with n = N_x
        the batch size and N = ``prior_n``; the batch moments are the ones ``batch`` normalises with
        (mean and biased variance over (N, H, W)), taken by the same kernel where it runs (and
        differentiably, through ``torch.var_mean``, when x needs a gradient).
        """
        running_mean, running_var = self._running_buffers()
        if stats != "prior":
            return running_mean, running_var
        n = x.shape[0]
        if self._cpu_path_ok(x) and not (torch.is_grad_enabled() and x.requires_grad):
            mean, var = group_moments(x, n, 1, False)  # (C,) each: one group of the whole batch
        else:
            var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)  # (C,) each
        weight = self.prior_n / (self.prior_n + n)  # of the running statistics; n >= 1 here
        mix_mean = torch.lerp(mean.to(running_mean.dtype), running_mean, weight)
        mix_var = torch.lerp(var.to(running_var.dtype), running_var, weight)
        return mix_mean, mix_var

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
            if w is not None and b is not None:  # both or neither (see _affine)
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
            if w is not None and b is not None:
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
        running_mean, running_var = self._running_buffers()
        running_mean.mul_(1 - momentum).add_(new_mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(new_var, alpha=momentum)

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
        y, shift, mean, var = grouped_norm(x, w, b, g, m, consecutive, self.eps)
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
            running_mean, running_var = self._running_buffers()
            rm, rv = running_mean.new_zeros(m * c), running_var.new_ones(m * c)  # (m*C,)
        if consecutive:
            # Sample k*g + j is member j of group k; needs a transposed copy.
            xg = x.reshape(m, g, c, *hw).transpose(0, 1).reshape(g, m * c, *hw)  # (g, m*C, H, W)
        else:
            # Strided (or one group): sample j*m + k is member j of group k, (g, m*C, H, W), a view.
            xg = x.reshape(g, m * c, *hw)
        y = _batch_stats_norm(xg, rm, rv, w, b, 1.0, self.eps)
        y = y.view(g, m, c, *hw).transpose(0, 1).reshape(n, c, *hw) if consecutive else y.view(n, c, *hw)
        return y, None if rm is None or rv is None else (rm.view(m, c), rv.view(m, c))

    #: Use the copy-free CPU kernels (:mod:`lncli.nn._grouped_cpu`); tests switch it off to
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


def localnorm_layers(model: nn.Module) -> list[LocalNorm2d]:
    """All :class:`LocalNorm2d` layers of ``model``, in module order.

    Args:
        model: any module.

    Returns:
        The LocalNorm2d submodules (``model`` itself included if it is one).
    """
    return [m for m in model.modules() if isinstance(m, LocalNorm2d)]
