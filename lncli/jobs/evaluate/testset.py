"""The test set of a sweep: which data, read how, checked against the models.

:func:`resolve_data` picks the test data from ``--data`` (or the checkpoints) and checks it
up front, before any image is decoded: a named dataset is loaded into memory, an image
folder is listed and every file's header opened (:mod:`lncli.data.imagefolder`; its images
are streamed later by :mod:`.sources`), a corruption release is opened and checked
(:mod:`lncli.data.releases`). It also resolves each checkpoint's preprocessing
(:mod:`lncli.data.preprocess`: flags, then the checkpoint's record, the dataset's own,
timm's, ImageNet's) into an :class:`EvalData`, which the sweep applies
(:meth:`EvalData.prepared`) and records (:meth:`EvalData.record_fields`). What it chose
for the user without being told is in :attr:`EvalData.notes`, one line each (the CLI prints
them as ``note:`` lines and the JSON's config block keeps them): the preprocessing a foreign
checkpoint was given, a corruption release's missing clean row, what ``--limit`` kept of a folder. With
``--rescale`` it also takes the training split's per-channel range
(:func:`~lncli.jobs.evaluate.ranges.load_train_range`), the reference the paper's rescale maps onto.
:func:`check_data_matches` refuses data whose classes differ from a model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lncli.checkpoint import Checkpoint
from lncli.config.evaluate import EvalConfig
from lncli.data import DataMeta, DataSpec, ImageSet, load_dataset, named_dataset
from lncli.data.imagefolder import FolderListing, check_headers, list_image_folder, stratified_subset, subset_note
from lncli.data.preprocess import (
    IMAGENET,
    PreprocessLayer,
    apply_preprocess,
    parse_flags,
    resolve_preprocess,
    timm_layer,
    unrecorded_note,
)
from lncli.data.releases import ImageNetCListing, NpyRelease, list_imagenetc, open_npy_release
from lncli.data.spec import DataKind
from lncli.errors import DataError, LncliError
from lncli.jobs.evaluate.checkpoints import LoadedCheckpoint
from lncli.jobs.evaluate.ranges import load_train_range

__all__ = [
    "EvalData",
    "check_clean_order",
    "check_data_matches",
    "has_recorded_preprocessing",
    "preprocess_flags",
    "resolve_data",
]


@dataclass(frozen=True, eq=False)
class DatasetItems:
    """A Python caller's ``torch.utils.data.Dataset`` of ``(image, label)``, read item by item.

    ``indices`` are the dataset's items the sweep evaluates (all, or a stratified ``limit``); the sweep's
    image i is ``dataset[indices[i]]``, its label ``targets[i]``.
    """

    dataset: Any
    indices: tuple[int, ...]
    targets: tuple[int, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class EvalData:
    """The test images of a sweep, and how each model reads them.

    Exactly one kind of data (:attr:`kind`, checked when it is made): ``clean`` holds a decoded
    test set whose noise is generated; ``folder`` lists an image folder, streamed, whose noise is
    generated; ``cifar10c_dir`` points at an array release (then ``clean`` is the matching clean
    test set when there is one, else None); ``imagenetc`` lists a folder release.

    ``train_range`` is the training split's per-channel ``(min, max)``, each (C,) float32 on
    the [0, 1] scale (:func:`~lncli.jobs.evaluate.ranges.image_range`): what ``--rescale`` maps the noisy test set onto.
    ``None`` falls back to the clean test set's range (the records say which was used). It is
    passed in rather than loaded by :func:`~lncli.jobs.evaluate.grid.evaluate_grid`, which
    does no data I/O of its own.

    ``model_metas`` holds each checkpoint's resolved preprocessing (by checkpoint path), a
    :class:`DataMeta` whose size, resize, interpolation, crop mode and mean/std the sweep uses;
    empty means each checkpoint's own, with the data read as stored.

    ``notes`` are the choices made for the user without a flag, one line each (module docstring).
    """

    name: str
    synthetic: bool
    clean: ImageSet | None
    cifar10c_dir: Path | None = None
    limit: int | None = None
    meta: DataMeta | None = field(default=None)  # when known up front
    train_range: tuple[Tensor, Tensor] | None = None  # (C,) min, (C,) max of the training split, [0, 1] scale
    folder: FolderListing | None = None  # an image folder, streamed
    imagenetc: ImageNetCListing | None = None  # an ImageNet-C-style folder release
    model_metas: tuple[tuple[str, DataMeta], ...] = ()  # (checkpoint path, resolved meta)
    notes: tuple[str, ...] = ()
    items: DatasetItems | None = None  # a Python caller's torch Dataset, streamed (lncli.evaluate)

    def __post_init__(self) -> None:
        fields = (
            ("cifar10c_dir", self.cifar10c_dir),
            ("folder", self.folder),
            ("imagenetc", self.imagenetc),
            ("items", self.items),
        )
        kinds = [name for name, value in fields if value is not None]
        if len(kinds) > 1:
            raise LncliError(f"EvalData holds one kind of data, not {' and '.join(kinds)}")
        if not kinds and self.clean is None:
            raise LncliError("no test images")
        # A wrong shape would only fail deep inside the sweep, after the noisy ranges were computed.
        if self.train_range is None:
            return
        channels = self.clean.images.shape[1] if self.clean is not None else None
        shapes = [tuple(t.shape) for t in self.train_range]
        if len(shapes) != 2 or shapes[0] != shapes[1] or len(shapes[0]) != 1 or channels not in (None, shapes[0][0]):
            raise LncliError(f"train_range must be (min, max), each of shape ({channels or 'C'},); got shapes {shapes}")

    @classmethod
    def from_imageset(cls, images: ImageSet, *, train_range: tuple[Tensor, Tensor] | None = None) -> EvalData:
        """Wrap an :class:`lncli.data.ImageSet` whose noise will be generated.

        Args:
            images: the clean test set.
            train_range: the training split's per-channel range for ``--rescale`` (see the class docstring).

        Returns:
            The :class:`EvalData`.
        """
        meta = images.meta
        return cls(name=meta.name, synthetic=bool(meta.synthetic), clean=images, meta=meta, train_range=train_range)

    @property
    def files(self) -> Path | FolderListing | ImageNetCListing | DatasetItems | None:
        """Where the images are read from: an array release's folder, an image folder's listing, a folder
        release's listing, a Python caller's Dataset, or None (``clean``, in memory). Its type is the kind
        (:attr:`kind`)."""
        return next((f for f in (self.cifar10c_dir, self.folder, self.imagenetc, self.items) if f is not None), None)

    @property
    def kind(self) -> DataKind | Literal["items"]:
        """Which kind of data this is, in :class:`~lncli.data.DataSpec`'s words (``dataset``: decoded in memory),
        or ``items``: a Python caller's torch Dataset."""
        match self.files:
            case Path():
                return "cifar10c"
            case FolderListing():
                return "imagefolder"
            case ImageNetCListing():
                return "imagenetc"
            case DatasetItems():
                return "items"
        return "dataset"

    @property
    def input_meta(self) -> DataMeta | None:
        """How images are read for the models (size, resize, interpolation, channels; all models agree), or
        None: as stored."""
        return self.model_metas[0][1] if self.model_metas else None

    @property
    def skipped(self) -> int:
        """Unreadable image files left out (``--skip-unreadable``)."""
        return len(self.folder.skipped) if self.folder is not None else 0

    def prepared(self, models: Sequence[LoadedCheckpoint]) -> list[LoadedCheckpoint]:
        """The models with their resolved preprocessing as their data meta (what the sweep normalises with).

        Args:
            models: the checkpoints the data was resolved for (others pass unchanged).

        Returns:
            The models; the weights are shared, not copied.
        """
        metas = dict(self.model_metas)
        return [
            dataclasses.replace(m, checkpoint=dataclasses.replace(m.checkpoint, data=metas[m.path]))
            if m.path in metas
            else m
            for m in models
        ]

    def record_fields(self, meta: DataMeta) -> dict[str, Any]:
        """The preprocessing a column used, as :class:`~lncli.records.EvalRecord` fields.

        Args:
            meta: the column's (resolved) data meta.

        Returns:
            ``image_size`` (``"HxW"``), ``resize``, ``interpolation``, ``crop_mode``, ``mean``, ``std``
            (comma lists of exact floats), ``channels`` and ``skipped``.
        """
        return {
            "image_size": "x".join(map(str, meta.image_size)),
            "resize": meta.resize_to,
            "interpolation": meta.interpolation,
            "crop_mode": meta.crop_mode,
            "mean": ",".join(repr(float(v)) for v in meta.mean),
            "std": ",".join(repr(float(v)) for v in meta.std),
            "channels": meta.in_channels,
            "skipped": self.skipped,
        }


