"""Norm layers that also apply an activation: what timm's ``BatchNormAct2d`` becomes under conversion.

timm fuses a norm with the activation after it: its ``BatchNormAct2d`` subclasses
``nn.BatchNorm2d`` (so its state_dict keys stay BN's) and, in its forward, applies
``drop`` and then ``act`` after the normalisation. Swapping such a layer for a plain
:class:`~lncli.nn.LocalNorm2d` would silently drop the activation, so conversions keep
the two children and use the layers below, after timm's own ``SyncBatchNormAct``
(``timm/layers/norm_act.py``): the parent's forward, then ``drop``, then ``act``.
"""

from __future__ import annotations

from torch import Tensor, nn

from lncli.nn.localnorm import LocalNorm2d

__all__ = ["ACT_CHILDREN", "BatchNormAct2d", "LocalNormAct2d", "act_children"]

ACT_CHILDREN: tuple[str, ...] = ("drop", "act")
"""The children of a norm+activation layer, in the order its forward applies them (timm's)."""


def act_children(module: nn.Module) -> dict[str, nn.Module] | None:
    """The ``drop``/``act`` children of a fused norm+activation layer, or None for a plain norm.

    Args:
        module: a norm layer.

    Returns:
        ``{name: child}`` when ``module`` has children and all of them are named in
        :data:`ACT_CHILDREN` (timm's ``BatchNormAct2d`` contract), else None.
    """
    children = dict(module.named_children())
    if children and set(children) <= set(ACT_CHILDREN):
        return children
    return None


def _apply_act(module: nn.Module, x: Tensor) -> Tensor:
    """``drop`` then ``act``, each when present (timm's order)."""
    for name in ACT_CHILDREN:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module):
            x = child(x)
    return x


class LocalNormAct2d(LocalNorm2d):
    """:class:`LocalNorm2d`, then the ``drop`` and ``act`` children of the layer it was converted from.

    Same state_dict keys as timm's ``BatchNormAct2d`` plus LocalNorm's heads; the
    children are attached by the conversion (``add_module``).
    """

    def forward(self, input: Tensor) -> Tensor:
        """LocalNorm (see :class:`LocalNorm2d`), then ``drop`` and ``act``."""
        return _apply_act(self, super().forward(input))


class BatchNormAct2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d``, then ``drop`` and ``act``: what a :class:`LocalNormAct2d` converts back to.

    Equal in forward and state_dict to timm's ``BatchNormAct2d`` (which lncli does not import).
    """

    def forward(self, input: Tensor) -> Tensor:
        """BatchNorm, then ``drop`` and ``act``."""
        return _apply_act(self, super().forward(input))
