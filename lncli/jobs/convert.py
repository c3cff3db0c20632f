"""The ``convert`` job: read a checkpoint, swap its norm layers, write the result atomically.

:func:`convert_checkpoint` converts a checkpoint in memory (it rebuilds the model and swaps
its layers with :func:`lncli.nn.convert_model`); :func:`convert_file` is its file edge:
everything that can be checked (the settings, OUT's path, OUT against IN) is checked before
IN is read, and OUT is written once, at the end, so a failure anywhere leaves no OUT (or the
previous one).

IN may be foreign (a bare torchvision or timm state_dict) with ``arch`` and ``data``; OUT
then records both, so ``lncli evaluate OUT`` needs no flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from lncli.checkpoint import (
    CHECKPOINT_SUFFIXES,
    Checkpoint,
    LoadReport,
    NormSpec,
    checkpoint_from_model,
    complete_weights,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from lncli.config.common import DEFAULT_GROUP_SIZE, Grouping
from lncli.config.convert import ConvertConfig
from lncli.data import DataMeta, DataSpec, dataset_meta
from lncli.data.preprocess import IMAGENET, PreprocessLayer, apply_preprocess, resolve_preprocess, timm_layer
from lncli.errors import ConfigError
from lncli.io import check_distinct, check_output_file
from lncli.nn.convert import ConversionSummary, check_conversion, check_convertible, convert_model

__all__ = ["ConvertResult", "check_convert_files", "convert_checkpoint", "convert_file", "run_convert"]


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_file` did.

    Attributes:
        summary: what was converted.
        report: what a non-strict load left out (empty when every key matched).
        written: the checkpoint written to OUT (after ``then``, e.g. the fine-tune and its metrics).
    """

    summary: ConversionSummary
    report: LoadReport
    written: Checkpoint


def convert_checkpoint(
    ckpt: Checkpoint,
    to: str,
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
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
        to: ``"localnorm"`` or ``"batchnorm"`` (or an alias such as ``"ln"``, ``"bn"``).
        group_size: G for ``to="localnorm"``.
        num_heads: affine heads for ``to="localnorm"``.
        grouping: ``"consecutive"`` or ``"strided"`` for ``to="localnorm"``.

    Returns:
        The new checkpoint and a :class:`~lncli.nn.convert.ConversionSummary`.

    Raises:
        LncliError: unknown target, invalid LocalNorm settings (both before the model is built),
            or a checkpoint that already uses the target norm, has no layer to convert or is not
            convertible (GroupNorm: :func:`~lncli.nn.convert.check_convertible`).
    """
    target = check_conversion(to, group_size=group_size, num_heads=num_heads, grouping=grouping)
    source = check_convertible(ckpt.norm.kind)
    if source == target:
        raise ConfigError(f"the checkpoint already uses {target}; nothing to convert")
    model, summary = convert_model(
        model_from_checkpoint(ckpt), target, group_size=group_size, num_heads=num_heads, grouping=grouping
    )
    if summary.layers_converted == 0:
        raise ConfigError(f"no {source} layers found in {ckpt.arch!r}; nothing to convert")
    if target == "localnorm":
        spec = NormSpec(kind="localnorm", group_size=group_size, num_heads=num_heads, grouping=cast(Grouping, grouping))
    else:
        spec = NormSpec(kind="batchnorm")
    record: dict[str, Any] = {
        "direction": summary.direction,
        "layers_converted": summary.layers_converted,
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


def check_convert_files(cfg: ConvertConfig) -> None:
    """Refuse an OUT that cannot be written or that is IN. Reads and creates nothing.

    Args:
        cfg: the settings.

    Raises:
        OutputError: OUT is a folder, read-only, not a checkpoint suffix, or IN itself.
    """
    check_output_file(cfg.dst, "OUT", CHECKPOINT_SUFFIXES)
    check_distinct({"OUT": cfg.dst}, {"IN": cfg.src})


def convert_file(cfg: ConvertConfig, then: Callable[[Checkpoint], Checkpoint] | None = None) -> ConvertResult:
    """Read ``cfg.src``, convert its norm layers, write ``cfg.dst`` atomically.

    The job behind ``lncli convert`` (the CLI calls this). The settings and OUT are
    checked before IN is read, and OUT is written once, at the end: a failure anywhere
    leaves no OUT (or the previous one). A foreign IN is read with ``cfg.arch`` and the
    metadata of ``cfg.data``; OUT records the arch, the data and, after a non-strict
    load, the missing and unexpected keys (``provenance["load"]``).

    Args:
        cfg: the settings.
        then: optional last step on the converted checkpoint before it is written
            (the CLI's ``--finetune``).

    Returns:
        What was converted, what a non-strict load left out, and the checkpoint written.

    Raises:
        LncliError: invalid settings, OUT is IN, OUT cannot be written (a folder, no
            permission, not a checkpoint suffix), an unknown arch or dataset, an unreadable
            checkpoint, weights that do not fit the arch and data, or a checkpoint with no
            batch statistics to swap (GroupNorm).
    """
    check_convert_files(cfg)
    check_conversion(cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping)
    # --data names a foreign IN's classes and channels; only --arch says IN is foreign.
    meta = None
    if cfg.arch and cfg.data:
        data = DataSpec.parse(cfg.data)
        meta = with_preprocessing(dataset_meta(data), data, cfg.arch)  # written into OUT: evaluate needs no flags later
    # An --arch typed by the user is theirs to run (a package.module:function builder).
    ckpt = load_checkpoint(cfg.src, arch=cfg.arch, data=meta, allow_code=cfg.arch is not None)
    check_convertible(ckpt.norm.kind, cfg.src.name)  # GroupNorm: refused before any model is built
    ckpt, report = complete_weights(ckpt, strict=cfg.strict)
    new, summary = convert_checkpoint(
        ckpt, cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping
    )
    new.allow_code = ckpt.allow_code  # for --finetune, which builds the converted model again
    new.provenance["conversions"][-1]["source"] = str(cfg.src)
    if then is not None:
        new = then(new)
    save_checkpoint(new, cfg.dst)
    return ConvertResult(summary, report, new)


def with_preprocessing(meta: DataMeta, spec: str | DataSpec, arch: str) -> DataMeta:
    """A foreign checkpoint's data meta with the preprocessing ``lncli evaluate`` would resolve for it.

    The same precedence as evaluate without flags (:mod:`lncli.data.preprocess`): a named
    dataset's own (``fashion-mnist``, ``cifar10``, ...), else, for image folders, timm's config of a
    ``timm:`` arch, else ImageNet's. Recording it makes the converted checkpoint self-describing.

    Args:
        meta: what ``--data`` says of the classes and channels (:func:`lncli.data.dataset_meta`).
        spec: the ``--data`` value.
        arch: the ``--arch`` value.

    Returns:
        ``meta`` with the image size, resize, interpolation, crop mode and normalisation resolved.
    """
    folder = DataSpec.parse(spec).reads_image_files
    timm = timm_layer(arch)
    layers = [*([] if folder else [PreprocessLayer.of_meta(meta, "dataset")]), *([timm] if timm else []), IMAGENET]
    return apply_preprocess(meta, resolve_preprocess(layers, meta.in_channels))


def run_convert(cfg: ConvertConfig, then: Callable[[Checkpoint], Checkpoint] | None = None) -> ConversionSummary:
    """:func:`convert_file`, returning only what was converted.

    Args:
        cfg: the settings.
        then: optional last step on the converted checkpoint before it is written.

    Returns:
        What was converted.

    Raises:
        LncliError: as :func:`convert_file`.
    """
    return convert_file(cfg, then).summary
