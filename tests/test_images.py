"""Tests for lncli.images: finding image files, decoding them to uint8 tensors, writing them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.config.corrupt import OutputFormat
from lncli.errors import LncliError
from lncli.images import IMAGE_FORMAT_SUFFIX, find_images, read_image, write_image


def test_read_image_modes(tmp_path: Path, rgb_array):
    """torchvision's ImageFolder rules: alpha dropped (never composited), 16-bit clipped at 255 as Pillow converts."""
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, :, 3] = 128  # half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert x.shape == (3, 4, 5)
    assert int(x[0, 0, 0]) == 200 and int(x[0, 1, 0]) == 200 and int(x[0, 2, 0]) == 200  # the colour as stored

    g16 = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 30).astype(np.uint16)  # 0..570
    Image.fromarray(g16).save(tmp_path / "g16.png")
    y = read_image(tmp_path / "g16.png")
    assert y.shape == (1, 4, 5) and y.dtype == torch.uint8
    assert torch.equal(y[0], torch.from_numpy(np.minimum(g16, 255).astype(np.uint8)))  # clipped, not rescaled

    pal = Image.fromarray(rgb_array(0)).convert("P")
    pal.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (3, 20, 16)

    with pytest.raises(LncliError, match="cannot read image"):
        (tmp_path / "bad.jpg").write_bytes(b"nope")
        read_image(tmp_path / "bad.jpg")


