"""Swap BatchNorm2d and LocalNorm2d in a model or a checkpoint: an inverse pair.

LocalNorm "can be applied to already-trained networks" (arXiv 1902.06550): a
BatchNorm model becomes a LocalNorm model whose affine heads all start from BN's
gamma/beta, and a LocalNorm model becomes a BatchNorm model by averaging its heads.
Modelled on ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` and timm's
``freeze_batch_norm_2d`` / ``unfreeze_batch_norm_2d``: recurse over
``named_children``, copy every field by name, return the root.

BN -> LN -> BN gives a bit-identical state_dict as long as the heads were not
changed in between (all heads equal: row 0 is taken instead of the mean).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from lncli.errors import ConfigError
from lncli.io import check_distinct, check_output_file
from lncli.norm import GROUPINGS, LocalNorm2d, get_norm_layer

if TYPE_CHECKING:  # pragma: no cover
    from lncli.checkpoint import Checkpoint

__all__ = [
    "CONVERT_TARGETS",
    "ConversionSummary",
    "ConvertConfig",
    "convert_batchnorm_to_localnorm",
    "convert_checkpoint",
    "convert_localnorm_to_batchnorm",
    "run_convert",
]

CONVERT_TARGETS: tuple[str, ...] = ("localnorm", "batchnorm")


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
        dst.running_mean.copy_(src.running_mean)
        dst.running_var.copy_(src.running_var)
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _bn_to_ln(module: nn.Module, group_size: int, num_heads: int, grouping: str) -> LocalNorm2d | None:
    """A LocalNorm2d copy of a plain BatchNorm2d (None for any other module)."""
    if not isinstance(module, nn.BatchNorm2d) or isinstance(module, LocalNorm2d):
        return None
    new = LocalNorm2d(
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
    return new


def _head_average(heads: torch.Tensor) -> torch.Tensor:
    """(H, C) -> (C,): row 0 if all rows are equal (bit-exact round trip), else the mean."""
    if bool((heads == heads[:1]).all()):
        return heads[0]
    return heads.mean(0)


def _ln_to_bn(module: nn.Module) -> nn.BatchNorm2d | None:
    """A BatchNorm2d copy of a LocalNorm2d, heads averaged (None for any other module)."""
    if not isinstance(module, LocalNorm2d):
        return None
    new = nn.BatchNorm2d(
        module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats, **_factory(module)
    )
    with torch.no_grad():
        if module.affine:
            new.weight.copy_(_head_average(module.head_weight))
            new.bias.copy_(_head_average(module.head_bias))
            new.weight.requires_grad_(module.head_weight.requires_grad)
            new.bias.requires_grad_(module.head_bias.requires_grad)
        _copy_running_stats(module, new)
    return new


def _convert_bn(module: nn.Module, group_size: int, num_heads: int, grouping: str) -> tuple[nn.Module, int]:
    """Worker for :func:`convert_batchnorm_to_localnorm`; returns (root, layers)."""
    return _swap(module, functools.partial(_bn_to_ln, group_size=group_size, num_heads=num_heads, grouping=grouping))


def _convert_ln(module: nn.Module) -> tuple[nn.Module, int]:
    """Worker for :func:`convert_localnorm_to_batchnorm`; returns (root, layers)."""
    return _swap(module, _ln_to_bn)


def convert_batchnorm_to_localnorm(
    module: nn.Module, *, group_size: int = 16, num_heads: int = 1, grouping: str = "consecutive"
) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` with a :class:`LocalNorm2d`.

    Containers are modified in place and returned (the root is a new module if it is
    itself a BatchNorm2d). Each new layer gets *copies* of the BN tensors (nothing is
    shared, so the old layers are untouched): ``weight``/``bias`` (kept as the frozen
    source affine), every head set to ``weight``/``bias``, the running statistics and
    ``num_batches_tracked``; eps, momentum, affine, track_running_stats, device, dtype
    and the train/eval flag are kept. LocalNorm2d layers already present are left alone.

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


def convert_checkpoint(
    ckpt: Checkpoint,
    to: str,
    *,
    group_size: int = 16,
    num_heads: int = 1,
    grouping: str = "consecutive",
) -> tuple[Checkpoint, ConversionSummary]:
    """Convert a checkpoint's norm layers to LocalNorm or back to BatchNorm.

    The model is rebuilt from ``ckpt``, converted, and snapshotted into a new
    checkpoint with the new norm spec. Arch, data, config and metrics are kept;
    ``provenance["conversions"]`` gains a record of this conversion; ``train_state``
    is dropped, because optimizer state no longer matches the parameters.

    Args:
        ckpt: the source checkpoint.
        to: ``"localnorm"`` or ``"batchnorm"`` (aliases ``"ln"``, ``"bn"``).
        group_size: G for ``to="localnorm"``.
        num_heads: affine heads for ``to="localnorm"``.
        grouping: ``"consecutive"`` or ``"strided"`` for ``to="localnorm"``.

    Returns:
        The new checkpoint and a :class:`ConversionSummary`.

    Raises:
        LncliError: unknown target, invalid LocalNorm settings, or a checkpoint that
            already uses the target norm.
    """
    from lncli.checkpoint import NormSpec, build_model, checkpoint_from_model

    target = {"ln": "localnorm", "bn": "batchnorm"}.get(str(to).lower(), str(to).lower())
    if target not in CONVERT_TARGETS:
        raise ConfigError(f"unknown conversion target {to!r}; valid: {', '.join(CONVERT_TARGETS)}")
    if grouping not in GROUPINGS:
        raise ConfigError(f"unknown grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")
    source = {"ln": "localnorm", "bn": "batchnorm"}.get(ckpt.norm.kind, ckpt.norm.kind)
    if source == target:
        raise ConfigError(f"the checkpoint already uses {target}; nothing to convert")
    model = build_model(ckpt)
    before = _count(model)
    if target == "localnorm":
        model, layers = _convert_bn(model, *_validated(group_size, num_heads, grouping))
        spec = NormSpec(kind="localnorm", group_size=group_size, num_heads=num_heads, grouping=grouping)
        summary = ConversionSummary("batchnorm->localnorm", layers, _count(model) - before, group_size, num_heads)
    else:
        model, layers = _convert_ln(model)
        spec = NormSpec(kind="batchnorm")
        summary = ConversionSummary("localnorm->batchnorm", layers, _count(model) - before, None, None)
    if layers == 0:
        raise ConfigError(f"no {source} layers found in {ckpt.arch!r}; nothing to convert")
    record: dict[str, Any] = {
        "direction": summary.direction,
        "layers_converted": layers,
        "from_norm": ckpt.norm.to_dict(),
        "to_norm": spec.to_dict(),
    }
    provenance = dict(ckpt.provenance)
    provenance["conversions"] = [*provenance.get("conversions", []), record]
    new = checkpoint_from_model(
        model,
        arch=ckpt.arch,
        arch_kwargs=ckpt.arch_kwargs,
        norm=spec,
        data=ckpt.data,
        config=ckpt.config,
        metrics=ckpt.metrics,
        provenance=provenance,
        train_state=None,
    )
    return new, summary


def _validated(group_size: int, num_heads: int, grouping: str) -> tuple[int, int, str]:
    get_norm_layer("localnorm", group_size=group_size, num_heads=num_heads, grouping=grouping)  # raises LncliError
    return group_size, num_heads, grouping


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of ``lncli convert IN OUT``.

    Attributes:
        src: the checkpoint to read (an lncli checkpoint).
        dst: where to write the converted checkpoint; must not be ``src``.
        to: ``"localnorm"`` or ``"batchnorm"``.
        group_size: G for LocalNorm; 16 is the authors' CIFAR setting (batch 128, 8 groups).
        num_heads: affine heads for LocalNorm; 1 (Ghost-BN-like, order-independent) is the
            safe default for a converted model, the paper uses batch / G.
        grouping: ``"consecutive"`` (the authors') or ``"strided"`` (faster).
    """

    src: Path
    dst: Path
    to: str
    group_size: int = 16
    num_heads: int = 1
    grouping: str = "consecutive"


