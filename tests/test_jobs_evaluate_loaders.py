"""lncli.jobs.evaluate.loaders: the clean images of a sweep, from memory or decoded by DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.data import DataMeta
from lncli.errors import LncliError
from lncli.images import read_image
from lncli.jobs.evaluate.loaders import ImageFiles, InMemoryImages, KeyedFiles

META = DataMeta("imagefolder", 2, 3, (8, 8), (0.5,) * 3, (0.5,) * 3)  # 8-px files read as they are


def _files(folder: Path, n: int, seed: int = 0) -> tuple[Path, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return tuple(sorted(folder.glob("*.png")))


@pytest.mark.parametrize("workers", [0, 2])
def test_image_files_stream_the_sweeps_batches_in_order(tmp_path: Path, workers: int) -> None:
    files = _files(tmp_path, 30)
    whole = torch.stack([read_image(f) for f in files])  # (30, 3, 8, 8): the plain reader
    source = ImageFiles(files, META, workers=workers)
    batches = list(torch.randperm(30, generator=torch.Generator().manual_seed(workers)).split(7))
    got = list(source.stream(batches))
    assert [g.shape[0] for g in got] == [len(b) for b in batches]
    for idx, g in zip(batches, got):
        assert torch.equal(g, whole[idx]) and torch.equal(source.read(idx), g)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_file_is_one_line_naming_it(tmp_path: Path, workers: int) -> None:
    files = _files(tmp_path, 6)
    files[4].write_bytes(files[4].read_bytes()[:60])  # the header reads, the pixels do not
    with pytest.raises(LncliError) as info:
        list(ImageFiles(files, META, workers=workers).stream([torch.arange(3), torch.arange(3, 6)]))
    assert str(files[4]) in str(info.value) and "\n" not in str(info.value)


def test_keyed_files_hand_out_cells_in_any_order(tmp_path: Path) -> None:
    cells = [_files(tmp_path / f"c{k}", 10, seed=k) for k in range(3)]
    keyed = KeyedFiles(cells, META, workers=2)
    batches = [torch.arange(0, 4), torch.arange(4, 10)]
    keyed.start([(k, idx) for idx in batches for k in range(3)])
    for idx in batches:
        for k in (2, 0, 1):  # prefetch threads may ask a little out of order
            want = torch.stack([read_image(cells[k][int(i)]) for i in idx])
            assert torch.equal(keyed.take(k, idx), want)
    assert torch.equal(keyed.take(1, torch.tensor([3])), read_image(cells[1][3])[None])  # not started: read here


def test_in_memory_keeps_the_fast_path() -> None:
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert InMemoryImages.of(x, META).meta is None  # stored as read: plain indexing
    resized = InMemoryImages.of(x, DataMeta("m", 2, 1, (4, 4), (0.5,), (0.5,)))
    assert resized.meta is not None and resized.read(torch.tensor([0, 2])).shape == (2, 1, 4, 4)


def test_return_freed_buffers_applies_under_glibc() -> None:
    import platform

    from lncli.jobs.evaluate.loaders import return_freed_buffers

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt's mmap threshold is glibc's")
    assert return_freed_buffers() and return_freed_buffers()  # idempotent