def test_decompression_bomb_is_an_unreadable_file(sample_images: Path, monkeypatch: pytest.MonkeyPatch):
    # Pillow raises DecompressionBombError (not an OSError) above 2 x MAX_IMAGE_PIXELS: it must be
    # the usual one-line "cannot read image" error (or a skipped file), not a traceback.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 20x16 test image is 320 px > 2 x 100
    with pytest.raises(LncliError, match="cannot read image"):
        read_image(sample_images / "a.png")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_read_image_alpha_and_wide_gray_by_hand(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    la = rng.integers(0, 256, (6, 7, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    got = read_image(tmp_path / "la.png")
    assert got.shape == (1, 6, 7) and torch.equal(got[0], torch.from_numpy(la[..., 0]))  # the grey, alpha dropped

    wide = rng.integers(-70000, 140000, (6, 7)).astype(np.int32)  # 32-bit grey: clipped to 0..255
    Image.fromarray(wide, "I").save(tmp_path / "i32.tif")
    assert torch.equal(read_image(tmp_path / "i32.tif")[0], torch.from_numpy(np.clip(wide, 0, 255).astype(np.uint8)))


def test_read_image_bilevel_palette_alpha_cmyk_and_float(tmp_path: Path, rgb_array):
    bits = np.random.default_rng(3).integers(0, 2, (5, 8)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")  # mode "1"
    got = read_image(tmp_path / "bits.png")
    assert got.shape == (1, 5, 8) and torch.equal(got[0], torch.from_numpy(bits.astype(np.uint8) * 255))

    pal = Image.fromarray(rgb_array(4, (5, 8))).convert("P")
    clear = int(np.array(pal)[0, 0])  # this palette entry is marked transparent: ImageFolder keeps its colour
    pal.save(tmp_path / "palt.png", transparency=clear)
    with Image.open(tmp_path / "palt.png") as im:
        idx = np.array(im)  # (H, W) palette indices
        palette = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)  # (entries, 3)
    assert 0 < (idx == clear).sum() < idx.size and palette[clear].any()  # the test can tell black from colour
    assert torch.equal(read_image(tmp_path / "palt.png"), torch.from_numpy(palette[idx].transpose(2, 0, 1)))

    cmyk = Image.fromarray(rgb_array(5, (5, 8))).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.tif")
    want = np.array(Image.open(tmp_path / "cmyk.tif").convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(read_image(tmp_path / "cmyk.tif"), torch.from_numpy(want))

    floats = np.array([[-3.0, 0.4, 12.6, 300.0]], np.float32)
    Image.fromarray(floats, "F").save(tmp_path / "float.tif")  # one channel, clipped and truncated as Pillow does
    assert read_image(tmp_path / "float.tif").tolist() == [[[0, 0, 12, 255]]]


def test_find_images_sorted_relative_and_filtered(sample_images: Path, rgb_array):
    Image.fromarray(rgb_array(9)).save(sample_images / "C.PNG")  # suffixes match in any case
    single = sample_images.parent / "single.bmp"
    Image.fromarray(rgb_array(8)).save(single)
    pairs = find_images([sample_images, single])
    assert [rel.as_posix() for _, rel in pairs] == ["C.PNG", "a.png", "sub/b.png", "sub/gray.png", "single.bmp"]
    assert [src for src, _ in pairs] == [sample_images / r for r in ("C.PNG", "a.png", "sub/b.png", "sub/gray.png")] + [
        single
    ]


def test_find_images_errors(tmp_path: Path, sample_images: Path):
    with pytest.raises(LncliError, match="nope.png does not exist"):
        find_images([tmp_path / "nope.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LncliError, match="no image files"):
        find_images([tmp_path / "empty"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.png").write_bytes((sample_images / "a.png").read_bytes())
    with pytest.raises(LncliError, match="would both be written as a.png"):
        find_images([sample_images, other])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_write_image_png_round_trips_exactly(tmp_path: Path, rgb_array, seed: int):
    rgb = torch.from_numpy(rgb_array(seed)).permute(2, 0, 1).contiguous()  # (3, H, W)
    gray = rgb[:1].clone()  # (1, H, W)
    for name, img in (("rgb.png", rgb), ("gray.png", gray)):
        write_image(img, tmp_path / name, fmt=OutputFormat.png)
        assert torch.equal(read_image(tmp_path / name), img), name
    with Image.open(tmp_path / "gray.png") as im:
        assert im.mode == "L"  # one channel stays one channel on disk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "rgb.png"]  # no temporary leftovers


def test_write_image_jpeg_uses_the_quality(tmp_path: Path):
    # A smooth image: JPEG's error shrinks as quality grows; the default quality is ImageNet-C's 85.
    ramp = torch.arange(64, dtype=torch.float64)
    img = (ramp[None, :, None] * 2 + ramp[None, None, :] + torch.tensor([0.0, 40.0, 80.0])[:, None, None]).clamp(0, 255)
    img = img.to(torch.uint8)  # (3, 64, 64)
    errors = {}
    for q in (10, 95):
        path = tmp_path / f"q{q}{IMAGE_FORMAT_SUFFIX[OutputFormat.jpeg]}"
        write_image(img, path, fmt=OutputFormat.jpeg, jpeg_quality=q)
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (64, 64)
        errors[q] = (read_image(path).double() - img.double()).abs().mean().item()
    assert errors[95] < 2.0 < errors[10], errors
    write_image(img, tmp_path / "default.jpg", fmt=OutputFormat.jpeg)
    write_image(img, tmp_path / "q85.jpg", fmt=OutputFormat.jpeg, jpeg_quality=85)
    assert (tmp_path / "default.jpg").read_bytes() == (tmp_path / "q85.jpg").read_bytes()


def test_write_image_refuses_a_non_image_format(tmp_path: Path):
    with pytest.raises(ValueError, match="not npy"):
        write_image(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "x.npy", fmt=OutputFormat.npy)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- reading for a model (DataLoader workers)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16", "P"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_image_is_read_image_then_channels(tmp_path: Path, mode: str, channels: int) -> None:
    """At the file's own size, decode_image = read_image's mode rules, then convert_channels (Pillow's luma)."""
    from lncli.images import convert_channels, decode_image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    img = {
        "RGB": img.convert("RGB"),
        "L": img.convert("L"),
        "RGBA": img,
        "I;16": Image.fromarray(rng.integers(0, 65536, (9, 13), dtype=np.uint16)),
        "P": img.convert("RGB").convert("P"),
    }[mode]
    path = tmp_path / "x.png"
    img.save(path)
    got = decode_image(path, channels=channels, image_size=(9, 13), resize=9, interpolation="bilinear")
    assert torch.equal(got, convert_channels(read_image(path)[None], channels)[0])


def test_decode_image_resizes_the_short_side_and_crops_the_centre(tmp_path: Path) -> None:
    from lncli.images import decode_image

    arr = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    got = decode_image(tmp_path / "x.png", channels=3, image_size=(16, 16), resize=20, interpolation="bicubic")
    # torchvision's Resize(20): 30x50 -> 20x33; CenterCrop(16): rows 2..18, columns round((33 - 16) / 2) = 8..24.
    ref = np.asarray(Image.fromarray(arr).resize((33, 20), Image.Resampling.BICUBIC))[2:18, 8:24]
    assert torch.equal(got, torch.from_numpy(ref.copy()).permute(2, 0, 1))


def test_check_image_header_is_one_line_or_none(tmp_path: Path, rgb_array) -> None:
    from lncli.images import check_image_header

    Image.fromarray(rgb_array(0)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10))
    assert check_image_header(tmp_path / "ok.png") is None
    reason = check_image_header(tmp_path / "bad.png")
    assert reason is not None and reason.startswith(f"cannot read image {tmp_path / 'bad.png'}") and "\n" not in reason
