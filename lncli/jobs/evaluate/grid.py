"""The sweep: checkpoints x test-time modes x noises x severities x batch sizes -> one flat record per cell.

:func:`evaluate_grid` is the compute behind ``lncli evaluate``. It returns one
:class:`~lncli.records.EvalRecord` per batch size x checkpoint x mode x noise x severity and
never prints or writes files; :mod:`lncli.report` renders the records. It runs as named steps:
check the batch sizes against the group sizes, plan the cells (noise x severity, from the image
source, :mod:`.sources`; or one mixed row, :mod:`.mix`), order the stream, plan the columns
(checkpoint x mode, :mod:`.modes`) for each batch size, take the rescale's ranges, then for each
batch size: shard and run the batches, sum the counts over ranks, make the records.

Batch composition matters for every mode but ``running``, so it is explicit: the test
stream is put in one order (``EvalConfig.order``: shuffled once with ``order_seed`` so that
batches mix classes, sorted by label for a class-correlated stream, or the dataset's order),
cut into consecutive batches of each batch size, and the last batch is simply smaller - no
image is dropped. Every batch size sees the same order. Inside a ragged batch, ``local`` mode
follows LocalNorm's ragged rule (the last ``N % G`` images form one smaller group that uses
the next head). Every record stores the order, batch size, group size, heads, both seeds and
the device, because the accuracy depends on all of them.

``tent`` adapts along the stream: its runner keeps one state per cell (its stream), each
starting from the checkpoint's weights, and a fresh runner per batch size. It needs the whole
stream in one process, so it refuses a sharded (torchrun) run.

Efficiency: the batches are walked once, in order; each batch's clean images are read (or
decoded) once by the image source, and each of its noise x severity versions is made once
(generated noise is seeded by the image's global index, so it does not depend on the order
or the batch size), normalised once per distinct normalisation, and fed to every column.

Per image: besides the counts, the sweep keeps which images each column got right in each
cell (in global index order), so that two runs on the same images can be compared image
by image (a paired test, :func:`lncli.stats.mcnemar_drop_p_value`); the records carry them.

Distributed (``torchrun``): the batches are split into contiguous shards of whole
batches (:func:`lncli.distributed.whole_batches`), so each batch holds exactly the images
it holds in a single process run and the summed counts are identical.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

import lncli.data  # normalize is looked up at call time (tests watch the batches through it)
from lncli import __version__
from lncli.checkpoint import Checkpoint, model_from_checkpoint
from lncli.config.common import DEFAULT_GROUP_SIZE
from lncli.config.evaluate import HEADS, ORDERS, EvalConfig
from lncli.data import DataMeta
from lncli.distributed import all_reduce_sum, local_device, prefetch, rank_and_world, whole_batches
from lncli.errors import LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.mix import MixedCell, mixed_batch, mixed_cell
from lncli.jobs.evaluate.modes import (
    LocalNormCopies,
    ModeRunner,
    is_groupnorm,
    is_localnorm_checkpoint,
    make_runner,
    mode_spec,
    modes_for,
    resolve_mode,
)
from lncli.jobs.evaluate.sources import Cell, GeneratedNoise, ImageSource, open_source
from lncli.jobs.evaluate.testset import EvalData
from lncli.noise import PROFILES
from lncli.records import CLEAN, EvalRecord, pack_hits
from lncli.stats import wilson_interval

__all__ = [
    "Column",
    "ColumnKey",
    "batch_order",
    "check_config",
    "check_group_sizes",
    "column_keys",
    "evaluate_grid",
    "mode_notes",
]

Progress = Callable[[int, int], None]

Row = Cell | MixedCell
"""One row of the sweep: a noise x severity cell (or clean), or the mixed stream."""


@dataclass(frozen=True)
class ColumnKey:
    """Which column a record belongs to: what :func:`lncli.report.columns` reads."""

    checkpoint: str
    mode: str


@dataclass(frozen=True)
class Column:
    """One (checkpoint, mode) column of the sweep."""

    loaded: LoadedCheckpoint
    runner: ModeRunner
    meta: DataMeta  # the checkpoint's data: its normalisation


@dataclass(frozen=True)
class _Counts:
    hits: Tensor  # (cells, columns, N) bool: image i (global index) predicted right
    seen: Tensor  # (cells,) int64: images evaluated in each cell

    @property
    def correct(self) -> Tensor:
        """(cells, columns) int64 correct predictions."""
        return self.hits.sum(dim=-1)


@dataclass(frozen=True)
class _Run:
    """What every record of one sweep shares besides the config and the data."""

    device: str
    amp: bool  # float16 autocast really used (CUDA only)
    world_size: int
    rescale_range: str | None  # the rescale's reference (train/test), None without a rescale


def evaluate_grid(
    models: Sequence[LoadedCheckpoint],
    data: EvalData,
    config: EvalConfig,
    *,
    progress: Progress | None = None,
) -> list[EvalRecord]:
    """Evaluate every checkpoint x mode on every noise x severity.

    Under ``torch.distributed`` (already initialised, e.g. by the CLI under
    ``torchrun``) each rank evaluates a contiguous shard of whole batches and the
    counts are summed, so every rank returns the same records as one process.

    Args:
        models: loaded checkpoints (see :func:`~lncli.jobs.evaluate.checkpoints.load_checkpoints`).
        data: test images (see :func:`~lncli.jobs.evaluate.testset.resolve_data`).
        config: the sweep.
        progress: called as ``progress(done, total)`` in images x columns per rank.

    Returns:
        Records ordered by batch size (as given), checkpoint, mode, then row (clean first, then
        noise by severity; or the one mixed row with ``config.mix``).

    Raises:
        LncliError: invalid settings (unknown mode/noise, impossible group or batch size, data
            mismatch, ``tent`` under torchrun).
    """
    check_config(config)
    if not models:
        raise LncliError("no checkpoint to evaluate")
    device = local_device(config.device)
    rank, world = rank_and_world()
    if world > 1 and any(mode_spec(m).adapt for m in config.modes or ()):
        raise LncliError("mode tent adapts along the whole test stream: run it in one process, not under torchrun")
    check_group_sizes(models, config)  # every batch size, before any model or data work
    models = data.prepared(models)  # each model's resolved preprocessing (testset.resolve_data)
    source = open_source(
        data, seed=config.seed, profile=config.profile, workers=config.workers, pin=device.type == "cuda"
    )
    cells = source.cells(config.noises, config.severities)
    if not cells:
        raise LncliError("nothing to evaluate: no clean data and no noisy severity")
    rows: list[Row] = [mixed_cell(cells, len(source), config.seed)] if config.mix else list(cells)
    order = batch_order(source.labels, config.stream_order, config.order_seed)
    built = _Built(device)  # each model built once, shared by every batch size
    plans = [(sized, plan_columns(models, sized, device, built)) for sized in _per_batch_size(config)]
    source, rescale_range = rescale_pre_pass(source, cells, data, config)
    run = _Run(str(device), _uses_amp(config, device), world, rescale_range)
    shards = {sized.batch_size: whole_batches(len(order), sized.batch_size, rank, world) for sized, _ in plans}
    work = [sum(e - s for s, e in shards[sized.batch_size]) * len(rows) * len(cols) for sized, cols in plans]
    records: list[EvalRecord] = []
    for k, (sized, columns) in enumerate(plans):
        batches = [order[s:e] for s, e in shards[sized.batch_size]]  # (B,) global indices each
        counts = run_batches(source, rows, columns, batches, sized, device, _offset(progress, sum(work[:k]), sum(work)))
        records += _records(_sum_over_ranks(counts, device, world), columns, rows, data, sized, run)
    return records


def _per_batch_size(config: EvalConfig) -> list[EvalConfig]:
    """One config per batch size of the sweep (``batch_size`` set, ``batch_sizes`` left as given)."""
    return [replace(config, batch_size=b) for b in config.all_batch_sizes]


def _offset(progress: Progress | None, done: int, total: int) -> Progress | None:
    """``progress`` for one batch size's run: its images x rows x columns continue from ``done`` of
    the whole sweep's ``total``."""
    if progress is None:
        return None
    return lambda d, _t: progress(done + d, total)


