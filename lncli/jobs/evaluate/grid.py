"""The sweep: checkpoints x test-time modes x noises x severities x batch sizes -> one flat record per cell.

:func:`evaluate_grid` is the compute behind ``lncli evaluate``. It returns one
:class:`~lncli.records.EvalRecord` per batch size x checkpoint x mode x noise x severity and
never prints or writes files; :mod:`lncli.report` renders the records. It runs in two halves.
:func:`plan_grid` checks the sweep and makes everything but the compute: the cells (noise x
severity, from the image source, :mod:`.sources`; or one mixed row, :mod:`.mix`), the stream's
order, and the columns (checkpoint x mode, :mod:`.columns`) for each batch size, with their models
built; its :class:`GridPlan` can list every record to come (:meth:`GridPlan.skeleton`). Then
:func:`run_grid` takes the rescale's ranges and, for each batch size, shards and runs the batches,
sums the counts over ranks and makes the records.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from lncli import __version__
from lncli.config.evaluate import EvalConfig, check_config
from lncli.data import DataMeta, normalize
from lncli.distributed import all_reduce_sum, local_device, prefetch, rank_and_world, whole_batches
from lncli.errors import LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.columns import GridColumn, ModelCache, plan_columns
from lncli.jobs.evaluate.mix import MixedCell, mixed_batch, mixed_cell
from lncli.jobs.evaluate.modes import mode_spec
from lncli.jobs.evaluate.sources import Cell, GeneratedNoise, ImageSource, open_source
from lncli.jobs.evaluate.testset import EvalData
from lncli.records import CLEAN, EvalRecord, pack_hits
from lncli.stats import wilson_interval

__all__ = ["GridPlan", "batch_order", "evaluate_grid", "plan_grid", "run_grid"]

Progress = Callable[[int, int], None]

Row = Cell | MixedCell
"""One row of the sweep: a noise x severity cell (or clean), or the mixed stream."""

BatchHook = Callable[[int, Tensor, Tensor], None]
"""``on_batch(row index, images (B, C, H, W), labels (B,))``: each batch as fed to the models, before normalisation."""


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


@dataclass(frozen=True, eq=False)
class GridPlan:
    """Everything a sweep will do, fixed before its first forward pass (:func:`plan_grid`).

    The models are built and every column's runner made (one per checkpoint x mode x batch size),
    the image source opened and its cells planned, and the stream put in order; what is left is
    compute (:func:`run_grid`). :meth:`skeleton` gives every record the run will return with its
    settings and no result yet, so that a ``--compare`` baseline's settings and the ``--fail-under``
    cells can be checked against them before any image is evaluated.
    """

    config: EvalConfig
    data: EvalData
    device: torch.device
    rank: int
    world: int
    source: ImageSource
    cells: tuple[Cell, ...]  # what the source serves: clean first, then noise x severity
    rows: tuple[Row, ...]  # the sweep's rows: the cells, or the one mixed row
    order: Tensor  # (N,) global image indices in stream order
    sizes: tuple[tuple[EvalConfig, tuple[GridColumn, ...]], ...]  # per batch size: its config and columns
    rescale_range: str | None  # the rescale's reference (train/test), None without a rescale

    @property
    def run_info(self) -> _Run:
        """What every record of the sweep shares besides the config and the data."""
        return _Run(str(self.device), _uses_amp(self.config, self.device), self.world, self.rescale_range)

    def skeleton(self) -> list[EvalRecord]:
        """Every record the run will return, in order, with its settings and 0 correct (no result yet)."""
        n = len(self.source)
        return [
            _record(column, row, 0, n, None, self.data, sized, self.run_info)
            for sized, columns in self.sizes
            for column in columns
            for row in self.rows
        ]


def plan_grid(models: Sequence[LoadedCheckpoint], data: EvalData, config: EvalConfig) -> GridPlan:
    """Check a sweep and make everything it needs but the compute.

    Args:
        models: loaded checkpoints (see :func:`~lncli.jobs.evaluate.checkpoints.load_checkpoints`).
        data: test images (see :func:`~lncli.jobs.evaluate.testset.resolve_data`).
        config: the sweep.

    Returns:
        The plan (:func:`run_grid` runs it).

    Raises:
        LncliError: invalid settings (unknown mode/noise, no cell, data mismatch, ``tent`` under torchrun).
    """
    check_config(config)
    if not models:
        raise LncliError("no checkpoint to evaluate")
    device = local_device(config.device)
    rank, world = rank_and_world()
    if world > 1 and any(mode_spec(m).adapt for m in config.modes or ()):
        raise LncliError("mode tent adapts along the whole test stream: run it in one process, not under torchrun")
    models = data.prepared(models)  # each model's resolved preprocessing (testset.resolve_data)
    source = open_source(
        data, seed=config.seed, profile=config.profile, workers=config.workers, pin=device.type == "cuda"
    )
    cells = tuple(source.cells(config.noises, config.severities))
    if not cells:
        raise LncliError("nothing to evaluate: no clean data and no noisy severity")
    rows: tuple[Row, ...] = (mixed_cell(cells, len(source), config.seed),) if config.mix else cells
    cache = ModelCache(device)  # each model built once, shared by every batch size
    sizes = tuple((sized, tuple(plan_columns(models, sized, cache))) for sized in _per_batch_size(config))
    return GridPlan(
        config=config,
        data=data,
        device=device,
        rank=rank,
        world=world,
        source=source,
        cells=cells,
        rows=rows,
        order=batch_order(source.labels, config.stream_order, config.order_seed),
        sizes=sizes,
        rescale_range=_rescale_reference(source, data, config),
    )


def run_grid(
    plan: GridPlan, *, progress: Progress | None = None, on_batch: BatchHook | None = None
) -> list[EvalRecord]:
    """Run a planned sweep: every column on every row's batches, counted, summed over ranks.

    Args:
        plan: from :func:`plan_grid`.
        progress: called as ``progress(done, total)`` in images x rows x columns on this rank.
        on_batch: called with (row index, images, labels) for every batch fed to the models, before
            normalisation (to watch what the models see).

    Returns:
        Records ordered by batch size (as given), checkpoint, mode, then row (clean first, then
        noise by severity; or the one mixed row with ``config.mix``).
    """
    source = rescale_pre_pass(plan.source, plan.cells, plan.data, plan.config)
    shards = {
        sized.batch_size: whole_batches(len(plan.order), sized.batch_size, plan.rank, plan.world)
        for sized, _ in plan.sizes
    }
    work = [sum(e - s for s, e in shards[sized.batch_size]) * len(plan.rows) * len(cols) for sized, cols in plan.sizes]
    records: list[EvalRecord] = []
    for k, (sized, columns) in enumerate(plan.sizes):
        batches = [plan.order[s:e] for s, e in shards[sized.batch_size]]  # (B,) global indices each
        counts = run_batches(
            source,
            plan.rows,
            columns,
            batches,
            sized,
            plan.device,
            _offset(progress, sum(work[:k]), sum(work)),
            on_batch,
        )
        counts = _sum_over_ranks(counts, plan.device, plan.world)
        records += _records(counts, columns, plan.rows, plan.data, sized, plan.run_info)
    return records


def evaluate_grid(
    models: Sequence[LoadedCheckpoint],
    data: EvalData,
    config: EvalConfig,
    *,
    progress: Progress | None = None,
) -> list[EvalRecord]:
    """Evaluate every checkpoint x mode on every noise x severity: :func:`run_grid` of :func:`plan_grid`.

    Under ``torch.distributed`` (already initialised, e.g. by the CLI under
    ``torchrun``) each rank evaluates a contiguous shard of whole batches and the
    counts are summed, so every rank returns the same records as one process.

    Args:
        models: loaded checkpoints (see :func:`~lncli.jobs.evaluate.checkpoints.load_checkpoints`).
        data: test images (see :func:`~lncli.jobs.evaluate.testset.resolve_data`).
        config: the sweep.
        progress: called as ``progress(done, total)`` in images x columns per rank.

    Returns:
        Records ordered by batch size (as given), checkpoint, mode, then row.

    Raises:
        LncliError: as :func:`plan_grid`.
    """
    return run_grid(plan_grid(models, data, config), progress=progress)


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
    counts: _Counts, columns: Sequence[GridColumn], rows: Sequence[Row], data: EvalData, config: EvalConfig, run: _Run
) -> list[EvalRecord]:
    """One batch size's records: by column, then row."""
    correct, hits = counts.correct, counts.hits.cpu().numpy()
    return [
        _record(column, row, int(correct[ci, j]), int(counts.seen[ci]), pack_hits(hits[ci, j]), data, config, run)
        for j, column in enumerate(columns)
        for ci, row in enumerate(rows)
    ]


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


