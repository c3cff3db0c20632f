"""Test-time control of LocalNorm models: statistics, heads and voting over the heads.

:func:`set_test_mode` chooses, across a model, where every :class:`~lncli.nn.LocalNorm2d`
takes its test-time statistics and affine from. :func:`vote_predict` (lncli's rule: softmax
averaged over the heads) and :func:`majority_predict` (the authors' rule: majority of the
per-head argmaxes) run one forward per affine head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.nn.localnorm import TEST_HEADS, TEST_STATS, check_choice, check_positive, check_prior_n, localnorm_layers

__all__ = ["majority_predict", "set_test_mode", "vote_predict"]


def set_test_mode(
    model: nn.Module,
    stats: str | None = None,
    heads: str | None = None,
    group_size: int | None = None,
    prior_n: float | None = None,
) -> nn.Module:
    """Set the test-time statistics, affine heads, group size and/or prior N of every LocalNorm2d.

    Values are checked before any layer is changed. Layers that are not LocalNorm2d
    (e.g. plain BatchNorm2d) are left alone.

    Args:
        model: the model to change in place.
        stats: one of :data:`TEST_STATS`, or ``None`` to keep.
        heads: one of :data:`TEST_HEADS`, or ``None`` to keep.
        group_size: a positive G, or ``None`` to keep.
        prior_n: N of ``prior`` statistics (a finite number >= 0), or ``None`` to keep.

    Returns:
        ``model``, for chaining.

    Raises:
        LncliError: an unknown value (the message lists the valid ones).
    """
    if stats is not None:
        check_choice("test stats", stats, TEST_STATS)
    if heads is not None:
        check_choice("test heads", heads, TEST_HEADS)
    if group_size is not None:
        check_positive("group_size", group_size)
    if prior_n is not None:
        check_prior_n(prior_n)
    for layer in localnorm_layers(model):
        if stats is not None:
            layer.test_stats = stats
        if heads is not None:
            layer.test_heads = heads
        if group_size is not None:
            layer.group_size = group_size
        if prior_n is not None:
            layer.prior_n = prior_n
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