def run_convert(cfg: ConvertConfig, then: Callable[[Checkpoint], Checkpoint] | None = None) -> ConversionSummary:
    """Read ``cfg.src``, convert its norm layers, write ``cfg.dst`` atomically.

    The I/O edge of :func:`convert_checkpoint` (the CLI calls this). OUT is checked
    before IN is read, and written once, at the end: a failure anywhere leaves no OUT
    (or the previous one).

    Args:
        cfg: the settings.
        then: optional last step on the converted checkpoint before it is written
            (the CLI's ``--finetune``).

    Returns:
        What was converted.

    Raises:
        LncliError: OUT is IN, OUT cannot be written (a folder, no permission, not a
            checkpoint suffix), unreadable checkpoint, or invalid settings.
    """
    from lncli.checkpoint import load_checkpoint, save_checkpoint
    from lncli.evaluate import CHECKPOINT_SUFFIXES  # the suffixes `lncli evaluate FOLDER` picks up

    check_output_file(cfg.dst, "OUT", CHECKPOINT_SUFFIXES)
    check_distinct({"OUT": cfg.dst}, {"IN": cfg.src})
    ckpt = load_checkpoint(cfg.src)
    new, summary = convert_checkpoint(
        ckpt, cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping
    )
    new.provenance["conversions"][-1]["source"] = str(cfg.src)
    if then is not None:
        new = then(new)
    save_checkpoint(new, cfg.dst)
    return summary
