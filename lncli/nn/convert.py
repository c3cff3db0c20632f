"""Swap BatchNorm2d and LocalNorm2d in a model: an inverse pair.

LocalNorm "can be applied to already-trained networks" (arXiv 1902.06550): a
BatchNorm model becomes a LocalNorm model whose affine heads all start from BN's
gamma/beta, and a LocalNorm model becomes a BatchNorm model by averaging its heads.
Modelled on ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` and timm's
``freeze_batch_norm_2d`` / ``unfreeze_batch_norm_2d``: recurse over
``named_children``, copy every field by name, return the root.

BN -> LN -> BN gives a bit-identical state_dict as long as the heads were not
changed in between (all heads equal: row 0 is taken instead of the mean).
Checkpoints (rebuilding a model from one, and snapshotting the result) are the ``convert``
job's (:func:`lncli.jobs.convert.convert_checkpoint`); this module only transforms models.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lncli.config.common import CONVERT_TARGETS, DEFAULT_GROUP_SIZE, canonical_norm_or_none
from lncli.errors import ConfigError
from lncli.nn.factory import get_norm_layer
from lncli.nn.localnorm import GROUPINGS, LocalNorm2d, check_choice
from lncli.nn.norm_act import BatchNormAct2d, LocalNormAct2d, act_children

__all__ = [
    "CONVERT_TARGETS",
    "ConversionSummary",
    "check_conversion",
    "check_convertible",
    "convert_batchnorm_to_localnorm",
    "convert_localnorm_to_batchnorm",
    "convert_model",
]


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion did.

    Attributes:
        direction: ``"batchnorm->localnorm"`` or ``"localnorm->batchnorm"``.
        layers_converted: number of norm layers swapped.
        params_added: parameters added (the heads, 2 * num_heads * C per layer);
            negative when parameters were removed (LN -> BN drops the heads).
        group_size: G of the result (None for BatchNorm).
        num_heads: affine heads of the result (None for BatchNorm).
    """

    direction: str
    layers_converted: int
    params_added: int
    group_size: int | None
    num_heads: int | None

    def lines(self) -> list[str]:
        """Human-readable summary lines (the CLI prints them)."""
        out = [f"converted {self.layers_converted} layers: {self.direction}"]
        if self.direction == "batchnorm->localnorm":
            out.append(
                f"group size {self.group_size}, {self.num_heads} heads per layer, all initialised from BN's weight/bias"
            )
            out.append(f"parameters added: {self.params_added:,}")
        else:
            out.append("affine heads averaged into weight/bias (exact copy where all heads were equal)")
            out.append(f"parameters removed: {-self.params_added:,}")
        return out


def _count(module: nn.Module) -> int:
    """The number of parameter values of ``module`` (what a conversion adds or removes)."""
    return sum(p.numel() for p in module.parameters())


