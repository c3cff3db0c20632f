"""lncli.data.imagefolder: the listing (torchvision's order), what --limit keeps, the header check, the channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lncli.data import dataset_meta
from lncli.data.imagefolder import check_headers, folder_channels, list_image_folder, stratified_subset
from lncli.errors import DataError


def _png(path: Path, seed: int, gray: bool = False, size: tuple[int, int] = (10, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size if gray else (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def test_listing_follows_torchvisions_imagefolder(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    for k, cls in enumerate(("zebra", "ant", "Bee")):
        for j in range(3):
            _png(tmp_path / cls / ("sub" if j == 2 else "") / f"{9 - j}.png", 10 * k + j)
    (tmp_path / "ant" / "notes.txt").write_text("ignored")  # not an image suffix
    listing = list_image_folder(tmp_path)
    ref = ImageFolder(str(tmp_path))
    assert listing.classes == tuple(ref.classes)
    assert [(str(f), t) for f, t in zip(listing.files, listing.targets)] == [(p, t) for p, t in ref.samples]


@pytest.mark.parametrize("seed", range(5))
def test_stratified_subset_keeps_every_class_in_proportion(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, size=rng.integers(2, 12))
    targets = [k for k, n in enumerate(sizes) for _ in range(n)]
    for limit in sorted({len(sizes), len(targets) // 3, len(targets) - 1, len(targets) + 5}):
        keep = stratified_subset(targets, limit)
        assert keep == sorted(keep) and len(keep) == min(limit, len(targets))
        got = np.bincount([targets[i] for i in keep], minlength=len(sizes))
        assert (got >= 1).all()  # limit >= classes: every class kept
        # Never above the exact share rounded up; not below it rounded down unless small classes were lifted to one.
        share = limit * sizes / len(targets) if limit < len(targets) else sizes.astype(float)
        assert (got <= np.maximum(1, np.ceil(share - 1e-9))).all(), (got, share)
        if share.min() >= 1:
            assert (got >= np.floor(share + 1e-9)).all(), (got, share)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        want = sorted(int(starts[k]) + j for k in range(len(sizes)) for j in range(int(got[k])))
        assert keep == want  # each class keeps its first files
        assert stratified_subset(targets, limit) == keep  # deterministic
    assert stratified_subset([0, 0, 1, 1, 2], 2) == [0, 2]  # fewer than the classes: the first classes
    with pytest.raises(DataError, match="limit must be >= 0"):
        stratified_subset([0, 1], -1)


def test_header_check_names_each_bad_file(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "ok.png", 0)
    (tmp_path / "a" / "junk.png").write_bytes(b"not a png")
    (tmp_path / "a" / "empty.jpg").write_bytes(b"")
    listing = list_image_folder(tmp_path)
    bad = check_headers(listing.files, threads=2)
    assert [listing.files[i].name for i, _ in bad] == ["empty.jpg", "junk.png"]
    assert all(r.startswith("cannot read image ") and "\n" not in r for _, r in bad)


def test_channels_come_from_the_files(tmp_path: Path) -> None:
    for j in range(4):
        _png(tmp_path / "g" / "c" / f"{j}.png", j, gray=True)
    assert folder_channels(list_image_folder(tmp_path / "g").files) == 1
    _png(tmp_path / "g" / "c" / "9.png", 9)  # one colour file: RGB
    assert folder_channels(list_image_folder(tmp_path / "g").files) == 3
    meta = dataset_meta(f"imagefolder:{tmp_path / 'g'}", channels=1)
    assert meta.in_channels == 1 and len(meta.mean) == 1 and meta.classes == ("c",)


@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        ("missing", "is not a folder"),
        ("empty", "has no class folders"),
        ("flat", "has no class folders"),
        ("no-images", "hold no image files"),
    ],
)
def test_bad_folders(tmp_path: Path, layout: str, needle: str) -> None:
    root = tmp_path / "f"
    if layout != "missing":
        root.mkdir()
    if layout == "flat":
        _png(root / "a.png", 0)
    if layout == "no-images":
        _png(root / "cat" / "a.png", 0)
        (root / "dog").mkdir()
        (root / "dog" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=needle):
        list_image_folder(root)
