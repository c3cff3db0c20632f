"""Tests for ``lncli corrupt`` and lncli.imageio (file I/O around the noise engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lncli.cli import app
from lncli.corruptions import corrupt, parse_severities
from lncli.errors import LncliError
from lncli.imageio import CorruptConfig, OutputFormat, read_image, run_corrupt

runner = CliRunner()


def _rgb(seed: int, size: tuple[int, int] = (20, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(0)).save(root / "a.png")
    Image.fromarray(_rgb(1)).save(root / "sub" / "b.png")
    Image.fromarray(_rgb(2)[..., 0]).save(root / "sub" / "gray.png")  # mode L, 1 channel
    (root / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    return root


def _invoke(*args: str):
    return runner.invoke(app, ["corrupt", *args])


def _one_error_line(result) -> str:
    out = result.output.strip()
    assert result.exit_code == 2, result.output
    assert out.count("\n") == 0 and out.startswith("error:"), out
    return out


def test_folder_keeps_relative_paths(image_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    r = _invoke(str(image_dir), "--noise", "gaussian,impulse", "--severity", "1,3", "--out", str(out), "--seed", "3")
    assert r.exit_code == 0, r.output
    for noise in ("gaussian", "impulse"):
        for sev in ("1", "3"):
            assert (out / noise / sev / "a.png").is_file()
            assert (out / noise / sev / "sub" / "b.png").is_file()
            assert (out / noise / sev / "sub" / "gray.png").is_file()
    assert not (out / "gaussian" / "2").exists()
    # Written pixels are exactly corrupt() of the read image at its global (sorted) index.
    files = ["a.png", "sub/b.png", "sub/gray.png"]
    for i, rel in enumerate(files):
        x = read_image(image_dir / rel)
        want = corrupt(x[None], "gaussian", 3, seed=3, indices=[i])[0]
        got = read_image(out / "gaussian" / "3" / rel)
        assert torch.equal(got, want), rel
    assert read_image(out / "gaussian" / "1" / "sub" / "gray.png").shape[0] == 1  # grayscale stays 1 channel
    assert not list(out.rglob(".*.tmp*"))  # no temporary leftovers


def test_single_file_and_jpeg(image_dir: Path, tmp_path: Path):
    out = tmp_path / "o"
    r = _invoke(str(image_dir / "a.png"), "--noise", "shot", "--severity", "2", "--out", str(out), "--format", "jpeg", "--jpeg-quality", "90")
    assert r.exit_code == 0, r.output
    assert (out / "shot" / "2" / "a.jpg").is_file()
    with Image.open(out / "shot" / "2" / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 20)


def test_npy_layout_from_dataset(tmp_path: Path):
    out = tmp_path / "c"
    r = _invoke("--data", "synthetic", "--limit", "12", "--noise", "gaussian,shot", "--severity", "1-5", "--format", "npy", "--out", str(out))
    assert r.exit_code == 0, r.output
    from lncli.data import load_dataset

    ds = load_dataset("synthetic", split="test", limit=12)
    arr = np.load(out / "gaussian_noise.npy")
    labels = np.load(out / "labels.npy")
    n = len(ds)
    c, h, w = ds.images.shape[1:]
    assert arr.dtype == np.uint8 and arr.shape == (5 * n, h, w, c)
    assert labels.shape == (5 * n,) and (labels[:n] == ds.labels.numpy()).all() and (labels[n:2 * n] == labels[:n]).all()
    for sev in (1, 5):  # severities stacked 1..5 in order
        want = corrupt(ds.images, "gaussian", sev, seed=0).permute(0, 2, 3, 1).numpy()
        assert (arr[(sev - 1) * n : sev * n] == want).all()
    assert (out / "shot_noise.npy").is_file()


def test_npy_needs_all_severities(image_dir: Path, tmp_path: Path):
    _one_error_line(_invoke(str(image_dir / "a.png"), "--format", "npy", "--severity", "1,2", "--out", str(tmp_path / "x")))


def test_npy_from_files_writes_file_list(tmp_path: Path):
    root = tmp_path / "same"
    root.mkdir()
    for i in range(3):
        Image.fromarray(_rgb(i)).save(root / f"{i}.png")
    out = tmp_path / "n"
    r = _invoke(str(root), "--noise", "impulse", "--format", "npy", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert np.load(out / "impulse_noise.npy").shape == (15, 20, 16, 3)
    assert (out / "files.txt").read_text().split() == ["0.png", "1.png", "2.png"]


def test_preview(image_dir: Path, tmp_path: Path):
    grid = tmp_path / "grid.png"
    r = _invoke(str(image_dir), "--noise", "gaussian", "--severity", "1-5", "--out", str(tmp_path / "p"), "--preview", str(grid))
    assert r.exit_code == 0, r.output
    with Image.open(grid) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 300  # 6 rows (clean + 5 severities)


def test_overwrite_refused_then_allowed(image_dir: Path, tmp_path: Path):
    out = tmp_path / "ow"
    args = [str(image_dir), "--noise", "gaussian", "--severity", "1", "--out", str(out)]
    assert _invoke(*args).exit_code == 0
    target = out / "gaussian" / "1" / "a.png"
    before = target.read_bytes()
    msg = _one_error_line(_invoke(*args, "--seed", "9"))
    assert "--overwrite" in msg
    assert target.read_bytes() == before  # untouched
    r = _invoke(*args, "--seed", "9", "--overwrite")
    assert r.exit_code == 0, r.output
    assert target.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--noise", "pink"], "gaussian, shot, impulse"),
        (["--severity", "6"], "0..5"),
        (["--severity", "3-1"], "range"),
        (["--severity", "x"], "severity"),
        (["--jpeg-quality", "0"], "jpeg-quality"),
        (["--data", "synthetic"], "not both"),
    ],
)
def test_bad_inputs_one_line(image_dir: Path, tmp_path: Path, args: list[str], needle: str):
    msg = _one_error_line(_invoke(str(image_dir), "--out", str(tmp_path / "b"), *args))
    assert needle in msg


def test_missing_input_one_line(tmp_path: Path):
    msg = _one_error_line(_invoke(str(tmp_path / "nope.png"), "--out", str(tmp_path / "m")))
    assert "nope.png" in msg and "does not exist" in msg


def test_unknown_profile_rejected(image_dir: Path, tmp_path: Path):
    r = _invoke(str(image_dir), "--profile", "imagenet", "--out", str(tmp_path / "b"))
    assert r.exit_code == 2


def test_unreadable_file(image_dir: Path, tmp_path: Path):
    (image_dir / "broken.png").write_bytes(b"\x89PNG not really")
    msg = _one_error_line(_invoke(str(image_dir), "--out", str(tmp_path / "u"), "--noise", "gaussian", "--severity", "1"))
    assert "broken.png" in msg
    r = _invoke(str(image_dir), "--out", str(tmp_path / "v"), "--noise", "gaussian", "--severity", "1", "--skip-unreadable")
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "broken.png" in r.output
    assert (tmp_path / "v" / "gaussian" / "1" / "sub" / "b.png").is_file()


def test_read_image_modes(tmp_path: Path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, :, 3] = 128  # half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert x.shape == (3, 4, 5)
    assert int(x[0, 0, 0]) == 200 and int(x[0, 1, 0]) == 100 and int(x[0, 2, 0]) == 0  # composited on black

    g16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    y = read_image(tmp_path / "g16.png")
    assert y.shape == (1, 4, 5) and y.dtype == torch.uint8
    assert torch.equal(y[0], torch.from_numpy(np.rint(g16.astype(np.float64) * 255 / 65535).astype(np.uint8)))

    pal = Image.fromarray(_rgb(0)).convert("P")
    pal.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (3, 20, 16)

    with pytest.raises(LncliError, match="cannot read image"):
        (tmp_path / "bad.jpg").write_bytes(b"nope")
        read_image(tmp_path / "bad.jpg")


def test_run_corrupt_records(image_dir: Path, tmp_path: Path):
    cfg = CorruptConfig(out=tmp_path / "r", noises=("shot_noise",), severities=(0, 2), inputs=(image_dir,), format=OutputFormat.png, batch_size=2)
    seen: list[tuple[int, int]] = []
    recs = run_corrupt(cfg, progress=lambda d, t: seen.append((d, t)))
    assert len(recs) == 3 * 2 and {r.noise for r in recs} == {"shot"} and {r.severity for r in recs} == {0, 2}
    assert seen[-1] == (6, 6)
    clean = read_image(tmp_path / "r" / "shot" / "0" / "a.png")
    assert torch.equal(clean, read_image(image_dir / "a.png"))  # severity 0 = clean copy


@pytest.mark.parametrize(
    ("spec", "want"),
    [("1-5", (1, 2, 3, 4, 5)), ("1,3,5", (1, 3, 5)), ("0-2,5", (0, 1, 2, 5)), ("3", (3,)), ("5,1,1", (1, 5))],
)
def test_parse_severities(spec: str, want: tuple[int, ...]):
    assert parse_severities(spec) == want


def test_inputs_differing_only_in_suffix_are_refused_not_overwritten(tmp_path: Path):
    # a.png and a.bmp both map to OUT/<noise>/<sev>/a.png: the second silently replaced the first.
    src = tmp_path / "dup"
    src.mkdir()
    Image.fromarray(_rgb(0)).save(src / "a.png")
    Image.fromarray(_rgb(1)).save(src / "a.bmp")
    out = tmp_path / "o"
    msg = _one_error_line(_invoke(str(src), "--noise", "gaussian", "--severity", "1", "--out", str(out)))
    assert "a.png" in msg
    assert not out.exists()  # refused before anything was written


def test_bad_preview_suffix_fails_before_writing(image_dir: Path, tmp_path: Path):
    out = tmp_path / "o"
    msg = _one_error_line(_invoke(str(image_dir), "--noise", "gaussian", "--severity", "1", "--out", str(out),
                                  "--preview", str(tmp_path / "grid.txt")))  # fmt: skip
    assert "grid.txt" in msg and "png" in msg
    assert not out.exists()


def test_out_that_is_a_file_one_line(image_dir: Path, tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    msg = _one_error_line(_invoke(str(image_dir), "--noise", "gaussian", "--severity", "1", "--out", str(f)))
    assert "not a folder" in msg


def test_decompression_bomb_is_an_unreadable_file(image_dir: Path, monkeypatch: pytest.MonkeyPatch):
    # Pillow raises DecompressionBombError (not an OSError) above 2 x MAX_IMAGE_PIXELS: it must be
    # the usual one-line "cannot read image" error (or a skipped file), not a traceback.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 20x16 test image is 320 px > 2 x 100
    with pytest.raises(LncliError, match="cannot read image"):
        read_image(image_dir / "a.png")
