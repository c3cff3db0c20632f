"""GroupNorm, lncli's batch-independent control: ``torch.nn.GroupNorm`` with the usual default groups.

GroupNorm (Wu & He, ECCV 2018) normalises each image over groups of channels, so its output
never depends on the other images of a batch: no batch size, stream order or batch
composition changes it, at training or at test time. It is the control against which
LocalNorm's ``single`` mode and prediction-time BatchNorm are measured (issue 14).

Default groups: ``min(32, C)``, and when that does not divide ``C``, the largest divisor of ``C``
not above 32 (both are the same number: the largest divisor of ``C`` that is at most 32). Wu & He's
G = 32 is the default of torchvision- and detectron2-style code; the divisor fallback is what such
code uses for widths that 32 does not divide, and ``min`` keeps narrow layers valid (C = 16 -> 16
groups of one channel, i.e. InstanceNorm). An explicit ``groups`` must divide every layer's width.
"""

from __future__ import annotations

from torch import nn

from lncli.config.common import MAX_GN_GROUPS
from lncli.errors import ConfigError
from lncli.nn.localnorm import check_positive

__all__ = ["GN_EPS", "default_groups", "group_norm"]

GN_EPS = 1e-5
"""The variance epsilon: BatchNorm's (and torch's GroupNorm default), so the three norms differ only in their statistics."""


def default_groups(num_channels: int, max_groups: int = MAX_GN_GROUPS) -> int:
    """GroupNorm's default number of groups for a layer of ``num_channels`` channels.

    ``min(max_groups, C)`` when it divides ``C``, else the largest divisor of ``C`` not above
    ``max_groups`` (C = 48 -> 24, C = 100 -> 25).

    Args:
        num_channels: the layer's width C (>= 1).
        max_groups: the most groups to use (Wu & He's 32).

    Returns:
        The number of groups: a divisor of ``num_channels`` in 1..max_groups.
    """
    check_positive("num_channels", num_channels)
    check_positive("max_groups", max_groups)
    # Counting down from min(G, C): the first divisor found is the largest; 1 always divides.
    return next(g for g in range(min(max_groups, num_channels), 0, -1) if num_channels % g == 0)


def group_norm(num_features: int, *, groups: int | None = None, eps: float = GN_EPS) -> nn.GroupNorm:
    """A ``torch.nn.GroupNorm`` (affine) for ``num_features`` channels: the factory models call.

    Args:
        num_features: the layer's width C (the name models pass to every norm layer).
        groups: the number of groups; None = :func:`default_groups`. Must divide C.
        eps: added to the variance (BatchNorm's 1e-5 by default).

    Returns:
        The layer, with weight 1 and bias 0.

    Raises:
        ConfigError: ``groups`` does not divide C (the width is named), or is below 1.
    """
    check_positive("num_features", num_features)
    if groups is None:
        groups = default_groups(num_features)
    check_positive("groups", groups)
    if num_features % groups != 0:
        raise ConfigError(
            f"norm.groups={groups} does not divide a layer of width {num_features}; "
            f"choose a divisor of every layer's width, or leave it unset (min({MAX_GN_GROUPS}, C))"
        )
    return nn.GroupNorm(groups, num_features, eps=eps, affine=True)