def _records(
    counts: _Counts, columns: Sequence[Column], rows: Sequence[Row], data: EvalData, config: EvalConfig, run: _Run
) -> list[EvalRecord]:
    """One batch size's records: by column, then row."""
    correct, hits = counts.correct, counts.hits.cpu().numpy()
    return [
        _record(column, row, int(correct[ci, j]), int(counts.seen[ci]), pack_hits(hits[ci, j]), data, config, run)
        for j, column in enumerate(columns)
        for ci, row in enumerate(rows)
    ]


def check_config(config: EvalConfig) -> None:
    """Reject impossible sweep settings in one line each, before any work.

    Raises:
        LncliError: the first bad setting.
    """
    for size in config.all_batch_sizes:
        if size < 1:
            raise LncliError(f"--batch-size must be >= 1, got {size}")
    if config.order not in ORDERS:
        raise LncliError(f"unknown --order {config.order!r}; valid: {', '.join(ORDERS)}")
    if not (math.isfinite(config.prior_n) and config.prior_n >= 0):
        raise LncliError(f"--prior-n must be a finite number >= 0, got {config.prior_n}")
    if not (math.isfinite(config.tent_lr) and config.tent_lr > 0):
        raise LncliError(f"--tent-lr must be > 0, got {config.tent_lr}")
    if config.tent_steps < 1:
        raise LncliError(f"--tent-steps must be >= 1, got {config.tent_steps}")
    if config.group_size is not None and config.group_size < 1:
        raise LncliError(f"--group-size must be >= 1, got {config.group_size}")
    if config.heads not in HEADS:
        raise LncliError(f"unknown heads {config.heads!r}; valid: {', '.join(HEADS)}")
    for mode in config.modes or ():
        mode_spec(mode)
    if not config.noises:
        raise LncliError("no noise to evaluate")
    if config.profile not in PROFILES:
        raise LncliError(f"unknown profile {config.profile!r}; valid: {', '.join(PROFILES)}")
    if not config.severities:
        raise LncliError("no severity to evaluate")
    if config.workers < 0:
        raise LncliError(f"--workers must be >= 0, got {config.workers}")
    if config.rescale and config.profile != "paper":
        raise LncliError(
            f"--rescale is the paper profile's min-max rescale; use it with --profile paper, not {config.profile}"
        )


