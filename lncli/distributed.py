"""torch.distributed glue shared by ``train`` and ``evaluate`` (launched by ``torchrun``),
with the two pieces of work-splitting both jobs share: :func:`whole_batches` (which
batches a rank takes) and :func:`prefetch` (the next batches made ahead in threads).

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; when they are
absent everything here degrades to a single process, so the same code path serves
``lncli train cfg.yaml`` and ``torchrun --nproc_per_node=4 -m lncli train cfg.yaml``.
The backend is nccl on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

import torch
import torch.distributed as dist

from lncli.errors import LncliError

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()  # end-of-items marker for prefetch


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment carries torchrun's rendezvous variables."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def in_process_group() -> bool:
    """True when this process has joined a torch.distributed process group (the one place this is asked)."""
    # is_available() first: on a build without distributed support is_initialized() does not exist.
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes: ``(0, 1)`` outside a process group."""
    return (dist.get_rank(), dist.get_world_size()) if in_process_group() else (0, 1)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` set up, if any.

    Args:
        device: the device this rank computes on; CUDA picks nccl, else gloo.

    Returns:
        This process's rank information (world size 1 outside torchrun).
    """
    if not launched_by_torchrun():
        return DistInfo()
    if not in_process_group():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def local_device(requested: str) -> torch.device:
    """Resolve ``auto|cpu|cuda`` for this rank (``cuda:LOCAL_RANK`` under torchrun)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise LncliError("--device cuda was requested but no CUDA GPU is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(requested)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor across ranks in place (a no-op in a single process)."""
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    """Wait for all ranks (a no-op in a single process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group if we joined one."""
    if in_process_group():
        dist.destroy_process_group()


def whole_batches(n: int, batch_size: int, rank: int, world: int) -> list[tuple[int, int]]:
    """This rank's share of ``n`` items cut into batches: a contiguous run of *whole* batches.

    Why whole batches: test-time batch and LocalNorm statistics depend on which images
    share a batch, so every rank must see exactly the batches that a single process
    would; an item-level split would cut batches elsewhere. Rank ``r`` of ``W`` takes
    batches ``[floor(B r / W), floor(B (r + 1) / W))`` of the ``B`` batches, so the
    shards are contiguous, disjoint, cover everything and differ by at most one batch.

    Args:
        n: number of items.
        batch_size: items per batch (the last batch may be smaller).
        rank: this process's rank in ``[0, world)``.
        world: number of processes.

    Returns:
        ``[(start, end), ...]`` item ranges of this rank's batches, in order.
    """
    starts = range(0, n, batch_size)
    mine = starts[len(starts) * rank // world : len(starts) * (rank + 1) // world]
    return [(s, min(n, s + batch_size)) for s in mine]


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` in order, with up to ``workers`` results computed ahead in threads.

    Both jobs use it to prepare the next batches (noise, augmentation, copies) while the
    model runs. Results are yielded in item order, so anything that is a pure function of
    the item (lncli's seeded noise and augmentation are) comes out bit-identical for any
    ``workers``; only the timing changes.

    Args:
        fn: makes one result from one item (runs in a worker thread when ``workers > 0``).
        items: the work, consumed lazily.
        workers: threads working ahead; 0 runs ``fn`` inline in the caller.

    Returns:
        An iterator over ``fn(item)``; an exception in ``fn`` is raised where its result
        would have been yielded. Closing the iterator early cancels the pending work.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lncli-prefetch") as pool:
        pending: deque[Future[R]] = deque(pool.submit(fn, item) for item in islice(it, workers + 1))
        try:
            while pending:
                result = pending.popleft().result()
                nxt = next(it, _DONE)
                if nxt is not _DONE:
                    pending.append(pool.submit(fn, nxt))  # type: ignore[arg-type]
                yield result
        finally:
            for fut in pending:
                fut.cancel()
