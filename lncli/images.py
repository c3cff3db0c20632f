"""Image files in and out: finding them in folders, decoding them to uint8 tensors, writing them back.

Reading (Pillow) follows torchvision's ``ImageFolder``, whose default loader is
``Image.open(path).convert("RGB")``: every mode goes through Pillow's own conversion, so

* ``RGBA`` / ``LA`` / ``PA`` and a palette's transparency **drop the alpha** (the colour is kept
  as stored, not composited onto any background);
* ``P`` (palette) takes its palette colours; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` become RGB;
* 16-bit and 32-bit grayscale (``I;16*``, ``I``) and float (``F``) are **clipped** to 0..255,
  as Pillow converts them (a 16-bit PNG that uses its full range reads mostly white, as in
  ``ImageFolder``);
* only files with torchvision's suffixes (:data:`IMAGE_SUFFIXES`, ``IMG_EXTENSIONS``) are listed:
  no ``.gif``.

:func:`read_image` keeps a grayscale file (:data:`GRAY_MODES`) as one channel (Pillow's
``convert("L")``, which equals ``convert("RGB")`` then ``convert("L")`` for these modes) and
reads every other file as RGB: it is ``lncli corrupt``'s reader, whose outputs keep the
input's channel count. A file that Pillow cannot decode raises :class:`LncliError` naming it.
:func:`read_image` is a pure function of the path (no state, no globals written),
so it can run in DataLoader worker processes.

Reading for a model (:func:`decode_image`, run in DataLoader workers): ``convert("RGB")`` as
``ImageFolder`` does, then ``convert("L")`` for a one-channel model (Pillow's ITU-R 601-2 luma:
torchvision's ``Grayscale()``), then :func:`resize_crop`: the crop of one of timm's crop modes
(:data:`~lncli.config.common.CROP_MODES`; ``center`` is torchvision's ``Resize`` +
``CenterCrop``), antialiased. The same two steps exist for uint8 tensors
(:func:`convert_channels`, :func:`resize_crop`), for data held in memory.
:func:`check_image_header` opens a file's header only: the cheap check of a whole folder
before a sweep.

Writing. :func:`write_image` goes through :func:`lncli.io.atomic_path`, so a file
is never half written: ``png`` (lossless) or ``jpeg`` (quality
:data:`~lncli.config.corrupt.DEFAULT_JPEG_QUALITY` unless given), with the
suffixes in :data:`IMAGE_FORMAT_SUFFIX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from lncli.config.common import DEFAULT_CROP_MODE
from lncli.config.corrupt import DEFAULT_JPEG_QUALITY, OutputFormat
from lncli.errors import LncliError
from lncli.io import atomic_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "GRAY_MODES",
    "IMAGE_FORMAT_SUFFIX",
    "IMAGE_SUFFIXES",
    "as_pil",
    "check_image_header",
    "convert_channels",
    "decode_image",
    "find_images",
    "image_to_input",
    "is_image_file",
    "read_image",
    "resize_crop",
    "write_image",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""Suffixes (lower case) of the files folders are searched for: torchvision's ``IMG_EXTENSIONS``, so an image
folder holds the images ``ImageFolder`` lists (a test holds the two equal)."""

GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
"""Pillow modes stored with one channel: :func:`read_image` keeps them as one (``convert("L")``)."""

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
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f.name))
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


def is_image_file(name: str) -> bool:
    """Whether a file name ends in one of :data:`IMAGE_SUFFIXES` (any case), as torchvision tests it."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot decode (UnidentifiedImageError is an OSError)."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: Path) -> Tensor:
    """Read one image file as uint8 (C, H, W): C = 1 for :data:`GRAY_MODES`, else 3 (see the module docstring).

    Args:
        path: the image file.

    Returns:
        A new uint8 CPU tensor (C, H, W).

    Raises:
        LncliError: the file cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _pil_to_tensor(_as_mode(im, "L" if im.mode in GRAY_MODES else "RGB"))
    except _decode_errors() as exc:
        raise LncliError(f"cannot read image {path}: {exc}") from None


