"""Streamed and file-backed test data give what the same images in memory give.

* Image folders, decoded by DataLoader workers (0 and 2, and under a 2-process gloo run), give
  the counts and per-image hits of the same images held in memory.
* ``lncli corrupt --format npy`` then ``lncli evaluate --data cifar10c:DIR`` (a grayscale and an
  RGB dataset) gives the counts of the same noise generated in memory, whose bits are identical.
* ``lncli corrupt`` PNG folders read back as an ImageNet-C release (``imagenetc:DIR``), exactly;
  a Tiny-ImageNet-C-shaped JPEG release runs with every cell and every class.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluate_helpers import cfg, fmnist_ckpt, make_bn
from PIL import Image
from typer.testing import CliRunner

from lncli.cli import app
from lncli.data import DATASETS, ImageSet, load_dataset
from lncli.jobs.evaluate import EvalConfig, EvalData, evaluate_grid, load_checkpoints, resolve_data
from lncli.noise import corrupt

N_FOLDER = 240  # a few hundred small images: 15 batches of 16
runner = CliRunner()


def _cli(*args: str | Path) -> None:
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "TERM": "dumb"})
    assert res.exit_code == 0, res.stderr + res.stdout


def _folder_order(images: ImageSet) -> ImageSet:
    """The set in an image folder's order: class by class (stable), so that global indices agree."""
    perm = torch.argsort(images.labels, stable=True)
    return ImageSet(images.images[perm].contiguous(), images.labels[perm].contiguous(), images.meta)


def _per_class(images: ImageSet, n: int) -> ImageSet:
    """``n`` images of a folder-ordered set, the same number from each class, still in folder order."""
    counts: dict[int, int] = {}
    keep = []
    for i, y in enumerate(images.labels.tolist()):
        counts[y] = counts.get(y, 0) + 1
        if counts[y] <= n // 10:
            keep.append(i)
    return ImageSet(images.images[keep], images.labels[keep], images.meta)


def _write_folder(root: Path, images: ImageSet, fmt: str = "png") -> Path:
    """``root/c<k>/<position>.<fmt>``: class folders sort as the labels, files as the positions."""
    for i, (x, y) in enumerate(zip(images.images, images.labels)):
        (root / f"c{int(y)}").mkdir(parents=True, exist_ok=True)
        arr = x.permute(1, 2, 0).numpy()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(root / f"c{int(y)}" / f"{i:04d}.{fmt}")
    return root


def _counts(records: list) -> list[tuple[str, str, int, int, int, str | None]]:
    return [(r.mode, r.noise, r.severity, r.correct, r.n, r.hits) for r in records]


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ImageSet]:
    """A synthetic BN checkpoint, a folder of N_FOLDER 32-px PNGs, and the same images in memory (folder order)."""
    d = tmp_path_factory.mktemp("rgb")
    images = _folder_order(load_dataset("synthetic", "test", limit=N_FOLDER))
    return make_bn(d / "bn.pt"), _write_folder(d / "folder", images), images


CONF = cfg(modes=("running", "batch"), noises=("gaussian", "impulse"), severities=(0, 2, 5))


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_streamed_equals_in_memory(rgb_folder: tuple[Path, Path, ImageSet], workers: int) -> None:
    ckpt, folder, images = rgb_folder
    models = load_checkpoints([ckpt])
    streamed = resolve_data(f"imagefolder:{folder}", models, workers=workers)
    assert streamed.clean is None and streamed.folder is not None and len(streamed.folder) == N_FOLDER
    got = evaluate_grid(models, streamed, EvalConfig(**{**CONF.__dict__, "workers": workers}))
    ref = evaluate_grid(models, EvalData.from_imageset(images), CONF)
    assert _counts(got) == _counts(ref)
    assert {r.correct for r in got} != {0}  # the model is not trivially wrong everywhere
    r = got[0]
    assert (r.image_size, r.resize, r.interpolation, r.channels, r.skipped) == ("32x32", 32, "bilinear", 3, 0)
    assert r.mean == ",".join(repr(v) for v in DATASETS["synthetic"].mean)  # the checkpoint's, recorded exactly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dist_worker(rank: int, world: int, port: int, ckpt: str, folder: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0"
    )
    torch.set_num_threads(1)
    from lncli.distributed import cleanup, init_distributed

    init_distributed(torch.device("cpu"))
    try:
        models = load_checkpoints([ckpt])
        data = resolve_data(f"imagefolder:{folder}", models, workers=1)
        recs = evaluate_grid(models, data, EvalConfig(**{**CONF.__dict__, "workers": 1}))
        torch.save([r.to_dict() for r in recs], f"{out}.{rank}")
    finally:
        cleanup()


