"""The ``lncli corrupt`` job: noisy copies of image files or a dataset, written to disk.

:func:`run_corrupt` takes a frozen :class:`~lncli.config.corrupt.CorruptConfig`,
checks every setting and every output path before it reads an image, then
corrupts batches with :func:`lncli.noise.corrupt` (the noise of image ``i``
depends only on ``(seed, noise, severity, i)``) and returns one
:class:`~lncli.records.CorruptRecord` per file written or input skipped.

Sources: image files and folders (:func:`lncli.images.find_images`, read lazily
with :func:`lncli.images.read_image`) or a dataset's test split
(:func:`lncli.data.load_dataset`). A file that cannot be decoded is an error,
unless ``skip_unreadable`` is set: then it is skipped and reported as a
``skipped`` record with the reason.

Outputs. Every file goes through :mod:`lncli.io`'s atomic writers, so nothing is
ever half written, and nothing existing is overwritten unless ``overwrite`` is
set (all targets are checked *before* anything is written).

* ``png`` (default, lossless) / ``jpeg`` (``jpeg_quality``; ImageNet-C used 85):
  ``OUT/<noise>/<severity>/<relative path>`` (file inputs keep their path
  relative to the folder given; dataset inputs go to ``<class>/<index>.png``).
* ``npy``: the CIFAR-10-C layout read by RobustBench and
  :func:`lncli.data.load_cifar10c` (file names from :func:`lncli.data.cifar10c_filename`):
  ``OUT/<noise>_noise.npy`` uint8 (5N, H, W, C) with severities 1..5 stacked in
  order and ``OUT/labels.npy`` (5N,) (dataset inputs). File inputs have no labels:
  ``OUT/files.txt`` lists the relative paths in array order instead.
* ``preview``: a contact sheet (matplotlib Agg): one row per noise x severity,
  one column per sample image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from lncli.config.corrupt import CorruptConfig, OutputFormat
from lncli.data import CIFAR10C_LABELS, cifar10c_filename, load_dataset
from lncli.errors import LncliError, OutputError
from lncli.images import IMAGE_FORMAT_SUFFIX, find_images, read_image, write_image
from lncli.io import atomic_path, atomic_write, check_distinct, check_output_dir, check_output_file, image_suffixes
from lncli.noise import canonical_noise, corrupt
from lncli.records import CorruptRecord

__all__ = ["run_corrupt", "write_preview"]

_FILE_LIST = "files.txt"
"""npy output of file inputs: the relative paths in array order (files have no labels)."""

Progress = Callable[[int, int], None]
_Skipped = list[tuple[int, Path, str]]  # (global index, file, reason) per unreadable input


@dataclass(frozen=True)
class _Item:
    """One source image on its way through the job."""

    index: int  # global index: the noise seed position
    image: Tensor  # uint8 (C, H, W)
    rel: Path  # output path relative to OUT/<noise>/<severity>/ (suffix set when written)
    source: str
    label: int = -1


@dataclass(frozen=True)
class _Source:
    """Where the images come from: a dataset in memory, or a sorted file list read lazily."""

    name: str  # recorded as the records' source
    total: int  # images before any is skipped
    rels: list[Path]  # output path of each image, in index order
    files: list[Path]  # the input files (none for a dataset): outputs must not land on them
    items: Callable[[_Skipped], Iterator[_Item]]  # yields the readable images, logs the others


# --------------------------------------------------------------------------- the job


def run_corrupt(config: CorruptConfig, progress: Progress | None = None) -> list[CorruptRecord]:
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
    source = _open_source(config)
    rels = [] if fmt == OutputFormat.npy else source.rels
    _check_targets(_targets(config, noises, fmt, rels), source.files, overwrite=config.overwrite)

    sink: _Sink = _NpySink(config, noises, source.name) if fmt == OutputFormat.npy else _ImageSink(config, fmt)
    skipped: _Skipped = []
    samples = _corrupt_all(config, noises, source, sink, skipped, progress)
    records = sink.finish()
    if config.preview is not None and samples:
        write_preview(samples, noises, config)
        records.append(
            _record(config, ",".join(noises), 0, config.preview, source.name, -1, len(samples), detail="preview")
        )
    for i, src, why in skipped:
        records.append(_record(config, "", 0, "", str(src), i, 0, status="skipped", detail=why))
    return records


def _record(
    config: CorruptConfig,
    noise: str,
    severity: int,
    output: Path | str,
    source: str,
    index: int,
    count: int,
    **extra: str,
) -> CorruptRecord:
    """A record of this run: ``config``'s profile and seed, the rest as given (``output`` "" if none)."""
    return CorruptRecord(noise, severity, config.profile, config.seed, str(output), source, index, count, **extra)


