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

Writing. :func:`write_image` goes through :func:`lncli.io.atomic_path`, so a file
is never half written: ``png`` (lossless) or ``jpeg`` (quality
:data:`~lncli.config.corrupt.DEFAULT_JPEG_QUALITY` unless given), with the
suffixes in :data:`IMAGE_FORMAT_SUFFIX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lncli.config.corrupt import DEFAULT_JPEG_QUALITY, OutputFormat
from lncli.errors import LncliError
from lncli.io import atomic_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["IMAGE_FORMAT_SUFFIX", "IMAGE_SUFFIXES", "find_images", "read_image", "write_image"]

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


def read_image(path: Path) -> Tensor:
    """Read one image file as uint8 (C, H, W), C in {1, 3} (see the module docstring for modes).

    Args:
        path: the image file.

    Returns:
        A new uint8 CPU tensor (C, H, W).

    Raises:
        LncliError: the file cannot be decoded, or has an unsupported mode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_tensor(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise LncliError(f"cannot read image {path}: {exc}") from None


def _pil_to_tensor(im: PILImage) -> Tensor:
    """A decoded Pillow image as uint8 (C, H, W), by the mode rules of the module docstring."""
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
        return torch.from_numpy(
            np.rint(np.clip(wide, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)[None]
        )  # (1, H, W)
    if mode == "L":
        return torch.from_numpy(np.array(im, dtype=np.uint8)[None])  # (1, H, W)
    if mode == "RGB":
        return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, H, W)
    if mode in ("RGBA", "LA"):
        a = np.array(im, dtype=np.float64)  # (H, W, 4 or 2)
        rgb = np.rint(a[..., :-1] * (a[..., -1:] / 255.0)).astype(np.uint8)  # composite on black
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    raise LncliError(f"unsupported image mode {mode!r} (float or exotic images are not handled)")


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
