"""Robustness evaluation: checkpoints x test-time modes x noises x severities -> flat records.

This is the compute behind ``lncli evaluate``. It returns one :class:`EvalRecord`
per checkpoint x mode x noise x severity and never prints or writes files;
:mod:`lncli.report` renders the records.

Test-time modes (LocalNorm, arXiv 1902.06550):

* ``running`` - statistics from training (running averages): plain BatchNorm
  inference, and LocalNorm with its running statistics.
* ``batch``   - statistics over the whole test batch (the prediction-time BN
  baseline; a BN model is converted to a one-head LocalNorm copy for this).
* ``local``   - LocalNorm statistics over groups of ``group_size`` test images
  (the checkpoint's grouping, consecutive by default); group ``k`` uses head ``k`` (``--heads position``, the authors'
  behaviour) or the mean of the heads (``--heads mean``, order independent).
* ``single``  - statistics of each image alone.
* ``vote``    - single-image statistics, with the softmax averaged over every
  head (lncli's voting rule, smoother than the authors': :func:`lncli.norm.vote_predict`).
* ``majority`` - single-image statistics, each head votes for its argmax class and
  the most-voted class wins, ties going to the lowest class index (the authors'
  ``np.bincount(votes).argmax()``: :func:`lncli.norm.majority_predict`).

Batch composition matters for every mode but ``running``, so it is explicit:
the test set is shuffled once with ``order_seed`` (so batches mix classes),
cut into consecutive batches of ``batch_size``, and the last batch is simply
smaller - no image is dropped. Inside a ragged batch, ``local`` mode follows
LocalNorm's ragged rule (the last ``N % G`` images form one smaller group that
uses the next head). Every record stores the batch size, group size, heads,
both seeds and the device, because the accuracy depends on all of them.

Efficiency: the test set is decoded once into a uint8 tensor, each
noise x severity batch is generated once (:func:`lncli.corruptions.corrupt`
seeded by the image's global index, so the noise does not depend on the order
or the batch size) and fed to every model and mode.

Distributed (``torchrun``): the batches are split into contiguous shards of
whole batches, so each batch holds exactly the images it holds in a single
process run and the summed counts are identical.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lncli import __version__
from lncli.config.common import parse_list, parse_severities  # noqa: F401 - re-exported (public API)
from lncli.errors import CheckpointError, DataError, LncliError
from lncli.records import CLEAN, RECORD_FIELDS, EvalRecord  # noqa: F401 - re-exported (public API)
from lncli.stats import wilson_interval

MODES: tuple[str, ...] = ("running", "batch", "local", "single", "vote", "majority")
"""Test-time normalisation modes, see the module docstring."""

HEADS: tuple[str, ...] = ("position", "mean")
"""How ``local`` (and ``batch``/``running``) groups pick LocalNorm's affine head."""


NOISE_FAMILY: tuple[str, ...] = ("gaussian", "shot", "impulse")
"""What ``--noise all`` means: ImageNet-C's noise family (every profile maps these names)."""

CIFAR10C_PROFILE = "cifar10c-files"
"""The ``profile`` value recorded when the noise comes from released CIFAR-10-C files."""

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt")
"""File suffixes picked up when a directory is given as a checkpoint argument."""



