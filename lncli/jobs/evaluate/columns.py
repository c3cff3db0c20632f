"""The columns of a sweep: checkpoint x test-time mode, their group sizes, runners, and the notes on them.

A column is one model run in one mode (:class:`~lncli.jobs.evaluate.modes.ModeRunner`).
:func:`column_keys` names them without building anything (to check ``--baseline`` or a
``--compare`` baseline's columns first); :func:`plan_columns` builds each model once
(:class:`ModelCache`) and a runner per mode at one batch size. :func:`mode_notes` says where
the sweep does other than asked: GroupNorm's only mode, ``--heads position`` in a per-image mode,
a batch smaller than G (G = the batch size there) or one that G does not divide.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lncli.checkpoint import Checkpoint, model_from_checkpoint
from lncli.config.common import DEFAULT_GROUP_SIZE
from lncli.config.evaluate import EvalConfig
from lncli.data import DataMeta
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.modes import (
    LocalNormCopies,
    ModeRunner,
    is_groupnorm,
    is_localnorm_checkpoint,
    make_runner,
    mode_spec,
    modes_for,
    resolve_heads,
    resolve_mode,
)

__all__ = ["ColumnKey", "GridColumn", "ModelCache", "column_keys", "group_size", "mode_notes", "plan_columns"]


@dataclass(frozen=True)
class ColumnKey:
    """Which column a record belongs to: what :func:`lncli.report.columns` reads."""

    checkpoint: str
    mode: str


@dataclass(frozen=True)
class GridColumn:
    """One (checkpoint, mode) column of the sweep, ready to run."""

    loaded: LoadedCheckpoint
    runner: ModeRunner
    meta: DataMeta  # the checkpoint's data: its normalisation


def column_modes(loaded: LoadedCheckpoint, config: EvalConfig) -> tuple[str, ...]:
    """The modes one checkpoint runs in (:func:`~lncli.jobs.evaluate.modes.modes_for`)."""
    return modes_for(loaded.checkpoint, config.modes, Path(loaded.path).name)


def column_keys(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[ColumnKey]:
    """The sweep's columns, in record order, without building any model (e.g. to check ``--baseline`` first).

    Args:
        models: the loaded checkpoints.
        config: the sweep.

    Returns:
        One key per checkpoint x mode.
    """
    return [ColumnKey(m.path, mode) for m in models for mode in column_modes(m, config)]


def group_size(ckpt: Checkpoint, config: EvalConfig) -> int:
    """The G a checkpoint's columns are asked for: ``--group-size``, else its own, else the default.

    A batch smaller than this G runs as one group (:func:`plan_columns`).
    """
    if config.group_size is not None:
        return config.group_size
    return int(ckpt.norm.group_size) if ckpt.norm.group_size else DEFAULT_GROUP_SIZE


class ModelCache:
    """Each checkpoint's model built on the device once, and the BN models' shared LocalNorm copies,
    for every batch size's columns.

    A checkpoint that holds a module (a Python caller's ``nn.Module``) is deep-copied: the caller's
    module is never moved, converted, adapted or switched to eval mode.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.copies = LocalNormCopies(device)  # a BN model's test-statistics modes share one LocalNorm copy
        self._models: dict[str, nn.Module] = {}  # by checkpoint path, unique within a sweep

    def model(self, loaded: LoadedCheckpoint) -> nn.Module:
        """The model of one loaded checkpoint (built on first use)."""
        if loaded.path not in self._models:
            built = (
                copy.deepcopy(loaded.module) if loaded.module is not None else model_from_checkpoint(loaded.checkpoint)
            )
            self._models[loaded.path] = built.to(self.device)
        return self._models[loaded.path]


def plan_columns(models: Sequence[LoadedCheckpoint], config: EvalConfig, cache: ModelCache) -> list[GridColumn]:
    """A runner per checkpoint x mode at ``config.batch_size``.

    A batch smaller than a checkpoint's G is one group: G = the batch size there (:func:`mode_notes`).

    Args:
        models: the loaded checkpoints.
        config: the sweep, at one batch size.
        cache: the models, built once and shared across batch sizes.

    Returns:
        The columns, by checkpoint then mode.
    """
    columns: list[GridColumn] = []
    for loaded in models:
        ckpt = loaded.checkpoint
        g, model = min(group_size(ckpt, config), config.batch_size), cache.model(loaded)
        for mode in column_modes(loaded, config):
            runner = make_runner(
                model,
                mode,
                heads=config.heads,
                group_size=g,
                batch_size=config.batch_size,
                copies=cache.copies,
                prior_n=config.prior_n,
                tent_lr=config.tent_lr,
                tent_steps=config.tent_steps,
            )
            columns.append(GridColumn(loaded, runner, ckpt.data))
    return columns


def mode_notes(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[str]:
    """What the sweep does other than asked, for the caller to show once (compute never prints).

    * GroupNorm checkpoints run in their only mode whatever ``--mode`` asks;
    * ``--heads position`` does not apply to a multi-head LocalNorm checkpoint's per-image modes
      (``running``, ``single``), which take the mean of the heads;
    * a local-statistics column (``local``; ``tent`` on LocalNorm) at a batch size smaller than its G
      uses G = the batch size; at one that G does not divide, each batch ends in a smaller group.

    Args:
        models: the loaded checkpoints.
        config: the sweep.

    Returns:
        The notes, one line each (empty when everything runs as asked).
    """
    notes: list[str] = []
    overridden = [m for m in models if is_groupnorm(m.checkpoint) and config.modes and config.modes != ("groupnorm",)]
    if overridden:
        names = ", ".join(Path(m.path).name for m in overridden)
        uses = "uses" if len(overridden) == 1 else "use"
        asked = ", ".join(mode for mode in config.modes or () if mode != "groupnorm")
        note = f"{names} {uses} GroupNorm, which has no test-time statistics; evaluated as it is (mode 'groupnorm')"
        notes.append(f"{note}, not in {asked}")
    return notes + _heads_notes(models, config) + _group_size_notes(models, config)


def _num_heads(ckpt: Checkpoint) -> int:
    """The most affine heads any LocalNorm layer of the checkpoint has (1 without LocalNorm)."""
    return max((int(t.shape[0]) for k, t in ckpt.state_dict.items() if k.endswith("head_weight")), default=1)


def _heads_notes(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[str]:
    """``--heads position`` asked, and a multi-head LocalNorm checkpoint runs a per-image mode."""
    if config.heads != "position":
        return []
    notes = []
    for loaded in models:
        if not is_localnorm_checkpoint(loaded.checkpoint) or _num_heads(loaded.checkpoint) < 2:
            continue
        per_image = [
            m
            for m in column_modes(loaded, config)
            if mode_spec(m).voter is None and resolve_heads("position", resolve_mode(m, True).stats) == "mean"
        ]
        if per_image:
            notes.append(
                f"--heads position applies where test images form groups; {Path(loaded.path).name} in "
                f"{', '.join(per_image)} (per-image statistics) takes the mean of its heads"
            )
    return notes


def _group_size_notes(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[str]:
    """The batch sizes at which a local-statistics column cannot use its G as it is (see :func:`mode_notes`)."""
    notes = []
    for loaded in models:
        ckpt = loaded.checkpoint
        localnorm = is_localnorm_checkpoint(ckpt)
        local = [m for m in column_modes(loaded, config) if resolve_mode(m, localnorm).stats == "local"]
        if not local:
            continue
        g, name, cols = group_size(ckpt, config), Path(loaded.path).name, ", ".join(local)
        small = [b for b in config.all_batch_sizes if b < g]
        ragged = [b for b in config.all_batch_sizes if b > g and b % g]
        if small:
            notes.append(
                f"{name}: batch size {_sizes(small)} is smaller than G = {g}; {cols} normalise each batch as one "
                "group there (G = the batch size, recorded as group_size)"
            )
        if ragged:
            notes.append(
                f"{name}: G = {g} does not divide batch size {_sizes(ragged)}; in {cols} the last images of each "
                "batch form one smaller group (LocalNorm's ragged rule)"
            )
    return notes


def _sizes(sizes: Sequence[int]) -> str:
    return ",".join(map(str, sizes))