def decode_image(
    path: Path,
    *,
    channels: int,
    image_size: tuple[int, int],
    resize: int,
    interpolation: str,
    crop_mode: str = DEFAULT_CROP_MODE,
    fill: tuple[int, ...] = (0,),
) -> Tensor:
    """Read one image file as a model takes it: uint8 (channels, H, W) = ``image_size``.

    torchvision's ``ImageFolder`` loader (``convert("RGB")``), ``convert("L")`` for one channel,
    then :func:`resize_crop`. A pure function of its arguments, for DataLoader workers.

    Args:
        path: the image file.
        channels: 1 (L) or 3 (RGB).
        image_size: (H, W) of the crop.
        resize: the short side before the crop (the crop's scale for ``squash`` and ``border``).
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        crop_mode: one of :data:`~lncli.config.common.CROP_MODES`.
        fill: the padding's value per channel (or one for all), where the crop is larger than the image.

    Returns:
        A new uint8 CPU tensor (channels, H, W).

    Raises:
        LncliError: the file cannot be decoded.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _model_input(im, channels, image_size, resize, interpolation, crop_mode, fill)
    except _decode_errors() as exc:
        raise LncliError(f"cannot read image {path}: {exc}") from None


def _model_input(
    im: PILImage,
    channels: int,
    image_size: tuple[int, int],
    resize: int,
    interpolation: str,
    crop_mode: str,
    fill: tuple[int, ...],
) -> Tensor:
    """A Pillow image as a model takes it (the second half of :func:`decode_image`): uint8 (channels, H, W)."""
    # An L image read as one channel skips the RGB round trip: the luma of (v, v, v) is v.
    pil = _as_mode(im, "L" if channels == 1 and im.mode == "L" else "RGB")
    if channels == 1:
        pil = _as_mode(pil, "L")  # ITU-R 601-2 luma (torchvision's Grayscale), as convert_channels
    return _pil_to_tensor(resize_crop(pil, image_size, resize, interpolation, crop_mode, fill))


def as_pil(image: Any) -> PILImage:
    """A dataset item's image as Pillow's: a PIL image as it is, a uint8 (H, W) or (H, W, C) array,
    or a (C, H, W) tensor (uint8, or float in [0, 1], scaled by 255 and rounded, so that
    ``ToTensor()``'s output gives back the image it was made from).

    Raises:
        LncliError: another type, shape or dtype.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise LncliError(f"an image tensor must be (C, H, W) with C 1 or 3, got shape {tuple(image.shape)}")
        if image.is_floating_point():
            image = image.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        elif image.dtype != torch.uint8:
            raise LncliError(f"an image tensor must be uint8 or float in [0, 1], got {image.dtype}")
        image = image.cpu().permute(1, 2, 0).numpy()  # (H, W, C)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise LncliError(f"an image array must be uint8 (H, W) or (H, W, C), got {image.dtype} {image.shape}")
        return Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    raise LncliError(
        f"a dataset's image must be a PIL image, a uint8 array or a (C, H, W) tensor, not {type(image).__name__}"
    )


def image_to_input(
    image: Any,
    *,
    channels: int,
    image_size: tuple[int, int],
    resize: int,
    interpolation: str,
    crop_mode: str = DEFAULT_CROP_MODE,
    fill: tuple[int, ...] = (0,),
) -> Tensor:
    """A dataset item's image (:func:`as_pil`'s forms) as a model takes it, exactly as :func:`decode_image`
    reads a file: uint8 (channels, H, W) = ``image_size``.

    Raises:
        LncliError: an image of another type, shape or dtype.
    """
    return _model_input(as_pil(image), channels, image_size, resize, interpolation, crop_mode, fill)


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


def resize_crop(
    img: Img,
    image_size: tuple[int, int],
    resize: int,
    interpolation: str,
    crop_mode: str = DEFAULT_CROP_MODE,
    fill: tuple[int, ...] = (0,),
) -> Img:
    """timm's evaluation resize and crop (``transforms_imagenet_eval``), antialiased, on Pillow or tensors.

    With ``(H, W) = image_size`` and its scale ``(sH, sW) = (H, W) * resize / min(H, W)``
    (timm: the crop / ``crop_pct``):

    * ``center``: the short side becomes ``resize`` (the long side ``int(resize * long / short)``:
      torchvision's ``Resize(resize)``), then the centre ``image_size`` is cut;
    * ``squash``: the image is resized to ``(sH, sW)`` whatever its aspect, then the centre is cut;
    * ``border``: the long side fits the scale (each side ``round(side / max(h / sH, w / sW))``:
      timm's ``ResizeKeepRatio(longest=1)``), then the centre is cut or padded.

    For a square crop this is timm's transform for every ``crop_pct``. lncli keeps one resize
    number, so for a non-square crop the long side's scale is derived from it: equal to timm's
    ``floor(side / crop_pct)`` at ``crop_pct`` 1 (timm's only non-square configuration, Sapiens2's
    1024x768 squash), and ``center`` resizes the short side as torchvision's ``Resize`` does
    (timm's ``ResizeKeepRatio`` on two scales, used by no pretrained configuration).

    Where the crop is larger than the resized image (``border``, or a resize below the crop:
    timm's ``crop_pct`` above 1) it is padded around the centre as torchvision's ``CenterCrop``
    pads, with ``fill``; timm pads ``border`` with the mean colour and the others with 0. An image
    already its target size is not resampled. On tensors, ``nearest`` picks Pillow's pixels and
    ``bilinear`` is within one grey level of Pillow's; ``bicubic`` differs by a few (torch's
    cubic kernel is not Pillow's): tests/test_data_preprocess.py measures both.

    Args:
        img: a Pillow image, or a uint8 tensor (..., C, H, W).
        image_size: (H, W) of the crop.
        resize: the short side before the crop (the crop's scale for ``squash`` and ``border``).
        interpolation: ``bilinear``, ``bicubic`` or ``nearest``.
        crop_mode: one of :data:`~lncli.config.common.CROP_MODES`.
        fill: the padding's value per channel (or one for all).

    Returns:
        The same kind of image, ``image_size`` large.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    w, h = _width_height(img)
    target = _resized_size((h, w), image_size, resize, crop_mode)
    if target != (h, w):
        mode = InterpolationMode(interpolation)
        if mode == InterpolationMode.NEAREST and isinstance(img, Tensor):
            mode = InterpolationMode.NEAREST_EXACT  # Pillow's nearest (pixel centres); torch's plain one floors
        img = TF.resize(img, list(target), interpolation=mode, antialias=True)
    return _crop_or_pad(img, image_size, fill)


def _resized_size(hw: tuple[int, int], image_size: tuple[int, int], resize: int, crop_mode: str) -> tuple[int, int]:
    """(h, w) an image of size ``hw`` is resized to before the crop (see :func:`resize_crop`)."""
    h, w = hw
    ch, cw = image_size
    if crop_mode == "center":
        short, long = min(h, w), max(h, w)
        new_long = int(resize * long / short)  # torchvision's Resize(int): the same float expression
        return (resize, new_long) if h <= w else (new_long, resize)
    sh, sw = ch * resize // min(ch, cw), cw * resize // min(ch, cw)  # the crop's scale (timm: crop / crop_pct)
    if crop_mode == "squash":
        return sh, sw
    if crop_mode == "border":
        ratio = max(h / sh, w / sw)  # timm's ResizeKeepRatio(longest=1): the long side fits
        return round(h / ratio), round(w / ratio)
    raise ValueError(f"unknown crop mode {crop_mode!r}")


def _crop_or_pad(img: Img, image_size: tuple[int, int], fill: tuple[int, ...]) -> Img:
    """torchvision's ``center_crop`` (centre by ``int(round(excess / 2))``, padding split low side first), padding
    with ``fill`` (timm's ``center_crop_or_pad``)."""
    w, h = _width_height(img)
    ch, cw = image_size
    if (h, w) == (ch, cw):
        return img
    # Offset of the crop's first row/column in the image; negative = that much padding before the image.
    top = -((ch - h) // 2) if ch > h else round((h - ch) / 2.0)
    left = -((cw - w) // 2) if cw > w else round((w - cw) / 2.0)
    if isinstance(img, Tensor):
        c = int(img.shape[-3])
        values = torch.tensor(fill * c if len(fill) == 1 else fill, dtype=img.dtype, device=img.device)
        out = values.view(c, 1, 1).expand(*img.shape[:-2], ch, cw).clone()  # (..., C, ch, cw) of the fill
        y0, x0 = max(0, -top), max(0, -left)  # where the image lands in the crop
        y1, x1 = min(ch, h - top), min(cw, w - left)
        out[..., y0:y1, x0:x1] = img[..., y0 + top : y1 + top, x0 + left : x1 + left]
        return out  # type: ignore[return-value]  # a tensor in, a tensor out
    if top >= 0 and left >= 0 and top + ch <= h and left + cw <= w:
        return img.crop((left, top, left + cw, top + ch))  # type: ignore[attr-defined]
    from PIL import Image

    colour = fill[0] if img.mode == "L" or len(fill) == 1 else tuple(fill)  # type: ignore[attr-defined]
    out_pil = Image.new(img.mode, (cw, ch), colour)  # type: ignore[attr-defined]
    out_pil.paste(img, (-left, -top))  # type: ignore[arg-type]
    return out_pil  # type: ignore[return-value]


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


def _as_mode(im: PILImage, mode: str) -> PILImage:
    """``im`` decoded and in ``mode`` (``L`` or ``RGB``) by Pillow's own conversion (no copy when it already is)."""
    im.load()
    return im if im.mode == mode else im.convert(mode)


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
