"""Tests for the corrupt job (lncli.jobs.corrupt.run_corrupt): what it writes, where, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.config.corrupt import CorruptConfig, OutputFormat
from lncli.data import load_cifar10c, load_dataset
from lncli.errors import LncliError, OutputError
from lncli.images import read_image
from lncli.jobs.corrupt import run_corrupt
from lncli.noise import corrupt


@pytest.mark.parametrize("seed", [0, 3])
def test_folder_keeps_relative_paths(sample_images: Path, tmp_path: Path, seed: int):
    out = tmp_path / "out"
    run_corrupt(
        CorruptConfig(out, noises=("gaussian", "impulse"), severities=(1, 3), inputs=(sample_images,), seed=seed)
    )
    for noise in ("gaussian", "impulse"):
        for sev in ("1", "3"):
            assert (out / noise / sev / "a.png").is_file()
            assert (out / noise / sev / "sub" / "b.png").is_file()
            assert (out / noise / sev / "sub" / "gray.png").is_file()
    assert not (out / "gaussian" / "2").exists()
    # Written pixels are exactly corrupt() of the read image at its global (sorted) index.
    files = ["a.png", "sub/b.png", "sub/gray.png"]
    for i, rel in enumerate(files):
        x = read_image(sample_images / rel)
        want = corrupt(x[None], "gaussian", 3, seed=seed, indices=[i])[0]
        got = read_image(out / "gaussian" / "3" / rel)
        assert torch.equal(got, want), rel
    assert read_image(out / "gaussian" / "1" / "sub" / "gray.png").shape[0] == 1  # grayscale stays 1 channel
    assert not list(out.rglob(".*.tmp*"))  # no temporary leftovers


def test_single_file_and_jpeg(sample_images: Path, tmp_path: Path):
    out = tmp_path / "o"
    cfg = CorruptConfig(
        out,
        noises=("shot",),
        severities=(2,),
        inputs=(sample_images / "a.png",),
        format=OutputFormat.jpeg,
        jpeg_quality=90,
    )
    run_corrupt(cfg)
    assert (out / "shot" / "2" / "a.jpg").is_file()
    with Image.open(out / "shot" / "2" / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 20)


def test_npy_layout_from_dataset(tmp_path: Path):
    out = tmp_path / "c"
    cfg = CorruptConfig(out, noises=("gaussian", "shot"), data="synthetic", limit=12, format=OutputFormat.npy)
    run_corrupt(cfg)
    ds = load_dataset("synthetic", split="test", limit=12)
    arr = np.load(out / "gaussian_noise.npy")
    labels = np.load(out / "labels.npy")
    n = len(ds)
    c, h, w = ds.images.shape[1:]
    assert arr.dtype == np.uint8 and arr.shape == (5 * n, h, w, c)
    assert (
        labels.shape == (5 * n,) and (labels[:n] == ds.labels.numpy()).all() and (labels[n : 2 * n] == labels[:n]).all()
    )
    for sev in (1, 5):  # severities stacked 1..5 in order
        want = corrupt(ds.images, "gaussian", sev, seed=0).permute(0, 2, 3, 1).numpy()
        assert (arr[(sev - 1) * n : sev * n] == want).all()
    assert (out / "shot_noise.npy").is_file()


@pytest.mark.parametrize("seed", [0, 5])
def test_npy_output_reads_back_with_load_cifar10c(tmp_path: Path, seed: int):
    # One file-naming rule (lncli.data.cifar10c_filename) for the writer and the reader.
    out = tmp_path / "c10c"
    noises = ("gaussian", "shot", "impulse", "speckle")
    run_corrupt(CorruptConfig(out, noises=noises, data="synthetic", limit=9, format=OutputFormat.npy, seed=seed))
    ds = load_dataset("synthetic", split="test", limit=9)
    for noise in noises:
        for sev in (1, 3, 5):
            got = load_cifar10c(out, noise, sev)
            assert torch.equal(got.images, corrupt(ds.images, noise, sev, seed=seed)), (noise, sev)
            assert torch.equal(got.labels, ds.labels)


def test_npy_names_other_corruptions_without_noise_suffix(tmp_path: Path):
    out = tmp_path / "c"
    recs = run_corrupt(CorruptConfig(out, noises=("contrast",), data="synthetic", limit=3, format=OutputFormat.npy))
    assert sorted(p.name for p in out.iterdir()) == ["contrast.npy", "labels.npy"]  # as the CIFAR-10-C release
    assert [Path(r.output).name for r in recs] == ["contrast.npy", "labels.npy"]


def test_npy_from_files_writes_file_list(tmp_path: Path, rgb_array):
    root = tmp_path / "same"
    root.mkdir()
    for i in range(3):
        Image.fromarray(rgb_array(i)).save(root / f"{i}.png")
    out = tmp_path / "n"
    run_corrupt(CorruptConfig(out, noises=("impulse",), inputs=(root,), format=OutputFormat.npy))
    assert np.load(out / "impulse_noise.npy").shape == (15, 20, 16, 3)
    assert (out / "files.txt").read_text().split() == ["0.png", "1.png", "2.png"]


def test_npy_needs_one_image_size_and_writes_nothing(tmp_path: Path, rgb_array):
    root = tmp_path / "mixed"
    root.mkdir()
    Image.fromarray(rgb_array(0)).save(root / "a.png")
    Image.fromarray(rgb_array(1, (9, 7))).save(root / "b.png")
    out = tmp_path / "n"
    with pytest.raises(LncliError, match="one image size"):
        run_corrupt(CorruptConfig(out, noises=("impulse",), inputs=(root,), format=OutputFormat.npy))
    assert not out.exists() or not list(out.iterdir())


def test_preview(sample_images: Path, tmp_path: Path):
    grid = tmp_path / "grid.png"
    recs = run_corrupt(CorruptConfig(tmp_path / "p", noises=("gaussian",), inputs=(sample_images,), preview=grid))
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 300  # 6 rows (clean + 5 severities)
    assert [(r.output, r.count, r.detail) for r in recs if r.detail == "preview"] == [(str(grid), 3, "preview")]


def test_run_corrupt_records(sample_images: Path, tmp_path: Path):
    cfg = CorruptConfig(
        out=tmp_path / "r",
        noises=("shot_noise",),
        severities=(0, 2),
        inputs=(sample_images,),
        format=OutputFormat.png,
        batch_size=2,
    )
    seen: list[tuple[int, int]] = []
    recs = run_corrupt(cfg, progress=lambda d, t: seen.append((d, t)))
    assert len(recs) == 3 * 2 and {r.noise for r in recs} == {"shot"} and {r.severity for r in recs} == {0, 2}
    assert seen[-1] == (6, 6)
    clean = read_image(tmp_path / "r" / "shot" / "0" / "a.png")
    assert torch.equal(clean, read_image(sample_images / "a.png"))  # severity 0 = clean copy


def test_dataset_images_go_to_class_folders(tmp_path: Path):
    out = tmp_path / "d"
    recs = run_corrupt(
        CorruptConfig(out, noises=("gaussian", "Gaussian_Noise"), severities=(2,), data="synthetic", limit=6)
    )
    ds = load_dataset("synthetic", split="test", limit=6)
    assert len(recs) == 6  # the alias is the same noise: written once
    for i in range(6):
        label = int(ds.labels[i])
        rel = Path(f"{label}_{ds.meta.classes[label]}") / f"{i:06d}.png"  # the index first: sorted = label order
        assert recs[i].output == str(out / "gaussian" / "2" / rel) and recs[i].source == f"synthetic[{i}]"
        assert torch.equal(
            read_image(out / "gaussian" / "2" / rel),
            corrupt(ds.images[i : i + 1], "gaussian", 2, seed=0, indices=[i])[0],
        )


def test_skipped_file_keeps_the_others_indices(sample_images: Path, tmp_path: Path):
    (sample_images / "0broken.png").write_bytes(b"\x89PNG not really")  # sorts first: global index 0
    out = tmp_path / "s"
    cfg = CorruptConfig(
        out, noises=("gaussian",), severities=(4,), inputs=(sample_images,), skip_unreadable=True, seed=2
    )
    recs = run_corrupt(cfg)
    skipped = [r for r in recs if r.status == "skipped"]
    assert len(skipped) == 1 and skipped[0].index == 0 and "0broken.png" in skipped[0].detail
    assert skipped[0].output == "" and skipped[0].count == 0
    want = corrupt(read_image(sample_images / "a.png")[None], "gaussian", 4, seed=2, indices=[1])[0]
    assert torch.equal(read_image(out / "gaussian" / "4" / "a.png"), want)  # a.png is still image 1
    with pytest.raises(LncliError, match="0broken.png"):
        run_corrupt(CorruptConfig(tmp_path / "t", noises=("gaussian",), inputs=(sample_images,)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_size_and_threads_do_not_change_the_bits(sample_images: Path, tmp_path: Path, seed: int):
    def run(name: str, batch_size: int, threads: int) -> dict[str, bytes]:
        out = tmp_path / name
        cfg = CorruptConfig(
            out,
            noises=("shot", "impulse"),
            severities=(1, 5),
            inputs=(sample_images,),
            seed=seed,
            batch_size=batch_size,
            num_threads=threads,
        )
        run_corrupt(cfg)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}

    one = run("one", 1, 1)
    assert len(one) == 12 and one == run("all", 256, 2)


def test_outputs_over_inputs_and_existing_outputs_are_refused(sample_images: Path, tmp_path: Path):
    cfg = CorruptConfig(tmp_path / "o", noises=("gaussian",), severities=(1,), inputs=(sample_images,))
    before = (sample_images / "a.png").read_bytes()
    with pytest.raises(OutputError, match="one of the input images"):
        run_corrupt(CorruptConfig(**{**cfg.__dict__, "preview": sample_images / "a.png", "overwrite": True}))
    assert (sample_images / "a.png").read_bytes() == before
    run_corrupt(cfg)
    target = tmp_path / "o" / "gaussian" / "1" / "a.png"
    written = target.read_bytes()
    with pytest.raises(LncliError, match="--overwrite"):
        run_corrupt(CorruptConfig(**{**cfg.__dict__, "seed": 9}))
    assert target.read_bytes() == written
