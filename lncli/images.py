"""Image files in and out: finding them in folders, decoding them to uint8 tensors, writing them back.

Reading (Pillow). Every image becomes uint8 (C, H, W) with C = 1 or 3:

* ``L`` / ``1`` (grayscale, bilevel) -> 1 channel; ``RGB`` -> 3 channels;
* ``P`` (palette) -> RGB, or RGBA when the palette has transparency (then as RGBA);
* ``RGBA`` / ``LA`` / ``PA`` -> **alpha composited onto black** (colour x alpha/255),
  so fully transparent pixels become black and no alpha channel is kept; the
  noise then sees exactly the pixels a viewer on a black background sees;
* 16-bit grayscale (``I;16*``, ``I``) -> 8-bit by ``round(v * 255 / 65535)``
  (values clipped to 0..65535). Pillow already reduces 16-bit RGB PNGs to 8 bits;
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` -> RGB; float (``F``) images are refused.

A file that Pillow cannot decode raises :class:`LncliError` naming it.
:func:`read_image` is a pure function of the path (no state, no globals written),
so it can run in DataLoader worker processes.

Reading for a model (:func:`decode_image`, run in DataLoader workers): after the mode rules,
the image is converted to the channels the model takes (RGB -> L by Pillow's ITU-R 601-2
luma, L -> RGB by copying), resized so that its short side is ``resize`` and centre-cropped
(:func:`resize_crop`, torchvision's ``Resize`` + ``CenterCrop``, antialiased). The same two
steps exist for uint8 tensors (:func:`convert_channels`, :func:`resize_crop`), for data held
in memory. :func:`check_image_header` opens a file's header only: the cheap check of a
whole folder before a sweep.

Writing. :func:`write_image` goes through :func:`lncli.io.atomic_path`, so a file
is never half written: ``png`` (lossless) or ``jpeg`` (quality
:data:`~lncli.config.corrupt.DEFAULT_JPEG_QUALITY` unless given), with the
suffixes in :data:`IMAGE_FORMAT_SUFFIX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import Tensor

from lncli.config.corrupt import DEFAULT_JPEG_QUALITY, OutputFormat
from lncli.errors import LncliError
from lncli.io import atomic_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "IMAGE_FORMAT_SUFFIX",
    "IMAGE_SUFFIXES",
    "check_image_header",
    "convert_channels",
    "decode_image",
    "find_images",
    "read_image",
    "resize_crop",
    "write_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
"""Suffixes (lower case) that :func:`find_images` picks up in folders."""

IMAGE_FORMAT_SUFFIX: dict[OutputFormat, str] = {OutputFormat.png: ".png", OutputFormat.jpeg: ".jpg"}
"""The formats :func:`write_image` writes, and the suffix their files get."""


def find_images(inputs: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(path, relative output path)`` pairs.

    Folders are searched recursively for :data:`IMAGE_SUFFIXES` (case-insensitive)
    and their files keep their path relative to the folder; a file given directly
    keeps its name. The order is sorted, so global indices (and hence noise) are stable.

    Args:
        inputs: image files and folders, in the order given.

    Returns:
        ``(source path, relative path)`` per image: each folder's files sorted, folders in input order.

    Raises:
        LncliError: a missing input, an empty result, or two inputs mapping to one output.
    """
    pairs: list[tuple[Path, Path]] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            pairs.extend((f, f.relative_to(p)) for f in files)
        elif p.is_file():
            pairs.append((p, Path(p.name)))
        else:
            raise LncliError(f"input {raw} does not exist")
    if not pairs:
        raise LncliError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        if rel in seen:
            raise LncliError(f"{src} and {seen[rel]} would both be written as {rel}; pass them separately")
        seen[rel] = src
    return pairs


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot decode (UnidentifiedImageError is an OSError)."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: Path) -> Tensor:
    """Read one image file as uint8 (C, H, W), C in {1, 3} (see the module docstring for modes).

    Args:
        path: the image file.

    Returns:
        A new uint8 CPU tensor (C, H, W).

    Raises:
        LncliError: the file cannot be decoded, or has an unsupported mode.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_tensor(_as_l_or_rgb(im))
    except _decode_errors() as exc:
        raise LncliError(f"cannot read image {path}: {exc}") from None


def decode_image(path: Path, *, channels: int, image_size: tuple[int, int], resize: int, interpolation: str) -> Tensor:
    """Read one image file as a model takes it: uint8 (channels, H, W) = ``image_size``.

    The mode rules of the module docstring, then :func:`convert_channels`'s rule (in Pillow),
    then :func:`resize_crop`. A pure function of its arguments, for DataLoader workers.

    Args:
        path: the image file.
        channels: 1 (L) or 3 (RGB).
        image_size: (H, W) of the centre crop.
        resize: the short side before the crop.
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.

    Returns:
        A new uint8 CPU tensor (channels, H, W).

    Raises:
        LncliError: the file cannot be decoded, or has an unsupported mode.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            pil = _as_l_or_rgb(im)
            if channels == 1 and pil.mode == "RGB":
                pil = pil.convert("L")  # ITU-R 601-2 luma, as convert_channels does on tensors
            elif channels == 3 and pil.mode == "L":
                pil = pil.convert("RGB")
            return _pil_to_tensor(resize_crop(pil, image_size, resize, interpolation))
    except _decode_errors() as exc:
        raise LncliError(f"cannot read image {path}: {exc}") from None


