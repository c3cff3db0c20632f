"""Datasets: every source (on small files the tests write), the missing-data errors, normalisation, synthetic data."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lncli import data as data_mod
from lncli.data import (
    DATASETS,
    DataMeta,
    DataSpec,
    ImageSet,
    fashion_mnist,
    list_datasets,
    load_cifar10c,
    load_dataset,
    normalize,
)
from lncli.errors import DataError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may find the user's cache, $LNCLI_DATA or the system copy unless it puts them there."""
    monkeypatch.delenv("LNCLI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", (tmp_path / "no-system-copy",))


# --------------------------------------------------------------------------- writers of tiny files


def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def _write_fmnist(folder: Path, n: int = 12, seed: int = 0, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return images, labels


def _write_cifar(root: Path, n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write torchvision's cifar-10-batches-py layout: pickled dicts of (n, 3072) uint8 rows."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rng = np.random.default_rng(i)
        rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {"batch_label": name, "data": rows, "labels": labels, "filenames": [f"{j}.png" for j in range(n)]},
                fh,
                protocol=2,
            )
        written[name] = (rows, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": list(data_mod.CIFAR10_CLASSES), "num_cases_per_batch": n}, fh, protocol=2)
    return written


# --------------------------------------------------------------------------- DataMeta / registry


def test_datameta_round_trip_is_plain() -> None:
    for meta in DATASETS.values():
        d = meta.to_dict()
        assert all(isinstance(v, (str, int, float, bool, list)) for v in d.values())
        assert DataMeta.from_dict(d) == meta


def test_datameta_from_dict_errors() -> None:
    with pytest.raises(DataError, match="malformed data metadata"):
        DataMeta.from_dict({"name": "x"})


def test_list_datasets_and_unknown_spec() -> None:
    assert {"fashion-mnist", "cifar10", "synthetic", "synthetic-gray", "imagefolder:PATH"} == set(list_datasets())
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*fashion-mnist"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown split 'val'"):
        load_dataset("synthetic", "val")
    with pytest.raises(DataError, match="imagefolder needs a path"):
        load_dataset("imagefolder:")


def test_data_spec_is_the_one_grammar() -> None:
    assert DataSpec.parse(" FashionMNIST ") == DataSpec("dataset", "fashion-mnist", None, " FashionMNIST ")
    assert DataSpec.parse("CIFAR-10").name == "cifar10" and DataSpec.parse("synthetic-gray").name == "synthetic-gray"
    folder = DataSpec.parse("ImageFolder:photos/x")
    assert (folder.kind, folder.folder, folder.reads_image_files, str(folder)) == (
        "imagefolder",
        Path("photos/x"),
        True,
        "ImageFolder:photos/x",
    )
    assert DataSpec.parse(folder) is folder
    assert DataSpec.parse("cifar10c:d").kind == "cifar10c" and not DataSpec.parse("cifar10c:d").reads_image_files
    assert DataSpec.parse("IMAGENETC:d").kind == "imagenetc" and DataSpec.parse("imagenetc:d").reads_image_files
    for kind, placeholder in (("imagefolder", "PATH"), ("cifar10c", "DIR"), ("imagenetc", "DIR")):
        for text in (kind, f"{kind}:", f" {kind.upper()}:"):  # one message, whatever the spelling
            with pytest.raises(DataError, match=f"^{kind} needs a path: use {kind}:{placeholder}$"):
                DataSpec.parse(text)
    for bad in ("mnist", "cifar10:x", ""):
        with pytest.raises(DataError, match="unknown dataset .*; valid: fashion-mnist, .*, imagenetc:DIR$"):
            DataSpec.parse(bad)
    with pytest.raises(ValueError, match="not a folder"):
        _ = DataSpec.parse("cifar10").folder
    with pytest.raises(DataError, match="'cifar10c:d' is a corruption release, not a dataset"):
        load_dataset("cifar10c:d")  # whole datasets and image folders only: evaluate reads the releases


def test_normalisation_constants_are_sane() -> None:
    for meta in DATASETS.values():
        assert len(meta.mean) == len(meta.std) == meta.in_channels
        assert all(0 < m < 1 for m in meta.mean) and all(0 < s < 1 for s in meta.std)
        assert meta.num_classes == len(meta.classes) == 10
    assert DATASETS["cifar10"].mean[0] == pytest.approx(125.307 / 255)  # the authors' constants
    assert DATASETS["synthetic"].synthetic and DATASETS["synthetic-gray"].synthetic
    assert not DATASETS["cifar10"].synthetic and not DATASETS["fashion-mnist"].synthetic


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    images, labels = _write_fmnist(tmp_path / "d")
    ds = load_dataset("fashion-mnist", "train", data_dir=tmp_path / "d")
    assert isinstance(ds, ImageSet) and len(ds) == 12
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (12, 1, 28, 28)
    assert ds.labels.dtype == torch.int64
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    assert ds.meta == DATASETS["fashion-mnist"]
    assert len(load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d", limit=5)) == 5


def test_fashion_mnist_torchvision_layout_uncompressed(tmp_path: Path) -> None:
    _write_fmnist(tmp_path / "d" / "FashionMNIST" / "raw", compress=False)
    assert len(load_dataset("fashion-mnist", "test", data_dir=tmp_path / "d")) == 12


def test_fashion_mnist_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Four copies with different sizes show which one was read.
    system = tmp_path / "system"
    _write_fmnist(system, n=4)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", (system,))
    assert len(load_dataset("fashion-mnist")) == 4
    _write_fmnist(tmp_path / "xdg-cache" / "lncli" / "fashion-mnist", n=5)
    assert len(load_dataset("fashion-mnist")) == 5
    _write_fmnist(tmp_path / "env", n=6)
    monkeypatch.setenv("LNCLI_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist")) == 6
    _write_fmnist(tmp_path / "arg", n=7)
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "arg")) == 7


