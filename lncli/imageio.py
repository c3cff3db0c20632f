"""Image files in and out for ``lncli corrupt``: the edge around :mod:`lncli.corruptions`.

Reading (Pillow). Every image becomes uint8 (C, H, W) with C = 1 or 3:

* ``L`` / ``1`` (grayscale, bilevel) -> 1 channel; ``RGB`` -> 3 channels;
* ``P`` (palette) -> RGB, or RGBA when the palette has transparency (then as RGBA);
* ``RGBA`` / ``LA`` / ``PA`` -> **alpha composited onto black** (colour x alpha/255),
  so fully transparent pixels become black and no alpha channel is kept; the
  noise then sees exactly the pixels a viewer on a black background sees;
* 16-bit grayscale (``I;16*``, ``I``) -> 8-bit by ``round(v * 255 / 65535)``
  (values clipped to 0..65535). Pillow already reduces 16-bit RGB PNGs to 8 bits;
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` -> RGB; float (``F``) images are refused.

A file that Pillow cannot decode raises :class:`LncliError` naming it, unless
``skip_unreadable`` is set: then it is skipped and reported as a ``skipped``
record with the reason.

Writing. Every file goes through :func:`lncli.io.atomic_path`, so nothing is
ever half written, and nothing existing is overwritten unless ``overwrite`` is
set (all targets are checked *before* anything is written).

* ``png`` (default, lossless) / ``jpeg`` (``jpeg_quality``; ImageNet-C used 85):
  ``OUT/<noise>/<severity>/<relative path>`` (file inputs keep their path
  relative to the folder given; dataset inputs go to ``<class>/<index>.png``).
* ``npy``: the CIFAR-10-C layout read by RobustBench and
  :func:`lncli.data.load_cifar10c`: ``OUT/<noise>_noise.npy`` uint8
  (5N, H, W, C) with severities 1..5 stacked in order and ``OUT/labels.npy``
  (5N,) (dataset inputs). File inputs have no labels: ``OUT/files.txt`` lists
  the relative paths in array order instead.
* ``preview``: a contact sheet (matplotlib Agg): one row per noise x severity,
  one column per sample image.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lncli.errors import LncliError, OutputError
from lncli.io import (
    atomic_path,
    atomic_write,
    check_distinct,
    check_output_dir,
    check_output_file,
    image_suffixes,
)
from lncli.noise import canonical_noise, corrupt
from lncli.records import CorruptRecord

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Noise names whose CIFAR-10-C file carries a ``_noise`` suffix.
_NOISE_SUFFIXED = ("gaussian", "shot", "impulse", "speckle")


class OutputFormat(str, enum.Enum):
    """How ``lncli corrupt`` writes its results."""

    png = "png"
    jpeg = "jpeg"
    npy = "npy"


@dataclass(frozen=True)
class CorruptConfig:
    """Everything ``lncli corrupt`` needs. Frozen: one run, one config."""

    out: Path
    noises: tuple[str, ...] = ("gaussian", "shot", "impulse")  # the three noises LocalNorm is evaluated on
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)  # the full ImageNet-C / CIFAR-10-C range
    inputs: tuple[Path, ...] = ()  # image files or folders (exclusive with ``data``)
    data: str | None = None  # dataset spec for lncli.data.load_dataset, test split
    data_dir: Path | None = None  # searched first for the dataset's files (then $LNCLI_DATA, cache, system)
    download: bool = False  # off: never touch the network unless asked
    profile: str = "imagenet-c"  # imagecorruptions' constants are the common reference
    seed: int = 0  # noise of image i depends only on (seed, noise, severity, i)
    format: OutputFormat = OutputFormat.png  # lossless by default; jpeg adds its own artefacts
    jpeg_quality: int = 85  # ImageNet-C's setting
    preview: Path | None = None  # contact sheet path, or none
    preview_columns: int = 8  # sample images per preview row
    overwrite: bool = False  # never clobber results silently
    limit: int | None = None  # first N images (quick looks)
    skip_unreadable: bool = False  # default: a broken file is an error, not a silent gap
    batch_size: int = 256  # images corrupted per call: bounds memory, not results (seeding is per image)
    num_threads: int = 1  # CPU threads inside corrupt(); results do not depend on it


# --------------------------------------------------------------------------- reading


def find_images(inputs: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders into ``(path, relative output path)`` pairs.

    Folders are searched recursively for :data:`IMAGE_SUFFIXES` (case-insensitive)
    and their files keep their path relative to the folder; a file given directly
    keeps its name. The order is sorted, so global indices (and hence noise) are stable.

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


def _pil_to_tensor(im) -> Tensor:  # noqa: ANN001 - PIL.Image.Image, imported lazily
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
        a = np.asarray(im, dtype=np.float64)
        a = np.rint(np.clip(a, 0, 65535) * (255.0 / 65535.0)).astype(np.uint8)[None]  # (1, H, W)
        return torch.from_numpy(a)
    if mode == "L":
        return torch.from_numpy(np.array(im, dtype=np.uint8)[None])  # (1, H, W)
    if mode == "RGB":
        return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, H, W)
    if mode in ("RGBA", "LA"):
        a = np.array(im, dtype=np.float64)  # (H, W, 4 or 2)
        rgb = np.rint(a[..., :-1] * (a[..., -1:] / 255.0)).astype(np.uint8)  # composite on black
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    raise LncliError(f"unsupported image mode {mode!r} (float or exotic images are not handled)")


def write_image(image: Tensor, path: Path, *, fmt: OutputFormat, jpeg_quality: int = 85) -> None:
    """Write uint8 (C, H, W) atomically as PNG or JPEG."""
    from PIL import Image

    arr = image.detach().cpu().numpy()
    pil = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    with atomic_path(path) as tmp:
        if fmt == OutputFormat.jpeg:
            pil.save(tmp, format="JPEG", quality=jpeg_quality)
        else:
            pil.save(tmp, format="PNG")


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Item:
    index: int  # global index: the noise seed position
    image: Tensor  # uint8 (C, H, W)
    rel: Path  # output path relative to OUT/<noise>/<severity>/, without suffix change
    source: str
    label: int = -1


def _iter_files(pairs: list[tuple[Path, Path]], skip: bool, skipped: list[tuple[int, Path, str]]) -> Iterator[_Item]:
    for i, (src, rel) in enumerate(pairs):
        try:
            img = read_image(src)
        except LncliError as exc:
            if not skip:
                raise
            skipped.append((i, src, str(exc)))
            continue
        yield _Item(i, img, rel, str(src))


def _batched(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _npy_name(noise: str) -> str:
    return f"{noise}_noise.npy" if noise in _NOISE_SUFFIXED else f"{noise}.npy"


def _out_path(config: CorruptConfig, noise: str, severity: int, rel: Path) -> Path:
    suffix = ".jpg" if config.format == OutputFormat.jpeg else ".png"
    return config.out / noise / str(severity) / rel.with_suffix(suffix)


# --------------------------------------------------------------------------- the library call


def _check_config(config: CorruptConfig) -> tuple[tuple[str, ...], OutputFormat]:
    """Every check that needs no image: settings and output paths (before anything is loaded).

    Returns:
        The canonical, de-duplicated noise names and the output format.
    """
    noises = tuple(dict.fromkeys(canonical_noise(n, config.profile) for n in config.noises))  # de-duplicated aliases
    if not noises:
        raise LncliError("no noise given; e.g. --noise gaussian,shot,impulse")
    if bool(config.inputs) == bool(config.data):
        raise LncliError("give either input files/folders or --data NAME, not both and not neither")
    if not 1 <= config.jpeg_quality <= 100:
        raise LncliError(f"--jpeg-quality must be 1..100, got {config.jpeg_quality}")
    if config.limit is not None and config.limit < 1:
        raise LncliError(f"--limit must be >= 1, got {config.limit}")
    if config.num_threads < 1:
        raise LncliError(f"--threads must be >= 1, got {config.num_threads}")
    fmt = OutputFormat(config.format)
    if fmt == OutputFormat.npy and tuple(config.severities) != (1, 2, 3, 4, 5):
        raise LncliError("--format npy writes the CIFAR-10-C layout (severities 1..5 stacked); use --severity 1-5")
    check_output_dir(config.out, "--out")
    if config.preview is not None:
        check_output_file(config.preview, "--preview", image_suffixes())
    check_distinct({"--out": config.out, "--preview": config.preview})
    return noises, fmt


def _targets(config: CorruptConfig, noises: Sequence[str], fmt: OutputFormat, rels: Sequence[Path]) -> list[Path]:
    """Every path a run writes (``rels``: the image outputs relative to ``OUT/<noise>/<severity>/``)."""
    if fmt == OutputFormat.npy:
        targets = [config.out / _npy_name(n) for n in noises]
        targets.append(config.out / ("labels.npy" if config.data else "files.txt"))
    else:
        targets = [_out_path(config, n, s, r) for n in noises for s in config.severities for r in rels]
    if config.preview is not None:
        targets.append(config.preview)
    return targets


def _check_targets(targets: Sequence[Path], sources: Sequence[Path], *, overwrite: bool) -> None:
    """Refuse, before anything is written, clashing outputs, outputs over inputs, and existing outputs."""
    # Two inputs that differ only in suffix (a.png, a.bmp) map to one output file: the
    # second would silently replace the first, even without --overwrite.
    seen_targets: set[Path] = set()
    for t in targets:
        if t in seen_targets:
            raise LncliError(f"two outputs would both be written as {t} (e.g. inputs a.png and a.bmp); rename one of them")
        seen_targets.add(t)
    existing = [t for t in targets if t.exists()]  # only an existing target can be an input
    inputs = {src.resolve() for src in sources}
    clash = next((t for t in existing if t.resolve() in inputs), None)
    if clash is not None:
        raise OutputError(f"output {clash} is one of the input images; refusing to overwrite it, choose another --out or --preview")
    if existing and not overwrite:
        raise LncliError(f"{len(existing)} output(s) exist, e.g. {existing[0]}; pass --overwrite to replace them")


def run_corrupt(config: CorruptConfig, progress: Callable[[int, int], None] | None = None) -> list[CorruptRecord]:
    """Corrupt files or a dataset and write the results (the library side of ``lncli corrupt``).

    Args:
        config: the frozen :class:`CorruptConfig`.
        progress: optional ``callback(done, total)`` in images x noises x severities.

    Returns:
        One :class:`CorruptRecord` per file written (image formats), per array
        written (npy), per preview, and per skipped input.

    Raises:
        LncliError: bad configuration, unreadable input (without ``skip_unreadable``),
            existing outputs without ``overwrite``, mixed image sizes for npy.
    """
    noises, fmt = _check_config(config)

    # Sources: a dataset in memory, or a sorted file list read lazily.
    labels: Tensor | None = None
    classes: tuple[str, ...] = ()
    pairs: list[tuple[Path, Path]] = []
    if config.data:
        from lncli.data import load_dataset

        ds = load_dataset(config.data, split="test", data_dir=config.data_dir, download=config.download, limit=config.limit)
        labels, classes = ds.labels, tuple(ds.meta.classes)
        total = len(ds)
        source_name = config.data
    else:
        pairs = find_images(config.inputs)[: config.limit]
        total = len(pairs)
        source_name = ",".join(map(str, config.inputs))

    def dataset_rel(i: int) -> Path:
        lab = int(labels[i])  # type: ignore[index]
        return Path(_safe(classes[lab] if lab < len(classes) else str(lab))) / f"{i:06d}.png"

    skipped: list[tuple[int, Path, str]] = []

    def items() -> Iterator[_Item]:
        if config.data:
            for i in range(total):
                yield _Item(i, ds.images[i], dataset_rel(i), f"{config.data}[{i}]", int(labels[i]))  # type: ignore[index]
        else:
            yield from _iter_files(pairs, config.skip_unreadable, skipped)

    # Refuse up front, before writing anything, if any target exists.
    rels = [] if fmt == OutputFormat.npy else [dataset_rel(i) for i in range(total)] if config.data else [r for _, r in pairs]
    _check_targets(_targets(config, noises, fmt, rels), [src for src, _ in pairs], overwrite=config.overwrite)

    records: list[CorruptRecord] = []
    work = total * len(noises) * len(config.severities)
    done = 0
    npy_parts: dict[str, list[list[tuple[list[int], np.ndarray]]]] = {n: [[] for _ in config.severities] for n in noises}
    kept_rel: list[Path] = []
    kept_labels: list[int] = []
    preview_cols: list[_Item] = []
    shape: tuple[int, ...] | None = None
    for batch in _batched(items(), config.batch_size):
        if len(preview_cols) < config.preview_columns:
            preview_cols.extend(batch[: config.preview_columns - len(preview_cols)])
        kept_rel.extend(it.rel for it in batch)
        kept_labels.extend(it.label for it in batch)
        for group in _by_shape(batch):
            x = torch.stack([it.image for it in group])  # (n, C, H, W)
            idx = [it.index for it in group]
            if fmt == OutputFormat.npy:
                if shape is None:
                    shape = tuple(x.shape[1:])
                elif tuple(x.shape[1:]) != shape:
                    raise LncliError(f"--format npy needs one image size; {group[0].source} is {tuple(x.shape[1:])}, earlier ones {shape}")
            for noise in noises:
                for k, sev in enumerate(config.severities):
                    y = corrupt(x, noise, sev, seed=config.seed, profile=config.profile, indices=idx, num_threads=config.num_threads)
                    if fmt == OutputFormat.npy:
                        npy_parts[noise][k].append((idx, y.permute(0, 2, 3, 1).numpy()))  # (n, H, W, C)
                    else:
                        for it, img in zip(group, y):
                            path = _out_path(config, noise, sev, it.rel)
                            write_image(img, path, fmt=fmt, jpeg_quality=config.jpeg_quality)
                            records.append(CorruptRecord(noise, sev, config.profile, config.seed, str(path), it.source, it.index, 1))
                    done += len(group)
                    if progress:
                        progress(done, work)

    if fmt == OutputFormat.npy:
        records += _write_npy(config, noises, npy_parts, kept_rel, kept_labels, source_name)

    if config.preview is not None and preview_cols:
        write_preview(preview_cols, noises, config)
        records.append(CorruptRecord(",".join(noises), 0, config.profile, config.seed, str(config.preview), source_name, -1, len(preview_cols), detail="preview"))
    for i, src, why in skipped:
        records.append(CorruptRecord("", 0, config.profile, config.seed, "", str(src), i, 0, status="skipped", detail=why))
    return records


def _write_npy(
    config: CorruptConfig,
    noises: Sequence[str],
    npy_parts: dict[str, list[list[tuple[list[int], np.ndarray]]]],
    kept_rel: Sequence[Path],
    kept_labels: Sequence[int],
    source_name: str,
) -> list[CorruptRecord]:
    """Write the CIFAR-10-C layout: one ``(5N, H, W, C)`` array per noise and the labels (or file list)."""
    records: list[CorruptRecord] = []
    if not kept_rel:
        raise LncliError("no readable image to write")
    for noise in noises:
        per_sev = [_in_order(parts) for parts in npy_parts[noise]]  # each (N, H, W, C)
        arr = np.concatenate(per_sev)  # (5N, H, W, C), severities 1..5 stacked
        path = config.out / _npy_name(noise)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
        records.append(CorruptRecord(noise, 0, config.profile, config.seed, str(path), source_name, -1, int(arr.shape[0]), detail="severities 1-5 stacked"))
    if config.data:
        lab = np.asarray(list(kept_labels) * len(config.severities))
        lab = lab.astype(np.uint8 if lab.max(initial=0) < 256 else np.int64)  # (5N,), as CIFAR-10-C
        side = config.out / "labels.npy"
        with atomic_path(side) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, lab, allow_pickle=False)
    else:
        side = config.out / "files.txt"
        with atomic_write(side) as fh:
            fh.write("".join(f"{r.as_posix()}\n" for r in kept_rel))
    records.append(CorruptRecord("", 0, config.profile, config.seed, str(side), source_name, -1, len(kept_rel), detail="row index"))
    return records


def _in_order(parts: list[tuple[list[int], np.ndarray]]) -> np.ndarray:
    """Concatenate (indices, rows) parts and put rows back in global index order."""
    idx = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in parts])
    arr = np.concatenate([a for _, a in parts])
    return arr[np.argsort(idx, kind="stable")]


def _by_shape(batch: list[_Item]) -> list[list[_Item]]:
    groups: dict[tuple[int, ...], list[_Item]] = {}
    for it in batch:
        groups.setdefault(tuple(it.image.shape), []).append(it)
    return list(groups.values())


def _safe(name: str) -> str:
    """A class name usable as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


# --------------------------------------------------------------------------- preview


def write_preview(items: Sequence[_Item], noises: Sequence[str], config: CorruptConfig) -> None:
    """Contact sheet: rows = noise x severity (clean row first), columns = sample images."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows: list[tuple[str, list[Tensor]]] = [("clean", [it.image for it in items])]
    for noise in noises:
        for sev in config.severities:
            if sev == 0:
                continue
            imgs = [corrupt(it.image[None], noise, sev, seed=config.seed, profile=config.profile, indices=[it.index])[0] for it in items]
            rows.append((f"{noise} s{sev}", imgs))
    ncol = len(items)
    fig = Figure(figsize=(1.3 * ncol + 1.0, 1.3 * len(rows)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c, img in enumerate(imgs):
            ax = axes[r][c]
            a = img.numpy()
            if a.shape[0] == 1:
                ax.imshow(a[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(a.transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"lncli corrupt: profile {config.profile}, seed {config.seed}", fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))  # leave room for the title
    assert config.preview is not None
    with atomic_path(config.preview) as tmp:
        fig.savefig(tmp, format=(config.preview.suffix.lstrip(".") or "png"))
