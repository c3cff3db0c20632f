"""Norm names -> layer factories: the one place where strings become norm layers.

Model builders take a ``norm_layer`` callable (as torchvision's do); :func:`get_norm_layer`
turns a norm kind from a config, a checkpoint or the command line into one. The accepted
spellings and the default group size come from :mod:`lncli.config.common`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from lncli.config.common import DEFAULT_GROUP_SIZE, NORM_KINDS, canonical_norm
from lncli.nn.groupnorm import group_norm
from lncli.nn.localnorm import GROUPINGS, LocalNorm2d, check_choice, check_positive

__all__ = ["NORM_KINDS", "get_norm_layer"]


def get_norm_layer(
    kind: str = "batchnorm",
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
    num_heads: int = 1,
    grouping: str = "consecutive",
    groups: int | None = None,
) -> Callable[..., nn.Module]:
    """Resolve a norm name to a layer factory ``f(num_features, **kwargs) -> nn.Module``.

    For injection into model builders
    (``create_model(..., norm_layer=get_norm_layer("localnorm", group_size=16))``).

    Args:
        kind: one of :data:`NORM_KINDS` or an alias (``"bn"``, ``"ln"``, ``"gn"``; see
            :data:`lncli.config.common.NORM_ALIASES`), in any case.
        group_size: G for LocalNorm (ignored otherwise).
        num_heads: affine heads for LocalNorm (ignored otherwise).
        grouping: ``"consecutive"`` or ``"strided"`` for LocalNorm (ignored otherwise).
        groups: GroupNorm's number of groups (ignored otherwise); None = min(32, C) per layer,
            else the largest divisor of C not above 32 (:func:`lncli.nn.groupnorm.default_groups`).
            An explicit number that does not divide a layer's width fails when that layer is built.

    Returns:
        ``nn.BatchNorm2d``, a partial of :class:`~lncli.nn.LocalNorm2d`, or a partial of
        :func:`lncli.nn.groupnorm.group_norm` (a ``torch.nn.GroupNorm``, affine, eps 1e-5).

    Raises:
        LncliError: an unknown kind or an invalid LocalNorm or GroupNorm setting.
    """
    canonical = canonical_norm(kind)
    if canonical == "batchnorm":
        return nn.BatchNorm2d
    if canonical == "groupnorm":
        if groups is not None:
            check_positive("groups", groups)
        return functools.partial(group_norm, groups=groups)
    # localnorm: its settings are checked here, so a bad one fails before any model is built.
    check_positive("group_size", group_size)
    check_positive("num_heads", num_heads)
    check_choice("grouping", grouping, GROUPINGS)
    return functools.partial(LocalNorm2d, group_size=group_size, num_heads=num_heads, grouping=grouping)