def test_folder_streamed_under_two_gloo_processes(rgb_folder: tuple[Path, Path, ImageSet], tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    ckpt, folder, images = rgb_folder
    ref = evaluate_grid(load_checkpoints([ckpt]), EvalData.from_imageset(images), CONF)
    out = str(tmp_path / "recs")
    mp.spawn(_dist_worker, args=(2, _free_port(), str(ckpt), str(folder), out), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        assert [(g["correct"], g["n"], g["hits"]) for g in got] == [(r.correct, r.n, r.hits) for r in ref]
        assert {g["world_size"] for g in got} == {2}


def test_folder_rescale_streams_the_same_ranges(rgb_folder: tuple[Path, Path, ImageSet]) -> None:
    """The paper's rescale takes its ranges in one streamed pass: the folder gives the in-memory records."""
    ckpt, folder, images = rgb_folder
    models = load_checkpoints([ckpt])
    conf = cfg(profile="paper", noises=("gaussian",), severities=(0, 4), modes=("running",), rescale=True)
    got = evaluate_grid(models, resolve_data(f"imagefolder:{folder}", models), conf)
    ref = evaluate_grid(models, EvalData.from_imageset(images), conf)
    assert _counts(got) == _counts(ref) and [r.rescale_range for r in got] == [None, "test"]


def test_folder_of_larger_images_is_resized_to_the_checkpoints_size(
    rgb_folder: tuple[Path, Path, ImageSet], tmp_path: Path
) -> None:
    """48-px files for a 32-px model: read at 32 (the checkpoint's), as Pillow's own bilinear resize gives."""
    from lncli.jobs.evaluate import open_source

    ckpt, _, images = rgb_folder
    part = _per_class(images, 60)
    big = torch.nn.functional.interpolate(part.images.float(), size=48, mode="nearest").to(torch.uint8)
    folder = _write_folder(tmp_path / "big", ImageSet(big, part.labels, images.meta))
    models = load_checkpoints([ckpt])
    data = resolve_data(f"imagefolder:{folder}", models, workers=2)
    source = open_source(data, seed=0, profile="imagenet-c", workers=2)
    batches = list(torch.arange(60).split(16))
    got = torch.cat(list(source.clean_batches(batches)))  # (60, 3, 32, 32)
    files = sorted(folder.rglob("*.png"))
    ref = np.stack([np.asarray(Image.open(f).resize((32, 32), Image.Resampling.BILINEAR)) for f in files])
    assert torch.equal(got, torch.from_numpy(ref).permute(0, 3, 1, 2))  # (60, 32, 32, 3) -> (60, 3, 32, 32)
    recs = evaluate_grid(models, data, CONF)
    assert {(r.image_size, r.resize, r.n) for r in recs} == {("32x32", 32, 60)}


def test_gray_folder_reads_as_the_fashion_mnist_model_takes_it(fmnist_dir: Path, tmp_path: Path) -> None:
    """A folder of 28-px grayscale PNGs and a Fashion-MNIST checkpoint: read as they are, no flag."""
    models = load_checkpoints([fmnist_ckpt(tmp_path / "f.pt")])
    images = _folder_order(load_dataset("fashion-mnist", "test", data_dir=fmnist_dir))
    folder = _write_folder(tmp_path / "gray", images)
    data = resolve_data(f"imagefolder:{folder}", models)
    assert data.input_meta is not None and data.input_meta.in_channels == 1
    got = evaluate_grid(models, data, CONF)
    ref = evaluate_grid(models, EvalData.from_imageset(images), CONF)
    assert _counts(got) == _counts(ref)
    assert (got[0].channels, got[0].image_size, got[0].mean) == (1, "28x28", repr(DATASETS["fashion-mnist"].mean[0]))


def test_skip_unreadable_leaves_files_out_and_counts_them(
    rgb_folder: tuple[Path, Path, ImageSet], tmp_path: Path
) -> None:
    ckpt, _, images = rgb_folder
    part = _per_class(images, 40)
    folder = _write_folder(tmp_path / "f", part)
    bad = sorted(folder.rglob("*.png"))[3]
    bad.write_bytes(b"not a png")
    models = load_checkpoints([ckpt])
    from lncli.errors import DataError

    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        resolve_data(f"imagefolder:{folder}", models)
    data = resolve_data(f"imagefolder:{folder}", models, skip_unreadable=True)
    recs = evaluate_grid(models, data, CONF)
    assert {(r.n, r.skipped) for r in recs} == {(39, 1)}
    keep = [i for i in range(40) if i != 3]
    ref = evaluate_grid(models, EvalData.from_imageset(ImageSet(part.images[keep], part.labels[keep], part.meta)), CONF)
    assert [r.correct for r in recs] == [r.correct for r in ref]


# --------------------------------------------------------------------------- array releases (cifar10c:DIR)


def _eval_json(path: Path, ckpt: Path, *args: str | Path) -> list[dict]:
    _cli("evaluate", ckpt, *args, "--batch-size", "16", "--device", "cpu", "--mode", "running,batch", "--json", path)
    return json.loads(path.read_text())["records"]


def _by_cell(records: list[dict]) -> dict[tuple[str, str, int], tuple[int, int, str]]:
    return {(r["mode"], r["noise"], r["severity"]): (r["correct"], r["n"], r["hits"]) for r in records}


@pytest.mark.parametrize("dataset", ["fashion-mnist", "synthetic"])
def test_corrupt_npy_round_trip(dataset: str, fmnist_dir: Path, tmp_path: Path) -> None:
    """``corrupt --format npy`` then ``evaluate --data cifar10c:DIR`` = the same noise generated in memory."""
    n = 40  # the test's Fashion-MNIST files hold 40 test images
    ckpt = fmnist_ckpt(tmp_path / "m.pt") if dataset == "fashion-mnist" else make_bn(tmp_path / "m.pt")
    where = ["--data-dir", fmnist_dir]
    out = tmp_path / "release"
    _cli(
        "corrupt", "--data", dataset, *where, "--limit", n, "--format", "npy", "--noise", "gaussian,shot", "--out", out
    )
    images = load_dataset(dataset, "test", data_dir=fmnist_dir, limit=n)
    c = images.images.shape[1]
    arr = np.load(out / "shot_noise.npy")
    assert arr.shape == (5 * n, *images.images.shape[2:], c)  # Fashion-MNIST: (5N, 28, 28, 1)
    for sev in (1, 5):  # the noise bits are identical by construction: same seed, profile and global index
        want = corrupt(images.images, "shot", sev, seed=0, profile="imagenet-c", indices=torch.arange(n))
        assert np.array_equal(arr[(sev - 1) * n : sev * n], want.permute(0, 2, 3, 1).numpy())
    noise = ["--noise", "gaussian,shot", "--severity", "0-5"]
    files = _by_cell(_eval_json(tmp_path / "a.json", ckpt, "--data", f"cifar10c:{out}", *where, *noise))
    memory = _by_cell(_eval_json(tmp_path / "b.json", ckpt, "--data", dataset, "--limit", str(n), *where, *noise))
    assert files == memory  # the clean row too: the models' dataset is installed here
    assert len(files) == 2 * (1 + 2 * 5)


def test_cifar10c_dir_or_the_folder_above(tmp_path: Path) -> None:
    """RobustBench's layout (DIR/CIFAR-10-C) and the inner folder give the same records; CIFAR-100-C counts 100 classes."""
    n = 32
    rng = np.random.default_rng(0)
    inner = tmp_path / "data" / "CIFAR-10-C"
    inner.mkdir(parents=True)
    np.save(inner / "gaussian_noise.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8))
    np.save(inner / "labels.npy", np.tile(rng.integers(0, 10, n), 5).astype(np.uint8))
    models = load_checkpoints([make_bn(tmp_path / "m.pt")])  # synthetic: no clean set matches these labels
    conf = cfg(modes=("running",), severities=(1, 3), noises=("gaussian",))
    outer = evaluate_grid(models, resolve_data(f"cifar10c:{tmp_path / 'data'}", models), conf)
    direct = evaluate_grid(models, resolve_data(f"cifar10c:{inner}", models), conf)
    assert _counts(outer) == _counts(direct) and [r.n for r in outer] == [n, n]
    assert {(r.data, r.profile) for r in outer} == {("cifar10-c", "cifar10c-files")}
    c100 = tmp_path / "data" / "CIFAR-100-C"
    c100.mkdir()
    np.save(c100 / "gaussian_noise.npy", np.zeros((5 * n, 32, 32, 3), np.uint8))
    np.save(c100 / "labels.npy", np.tile(np.arange(n) % 100, 5))
    from lncli.errors import DataError

    with pytest.raises(DataError, match="holds both CIFAR-10-C and CIFAR-100-C"):
        resolve_data(f"cifar10c:{tmp_path / 'data'}", models)
    with pytest.raises(DataError, match="100 in the data, 10 in the model"):
        resolve_data(f"cifar10c:{c100}", models)


# --------------------------------------------------------------------------- folder releases (imagenetc:DIR)


def test_lncli_png_folders_read_back_as_an_imagenet_c_release(
    rgb_folder: tuple[Path, Path, ImageSet], tmp_path: Path
) -> None:
    """``lncli corrupt`` of a class folder writes OUT/<noise>/<severity>/<class>/...: exactly the noise generated."""
    ckpt, _, images = rgb_folder
    part = _per_class(images, 80)
    clean = _write_folder(tmp_path / "clean", part)
    out = tmp_path / "c"
    _cli("corrupt", clean, "--noise", "gaussian,impulse", "--severity", "1-5", "--out", out)
    models = load_checkpoints([ckpt])
    conf = cfg(modes=("running", "batch"), noises=("gaussian", "impulse"), severities=(1, 4), workers=2)
    got = evaluate_grid(models, resolve_data(f"imagenetc:{out}", models, workers=2), conf)
    ref = evaluate_grid(models, EvalData.from_imageset(part), conf)
    ref = [r for r in ref if r.noise != "clean"]
    assert _counts(got) == _counts(ref)  # PNG is lossless and the files' order is the global index
    assert {r.profile for r in got} == {"imagenetc-files"} and {r.data for r in got} == {"imagenet-c"}


def test_tiny_imagenet_c_shaped_release(rgb_folder: tuple[Path, Path, ImageSet], tmp_path: Path) -> None:
    """DIR/<corruption>/<severity>/<wnid>/*.JPEG at 64 px, read at the model's 32 px, every cell and class."""
    ckpt, _, _ = rgb_folder
    wnids = [f"n0{k:07d}" for k in range(10)]  # sorted like the labels
    rng = np.random.default_rng(0)
    for corruption in ("gaussian_noise", "shot_noise", "fog"):
        for sev in range(1, 6):
            for k, wnid in enumerate(wnids):
                folder = tmp_path / "Tiny-ImageNet-C" / corruption / str(sev) / wnid
                folder.mkdir(parents=True)
                for j in range(3):
                    arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                    Image.fromarray(arr).save(folder / f"val_{k * 3 + j}.JPEG", quality=85)
    models = load_checkpoints([ckpt])
    data = resolve_data(f"imagenetc:{tmp_path / 'Tiny-ImageNet-C'}", models, limit=20)
    assert data.imagenetc is not None and sorted(set(data.imagenetc.reference.targets)) == list(range(10))
    recs = evaluate_grid(models, data, cfg(modes=("running",), noises=("gaussian", "fog"), severities=(0, 1, 5)))
    assert [(r.noise, r.severity, r.n) for r in recs] == [
        ("gaussian", 1, 20),
        ("gaussian", 5, 20),
        ("fog", 1, 20),
        ("fog", 5, 20),
    ]
    assert {(r.image_size, r.channels) for r in recs} == {("32x32", 3)}