def preprocess_flags(config: EvalConfig) -> PreprocessLayer:
    """The preprocessing flags of a config, checked (:func:`lncli.data.preprocess.parse_flags`)."""
    return parse_flags(
        image_size=config.image_size,
        resize=config.resize,
        mean=config.mean,
        std=config.std,
        interpolation=config.interpolation,
        crop_mode=config.crop_mode,
    )


def resolve_data(
    spec: str | DataSpec | None,
    checkpoints: Sequence[LoadedCheckpoint],
    *,
    limit: int | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    with_train_range: bool = False,
    preprocess: PreprocessLayer | None = None,
    channels: int | None = None,
    skip_unreadable: bool = False,
    workers: int = 0,
    severities: Sequence[int] = (0,),
) -> EvalData:
    """Pick and check the test data for a sweep, and resolve each model's preprocessing.

    Args:
        spec: ``None`` (the dataset named in the checkpoints, which must agree),
            ``fashion-mnist``, ``cifar10``, ``synthetic``, ``imagefolder:PATH``,
            ``cifar10c:DIR`` (an array release: CIFAR-10-C, CIFAR-100-C, ``lncli corrupt
            --format npy``) or ``imagenetc:DIR`` (a folder release: ImageNet-C, Tiny-ImageNet-C).
        checkpoints: the models, used for the default, the checks and the preprocessing.
        limit: keep only the first ``limit`` test images (image folders: every class kept).
        data_dir: where to look for dataset files first.
        download: let torchvision download a missing dataset (needs the network).
        with_train_range: also read the training split's per-channel range, the
            reference of ``--rescale`` (:func:`~lncli.jobs.evaluate.ranges.load_train_range`; generated noise only).
        preprocess: the flags' preprocessing layer (:func:`preprocess_flags`); None: no flags.
        channels: ``--channels``; must be what the models take. Given, the data's own channel
            count may differ: its images are converted (L -> RGB copies, RGB -> L luma).
        skip_unreadable: leave out image files whose header cannot be read (counted), instead of refusing.
        workers: threads that open the image headers.
        severities: the severities the sweep asks for (a release without a clean set notes that
            severity 0 has no row only when 0 is asked).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: the data cannot be found or read, or does not match a model.
        LncliError: the checkpoints disagree on the dataset and no spec was given, a bad limit,
            or preprocessing the models cannot agree on.
    """
    if limit is not None and limit < 1:
        raise LncliError(f"--limit must be >= 1, got {limit}")
    _check_channels(checkpoints, channels)
    data = _data_spec(spec, checkpoints)
    if skip_unreadable and data.kind != "imagefolder":
        raise LncliError(f"--skip-unreadable applies to imagefolder: data, not {data}")
    flags = preprocess or PreprocessLayer(origin="flags")
    clean_asked = 0 in severities
    if data.kind == "cifar10c":
        release = open_npy_release(data.folder)
        return _release_data(release, checkpoints, flags, limit, data_dir, download, clean_asked, channels)
    if data.kind == "imagenetc":
        listing = list_imagenetc(data.folder, limit)
        _check_classes(checkpoints, f"imagenetc {listing.root}", len(listing.reference.classes))
        metas, notes = model_metas(checkpoints, flags)
        if clean_asked:
            no_clean = f"imagenetc {listing.root} has no clean images (releases carry none), so severity 0 has no row"
            notes += (f"{no_clean}; evaluate the clean set with --data imagefolder:PATH",)
        if limit is not None and len(listing) < listing.total:
            notes += (subset_note(listing.reference, listing.total, limit),)
        return EvalData(
            name="imagenet-c",
            synthetic=False,
            clean=None,
            limit=limit,
            imagenetc=listing,
            model_metas=metas,
            notes=notes,
        )
    if data.kind == "imagefolder":
        folder, limit_notes = _folder_listing(data.folder, limit, skip_unreadable, workers)
        _check_classes(checkpoints, f"imagefolder {folder.root}", len(folder.classes))
        metas, notes = model_metas(checkpoints, flags)
        notes += limit_notes
        return EvalData(
            name="imagefolder", synthetic=False, clean=None, limit=limit, folder=folder, model_metas=metas, notes=notes
        )
    images = load_dataset(data, "test", data_dir=data_dir, download=download, limit=limit)
    check_data_matches(checkpoints, images.meta, convertible=channels is not None)
    train_range = (
        load_train_range(data, images.meta, data_dir=data_dir, download=download) if with_train_range else None
    )
    metas, notes = model_metas(checkpoints, flags, PreprocessLayer.of_meta(images.meta, "dataset"))
    in_memory = EvalData.from_imageset(images, train_range=train_range)
    return dataclasses.replace(in_memory, model_metas=metas, notes=notes)