def test_fashion_mnist_missing_lists_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LNCLI_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "arg")
    msg = str(info.value)
    assert "\n" not in msg
    for expected in (
        "arg (--data-dir)",
        "env ($LNCLI_DATA)",
        "user cache",
        "no-system-copy (system)",
        "--download",
        "apt-get",
    ):
        assert expected in msg, msg


def test_fashion_mnist_download_failure_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match="download into .* failed"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=True)


def test_fashion_mnist_corrupt_file(tmp_path: Path) -> None:
    _write_fmnist(tmp_path)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + struct.pack(">III", 12, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_fashion_mnist_damaged_gzip_and_short_header_are_data_errors(tmp_path: Path) -> None:
    """A corrupt deflate stream (zlib.error) and a header cut short (numpy ValueError) were tracebacks."""
    _write_fmnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    good = gzip.compress(gzip.decompress(path.read_bytes()))  # a 10-byte header: no file name
    path.write_bytes(good[:10] + b"\xff" * 8 + good[18:])  # valid gzip header, garbage deflate data
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    path.unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")  # 3 dims declared, 2 bytes of them
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", (SYSTEM_FMNIST,))
    ds = load_dataset("fashion-mnist", "test", limit=1000)
    assert ds.images.shape == (1000, 1, 28, 28)
    assert set(ds.labels.tolist()) == set(range(10))
    mean = ds.images.double().mean().item() / 255
    assert abs(mean - DATASETS["fashion-mnist"].mean[0]) < 0.02, mean


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar10_reads_torchvision_layout(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    rows, labels = written["test_batch"]
    assert test.images.shape == (4, 3, 32, 32) and test.images.dtype == torch.uint8
    # Rows are 1024 red, 1024 green, 1024 blue values.
    assert torch.equal(test.images[1, 0].flatten(), torch.from_numpy(rows[1, :1024]))
    assert torch.equal(test.images[1, 2].flatten(), torch.from_numpy(rows[1, 2048:]))
    assert test.labels.tolist() == labels
    assert test.meta == DATASETS["cifar10"]
    train = load_dataset("cifar10", "train", data_dir=tmp_path, limit=7)
    assert len(train) == 7
    assert len(load_dataset("cifar10", "train", data_dir=tmp_path)) == 20


def test_cifar10_found_through_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_cifar(tmp_path / "env")
    monkeypatch.setenv("LNCLI_DATA", str(tmp_path / "env"))
    assert len(load_dataset("cifar10")) == 4


def test_cifar10_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-10 \(cifar-10-batches-py\) not found; tried: .*--data-dir.*--download"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({"data": Evil(), "labels": []}, fh, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_dataset("cifar10", data_dir=tmp_path)


def _write_c10c(folder: Path, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.tile(rng.integers(0, 10, size=(n,), dtype=np.uint8), 5)  # one block per severity, as released
    np.save(folder / "gaussian_noise.npy", images)
    np.save(folder / "labels.npy", labels)
    return images, labels


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar10c_severity_slices(tmp_path: Path, severity: int) -> None:
    images, labels = _write_c10c(tmp_path)
    ds = load_cifar10c(tmp_path, "gaussian", severity)
    lo = (severity - 1) * 3
    assert ds.images.shape == (3, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(images[lo : lo + 3]).permute(0, 3, 1, 2))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels[lo : lo + 3].tolist()
    assert ds.meta.mean == DATASETS["cifar10"].mean
    assert len(load_cifar10c(tmp_path, "gaussian_noise", severity, limit=2)) == 2


def test_cifar10c_errors(tmp_path: Path) -> None:
    _write_c10c(tmp_path)
    with pytest.raises(DataError, match="severity must be 1..5"):
        load_cifar10c(tmp_path, "gaussian", 6)
    with pytest.raises(DataError, match="fog.npy not found"):
        load_cifar10c(tmp_path, "fog", 1)
    with pytest.raises(DataError, match="shot_noise.npy not found"):
        load_cifar10c(tmp_path, "shot", 1)
    np.save(tmp_path / "impulse_noise.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="expected"):
        load_cifar10c(tmp_path, "impulse", 1)


# --------------------------------------------------------------------------- ImageFolder


def _write_folder(root: Path, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = 20 + 4 * i, 30 - 2 * i  # varied sizes and aspect ratios
            if i == 0:  # a greyscale file must come back as RGB
                Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(root / name / f"{i}.png")
            else:
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")


def test_imagefolder(tmp_path: Path) -> None:
    _write_folder(tmp_path / "imgs")
    ds = load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=16)
    assert ds.images.shape == (6, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.meta.classes == ("cat", "dog") and ds.meta.num_classes == 2 and ds.meta.image_size == (16, 16)
    # limit keeps an evenly spaced subset, so both classes survive.
    assert sorted(set(load_dataset(f"imagefolder:{tmp_path / 'imgs'}", image_size=8, limit=2).labels.tolist())) == [
        0,
        1,
    ]


def test_imagefolder_split_subfolders(tmp_path: Path) -> None:
    _write_folder(tmp_path / "root" / "train", per_class=2)
    _write_folder(tmp_path / "root" / "val", per_class=1)
    assert len(load_dataset(f"imagefolder:{tmp_path / 'root'}", "train", image_size=8)) == 4
    assert len(load_dataset(f"imagefolder:{tmp_path / 'root'}", "test", image_size=8)) == 2


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="imagefolder"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="image_size applies to imagefolder only"):
        load_dataset("synthetic", image_size=8)


# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", ["cifar10", "fashion-mnist"])
def test_normalize_matches_reference(seed: int, name: str) -> None:
    meta = DATASETS[name]
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (3, meta.in_channels, 5, 5), generator=g, dtype=torch.uint8)
    before = images.clone()
    out = normalize(images, meta)
    ref = (images.double() / 255 - torch.tensor(meta.mean, dtype=torch.float64).view(1, -1, 1, 1)) / torch.tensor(
        meta.std, dtype=torch.float64
    ).view(1, -1, 1, 1)
    err = (out.double() - ref).abs().max().item()
    assert out.dtype == torch.float32 and out.shape == images.shape
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6, msg=f"max error {err}")
    assert torch.equal(images, before)  # input untouched
    # Float input in [0, 1] gives the same result.
    as_float = images.float() / 255
    torch.testing.assert_close(normalize(as_float, meta), out, rtol=1e-6, atol=1e-6)
    assert torch.equal(as_float, images.float() / 255)


def test_normalize_channel_mismatch() -> None:
    with pytest.raises(DataError, match="do not match cifar10's 3-channel"):
        normalize(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), DATASETS["cifar10"])


@pytest.mark.cuda
def test_normalize_keeps_device() -> None:
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8, device="cuda")
    assert normalize(x, DATASETS["cifar10"]).device == x.device


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize(("name", "shape"), [("synthetic", (3, 32, 32)), ("synthetic-gray", (1, 28, 28))])
def test_synthetic_is_deterministic_balanced_and_labelled(name: str, shape: tuple[int, ...]) -> None:
    train = load_dataset(name, "train")
    test = load_dataset(name, "test")
    assert len(train) == data_mod.SYNTHETIC_SIZES["train"] and len(test) == data_mod.SYNTHETIC_SIZES["test"]
    assert train.images.shape[1:] == shape and train.images.dtype == torch.uint8
    assert train.meta.synthetic and train.meta.name == name
    assert train.labels.bincount(minlength=10).tolist() == [len(train) // 10] * 10
    images, labels = data_mod.generate_synthetic("train", name == "synthetic-gray")  # from scratch: same bytes
    assert torch.equal(torch.from_numpy(images), train.images) and torch.equal(torch.from_numpy(labels), train.labels)
    assert not torch.equal(train.images[: len(test)], test.images)  # splits are seeded apart
    # The recorded normalisation constants are the train split's statistics.
    x = train.images.double() / 255
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3))
    torch.testing.assert_close(mean, torch.tensor(train.meta.mean, dtype=torch.float64), rtol=0, atol=1e-3)
    torch.testing.assert_close(std, torch.tensor(train.meta.std, dtype=torch.float64), rtol=0, atol=1e-3)
    # A returned set is a copy: mutating it does not change the next load.
    train.images.zero_()
    assert load_dataset(name, "train", limit=4).images.any()


