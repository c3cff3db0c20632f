"""lncli.distributed: the process-group check, the whole-batch shard formula and the ordered prefetch helper."""

from __future__ import annotations

import threading
import time

import pytest

from lncli.distributed import prefetch, whole_batches


@pytest.mark.parametrize("n", [0, 1, 7, 64, 100, 129])
@pytest.mark.parametrize("bs", [1, 16, 128])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_whole_batches_partition_the_single_process_batches(n: int, bs: int, world: int) -> None:
    single = whole_batches(n, bs, 0, 1)
    assert single == [(s, min(n, s + bs)) for s in range(0, n, bs)]
    shards = [whole_batches(n, bs, r, world) for r in range(world)]
    assert [b for shard in shards for b in shard] == single  # contiguous, disjoint, complete, in order
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_prefetch_keeps_order_for_uneven_work(workers: int) -> None:
    def slow_square(i: int) -> int:
        time.sleep(0.002 * (i % 3))  # later items may finish first in the pool
        return i * i

    assert list(prefetch(slow_square, range(20), workers)) == [i * i for i in range(20)]


def test_prefetch_raises_where_the_failing_result_would_be() -> None:
    def fn(i: int) -> int:
        if i == 3:
            raise ValueError("item 3")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="item 3"):
        got.extend(prefetch(fn, range(10), 2))
    assert got == [0, 1, 2]


def test_prefetch_looks_ahead_boundedly_and_lazily() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fn(i: int) -> int:
        with lock:
            started.append(i)
        return i

    it = prefetch(fn, iter(range(1000)), 2)
    assert next(it) == 0
    time.sleep(0.05)
    assert len(started) <= 4  # the item yielded, plus at most workers + 1 ahead
    it.close()


def test_process_group_helpers_outside_and_inside_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import torch.distributed as dist

    from lncli.distributed import all_reduce_sum, in_process_group, rank_and_world

    assert not in_process_group() and rank_and_world() == (0, 1)
    t = torch.ones(3)
    assert all_reduce_sum(t) is t and torch.equal(t, torch.ones(3))  # one process: no collective
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    assert in_process_group() and rank_and_world() == (2, 4)
    monkeypatch.setattr(dist, "is_available", lambda: False)  # a torch built without distributed support
    assert not in_process_group() and rank_and_world() == (0, 1)