def has_recorded_preprocessing(ckpt: Checkpoint) -> bool:
    """Whether a checkpoint's data meta records how its model reads images.

    An lncli checkpoint does; a foreign state_dict loaded with ``--data`` does not (its meta
    was made from the data: it says nothing about the model) until ``lncli convert`` writes it
    as an lncli checkpoint (``provenance["conversions"]``), with the preprocessing it resolved.
    """
    return "foreign" not in ckpt.provenance or "conversions" in ckpt.provenance


def _layers(
    ck: LoadedCheckpoint, above: Sequence[PreprocessLayer], dataset: Sequence[PreprocessLayer]
) -> list[PreprocessLayer]:
    """One checkpoint's layers, highest first: ``above`` (flags), its record, ``dataset``, timm's, ImageNet's."""
    ckpt = ck.checkpoint
    recorded = [PreprocessLayer.of_meta(ckpt.data, "checkpoint")] if has_recorded_preprocessing(ckpt) else []
    timm = timm_layer(ckpt.arch)
    return [*above, *recorded, *dataset, *([timm] if timm else []), IMAGENET]


def model_metas(
    checkpoints: Sequence[LoadedCheckpoint], flags: PreprocessLayer, dataset: PreprocessLayer | None = None
) -> tuple[tuple[tuple[str, DataMeta], ...], tuple[str, ...]]:
    """Each checkpoint's resolved preprocessing, and the notes of those whose files record none.

    Args:
        checkpoints: the models.
        flags: the flags' layer (:func:`preprocess_flags`).
        dataset: the data's own layer: arrays held as stored (a named dataset, a release, a caller's
            pair), whose own size it says; None for image files, decoded to what each model takes.

    Raises:
        DataError: the checkpoints would read the images at different sizes, crops or channel counts.
    """
    metas: list[tuple[str, DataMeta]] = []
    notes: list[str] = []
    for ck in checkpoints:
        resolved = resolve_preprocess(_layers(ck, [flags], [dataset] if dataset else []), _channels(ck))
        metas.append((ck.path, apply_preprocess(ck.checkpoint.data, resolved)))
        note = (
            None
            if has_recorded_preprocessing(ck.checkpoint)
            else unrecorded_note(Path(ck.path).name, resolved, as_stored=dataset is not None)
        )
        notes += [note] if note else []
    reads = {(m.image_size, m.resize_to, m.interpolation, m.crop_mode, m.in_channels): path for path, m in metas}
    if len(reads) > 1:
        detail = "; ".join(
            f"{Path(p).name}: {c}x{s[0]}x{s[1]}, resize {r}, {i}, {mode}"
            for (s, r, i, mode, c), p in list(reads.items())[:3]
        )
        raise DataError(
            f"the checkpoints read images differently ({detail}); evaluate them separately "
            "or pass --image-size/--resize/--interpolation/--crop-mode"
        )
    return tuple(metas), tuple(notes)