def _corrupt_all(
    config: CorruptConfig,
    noises: Sequence[str],
    source: _Source,
    sink: _Sink,
    skipped: _Skipped,
    progress: Progress | None,
) -> list[_Item]:
    """Corrupt every readable image at every noise and severity into ``sink``.

    Returns:
        The first ``preview_columns`` images, for the contact sheet.
    """
    work = source.total * len(noises) * len(config.severities)
    done = 0
    samples: list[_Item] = []
    for batch in _batched(source.items(skipped), config.batch_size):
        samples.extend(batch[: max(0, config.preview_columns - len(samples))])
        sink.take(batch)
        for group in _by_shape(batch):  # torch.stack needs one shape; the noise does not care
            x = torch.stack([it.image for it in group])  # (n, C, H, W)
            idx = [it.index for it in group]
            sink.check(group, x)
            for noise in noises:
                for k, sev in enumerate(config.severities):
                    y = corrupt(
                        x,
                        noise,
                        sev,
                        seed=config.seed,
                        profile=config.profile,
                        indices=idx,
                        num_threads=config.num_threads,
                    )
                    sink.add(noise, k, sev, group, y)
                    done += len(group)
                    if progress:
                        progress(done, work)
    return samples


# --------------------------------------------------------------------------- up-front checks


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


def _out_path(config: CorruptConfig, noise: str, severity: int, rel: Path) -> Path:
    """Where one corrupted image goes: ``OUT/<noise>/<severity>/<rel>`` with the format's suffix."""
    return config.out / noise / str(severity) / rel.with_suffix(IMAGE_FORMAT_SUFFIX[OutputFormat(config.format)])


def _targets(config: CorruptConfig, noises: Sequence[str], fmt: OutputFormat, rels: Sequence[Path]) -> list[Path]:
    """Every path a run writes (``rels``: the image outputs relative to ``OUT/<noise>/<severity>/``)."""
    if fmt == OutputFormat.npy:
        targets = [config.out / cifar10c_filename(n) for n in noises]
        targets.append(config.out / (CIFAR10C_LABELS if config.data else _FILE_LIST))
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
            raise LncliError(
                f"two outputs would both be written as {t} (e.g. inputs a.png and a.bmp); rename one of them"
            )
        seen_targets.add(t)
    existing = [t for t in targets if t.exists()]  # only an existing target can be an input
    inputs = {src.resolve() for src in sources}
    clash = next((t for t in existing if t.resolve() in inputs), None)
    if clash is not None:
        raise OutputError(
            f"output {clash} is one of the input images; refusing to overwrite it, choose another --out or --preview"
        )
    if existing and not overwrite:
        raise LncliError(f"{len(existing)} output(s) exist, e.g. {existing[0]}; pass --overwrite to replace them")


# --------------------------------------------------------------------------- sources


def _open_source(config: CorruptConfig) -> _Source:
    """The dataset's test split (loaded now), or the sorted input files (read later, one batch at a time)."""
    if config.data:
        return _dataset_source(config, config.data)
    pairs = find_images(config.inputs)[: config.limit]
    skip = config.skip_unreadable
    return _Source(
        name=",".join(map(str, config.inputs)),
        total=len(pairs),
        rels=[rel for _, rel in pairs],
        files=[src for src, _ in pairs],
        items=lambda skipped: _iter_files(pairs, skip, skipped),
    )


def _dataset_source(config: CorruptConfig, spec: str) -> _Source:
    """A dataset's test split; image ``i`` of class ``k`` goes to ``<k>_<class name>/<i:06d>.png``.

    The class index leads the folder's name, zero-padded, so that a folder reader that sorts class folders
    by name (torchvision's ``ImageFolder``, ``lncli evaluate --data imagefolder:``) gives class k label k:
    the names alone sort differently (Fashion-MNIST's ``Ankle boot`` would come first).
    """
    ds = load_dataset(spec, split="test", data_dir=config.data_dir, download=config.download, limit=config.limit)
    classes = tuple(ds.meta.classes)
    labels = [int(lab) for lab in ds.labels]
    width = len(str(max(len(classes), max(labels, default=0) + 1) - 1))
    rels = [
        Path(f"{lab:0{width}d}_{_safe(classes[lab])}" if lab < len(classes) else f"{lab:0{width}d}") / f"{i:06d}.png"
        for i, lab in enumerate(labels)
    ]

    def items(skipped: _Skipped) -> Iterator[_Item]:  # a dataset has no unreadable images to skip
        for i, rel in enumerate(rels):
            yield _Item(i, ds.images[i], rel, f"{spec}[{i}]", labels[i])

    return _Source(name=spec, total=len(ds), rels=rels, files=[], items=items)


def _iter_files(pairs: list[tuple[Path, Path]], skip: bool, skipped: _Skipped) -> Iterator[_Item]:
    """Read the files in order; with ``skip``, log an unreadable one in ``skipped`` and go on."""
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
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch: list[_Item] = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _by_shape(batch: list[_Item]) -> list[list[_Item]]:
    """Split a batch into groups of one image shape, in first-seen order."""
    groups: dict[tuple[int, ...], list[_Item]] = {}
    for it in batch:
        groups.setdefault(tuple(it.image.shape), []).append(it)
    return list(groups.values())