@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation sweep (one per ``lncli evaluate`` call)."""

    # The three noises of ImageNet-C's "noise" family: what the paper's claim is about.
    noises: tuple[str, ...] = ("gaussian", "shot", "impulse")
    # 0 is the clean row (needed for --max-drop and the table); 1-5 are the ImageNet-C levels.
    severities: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    # imagenet-c is the reference everyone compares against; "paper" is the authors' own protocol.
    profile: str = "imagenet-c"
    # None = each checkpoint's natural modes: BN -> running + batch, LocalNorm -> local.
    modes: tuple[str, ...] | None = None
    # "position" is what the authors' code does (group k uses head k); "mean" removes the order dependence.
    heads: str = "position"
    # None = the checkpoint's own group size, else 16 (the paper's CIFAR setting, 128 / 16 = 8 groups).
    group_size: int | None = None
    # 128 is the paper's CIFAR batch; it fixes which images share test-batch statistics.
    batch_size: int = 128
    # Noise seed: the noise for image i depends only on (seed, noise, severity, i).
    seed: int = 0
    # Fixed shuffle so that batches mix classes (sorted test sets would bias batch statistics);
    # None keeps the dataset order.
    order_seed: int | None = 0
    # auto = CUDA when available (cuda:LOCAL_RANK under torchrun).
    device: str = "auto"
    # float16 autocast on CUDA only: accuracy shifts are tiny but not zero, so it is opt-in.
    amp: bool = False
    # Background threads that generate the next noisy batch while the models run (0 = inline).
    workers: int = 0
    # The authors' min-max rescale (``paper`` profile only): off, because it is a property of their
    # protocol, not of the noise. When on, each noisy cell is computed in float without clipping and the
    # whole noisy test set is rescaled per channel onto the training split's range (PAPER.md, "Rescale";
    # ``EvalData.train_range``), or the clean test set's when no training split was loaded.
    rescale: bool = False




@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint together with where it came from."""

    path: str
    sha256: str  # full hex digest of the file
    checkpoint: Any  # lncli.checkpoint.Checkpoint (kept loose to avoid an import cycle in type checkers)


@dataclass(frozen=True)
class EvalData:
    """The test images of a sweep.

    Either ``clean`` holds the decoded test set and noise is generated, or
    ``cifar10c_dir`` points at released CIFAR-10-C ``.npy`` files (then ``clean``
    is the matching CIFAR-10 test set when available, else ``None``).

    ``train_range`` is the training split's per-channel ``(min, max)``, each (C,)
    float32 on the [0, 1] scale (:func:`image_range`): what ``--rescale`` maps the
    noisy test set onto. ``None`` falls back to the clean test set's range (the
    records say which was used). It is passed in rather than loaded by
    :func:`evaluate_grid`, which does no data I/O of its own.
    """

    name: str
    synthetic: bool
    clean: Any | None  # lncli.data.ImageSet
    cifar10c_dir: Path | None = None
    limit: int | None = None
    meta: Any | None = field(default=None)  # lncli.data.DataMeta, when known up front
    train_range: tuple[Tensor, Tensor] | None = None  # (C,) min, (C,) max of the training split, [0, 1] scale

    def __post_init__(self) -> None:
        # A wrong shape would only fail deep inside the sweep, after the noisy ranges were computed.
        if self.train_range is not None:
            channels = self.clean.images.shape[1] if self.clean is not None else None
            shapes = [tuple(t.shape) for t in self.train_range]
            if len(shapes) != 2 or shapes[0] != shapes[1] or len(shapes[0]) != 1 or channels not in (None, shapes[0][0]):
                raise LncliError(f"train_range must be (min, max), each of shape ({channels or 'C'},); got shapes {shapes}")

    @classmethod
    def from_imageset(cls, images: Any, *, train_range: tuple[Tensor, Tensor] | None = None) -> EvalData:
        """Wrap an :class:`lncli.data.ImageSet` whose noise will be generated.

        Args:
            images: the clean test set.
            train_range: the training split's per-channel range for ``--rescale`` (see the class docstring).

        Returns:
            The :class:`EvalData`.
        """
        return cls(
            name=images.meta.name, synthetic=bool(images.meta.synthetic), clean=images, meta=images.meta, train_range=train_range
        )


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``ep2`` before ``ep10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


# ---------------------------------------------------------------------------
# Loading: checkpoint arguments and data
# ---------------------------------------------------------------------------


