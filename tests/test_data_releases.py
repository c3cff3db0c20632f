"""lncli.data.releases: CIFAR-10-C-style arrays (any (5N, H, W, C) uint8, C 1 or 3; DIR or DIR/CIFAR-10-C
or DIR/CIFAR-100-C) and ImageNet-C-style folders, opened, checked and read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.data import DATASETS, dataset_meta, load_cifar10c
from lncli.data.releases import list_imagenetc, open_npy_release, release_name
from lncli.errors import DataError


def _release(folder: Path, n: int = 4, shape: tuple[int, int, int] = (32, 32, 3), seed: int = 0, classes: int = 10):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (5 * n, *shape), dtype=np.uint8)
    labels = np.tile(rng.integers(0, classes, n), 5)
    np.save(folder / "gaussian_noise.npy", images)
    np.save(folder / "labels.npy", labels)
    return images, labels


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (20, 24, 3)])
@pytest.mark.parametrize("severity", [1, 4])
def test_any_shape_reads_back_by_severity(tmp_path: Path, shape: tuple[int, int, int], severity: int) -> None:
    images, labels = _release(tmp_path / "r", n=6, shape=shape)
    ds = load_cifar10c(tmp_path / "r", "gaussian", severity, limit=5)
    lo = (severity - 1) * 6
    want = torch.from_numpy(images[lo : lo + 5]).permute(0, 3, 1, 2)  # (5, H, W, C) -> (5, C, H, W)
    assert torch.equal(ds.images, want) and ds.labels.tolist() == labels[:5].tolist()
    assert ds.meta.in_channels == shape[2] and ds.meta.image_size == shape[:2]


def test_release_kind_layout_and_meta(tmp_path: Path) -> None:
    _release(tmp_path / "a" / "CIFAR-10-C")
    assert open_npy_release(tmp_path / "a").directory == tmp_path / "a" / "CIFAR-10-C"  # RobustBench's layout
    assert open_npy_release(tmp_path / "a" / "CIFAR-10-C").kind == "CIFAR-10-C"
    assert dataset_meta(f"cifar10c:{tmp_path / 'a'}") == DATASETS["cifar10"]
    _release(tmp_path / "b" / "CIFAR-100-C", classes=100)
    c100 = open_npy_release(tmp_path / "b")
    assert (c100.kind, c100.num_classes, c100.name) == ("CIFAR-100-C", 100, "cifar100-c")
    _release(tmp_path / "other", shape=(28, 28, 1), classes=7)
    other = open_npy_release(tmp_path / "other")
    assert (other.kind, other.name, other.shape) == ("", "npy", (28, 28, 1))
    meta = other.meta()
    assert (meta.num_classes, meta.in_channels, meta.image_size) == (int(other.labels.max()) + 1, 1, (28, 28))
    _release(tmp_path / "plain")  # the CIFAR-10-C arrays in a folder of another name
    assert open_npy_release(tmp_path / "plain").kind == "CIFAR-10-C"
    assert release_name("gaussian") == "gaussian_noise" and release_name("fog") == "fog"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: None, "has no labels.npy"),
        (lambda d: np.save(d / "labels.npy", np.zeros(10)), "expected integer labels"),
        (lambda d: np.save(d / "labels.npy", np.zeros(7, np.int64)), "expected integer labels"),
        (lambda d: np.save(d / "labels.npy", np.arange(10)), "does not repeat one block"),
        (lambda d: np.save(d / "labels.npy", np.zeros(10, np.int64)), "but no corruption array"),
        (
            lambda d: (
                np.save(d / "labels.npy", np.zeros(10, np.int64)),
                np.save(d / "fog.npy", np.zeros((10, 8, 8, 3))),
            ),
            "expected uint8",
        ),
        (
            lambda d: (
                np.save(d / "labels.npy", np.zeros(10, np.int64)),
                np.save(d / "fog.npy", np.zeros((10, 8, 8, 2), np.uint8)),
            ),
            "C 1 or 3",
        ),
        (
            lambda d: (
                np.save(d / "labels.npy", np.zeros(10, np.int64)),
                np.save(d / "fog.npy", np.zeros((15, 8, 8, 3), np.uint8)),
            ),
            "expected uint8 (10, H, W, C)",
        ),
        (lambda d: (d / "labels.npy").write_bytes(b"\x93NUMPY junk"), "cannot read"),
    ],
    ids=[
        "missing-labels",
        "float-labels",
        "not-5n",
        "not-tiled",
        "no-arrays",
        "float-images",
        "2-channels",
        "5n-mismatch",
        "damaged",
    ],
)
def test_bad_releases_are_one_line(tmp_path: Path, make, needle: str) -> None:
    d = tmp_path / "r"
    d.mkdir()
    make(d)
    with pytest.raises(DataError) as info:
        open_npy_release(d)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_each_array_is_checked_against_the_release(tmp_path: Path) -> None:
    _release(tmp_path, n=4)
    release = open_npy_release(tmp_path)
    np.save(tmp_path / "shot_noise.npy", np.zeros((20, 16, 16, 3), np.uint8))
    with pytest.raises(DataError, match=r"shot_noise.npy is uint8 \(20, 16, 16, 3\); expected uint8 \(20, 32, 32, 3\)"):
        release.array("shot")
    with pytest.raises(DataError, match="impulse_noise.npy not found"):
        release.array("impulse")
    assert release.array("gaussian_noise").shape == (20, 32, 32, 3)


def _imagenetc(root: Path, corruptions: tuple[str, ...] = ("gaussian_noise", "fog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for c in corruptions:
        for sev in range(1, 6):
            for k, wnid in enumerate(("n01", "n02", "n03")):
                (root / c / str(sev) / wnid).mkdir(parents=True)
                for j in range(per_class + k):  # unbalanced classes
                    arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                    Image.fromarray(arr).save(root / c / str(sev) / wnid / f"{j}.JPEG")


def test_imagenetc_listing_and_cells(tmp_path: Path) -> None:
    _imagenetc(tmp_path / "C")
    listing = list_imagenetc(tmp_path / "C", limit=6)
    assert listing.corruptions == ("fog", "gaussian_noise") and listing.reference.classes == ("n01", "n02", "n03")
    assert sorted(set(listing.reference.targets)) == [0, 1, 2] and len(listing) == 6  # every class kept
    files = listing.cell_files("gaussian", 3)
    assert [f.relative_to(tmp_path / "C" / "gaussian_noise" / "3") for f in files] == list(listing.rel)
    with pytest.raises(DataError, match="has no shot_noise/1 folder"):
        listing.cell_files("shot", 1)
    min((tmp_path / "C" / "fog" / "2" / "n03").iterdir()).unlink()
    full = list_imagenetc(tmp_path / "C")
    with pytest.raises(DataError, match="lacks n03/0.JPEG"):
        full.cell_files("fog", 2)
    with pytest.raises(DataError, match="no <corruption>/<severity>/ folders"):
        list_imagenetc(tmp_path / "C" / "fog" / "1")
    meta = dataset_meta(f"imagenetc:{tmp_path / 'C'}")
    assert (meta.num_classes, meta.in_channels, meta.image_size, meta.resize) == (3, 3, (224, 224), 256)