def _channels(ck: LoadedCheckpoint) -> int:
    return int(ck.checkpoint.data.in_channels)


def _check_channels(checkpoints: Sequence[LoadedCheckpoint], channels: int | None) -> None:
    """``--channels`` is 1 or 3 and what every model takes (images are read the way the model takes them; a foreign
    checkpoint takes what ``--channels`` said when it was loaded: :func:`lncli.data.dataset_meta`)."""
    if channels is None:
        return
    if channels not in (1, 3):
        raise LncliError(f"--channels must be 1 or 3, got {channels}")
    for ck in checkpoints:
        if _channels(ck) != channels:
            raise DataError(f"--channels {channels}, but {Path(ck.path).name} takes {_channels(ck)}-channel images")


def _folder_listing(
    root: Path, limit: int | None, skip_unreadable: bool, workers: int
) -> tuple[FolderListing, tuple[str, ...]]:
    """An image folder's test files, limited per class, with every header opened (unreadable: refused or skipped),
    and the note of what ``--limit`` kept (none when it kept everything)."""
    whole = list_image_folder(root, "test")
    listing = whole.subset(stratified_subset(whole.targets, limit))
    notes = (subset_note(listing, len(whole), limit),) if limit is not None and len(listing) < len(whole) else ()
    bad = check_headers(listing.files, threads=max(1, workers))
    if bad and not skip_unreadable:
        more = f" (and {len(bad) - 1} more unreadable files; --skip-unreadable leaves them out)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0][1]}{more}")
    if bad:
        dropped = {i for i, _ in bad}
        listing = listing.subset([i for i in range(len(listing)) if i not in dropped], [r for _, r in bad])
        if not len(listing):
            raise DataError(f"imagefolder {listing.root}: no readable image ({len(bad)} skipped)")
    return listing, notes


