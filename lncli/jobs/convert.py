"""The ``convert`` job: read a checkpoint, swap its norm layers, write the result atomically.

The file edge of :func:`lncli.nn.convert.convert_checkpoint`: everything that can be
checked (the settings, OUT's path, OUT against IN) is checked before IN is read, and
OUT is written once, at the end, so a failure anywhere leaves no OUT (or the previous one).

IN may be foreign (a bare torchvision or timm state_dict) with ``arch`` and ``data``; OUT
then records both, so ``lncli evaluate OUT`` needs no flags.
"""

from __future__ import annotations

from collections.abc import Callable

from lncli.checkpoint import (
    CHECKPOINT_SUFFIXES,
    Checkpoint,
    LoadReport,
    complete_weights,
    load_checkpoint,
    save_checkpoint,
)
from lncli.config.convert import ConvertConfig
from lncli.data import DataMeta, dataset_meta
from lncli.data.preprocess import IMAGENET, PreprocessLayer, apply_preprocess, resolve_preprocess, timm_layer
from lncli.io import check_distinct, check_output_file
from lncli.nn.convert import ConversionSummary, check_conversion, check_convertible, convert_checkpoint

__all__ = ["check_convert_files", "convert_file", "run_convert"]


def check_convert_files(cfg: ConvertConfig) -> None:
    """Refuse an OUT that cannot be written or that is IN. Reads and creates nothing.

    Args:
        cfg: the settings.

    Raises:
        OutputError: OUT is a folder, read-only, not a checkpoint suffix, or IN itself.
    """
    check_output_file(cfg.dst, "OUT", CHECKPOINT_SUFFIXES)
    check_distinct({"OUT": cfg.dst}, {"IN": cfg.src})


def convert_file(
    cfg: ConvertConfig, then: Callable[[Checkpoint], Checkpoint] | None = None
) -> tuple[ConversionSummary, LoadReport]:
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
        What was converted, and what a non-strict load left out (empty when every key matched).

    Raises:
        LncliError: invalid settings, OUT is IN, OUT cannot be written (a folder, no
            permission, not a checkpoint suffix), an unknown arch or dataset, an unreadable
            checkpoint, weights that do not fit the arch and data, or a checkpoint with no
            batch statistics to swap (GroupNorm).
    """
    check_convert_files(cfg)
    check_conversion(cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping)
    # --data names a foreign IN's classes and channels; only --arch says IN is foreign.
    meta = dataset_meta(cfg.data) if cfg.arch and cfg.data else None
    if meta is not None and cfg.arch is not None and cfg.data is not None:
        meta = with_preprocessing(meta, cfg.data, cfg.arch)  # written into OUT: evaluate needs no flags later
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
    return summary, report


def with_preprocessing(meta: DataMeta, spec: str, arch: str) -> DataMeta:
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
    folder = spec.split(":", 1)[0].strip().lower() in ("imagefolder", "imagenetc")
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
    return convert_file(cfg, then)[0]
