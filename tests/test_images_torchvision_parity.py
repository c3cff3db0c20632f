"""Image folders read as torchvision's ``ImageFolder`` reads them: the same files, order, mode conversions and pixels.

A class folder holds every mode that used to be read differently (RGBA, LA, a palette with and
without transparency, 16-bit grey, CMYK), a ``.gif`` (which ``ImageFolder`` does not list) and a
subfolder (its files come after the class folder's own, as ``ImageFolder``'s sorted walk puts them).
lncli's listing, its decoder for a model (evaluate's streamed folders, ImageNet-C cells) and
``load_imagefolder`` (train, corrupt) must give what ``ImageFolder`` gives with the equivalent
transform: ``Resize`` + ``CenterCrop`` + ``PILToTensor`` (and ``Grayscale()`` first for one channel).
The tensors are uint8 and compared exactly: both sides call Pillow with the same arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lncli.data import DataMeta
from lncli.data.imagefolder import list_image_folder, load_imagefolder
from lncli.images import IMAGE_SUFFIXES, decode_image
from lncli.jobs.evaluate.loaders import ImageFiles


@pytest.fixture()
def every_mode(tmp_path: Path) -> Path:
    """``root/<class>/...`` with one file per Pillow mode, a ``.gif`` and a nested folder."""
    rng = np.random.default_rng(0)

    def rgba(h: int, w: int) -> Image.Image:
        arr = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        arr[: h // 2, :, 3] = 0  # half the image fully transparent: compositing would turn it black
        return Image.fromarray(arr, "RGBA")

    a, b = tmp_path / "ants", tmp_path / "bees"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    rgba(21, 34).save(a / "rgba.png")
    rgba(26, 19).convert("LA").save(a / "la.png")
    rgba(23, 23).convert("RGB").convert("P").save(a / "palette.png")
    pal = rgba(30, 22).convert("RGB").convert("P")
    pal.save(a / "palette_alpha.png", transparency=int(np.array(pal)[0, 0]))
    Image.fromarray(rng.integers(0, 65536, (25, 31), dtype=np.uint16)).save(b / "gray16.png")
    rgba(27, 40).convert("RGB").convert("CMYK").save(b / "cmyk.tif")
    rgba(20, 20).convert("RGB").save(b / "plain.jpg", quality=90)
    rgba(24, 28).convert("L").save(b / "gray.png")
    rgba(22, 26).convert("RGB").save(a / "zz_last.png")  # the class folder's own files come before sub/
    rgba(22, 26).convert("RGB").save(a / "sub" / "aa_first.png")
    rgba(20, 20).convert("RGB").save(b / "anim.gif")  # ImageFolder does not list .gif
    (b / "notes.txt").write_text("not an image")
    return tmp_path


def _reference(root: Path, size: int, resize: int, channels: int) -> tuple[list[str], torch.Tensor, list[int]]:
    """torchvision's own: ImageFolder with the default loader, and the transform a user would write."""
    from torchvision import datasets, transforms

    steps = [transforms.Grayscale()] if channels == 1 else []
    steps += [transforms.Resize(resize), transforms.CenterCrop(size), transforms.PILToTensor()]
    folder = datasets.ImageFolder(str(root), transform=transforms.Compose(steps))
    images = torch.stack([folder[i][0] for i in range(len(folder))])  # (N, C, size, size) uint8
    return [p for p, _ in folder.samples], images, list(folder.targets)


def test_suffixes_are_torchvisions() -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    assert tuple(IMAGE_SUFFIXES) == tuple(IMG_EXTENSIONS) and ".gif" not in IMAGE_SUFFIXES


@pytest.mark.parametrize("channels", [3, 1])
def test_folder_reads_as_torchvision_image_folder(every_mode: Path, channels: int) -> None:
    paths, want, targets = _reference(every_mode, 16, 18, channels)
    listing = list_image_folder(every_mode, "test")
    assert [str(f) for f in listing.files] == paths and list(listing.targets) == targets  # 10 files, no .gif
    assert len(listing) == 10 and listing.classes == ("ants", "bees")
    got = torch.stack(
        [
            decode_image(f, channels=channels, image_size=(16, 16), resize=18, interpolation="bilinear")
            for f in listing.files
        ]
    )
    assert got.shape == want.shape and torch.equal(got, want), f"max error {(got.int() - want.int()).abs().max()}"
    # evaluate's streamed reader: the same pixels through the DataLoader path
    meta = DataMeta("imagefolder", 2, channels, (16, 16), (0.5,) * channels, (0.5,) * channels, resize=18)
    assert torch.equal(ImageFiles(listing.files, meta).read(torch.arange(len(listing))), want)


def test_load_imagefolder_is_torchvisions(every_mode: Path) -> None:
    """The in-memory loader (train, corrupt): Resize(size) + CenterCrop(size), RGB."""
    _, want, targets = _reference(every_mode, 20, 20, 3)
    data = load_imagefolder(every_mode, "test", limit=None, image_size=20)
    assert torch.equal(data.images, want) and data.labels.tolist() == targets