def test_synthetic_colour_carries_no_label() -> None:
    # Per-class mean brightness is close to the overall mean: only shape/texture tell classes apart.
    ds = load_dataset("synthetic-gray", "train")
    per_image = ds.images.double().mean((1, 2, 3)) / 255
    class_means = torch.stack([per_image[ds.labels == k].mean() for k in range(10)])
    spread = (class_means - per_image.mean()).abs().max().item()
    assert spread < 0.1, f"class mean brightness differs by {spread}"


def test_synthetic_is_learnable() -> None:
    from lncli.models import create_model

    torch.manual_seed(0)
    train, test = load_dataset("synthetic-gray", "train"), load_dataset("synthetic-gray", "test")
    x_train, x_test = normalize(train.images, train.meta), normalize(test.images, test.meta)
    model = create_model("tiny", num_classes=10, in_channels=1, width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        idx = torch.randint(0, len(train), (64,), generator=g)
        loss = F.cross_entropy(model(x_train[idx]), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == test.labels).double().mean().item()
    assert acc > 0.5, f"test accuracy {acc} after 200 steps (chance is 0.1)"


def test_cifar10c_filename_follows_the_release() -> None:
    # The release's names (Hendrycks & Dietterich 2019): noises carry "_noise", other corruptions do not.
    from lncli.data import CIFAR10C_LABELS, cifar10c_filename

    assert [cifar10c_filename(n) for n in ("gaussian", "shot", "impulse", "speckle")] == [
        "gaussian_noise.npy",
        "shot_noise.npy",
        "impulse_noise.npy",
        "speckle_noise.npy",
    ]
    assert cifar10c_filename("contrast") == "contrast.npy" and cifar10c_filename("motion_blur") == "motion_blur.npy"
    assert CIFAR10C_LABELS == "labels.npy"