def _modes(loaded: LoadedCheckpoint, config: EvalConfig) -> tuple[str, ...]:
    return modes_for(loaded.checkpoint, config.modes, Path(loaded.path).name)


def mode_notes(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[str]:
    """What the sweep does other than asked, for the caller to show once (compute never prints).

    Today one note at most: the GroupNorm checkpoints, which run in their only mode whatever ``--mode`` asks.

    Args:
        models: the loaded checkpoints.
        config: the sweep.

    Returns:
        The notes, one line each (empty when everything runs as asked).
    """
    overridden = [m for m in models if is_groupnorm(m.checkpoint) and config.modes and config.modes != ("groupnorm",)]
    if not overridden:
        return []
    names = ", ".join(Path(m.path).name for m in overridden)
    uses = "uses" if len(overridden) == 1 else "use"
    asked = ", ".join(mode for mode in config.modes or () if mode != "groupnorm")
    note = f"{names} {uses} GroupNorm, which has no test-time statistics; evaluated as it is (mode 'groupnorm')"
    return [f"{note}, not in {asked}"]


def column_keys(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> list[ColumnKey]:
    """The sweep's columns, in record order, without building any model (e.g. to check ``--baseline`` first).

    Args:
        models: the loaded checkpoints.
        config: the sweep.

    Returns:
        One key per checkpoint x mode.
    """
    return [ColumnKey(m.path, mode) for m in models for mode in _modes(m, config)]


def _group_size(ckpt: Checkpoint, config: EvalConfig) -> int:
    """``--group-size``, else the checkpoint's own G, else the default."""
    if config.group_size is not None:
        return config.group_size
    return int(ckpt.norm.group_size) if ckpt.norm.group_size else DEFAULT_GROUP_SIZE


def check_group_sizes(models: Sequence[LoadedCheckpoint], config: EvalConfig) -> None:
    """Refuse, in one line and before any work, a batch size that a local-statistics column cannot cut
    into whole groups of its G (``local``, and ``tent`` on a LocalNorm checkpoint).

    Raises:
        LncliError: the batch sizes that are not multiples of some column's G.
    """
    for loaded in models:
        ckpt = loaded.checkpoint
        localnorm = is_localnorm_checkpoint(ckpt)
        if not any(resolve_mode(m, localnorm).stats == "local" for m in _modes(loaded, config)):
            continue
        g = _group_size(ckpt, config)
        bad = [b for b in config.all_batch_sizes if b % g]
        if bad:
            raise LncliError(
                f"--batch-size {','.join(map(str, bad))} is not a multiple of the group size {g} "
                f"({Path(loaded.path).name}, local mode needs whole groups of G images)"
            )


class _Built:
    """Each checkpoint's model built on the device once, and the BN models' shared LocalNorm copies,
    for every batch size's columns."""

    def __init__(self, device: torch.device):
        self.device = device
        self.copies = LocalNormCopies(device)  # a BN model's test-statistics modes share one LocalNorm copy
        self._models: dict[int, nn.Module] = {}

    def model(self, loaded: LoadedCheckpoint) -> nn.Module:
        """The model of one loaded checkpoint (built on first use)."""
        if id(loaded) not in self._models:
            self._models[id(loaded)] = model_from_checkpoint(loaded.checkpoint).to(self.device)
        return self._models[id(loaded)]


def plan_columns(
    models: Sequence[LoadedCheckpoint], config: EvalConfig, device: torch.device, built: _Built | None = None
) -> list[Column]:
    """A runner per checkpoint x mode at ``config.batch_size``.

    Args:
        models: the loaded checkpoints.
        config: the sweep, at one batch size.
        device: where the models run.
        built: models already built (shared across batch sizes); ``None``: build them here.

    Returns:
        The columns, by checkpoint then mode.

    Raises:
        LncliError: a local-statistics mode whose G does not divide the batch size.
    """
    check_group_sizes(models, replace(config, batch_sizes=()))
    built = built or _Built(device)
    columns: list[Column] = []
    for loaded in models:
        ckpt = loaded.checkpoint
        g, model = _group_size(ckpt, config), built.model(loaded)
        for mode in _modes(loaded, config):
            runner = make_runner(
                model,
                mode,
                heads=config.heads,
                group_size=g,
                batch_size=config.batch_size,
                copies=built.copies,
                prior_n=config.prior_n,
                tent_lr=config.tent_lr,
                tent_steps=config.tent_steps,
            )
            columns.append(Column(loaded, runner, ckpt.data))
    return columns


def batch_order(labels: Tensor, order: str, order_seed: int | None = None) -> Tensor:
    """(N,) global image indices in stream order. The noise stays keyed by the global index.

    Args:
        labels: (N,) every image's label, by global index.
        order: ``shuffled`` (a fixed shuffle with ``order_seed``, so that batch statistics mix
            classes; no seed = the dataset order), ``sorted`` (by label, stable: within a class the
            dataset order, a class-correlated stream) or ``dataset``.
        order_seed: the shuffle's seed.

    Returns:
        A permutation of ``range(N)``.
    """
    n = int(labels.shape[0])
    if order == "sorted":
        return torch.sort(labels, stable=True).indices
    if order == "dataset" or order_seed is None:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(order_seed))


def rescale_pre_pass(
    source: ImageSource, cells: Sequence[Cell], data: EvalData, config: EvalConfig
) -> tuple[ImageSource, str | None]:
    """The paper's dataset-level min-max rescale (``--rescale``), when it applies: generated noise only.

    The noisy ranges are mapped onto the training split's range (the authors' reference),
    else the clean test set's.

    Returns:
        The source to read batches from, and the reference recorded (``train``/``test``;
        ``None`` when nothing is rescaled).
    """
    if not config.rescale or not isinstance(source, GeneratedNoise):
        return source, None  # released files are what they are
    if data.train_range is not None:
        return source.minmax_rescaled(cells, data.train_range), "train"
    return source.minmax_rescaled(cells, source.clean_range()), "test"


_Job = tuple[int, Row, Tensor, "Tensor | None"]  # (row index, row, (B,) global indices, clean images or None)


def _jobs(source: ImageSource, rows: Sequence[Row], batches: Sequence[Tensor]) -> Iterator[_Job]:
    """Every row of each batch in turn, the batches in order: each batch's clean images are read once."""
    for indices, clean in zip(batches, source.clean_batches(batches)):
        for ci, row in enumerate(rows):
            yield ci, row, indices, clean


def _load_batch(source: ImageSource, pin: bool, job: _Job) -> tuple[int, Tensor, Tensor, Tensor]:
    """One batch of one row (runs in a prefetch thread): (row index, indices (B,), images (B, C, H, W), labels (B,))."""
    ci, row, indices, clean = job
    x, y = mixed_batch(source, row, indices, clean) if isinstance(row, MixedCell) else source.batch(row, indices, clean)
    if pin:
        x, y = x.pin_memory(), y.pin_memory()
    return ci, indices, x, y


def _meta_key(meta: DataMeta) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(meta.mean), tuple(meta.std)


def run_batches(
    source: ImageSource,
    cells: Sequence[Row],
    columns: Sequence[Column],
    batches: Sequence[Tensor],
    config: EvalConfig,
    device: torch.device,
    progress: Progress | None,
) -> _Counts:
    """Feed this rank's batches (each (B,) global indices, in order) of every row to every column.

    Each row is its own stream: a ``tent`` column adapts one state per row (``stream=`` the row index).

    Returns:
        Which images each column got right in each cell (zeros for other ranks' images), and the
        number of images seen per cell.
    """
    # Kept on the device so that counting never forces a host sync inside the loop.
    hits = torch.zeros(len(cells), len(columns), len(source), dtype=torch.bool, device=device)  # (cells, columns, N)
    seen = torch.zeros(len(cells), dtype=torch.int64)  # (cells,)
    pin = device.type == "cuda"
    # Checkpoints of one dataset share their normalisation; key by value so it runs once per batch.
    metas = {_meta_key(c.meta): c.meta for c in columns}
    total = sum(len(b) for b in batches) * len(cells) * len(columns)
    done = 0
    load = functools.partial(_load_batch, source, pin)
    autocast = torch.autocast("cuda", dtype=torch.float16) if _uses_amp(config, device) else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for ci, indices, x, y in prefetch(load, _jobs(source, cells, batches), config.workers):
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            at = indices.to(device, non_blocking=pin)  # (B,) global indices
            normed = {k: lncli.data.normalize(x, meta) for k, meta in metas.items()}  # one per distinct DataMeta
            seen[ci] += y.shape[0]
            for j, column in enumerate(columns):
                hits[ci, j, at] = column.runner.predict(normed[_meta_key(column.meta)], ci) == y
                done += y.shape[0]
                if progress is not None:
                    progress(done, total)
    return _Counts(hits, seen)


def _uses_amp(config: EvalConfig, device: torch.device) -> bool:
    return bool(config.amp and device.type == "cuda")  # autocast is CUDA-only; on CPU --amp is ignored


def _sum_over_ranks(counts: _Counts, device: torch.device, world: int) -> _Counts:
    """The counts of every rank summed (one collective; gloo reduces CPU tensors, nccl CUDA ones)."""
    if world == 1:
        return counts
    # Each image is in exactly one rank's shard, so summing the (0/1) hits merges them.
    flat = torch.cat([counts.hits.flatten().to(torch.int64), counts.seen.to(counts.hits.device)])
    flat = all_reduce_sum(flat.to(device if device.type == "cuda" else "cpu")).cpu()
    split = counts.hits.numel()
    return _Counts(flat[:split].view(counts.hits.shape).bool(), flat[split:])


def _record(
    column: Column, cell: Row, c: int, n: int, hits: str, data: EvalData, config: EvalConfig, run: _Run
) -> EvalRecord:
    """The record of one column in one row: ``c`` correct of ``n``, which images in ``hits`` (packed)."""
    lo, hi = wilson_interval(c, n)
    ckpt = column.loaded.checkpoint
    rescaled = run.rescale_range is not None and cell.noise != CLEAN
    order = config.stream_order
    tent = column.runner.adapter
    return EvalRecord(
        checkpoint=column.loaded.path,
        sha256=column.loaded.sha256[:12],
        arch=ckpt.arch,
        norm=str(ckpt.norm.kind),
        mode=column.runner.mode,
        heads=column.runner.heads,
        group_size=column.runner.group_size,
        batch_size=config.batch_size,
        noise=cell.noise,
        profile=cell.profile,
        severity=cell.severity,
        param=cell.param,
        n=n,
        correct=c,
        accuracy=c / n if n else float("nan"),
        ci_low=lo,
        ci_high=hi,
        noise_seed=config.seed,
        order_seed=config.order_seed if order == "shuffled" else None,
        device=run.device,
        amp=run.amp,
        world_size=run.world_size,
        data=data.name,
        synthetic=data.synthetic,
        lncli_version=__version__,
        rescale=rescaled,
        rescale_range=run.rescale_range if rescaled else None,
        hits=hits,
        order=order,
        mix=config.mix,
        prior_n=column.runner.prior_n,
        tent_lr=None if tent is None else tent.lr,
        tent_steps=None if tent is None else tent.steps,
        **data.record_fields(column.meta),
    )
