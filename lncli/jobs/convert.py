"""The ``convert`` job: read a checkpoint, swap its norm layers, write the result atomically.

The file edge of :func:`lncli.nn.convert.convert_checkpoint`: everything that can be
checked (the settings, OUT's path, OUT against IN) is checked before IN is read, and
OUT is written once, at the end, so a failure anywhere leaves no OUT (or the previous one).
"""

from __future__ import annotations

from collections.abc import Callable

from lncli.checkpoint import CHECKPOINT_SUFFIXES, Checkpoint, load_checkpoint, save_checkpoint
from lncli.config.convert import ConvertConfig
from lncli.io import check_distinct, check_output_file
from lncli.nn.convert import ConversionSummary, check_conversion, check_convertible, convert_checkpoint

__all__ = ["check_convert_files", "run_convert"]


def check_convert_files(cfg: ConvertConfig) -> None:
    """Refuse an OUT that cannot be written or that is IN. Reads and creates nothing.

    Args:
        cfg: the settings.

    Raises:
        OutputError: OUT is a folder, read-only, not a checkpoint suffix, or IN itself.
    """
    check_output_file(cfg.dst, "OUT", CHECKPOINT_SUFFIXES)
    check_distinct({"OUT": cfg.dst}, {"IN": cfg.src})


def run_convert(cfg: ConvertConfig, then: Callable[[Checkpoint], Checkpoint] | None = None) -> ConversionSummary:
    """Read ``cfg.src``, convert its norm layers, write ``cfg.dst`` atomically.

    The job behind ``lncli convert`` (the CLI calls this). The settings and OUT are
    checked before IN is read, and OUT is written once, at the end: a failure anywhere
    leaves no OUT (or the previous one).

    Args:
        cfg: the settings.
        then: optional last step on the converted checkpoint before it is written
            (the CLI's ``--finetune``).

    Returns:
        What was converted.

    Raises:
        LncliError: invalid settings, OUT is IN, OUT cannot be written (a folder, no
            permission, not a checkpoint suffix), an unreadable checkpoint, or one with no
            batch statistics to swap (GroupNorm).
    """
    check_convert_files(cfg)
    check_conversion(cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping)
    ckpt = load_checkpoint(cfg.src)
    check_convertible(ckpt.norm.kind, cfg.src.name)  # GroupNorm: refused before any model is built
    new, summary = convert_checkpoint(
        ckpt, cfg.to, group_size=cfg.group_size, num_heads=cfg.num_heads, grouping=cfg.grouping
    )
    new.provenance["conversions"][-1]["source"] = str(cfg.src)
    if then is not None:
        new = then(new)
    save_checkpoint(new, cfg.dst)
    return summary