def _release_data(
    release: NpyRelease,
    checkpoints: Sequence[LoadedCheckpoint],
    flags: PreprocessLayer,
    limit: int | None,
    data_dir: Path | None,
    download: bool,
    clean_asked: bool,
    channels: int | None,
) -> EvalData:
    """``--data cifar10c:DIR``: the arrays, with the matching clean test set when there is one."""
    meta = release.meta()
    stored = None if channels is not None else release.shape[2]  # --channels converts the arrays
    _check_classes(checkpoints, f"cifar10c {release.directory}", release.num_classes, stored)
    n = len(release) if limit is None else min(limit, len(release))
    clean = _release_clean(release, checkpoints, n, data_dir, download)
    # The arrays' own: their size as stored; CIFAR-10-C's constants when it is that release.
    cifar = release.kind == "CIFAR-10-C"
    own = PreprocessLayer(
        image_size=meta.image_size,
        mean=meta.mean if cifar else None,
        std=meta.std if cifar else None,
        origin="dataset",
        source=release.kind,
    )
    metas, notes = model_metas(checkpoints, flags, own)
    if clean is None and clean_asked:
        why = f"no installed clean test set matches the release (its first {n:,} test images, in order)"
        notes += (f"cifar10c {release.directory}: {why}, so severity 0 has no row",)
    return EvalData(
        name=release.name,
        synthetic=False,
        clean=clean,
        cifar10c_dir=release.directory,
        limit=limit,
        model_metas=metas,
        notes=notes,
    )