def resolve_checkpoint_paths(specs: Sequence[str | Path]) -> list[Path]:
    """Expand CKPT arguments: files, directories (natural sort) and globs.

    Args:
        specs: paths, directories (every ``.pt``/``.pth``/``.ckpt`` inside, natural
            sorted) or glob patterns (``runs/*/best.pt``; ``**`` recurses).

    Returns:
        The files, in argument order, duplicates removed.

    Raises:
        LncliError: a path does not exist, a glob matches nothing, a directory
            holds no checkpoint.
    """
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = [p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]
            if not files:
                raise LncliError(f"directory {text} holds no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
            found.extend(sorted(files, key=lambda p: natural_key(p.name)))
        elif glob.has_magic(text):
            files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
            if not files:
                raise LncliError(f"no checkpoint matches {text!r}")
            found.extend(sorted(files, key=lambda p: natural_key(str(p))))
        else:
            raise LncliError(f"checkpoint not found: {text}")
    return list(dict.fromkeys(found))


def load_checkpoints(specs: Sequence[str | Path]) -> list[LoadedCheckpoint]:
    """Resolve CKPT arguments and load each file with :func:`lncli.checkpoint.load_checkpoint`.

    Args:
        specs: see :func:`resolve_checkpoint_paths`.

    Returns:
        One :class:`LoadedCheckpoint` per file.

    Raises:
        CheckpointError: a file is not a usable checkpoint.
    """
    from lncli.checkpoint import file_sha256, load_checkpoint

    loaded = []
    for path in resolve_checkpoint_paths(specs):
        try:
            ckpt = load_checkpoint(path)
        except LncliError:
            raise
        except Exception as exc:  # a user file can fail torch.load in many ways; none is our bug
            raise CheckpointError(f"{path}: not a readable lncli checkpoint ({type(exc).__name__}: {exc})") from None
        loaded.append(LoadedCheckpoint(path=str(path), sha256=file_sha256(path), checkpoint=ckpt))
    return loaded


def resolve_data(
    spec: str | None,
    checkpoints: Sequence[LoadedCheckpoint],
    *,
    limit: int | None = None,
    data_dir: Path | None = None,
    download: bool = False,
    with_train_range: bool = False,
) -> EvalData:
    """Pick and decode the test set (once) for a sweep.

    Args:
        spec: ``None`` (the dataset named in the checkpoints, which must agree),
            ``fashion-mnist``, ``cifar10``, ``synthetic``, ``imagefolder:PATH`` or
            ``cifar10c:DIR`` (released CIFAR-10-C files instead of generated noise).
        checkpoints: the models, used for the default and for the match check.
        limit: keep only the first ``limit`` test images (before shuffling).
        data_dir: where to look for dataset files first.
        download: let torchvision download a missing dataset (needs the network).
        with_train_range: also read the training split's per-channel range, the
            reference of ``--rescale`` (:func:`load_train_range`; generated noise only).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: the dataset cannot be loaded or does not match a model.
        LncliError: the checkpoints disagree on the dataset and no spec was given.
    """
    from lncli.data import load_dataset

    if limit is not None and limit < 1:
        raise LncliError(f"--limit must be >= 1, got {limit}")
    if spec is None:
        names = {ck.checkpoint.data.name for ck in checkpoints}
        if len(names) != 1:
            detail = ", ".join(f"{Path(ck.path).name}: {ck.checkpoint.data.name}" for ck in checkpoints)
            raise LncliError(f"the checkpoints were trained on different datasets ({detail}); pass --data")
        spec = names.pop()
    if spec.startswith("cifar10c:"):
        directory = Path(spec.split(":", 1)[1])
        if not directory.is_dir():
            raise DataError(f"--data {spec}: {directory} is not a directory of CIFAR-10-C .npy files")
        try:  # the released files carry no clean split; use CIFAR-10's test set when we have it
            clean = load_dataset("cifar10", "test", data_dir=data_dir, download=download, limit=limit)
        except DataError:
            clean = None
        if clean is not None:
            check_data_matches(checkpoints, clean.meta)
        return EvalData(name="cifar10-c", synthetic=False, clean=clean, cifar10c_dir=directory, limit=limit)
    if spec == "imagefolder" or spec.startswith("imagefolder:"):
        if spec == "imagefolder":
            raise LncliError("the checkpoints were trained on an image folder; pass --data imagefolder:PATH")
        # Decode at the size the models were trained at (the first checkpoint's; mismatches are caught below).
        size = int(checkpoints[0].checkpoint.data.image_size[0]) if checkpoints else None
        images = load_dataset(spec, "test", data_dir=data_dir, download=download, limit=limit, image_size=size)
    else:
        images = load_dataset(spec, "test", data_dir=data_dir, download=download, limit=limit)
    check_data_matches(checkpoints, images.meta)
    train_range = load_train_range(spec, images.meta, data_dir=data_dir, download=download) if with_train_range else None
    return EvalData.from_imageset(images, train_range=train_range)


_RANGE_CHUNK = 4096
"""Images per step when taking a range: keeps the float32 copy small (a uint8 set is 4x smaller than its floats)."""


def image_range(chunks: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-channel (min, max) over batches of images: :func:`lncli.corruptions.channel_range` of their concatenation.

    Args:
        chunks: at least one uint8 or float (N_i, C, H, W) batch (e.g. ``images.split(4096)``).

    Returns:
        ``(lo, hi)``, each (C,) float32 on the [0, 1] scale.

    Raises:
        ValueError: no batch.
    """
    from lncli.corruptions import channel_range

    lo: Tensor | None = None
    hi: Tensor | None = None
    for chunk in chunks:
        clo, chi = channel_range(chunk)  # (C,), (C,)
        lo = clo if lo is None else torch.minimum(lo, clo)
        hi = chi if hi is None else torch.maximum(hi, chi)
    if lo is None or hi is None:
        raise ValueError("image_range needs at least one batch of images")
    return lo, hi


def load_train_range(
    spec: str, test_meta: Any, *, data_dir: Path | None = None, download: bool = False
) -> tuple[Tensor, Tensor] | None:
    """The training split's per-channel range, the reference of the paper's ``--rescale`` (PAPER.md, "Rescale").

    The range is taken over the whole training split (``--limit`` cuts the test set only).
    Only the two (C,) vectors are kept; the split itself is dropped as soon as they are taken.

    Args:
        spec: the test set's dataset spec (``fashion-mnist``, ``cifar10``, ``synthetic``, ...).
        test_meta: the test set's :class:`lncli.data.DataMeta` (the channel counts must agree).
        data_dir, download: as for :func:`lncli.data.load_dataset`.

    Returns:
        ``(lo, hi)``, each (C,) float32 on the [0, 1] scale, or ``None`` when there is no
        training split to read: not found, unreadable, empty or of another channel count,
        and always for ``imagefolder:`` data (decoding a whole folder of full-size images
        only for its range could take more memory than the machine has, and a folder
        without ``train/`` has no separate training split). The caller then falls back to
        the clean test set's range, and the records say so.
    """
    from lncli.data import load_dataset

    if spec.startswith("imagefolder"):
        return None
    try:
        train = load_dataset(spec, "train", data_dir=data_dir, download=download)
    except DataError:
        return None
    if len(train) == 0 or train.images.shape[1] != test_meta.in_channels:
        return None
    return image_range(train.images.split(_RANGE_CHUNK))


def check_data_matches(checkpoints: Sequence[LoadedCheckpoint], meta: Any) -> None:
    """Raise :class:`DataError` when a dataset's classes, channels or image size differ from a model's."""
    for ck in checkpoints:
        want = ck.checkpoint.data
        for attr, label in (("num_classes", "classes"), ("in_channels", "channels"), ("image_size", "image size")):
            got, exp = _plain(getattr(meta, attr)), _plain(getattr(want, attr))
            if got != exp:
                raise DataError(
                    f"dataset {meta.name!r} does not match {Path(ck.path).name} (trained on {want.name!r}): "
                    f"{label} {_fmt(got)} in the data, {_fmt(exp)} in the model"
                )


def _plain(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _fmt(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


# ---------------------------------------------------------------------------
# Models and modes
# ---------------------------------------------------------------------------


def _has_localnorm(model: nn.Module) -> bool:
    from lncli.norm import LocalNorm2d

    return any(isinstance(m, LocalNorm2d) for m in model.modules())


def _is_localnorm_ckpt(ckpt: Any) -> bool:
    kind = str(ckpt.norm.kind).lower()
    return kind in ("localnorm", "ln")


def default_modes(ckpt: Any) -> tuple[str, ...]:
    """BN checkpoints: ``running`` + ``batch`` (the paper's two baselines); LocalNorm: ``local``."""
    return ("local",) if _is_localnorm_ckpt(ckpt) else ("running", "batch")


def _default_group_size(ckpt: Any, config: EvalConfig) -> int:
    if config.group_size is not None:
        return config.group_size
    own = getattr(ckpt.norm, "group_size", None)
    return int(own) if own else 16


def _voter(mode: str) -> Callable[[nn.Module, Tensor], Tensor] | None:
    """The voting function of a mode that runs every LocalNorm head in turn, else None."""
    from lncli.norm import majority_predict, vote_predict

    return {"vote": vote_predict, "majority": majority_predict}.get(mode)


@dataclass
class _Runner:
    """One (checkpoint, mode) column: the module to call and how to set it up."""

    index: int  # position in the model list
    loaded: LoadedCheckpoint | None  # None for the one-off scores()/predict() helpers
    mode: str
    heads: str
    group_size: int | None  # effective G recorded (None = running stats, batch_size for "batch")
    model: nn.Module
    data_meta: Any
    set_mode: Callable[[], None]

    def scores(self, x: Tensor) -> Tensor:
        """Class scores (N, K) for a normalised batch x (N, C, H, W): logits, vote probabilities or
        majority vote counts."""
        self.set_mode()
        voter = _voter(self.mode)
        return self.model(x) if voter is None else voter(self.model, x)

    def predict(self, x: Tensor) -> Tensor:
        """Class predictions (N,) for a normalised batch x (N, C, H, W)."""
        return self.scores(x).argmax(dim=1)


def scores(model: nn.Module, x: Tensor, mode: str, *, heads: str = "position", group_size: int = 16) -> Tensor:
    """Class scores of one normalised batch under a test-time mode (no grad, eval mode).

    A BatchNorm model asked for anything but ``running`` is run through a
    one-head LocalNorm copy; the model passed in is not changed.

    Args:
        model: a BN or LocalNorm classifier.
        x: (N, C, H, W) float batch, already normalised.
        mode: one of :data:`MODES`.
        heads: ``position`` or ``mean``.
        group_size: G for ``local`` (and the head positions).

    Returns:
        (N, K) logits (``vote``: softmax probabilities averaged over heads; ``majority``: the
        number of heads voting for each class, whose argmax breaks ties towards the lowest class).
    """
    if mode not in MODES:
        raise LncliError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    runner = _make_runner(0, None, model, None, mode, heads, group_size, batch_size=x.shape[0])
    with torch.inference_mode():
        return runner.scores(x)


def predict(model: nn.Module, x: Tensor, mode: str, *, heads: str = "position", group_size: int = 16) -> Tensor:
    """(N,) int64 predictions of :func:`scores` (same arguments)."""
    return scores(model, x, mode, heads=heads, group_size=group_size).argmax(dim=1)


def _make_runner(
    index: int,
    loaded: LoadedCheckpoint | None,
    model: nn.Module,
    meta: Any,
    mode: str,
    heads: str,
    group_size: int,
    *,
    batch_size: int,
    converted: dict[int, nn.Module] | None = None,
) -> _Runner:
    from lncli.norm import set_test_mode

    model.eval()
    if mode == "running" and not _has_localnorm(model):
        return _Runner(index, loaded, mode, heads, None, model, meta, lambda: None)
    net = model
    if not _has_localnorm(model):
        # BN model in a test-statistics mode: a one-head LocalNorm copy shares nothing with the original,
        # so the "running" column keeps using the untouched BN model. One copy serves all its modes.
        cache = converted if converted is not None else {}
        if index not in cache:
            from lncli.convert import convert_batchnorm_to_localnorm

            cache[index] = convert_batchnorm_to_localnorm(copy.deepcopy(model), group_size=group_size, num_heads=1).eval()
        net = cache[index]
    voting = _voter(mode) is not None  # single-image statistics, every head in turn
    stats = "single" if voting else mode
    recorded_g: int | None = {"running": None, "batch": batch_size, "local": group_size}.get(mode, 1)
    recorded_heads = mode if voting else heads

    def set_mode() -> None:
        # Attributes are shared by every column that uses ``net``; set them before each call.
        set_test_mode(net, stats=stats, heads=heads, group_size=group_size)

    return _Runner(index, loaded, mode, recorded_heads, recorded_g, net, meta, set_mode)


# ---------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    noise: str
    severity: int
    param: float | None
    profile: str


def _cells(config: EvalConfig, data: EvalData) -> list[_Cell]:
    """Clean first (severity 0), then each noise by severity; noise names canonicalised
    (``gaussian_noise`` -> ``gaussian``; the paper profile's ``shot`` -> ``poisson``)."""
    from lncli.noise import canonical_noise, noise_param

    profile = "imagenet-c" if data.cifar10c_dir is not None else config.profile
    noises = tuple(dict.fromkeys(canonical_noise(n, profile) for n in config.noises))
    cells: list[_Cell] = []
    if 0 in config.severities and (data.cifar10c_dir is None or data.clean is not None):
        cells.append(_Cell(CLEAN, 0, 0.0, "none"))
    for noise in noises:
        for sev in config.severities:
            if sev == 0:
                continue
            if data.cifar10c_dir is not None:
                if sev > 5:
                    raise LncliError(f"CIFAR-10-C files hold severities 1-5, not {sev}")
                cells.append(_Cell(noise, sev, None, CIFAR10C_PROFILE))
            else:
                cells.append(_Cell(noise, sev, float(noise_param(noise, sev, config.profile)), config.profile))
    return cells


def _validate(config: EvalConfig) -> None:
    from lncli.noise import PROFILES

    if config.batch_size < 1:
        raise LncliError(f"--batch-size must be >= 1, got {config.batch_size}")
    if config.group_size is not None and config.group_size < 1:
        raise LncliError(f"--group-size must be >= 1, got {config.group_size}")
    if config.heads not in HEADS:
        raise LncliError(f"unknown heads {config.heads!r}; valid: {', '.join(HEADS)}")
    for mode in config.modes or ():
        if mode not in MODES:
            raise LncliError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if not config.noises:
        raise LncliError("no noise to evaluate")
    if config.profile not in PROFILES:
        raise LncliError(f"unknown profile {config.profile!r}; valid: {', '.join(PROFILES)}")
    if not config.severities:
        raise LncliError("no severity to evaluate")
    if config.workers < 0:
        raise LncliError(f"--workers must be >= 0, got {config.workers}")
    if config.rescale and config.profile != "paper":
        raise LncliError(f"--rescale is the paper profile's min-max rescale; use it with --profile paper, not {config.profile}")


def evaluate_grid(
    models: Sequence[LoadedCheckpoint],
    data: EvalData,
    config: EvalConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[EvalRecord]:
    """Evaluate every checkpoint x mode on every noise x severity.

    Under ``torch.distributed`` (already initialised, e.g. by the CLI under
    ``torchrun``) each rank evaluates a contiguous shard of whole batches and the
    counts are summed, so every rank returns the same records as one process.

    Args:
        models: loaded checkpoints (see :func:`load_checkpoints`).
        data: test images (see :func:`resolve_data`).
        config: the sweep.
        progress: called as ``progress(done, total)`` in images x columns per rank.

    Returns:
        Records ordered by checkpoint, mode, then cell (clean first, then noise by severity).

    Raises:
        LncliError: invalid settings (unknown mode/noise, impossible group or batch size, data mismatch).
    """
    from lncli.checkpoint import build_model
    from lncli.data import load_cifar10c, normalize
    from lncli.distributed import all_reduce_sum, local_device, prefetch, whole_batches
    from lncli.noise import apply_minmax, corrupt

    _validate(config)
    if not models:
        raise LncliError("no checkpoint to evaluate")
    device = local_device(config.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    cells = _cells(config, data)
    if not cells:
        raise LncliError("nothing to evaluate: no clean data and no noisy severity")

    # Columns: (checkpoint, mode). Built before any data work so bad settings fail fast.
    runners: list[_Runner] = []
    converted: dict[int, nn.Module] = {}
    for i, loaded in enumerate(models):
        ckpt = loaded.checkpoint
        modes = config.modes or default_modes(ckpt)
        g = _default_group_size(ckpt, config)
        if "local" in modes and config.batch_size % g != 0:
            raise LncliError(
                f"--batch-size {config.batch_size} is not a multiple of the group size {g} "
                f"({Path(loaded.path).name}, local mode needs whole groups of G images)"
            )
        model = build_model(ckpt).to(device)
        for mode in modes:
            runners.append(
                _make_runner(i, loaded, model, ckpt.data, mode, config.heads, g, batch_size=config.batch_size, converted=converted)
            )
    for m in converted.values():
        m.to(device)

    # Order: a fixed shuffle so batch statistics mix classes; the noise is keyed by the original index.
    n_total = _num_images(data)
    if config.order_seed is None:
        order = torch.arange(n_total)
    else:
        order = torch.randperm(n_total, generator=torch.Generator().manual_seed(config.order_seed))
    my_batches = [start for start, _ in whole_batches(n_total, config.batch_size, rank, world)]

    # (cells, columns) counts; summed across ranks once at the end.
    # Kept on the device so that counting never forces a host sync inside the loop.
    correct = torch.zeros(len(cells), len(runners), dtype=torch.int64, device=device)
    seen = torch.zeros(len(cells), dtype=torch.int64)
    pin = device.type == "cuda"
    # Checkpoints of one dataset share their normalisation; key by value so it runs once per batch.
    metas = {_meta_key(r.data_meta): r.data_meta for r in runners}
    total_units = sum(min(config.batch_size, n_total - s) for s in my_batches) * len(cells) * len(runners)
    done_units = 0

    cifar_cache: dict[tuple[str, int], Any] = {}
    cifar_lock = threading.Lock()  # prefetch threads share the cache

    def source(cell: _Cell) -> tuple[Tensor, Tensor]:
        """uint8 (N, C, H, W) images and labels of one cell, in dataset order (uncorrupted for generated noise)."""
        if data.cifar10c_dir is not None and cell.noise != CLEAN:
            key = (cell.noise, cell.severity)
            with cifar_lock:
                return _cifar_block(key)
        return data.clean.images, data.clean.labels

    def _cifar_block(key: tuple[str, int]) -> tuple[Tensor, Tensor]:
        if key not in cifar_cache:
            cifar_cache.clear()  # one severity block at a time keeps memory flat (jobs run cell by cell)
            cset = load_cifar10c(data.cifar10c_dir, key[0], key[1], limit=data.limit)
            check_data_matches(models, cset.meta)
            if len(cset) != n_total:
                raise DataError(f"CIFAR-10-C {key[0]} severity {key[1]} holds {len(cset)} images, expected {n_total}")
            if data.clean is not None and not torch.equal(cset.labels, data.clean.labels):
                # The release follows CIFAR-10's test order; anything else would compare different images.
                raise DataError(f"CIFAR-10-C labels in {data.cifar10c_dir} are not in CIFAR-10 test order")
            cifar_cache[key] = cset
        cset = cifar_cache[key]
        return cset.images, cset.labels

    def make_batch(cell: _Cell, start: int) -> tuple[Tensor, Tensor]:
        idx = order[start : start + config.batch_size]  # (B,) original indices
        images, labels = source(cell)
        x = images[idx]  # (B, C, H, W) uint8
        if cell.noise != CLEAN and data.cifar10c_dir is None:
            if reference is not None:  # --rescale: the pre-pass below took the ranges
                lo, hi = ranges[cell]
                x = apply_minmax(_paper_float(x, cell, idx), lo, hi, *reference)  # float (B, C, H, W) in [0, 1]
            else:
                x = corrupt(x, cell.noise, cell.severity, seed=config.seed, profile=config.profile, indices=idx)
        y = labels[idx]
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def _paper_float(x: Tensor, cell: _Cell, idx: Tensor) -> Tensor:
        """The paper's noise on float [0, 1] input: unclipped, so the rescale sees the real range."""
        return corrupt(x.to(torch.float32).div_(255.0), cell.noise, cell.severity, seed=config.seed, profile=config.profile, indices=idx)

    # The paper's rescale is dataset-level: one pass over every noisy cell for its per-channel range
    # (over the WHOLE test set on every rank, so that sharded runs rescale exactly like one process),
    # mapped onto the training split's range (the authors' reference), else the clean test set's.
    ranges: dict[_Cell, tuple[Tensor, Tensor]] = {}
    reference: tuple[Tensor, Tensor] | None = None  # (C,) min, (C,) max that the noisy ranges map onto
    if config.rescale and data.clean is not None:
        reference = data.train_range if data.train_range is not None else image_range(data.clean.images.split(_RANGE_CHUNK))
        for cell in cells:
            if cell.noise != CLEAN:
                spans = (torch.arange(s, min(s + _RANGE_CHUNK, n_total)) for s in range(0, n_total, _RANGE_CHUNK))
                ranges[cell] = image_range(_paper_float(data.clean.images[idx], cell, idx) for idx in spans)

    jobs = [(ci, cell, s) for ci, cell in enumerate(cells) for s in my_batches]
    autocast = torch.autocast("cuda", dtype=torch.float16) if (config.amp and device.type == "cuda") else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for ci, x, y in prefetch(lambda job: (job[0], *make_batch(job[1], job[2])), jobs, config.workers):
            x = x.to(device, non_blocking=pin)
            y = y.to(device, non_blocking=pin)
            normed = {k: normalize(x, meta) for k, meta in metas.items()}  # one normalisation per distinct DataMeta
            seen[ci] += y.shape[0]
            for j, runner in enumerate(runners):
                pred = runner.predict(normed[_meta_key(runner.data_meta)])
                correct[ci, j] += (pred == y).sum()
                done_units += y.shape[0]
                if progress is not None:
                    progress(done_units, total_units)

    correct = correct.cpu()
    if world > 1:
        # One collective for everything; gloo reduces CPU tensors, nccl CUDA ones.
        counts = torch.cat([correct.flatten(), seen]).to(device if device.type == "cuda" else "cpu")
        counts = all_reduce_sum(counts).cpu()
        correct = counts[: correct.numel()].view_as(correct)
        seen = counts[correct.numel() :]

    records: list[EvalRecord] = []
    for j, runner in enumerate(runners):
        lc = runner.loaded
        assert lc is not None
        for ci, cell in enumerate(cells):
            n, c = int(seen[ci]), int(correct[ci, j])
            lo, hi = wilson_interval(c, n)
            rescaled = bool(config.rescale and cell.noise != CLEAN and data.cifar10c_dir is None)
            records.append(
                EvalRecord(
                    checkpoint=lc.path,
                    sha256=lc.sha256[:12],
                    arch=lc.checkpoint.arch,
                    norm=str(lc.checkpoint.norm.kind),
                    mode=runner.mode,
                    heads=runner.heads,
                    group_size=runner.group_size,
                    batch_size=config.batch_size,
                    noise=cell.noise,
                    profile=cell.profile,
                    severity=cell.severity,
                    param=cell.param,
                    n=n,
                    correct=c,
                    accuracy=c / n if n else float("nan"),
                    ci_low=lo,
                    ci_high=hi,
                    noise_seed=config.seed,
                    order_seed=config.order_seed,
                    device=str(device),
                    amp=bool(config.amp and device.type == "cuda"),
                    world_size=world,
                    data=data.name,
                    synthetic=data.synthetic,
                    lncli_version=__version__,
                    rescale=rescaled,
                    rescale_range=("train" if data.train_range is not None else "test") if rescaled else None,
                )
            )
    return records


def _meta_key(meta: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(meta.mean), tuple(meta.std)


def _num_images(data: EvalData) -> int:
    if data.clean is not None:
        return len(data.clean)
    if data.cifar10c_dir is None:
        raise LncliError("no test images")
    # Without a clean split the size comes from labels.npy, shared by all released files
    # (5 severities stacked, so N = len / 5).
    import numpy as np

    try:
        n = len(np.load(data.cifar10c_dir / "labels.npy", mmap_mode="r")) // 5
    except (OSError, ValueError) as exc:
        raise DataError(f"{data.cifar10c_dir}: cannot read CIFAR-10-C labels.npy ({exc})") from None
    return min(n, data.limit) if data.limit else n