def check_image_header(path: Path) -> str | None:
    """Open a file's image header (no pixel decoding): the cheap check of a folder before a sweep.

    Args:
        path: the file.

    Returns:
        None when Pillow recognises an image of positive size, else the one-line reason.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except _decode_errors() as exc:
        return f"cannot read image {path}: {exc}"
    if w < 1 or h < 1:
        return f"cannot read image {path}: it is {w}x{h} pixels"
    return None


Img = TypeVar("Img")  # a Pillow image or a uint8 tensor (..., C, H, W)


def resize_crop(img: Img, image_size: tuple[int, int], resize: int, interpolation: str) -> Img:
    """torchvision's ``Resize(resize)`` then ``CenterCrop(image_size)``, antialiased, on Pillow or tensors.

    The short side becomes ``resize`` (the long side ``int(resize * long / short)``, torchvision's
    rule); an image already that size is not resampled. On tensors, ``nearest`` picks Pillow's
    pixels and ``bilinear`` is within one grey level of Pillow's; ``bicubic`` differs by a few
    (torch's cubic kernel is not Pillow's): tests/test_data_preprocess.py measures both.

    Args:
        img: a Pillow image, or a uint8 tensor (..., C, H, W).
        image_size: (H, W) of the crop.
        resize: the short side before the crop (>= the crop's sides).
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.

    Returns:
        The same kind of image, ``image_size`` large.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    w, h = _width_height(img)
    if min(w, h) != resize:
        mode = InterpolationMode(interpolation)
        if mode == InterpolationMode.NEAREST and isinstance(img, Tensor):
            mode = InterpolationMode.NEAREST_EXACT  # Pillow's nearest (pixel centres); torch's plain one floors
        img = TF.resize(img, [resize], interpolation=mode, antialias=True)
        w, h = _width_height(img)
    if (h, w) != tuple(image_size):
        img = TF.center_crop(img, list(image_size))
    return img


def _width_height(img: object) -> tuple[int, int]:
    """(W, H) of a Pillow image or a (..., H, W) tensor."""
    if isinstance(img, Tensor):
        return int(img.shape[-1]), int(img.shape[-2])
    w, h = img.size  # type: ignore[attr-defined]
    return int(w), int(h)


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """uint8 (B, C, H, W) as ``channels`` channels: L -> RGB copies, RGB -> L is Pillow's ITU-R 601-2 luma.

    The luma is Pillow's own integer formula, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, so
    in-memory data and image files (converted by Pillow) give the same pixels.

    Args:
        images: uint8 (B, C, H, W), C in {1, 3}.
        channels: 1 or 3.

    Returns:
        uint8 (B, channels, H, W); the input itself when C already equals ``channels``.
    """
    c = int(images.shape[1])
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()  # (B, 3, H, W)
    if c == 3 and channels == 1:
        w = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        luma = (images.to(torch.int32) * w).sum(dim=1, keepdim=True).add_(1 << 15).bitwise_right_shift_(16)
        return luma.to(torch.uint8)  # (B, 1, H, W)
    raise LncliError(f"cannot convert {c}-channel images to {channels} channels (1 and 3 are supported)")


def _as_l_or_rgb(im: PILImage) -> PILImage:
    """A decoded Pillow image in mode L or RGB, by the mode rules of the module docstring."""
    from PIL import Image

    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    mode = im.mode
    if mode.startswith("I"):  # 16-bit (I;16, I;16B, ...) or 32-bit integer grayscale
        wide = np.asarray(im, dtype=np.float64)  # (H, W)
        return Image.fromarray(np.rint(np.clip(wide, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8), "L")
    if mode in ("L", "RGB"):
        im.load()
        return im
    if mode in ("RGBA", "LA"):
        a = np.array(im, dtype=np.float64)  # (H, W, 4 or 2)
        rgb = np.rint(a[..., :-1] * (a[..., -1:] / 255.0)).astype(np.uint8)  # composite on black
        return Image.fromarray(rgb[..., 0], "L") if mode == "LA" else Image.fromarray(rgb, "RGB")
    raise LncliError(f"unsupported image mode {mode!r} (float or exotic images are not handled)")


def _pil_to_tensor(im: PILImage) -> Tensor:
    """A Pillow image in mode L or RGB as uint8 (C, H, W)."""
    arr = np.array(im, dtype=np.uint8)
    if arr.ndim == 2:
        return torch.from_numpy(arr[None])  # (1, H, W)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, H, W)


def write_image(image: Tensor, path: Path, *, fmt: OutputFormat, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> None:
    """Write uint8 (C, H, W), C in {1, 3}, atomically as PNG or JPEG.

    Args:
        image: uint8 (C, H, W) on any device.
        path: the file to write (its suffix is not checked; see :data:`IMAGE_FORMAT_SUFFIX`).
        fmt: ``png`` or ``jpeg``.
        jpeg_quality: 1..100, used for ``jpeg`` only.

    Raises:
        ValueError: ``fmt`` is not an image format (``npy``).
    """
    from PIL import Image

    fmt = OutputFormat(fmt)
    if fmt not in IMAGE_FORMAT_SUFFIX:
        raise ValueError(f"write_image writes {', '.join(f.value for f in IMAGE_FORMAT_SUFFIX)}, not {fmt.value}")
    arr = image.detach().cpu().numpy()
    pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    with atomic_path(path) as tmp:
        if fmt == OutputFormat.jpeg:
            pil.save(tmp, format="JPEG", quality=jpeg_quality)
        else:
            pil.save(tmp, format="PNG")