def _safe(name: str) -> str:
    """A class name usable as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


# --------------------------------------------------------------------------- writers


class _Sink(Protocol):
    """Where corrupted batches go: one image file each, or arrays collected for the end."""

    def take(self, batch: list[_Item]) -> None: ...  # a batch of source images arrives

    def check(self, group: list[_Item], x: Tensor) -> None: ...  # before one shape group is corrupted

    def add(self, noise: str, k: int, severity: int, group: list[_Item], y: Tensor) -> None: ...

    def finish(self) -> list[CorruptRecord]: ...  # records so far, after writing what was held back


@dataclass
class _ImageSink:
    """Writes each corrupted image as its own PNG or JPEG file as soon as it is made."""

    config: CorruptConfig
    fmt: OutputFormat
    records: list[CorruptRecord] = field(default_factory=list)

    def take(self, batch: list[_Item]) -> None:
        pass

    def check(self, group: list[_Item], x: Tensor) -> None:
        pass

    def add(self, noise: str, k: int, severity: int, group: list[_Item], y: Tensor) -> None:
        cfg = self.config
        for it, img in zip(group, y):
            path = _out_path(cfg, noise, severity, it.rel)
            write_image(img, path, fmt=self.fmt, jpeg_quality=cfg.jpeg_quality)
            self.records.append(_record(cfg, noise, severity, path, it.source, it.index, 1))

    def finish(self) -> list[CorruptRecord]:
        return self.records


@dataclass
class _NpySink:
    """Collects every corrupted batch and writes the CIFAR-10-C arrays at the end."""

    config: CorruptConfig
    noises: Sequence[str]
    source_name: str
    # parts[noise][k]: (global indices, (n, H, W, C) rows) per group, for severity number k.
    parts: dict[str, list[list[tuple[list[int], np.ndarray]]]] = field(init=False)
    kept_rel: list[Path] = field(default_factory=list)
    kept_labels: list[int] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # (C, H, W) of the first image: one array holds one size

    def __post_init__(self) -> None:
        self.parts = {n: [[] for _ in self.config.severities] for n in self.noises}

    def take(self, batch: list[_Item]) -> None:
        self.kept_rel.extend(it.rel for it in batch)
        self.kept_labels.extend(it.label for it in batch)

    def check(self, group: list[_Item], x: Tensor) -> None:
        if self.shape is None:
            self.shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != self.shape:
            raise LncliError(
                f"--format npy needs one image size; {group[0].source} is {tuple(x.shape[1:])}, "
                f"earlier ones {self.shape}"
            )

    def add(self, noise: str, k: int, severity: int, group: list[_Item], y: Tensor) -> None:
        self.parts[noise][k].append(([it.index for it in group], y.permute(0, 2, 3, 1).numpy()))  # (n, H, W, C)

    def finish(self) -> list[CorruptRecord]:
        return _write_npy(self.config, self.noises, self.parts, self.kept_rel, self.kept_labels, self.source_name)


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
        path = config.out / cifar10c_filename(noise)
        _save_npy(arr, path)
        records.append(_record(config, noise, 0, path, source_name, -1, len(arr), detail="severities 1-5 stacked"))
    if config.data:
        lab = np.asarray(list(kept_labels) * len(config.severities))
        lab = lab.astype(np.uint8 if lab.max(initial=0) < 256 else np.int64)  # (5N,), as CIFAR-10-C
        side = config.out / CIFAR10C_LABELS
        _save_npy(lab, side)
    else:
        side = config.out / _FILE_LIST
        with atomic_write(side) as fh:
            fh.write("".join(f"{r.as_posix()}\n" for r in kept_rel))
    records.append(_record(config, "", 0, side, source_name, -1, len(kept_rel), detail="row index"))
    return records


def _save_npy(arr: np.ndarray, path: Path) -> None:
    """``np.save`` through an atomic temporary file, never pickling."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def _in_order(parts: list[tuple[list[int], np.ndarray]]) -> np.ndarray:
    """Concatenate (indices, rows) parts and put rows back in global index order."""
    idx = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in parts])
    arr = np.concatenate([a for _, a in parts])
    return arr[np.argsort(idx, kind="stable")]


# --------------------------------------------------------------------------- preview


def write_preview(items: Sequence[_Item], noises: Sequence[str], config: CorruptConfig) -> None:
    """Draw the contact sheet to ``config.preview``: rows = noise x severity (clean row first), columns = images.

    Args:
        items: the sample images (each with its global index, so its noise matches the written files).
        noises: canonical noise names, one block of rows each.
        config: the run's config (severities, seed, profile and the preview path).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if config.preview is None:
        raise ValueError("write_preview needs config.preview, the file to draw into")
    rows: list[tuple[str, list[Tensor]]] = [("clean", [it.image for it in items])]
    for noise in noises:
        for sev in config.severities:
            if sev == 0:
                continue
            imgs = [
                corrupt(it.image[None], noise, sev, seed=config.seed, profile=config.profile, indices=[it.index])[0]
                for it in items
            ]
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
    with atomic_path(config.preview) as tmp:
        fig.savefig(tmp, format=(config.preview.suffix.lstrip(".") or "png"))