def _rescale_reference(source: ImageSource, data: EvalData, config: EvalConfig) -> str | None:
    """What ``--rescale`` maps onto, as recorded: ``train`` (the training split's range, the authors'
    reference), else ``test`` (the clean test set's); None when nothing is rescaled (released files are
    what they are)."""
    if not config.rescale or not isinstance(source, GeneratedNoise):
        return None
    return "train" if data.train_range is not None else "test"


def rescale_pre_pass(source: ImageSource, cells: Sequence[Cell], data: EvalData, config: EvalConfig) -> ImageSource:
    """The paper's dataset-level min-max rescale (``--rescale``), when it applies: generated noise only.

    One streamed pass over the whole test set takes the noisy ranges (compute, so it runs in
    :func:`run_grid`, not in the plan).

    Returns:
        The source to read batches from.
    """
    reference = _rescale_reference(source, data, config)
    if reference is None or not isinstance(source, GeneratedNoise):
        return source
    target = data.train_range if reference == "train" and data.train_range is not None else source.clean_range()
    return source.minmax_rescaled(cells, target)


class _Job(NamedTuple):
    """One row of one batch, to be made in a prefetch thread."""

    row_index: int
    row: Row
    indices: Tensor  # (B,) global image indices
    clean: Tensor | None  # the batch's clean images, read once for every row (None: the source reads its own)


def _jobs(source: ImageSource, rows: Sequence[Row], batches: Sequence[Tensor]) -> Iterator[_Job]:
    """Every row of each batch in turn, the batches in order: each batch's clean images are read once."""
    for indices, clean in zip(batches, source.clean_batches(batches)):
        for ci, row in enumerate(rows):
            yield _Job(ci, row, indices, clean)


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
    columns: Sequence[GridColumn],
    batches: Sequence[Tensor],
    config: EvalConfig,
    device: torch.device,
    progress: Progress | None,
    on_batch: BatchHook | None = None,
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
            if on_batch is not None:
                on_batch(ci, x, y)
            at = indices.to(device, non_blocking=pin)  # (B,) global indices
            normed = {k: normalize(x, meta) for k, meta in metas.items()}  # one per distinct DataMeta
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
    column: GridColumn, cell: Row, c: int, n: int, hits: str | None, data: EvalData, config: EvalConfig, run: _Run
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