def _swap(module: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> tuple[nn.Module, int]:
    """Replace, recursively and in place, every layer that ``convert`` maps to a new one.

    Returns (root, layers replaced); the root itself is replaced when it matches.
    """
    new = convert(module)
    if new is not None:
        new.train(module.training)
        return new, 1
    total = 0
    for name, child in module.named_children():
        new_child, n = _swap(child, convert)
        if new_child is not child:
            module.add_module(name, new_child)
        total += n
    return module, total


def _factory(module: nn.BatchNorm2d) -> dict[str, Any]:
    """device/dtype keywords that place a replacement layer where ``module`` lives."""
    ref = module.running_mean if module.running_mean is not None else module.weight
    return {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}


def _copy_running_stats(src: nn.BatchNorm2d, dst: nn.BatchNorm2d) -> None:
    """Copy BN's running buffers by value (the converted model never shares storage with the source)."""
    if src.track_running_stats:
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            getattr(dst, name).copy_(getattr(src, name))


def _keep_act(src: nn.Module, dst: nn.Module) -> None:
    """Give ``dst`` copies of the ``drop``/``act`` children of a fused norm+activation ``src`` (timm's BatchNormAct2d)."""
    for name, child in (act_children(src) or {}).items():
        dst.add_module(name, copy.deepcopy(child))


def _bn_to_ln(module: nn.Module, group_size: int, num_heads: int, grouping: str) -> LocalNorm2d | None:
    """A LocalNorm2d copy of a BatchNorm2d (None for any other module); a norm+act layer keeps its act."""
    if not isinstance(module, nn.BatchNorm2d) or isinstance(module, LocalNorm2d):
        return None
    new = (LocalNormAct2d if act_children(module) else LocalNorm2d)(
        module.num_features,
        module.eps,
        module.momentum,
        module.affine,
        module.track_running_stats,
        group_size=group_size,
        num_heads=num_heads,
        grouping=grouping,
        **_factory(module),
    )
    with torch.no_grad():
        if module.affine:
            new.weight.copy_(module.weight)
            new.bias.copy_(module.bias)
            new.head_weight.copy_(module.weight.expand_as(new.head_weight))
            new.head_bias.copy_(module.bias.expand_as(new.head_bias))
            new.head_weight.requires_grad_(module.weight.requires_grad)
            new.head_bias.requires_grad_(module.bias.requires_grad)
        _copy_running_stats(module, new)
    _keep_act(module, new)
    return new


def _head_average(heads: torch.Tensor) -> torch.Tensor:
    """(H, C) -> (C,): row 0 if all rows are equal (bit-exact round trip), else the mean."""
    if bool((heads == heads[:1]).all()):
        return heads[0]
    return heads.mean(0)


def _ln_to_bn(module: nn.Module) -> nn.BatchNorm2d | None:
    """A BatchNorm2d copy of a LocalNorm2d, heads averaged (None for any other module); a norm+act keeps its act."""
    if not isinstance(module, LocalNorm2d):
        return None
    new = (BatchNormAct2d if act_children(module) else nn.BatchNorm2d)(
        module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats, **_factory(module)
    )
    with torch.no_grad():
        if module.affine:
            new.weight.copy_(_head_average(module.head_weight))
            new.bias.copy_(_head_average(module.head_bias))
            new.weight.requires_grad_(module.head_weight.requires_grad)
            new.bias.requires_grad_(module.head_bias.requires_grad)
        _copy_running_stats(module, new)
    _keep_act(module, new)
    return new


def _convert_bn(module: nn.Module, group_size: int, num_heads: int, grouping: str) -> tuple[nn.Module, int]:
    """Worker for :func:`convert_batchnorm_to_localnorm`; returns (root, layers)."""
    return _swap(module, functools.partial(_bn_to_ln, group_size=group_size, num_heads=num_heads, grouping=grouping))


def _convert_ln(module: nn.Module) -> tuple[nn.Module, int]:
    """Worker for :func:`convert_localnorm_to_batchnorm`; returns (root, layers)."""
    return _swap(module, _ln_to_bn)


def convert_batchnorm_to_localnorm(
    module: nn.Module, *, group_size: int = DEFAULT_GROUP_SIZE, num_heads: int = 1, grouping: str = "consecutive"
) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` with a :class:`LocalNorm2d`.

    Containers are modified in place and returned (the root is a new module if it is
    itself a BatchNorm2d). Each new layer gets *copies* of the BN tensors (nothing is
    shared, so the old layers are untouched): ``weight``/``bias`` (kept as the frozen
    source affine), every head set to ``weight``/``bias``, the running statistics and
    ``num_batches_tracked``; eps, momentum, affine, track_running_stats, device, dtype
    and the train/eval flag are kept. LocalNorm2d layers already present are left alone.
    A fused norm+activation layer (timm's ``BatchNormAct2d``) becomes a
    :class:`~lncli.nn.norm_act.LocalNormAct2d` with copies of its ``drop``/``act`` children.

    Args:
        module: a model or layer.
        group_size: G of the new layers.
        num_heads: affine heads per new layer.
        grouping: ``"consecutive"`` or ``"strided"``.

    Returns:
        The converted root module.

    Raises:
        LncliError: invalid group_size, num_heads or grouping.
    """
    get_norm_layer("localnorm", group_size=group_size, num_heads=num_heads, grouping=grouping)  # validates
    return _convert_bn(module, group_size, num_heads, grouping)[0]


def convert_localnorm_to_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every :class:`LocalNorm2d` in ``module`` with an ``nn.BatchNorm2d``.

    The inverse of :func:`convert_batchnorm_to_localnorm`. The affine heads are
    **averaged** into BN's ``weight``/``bias`` (if all heads of a layer are equal, row 0
    is copied, so BN -> LN -> BN is bit-identical); LocalNorm's own frozen
    ``weight``/``bias`` are discarded. Running statistics, ``num_batches_tracked``,
    settings, device, dtype and the train/eval flag are copied. Containers are
    modified in place; the root is returned.

    Args:
        module: a model or layer.

    Returns:
        The converted root module.
    """
    return _convert_ln(module)[0]


def check_conversion(
    to: str, *, group_size: int = DEFAULT_GROUP_SIZE, num_heads: int = 1, grouping: str = "consecutive"
) -> str:
    """Check a conversion's settings before any work; return the canonical target.

    Args:
        to: ``"localnorm"`` or ``"batchnorm"`` (or an alias such as ``"ln"``, ``"bn"``).
        group_size: G for ``to="localnorm"``.
        num_heads: affine heads for ``to="localnorm"``.
        grouping: ``"consecutive"`` or ``"strided"`` (checked whatever the target).

    Returns:
        One of :data:`CONVERT_TARGETS`.

    Raises:
        LncliError: an unknown target or grouping, or (for LocalNorm) a bad group size or head count.
    """
    target = canonical_norm_or_none(to)
    if target is None or target not in CONVERT_TARGETS:
        raise ConfigError(f"unknown conversion target {to!r}; valid: {', '.join(CONVERT_TARGETS)}")
    check_choice("grouping", grouping, GROUPINGS)
    if target == "localnorm":
        get_norm_layer("localnorm", group_size=group_size, num_heads=num_heads, grouping=grouping)  # raises
    return target


def check_convertible(kind: str, where: str = "the checkpoint") -> str:
    """Check that a checkpoint's norm has batch statistics to swap; return its canonical kind.

    Args:
        kind: the checkpoint's norm kind (``ckpt.norm.kind``).
        where: what to call the checkpoint in the message (its file name).

    Returns:
        One of :data:`CONVERT_TARGETS`.

    Raises:
        ConfigError: a GroupNorm checkpoint (it normalises each image by itself: no batch statistics,
            so no BatchNorm or LocalNorm twin) or an unknown kind.
    """
    source = canonical_norm_or_none(kind) or str(kind)
    if source not in CONVERT_TARGETS:
        why = "which has no batch statistics to swap" if source == "groupnorm" else "which lncli cannot convert"
        raise ConfigError(f"{where} uses {source}, {why}; convert works between {' and '.join(CONVERT_TARGETS)} only")
    return source


def convert_model(
    model: nn.Module,
    to: str,
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
    num_heads: int = 1,
    grouping: str = "consecutive",
) -> tuple[nn.Module, ConversionSummary]:
    """Convert ``model``'s norm layers to LocalNorm or back to BatchNorm, and say what changed.

    :func:`convert_batchnorm_to_localnorm` or :func:`convert_localnorm_to_batchnorm` (same
    sharing and copying), with the count of layers and parameters that a report needs.

    Args:
        model: a model or layer.
        to: ``"localnorm"`` or ``"batchnorm"`` (or an alias such as ``"ln"``, ``"bn"``).
        group_size: G for ``to="localnorm"``.
        num_heads: affine heads for ``to="localnorm"``.
        grouping: ``"consecutive"`` or ``"strided"`` for ``to="localnorm"``.

    Returns:
        The converted root module and a :class:`ConversionSummary` (``layers_converted`` may be 0).

    Raises:
        LncliError: as :func:`check_conversion`.
    """
    target = check_conversion(to, group_size=group_size, num_heads=num_heads, grouping=grouping)
    before = _count(model)
    if target == "localnorm":
        model, layers = _convert_bn(model, group_size, num_heads, grouping)
        return model, ConversionSummary("batchnorm->localnorm", layers, _count(model) - before, group_size, num_heads)
    model, layers = _convert_ln(model)
    return model, ConversionSummary("localnorm->batchnorm", layers, _count(model) - before, None, None)