def _release_clean(
    release: NpyRelease, checkpoints: Sequence[LoadedCheckpoint], n: int, data_dir: Path | None, download: bool
) -> ImageSet | None:
    """The clean test set of an array release, for its clean row, or None.

    The releases carry no clean split. The models' dataset (else CIFAR-10 for CIFAR-10-C) gives
    it when it is installed and its first ``n`` test images are the release's: the same labels
    in order and the same image shape. Anything else is other data (no clean row).
    """
    names = {named_dataset(ck.checkpoint.data.name) for ck in checkpoints} - {None}
    name = names.pop() if len(names) == 1 else ("cifar10" if release.kind == "CIFAR-10-C" else None)
    if name is None:
        return None
    try:
        clean = load_dataset(name, "test", data_dir=data_dir, download=download, limit=n)
        check_clean_order(release, clean, n)
    except DataError:
        return None
    return clean


def check_clean_order(release: NpyRelease, clean: ImageSet, n: int) -> None:
    """Refuse a clean set that is not the release's first ``n`` images (labels in order, same image shape).

    Raises:
        DataError: the labels or the shape differ.
    """
    h, w, c = release.shape
    if len(clean) != n or not torch.equal(clean.labels, torch.from_numpy(release.labels[:n])):
        # A release follows its dataset's test order; anything else would compare different images.
        raise DataError(f"the labels in {release.directory} are not in {clean.meta.name} test order")
    if tuple(clean.images.shape[1:]) != (c, h, w):
        raise DataError(
            f"{release.directory} holds {c}x{h}x{w} images, {clean.meta.name}'s are "
            f"{'x'.join(map(str, clean.images.shape[1:]))}"
        )


def _data_spec(spec: str | DataSpec | None, checkpoints: Sequence[LoadedCheckpoint]) -> DataSpec:
    """``--data`` parsed, or, without it, the one dataset every checkpoint names.

    Raises:
        LncliError: the checkpoints name different datasets, or one that ``--data`` must say where to
            find (an image folder, a release), or a bad spec.
    """
    if spec is not None:
        return DataSpec.parse(spec)
    names = {ck.checkpoint.data.name for ck in checkpoints}
    if len(names) != 1:
        detail = ", ".join(f"{Path(ck.path).name}: {ck.checkpoint.data.name}" for ck in checkpoints)
        raise LncliError(f"the checkpoints were trained on different datasets ({detail}); pass --data")
    try:
        return DataSpec.parse(names.pop())
    except DataError as exc:
        raise DataError(f"the checkpoints' data: {exc}; pass --data") from None


def _check_classes(
    checkpoints: Sequence[LoadedCheckpoint], what: str, num_classes: int, channels: int | None = None
) -> None:
    """Refuse data whose number of classes (or, for arrays, channels) differ from a model's."""
    for ck in checkpoints:
        want = ck.checkpoint.data
        for label, got, exp in (("classes", num_classes, want.num_classes), ("channels", channels, want.in_channels)):
            if got is not None and got != exp:
                hint = f" (--channels {exp} reads them as {exp}-channel images)" if label == "channels" else ""
                raise DataError(
                    f"{what} does not match {Path(ck.path).name} (trained on {want.name!r}): "
                    f"{label} {got} in the data, {exp} in the model{hint}"
                )


def check_data_matches(checkpoints: Sequence[LoadedCheckpoint], meta: DataMeta, *, convertible: bool = False) -> None:
    """Raise :class:`DataError` when an in-memory dataset's classes or channels differ from a model's.

    Arrays are read as stored: their channels must be the model's, unless ``convertible``
    (``--channels`` asked for the model's count; they are then converted as image files are).
    (Image files are decoded to what the model takes; the size is preprocessing:
    :mod:`lncli.data.preprocess`.)
    """
    _check_classes(checkpoints, f"dataset {meta.name!r}", meta.num_classes, None if convertible else meta.in_channels)
