"""lncli's self-describing checkpoint format, and loading of foreign checkpoints.

On disk a checkpoint is a plain dict written with ``torch.save`` (atomically)::

    {"format": "lncli-checkpoint", "format_version": 1,
     "arch": "resnet20", "arch_kwargs": {...},
     "norm": {"kind": "localnorm", "group_size": 16, "num_heads": 8, "grouping": "consecutive"},
     "data": DataMeta.to_dict(),          # classes, channels, size, mean/std
     "state_dict": {...}, "config": {...}, "metrics": {...}, "provenance": {...},
     "train_state": {...} | None,         # optimizer / scheduler / RNG / epoch, for --resume
     "lncli_version": "0.1.0"}

Everything in it is a tensor or a plain Python type, so it is read with
``torch.load(weights_only=True)``: opening a checkpoint never runs code from it.

``arch`` is any form of :func:`lncli.config.train.parse_arch`: a registry name,
``torchvision:NAME`` or ``timm:NAME`` (resolved through those libraries' own registries),
or ``package.module:function``. A file may *record* the last form (a checkpoint that
``lncli convert`` wrote for the user's own model), but a recorded builder is never
imported or run: it is refused unless the caller names the same arch itself
(``load_checkpoint(..., arch=..., allow_code=True)``, i.e. ``--arch`` on the command line).

Foreign checkpoints (a bare state_dict, or one wrapped in ``state_dict``,
``model`` or ``state_dict_ema``, with DDP's ``module.`` or torch.compile's
``_orig_mod.`` prefixes) load too; the caller supplies the architecture and data
metadata, which such files do not record, and the classifier's classes and the stem's
channels are checked against the data before any model is built
(:func:`lncli.models.weights.check_fits_data`). Every failure raises
:class:`~lncli.errors.CheckpointError` with one line naming the problem.

A PyTorch Lightning ``.ckpt`` is such a file (its weights under ``state_dict``), and it also
holds the ``hyper_parameters`` its module was built with. They go to the builder only when the
caller named a ``package.module:function`` builder itself (``allow_code``: ``--arch``), and only
the ones its signature names and whose values are plain (numbers, strings, booleans, None, and
lists or dicts of them): :func:`lncli.models.foreign.hyper_parameter_kwargs`. The provenance records which were
passed and which left out, and why (``provenance["hyper_parameters"]``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lncli import __version__, models
from lncli.config.train import NormConfig, parse_arch
from lncli.data import DataMeta
from lncli.errors import CheckpointError, DataError, LncliError
from lncli.io import atomic_write
from lncli.models.foreign import hyper_parameter_kwargs
from lncli.models.weights import SHOW, LoadReport, check_fits_data, describe_norms, load_weights

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "LoadReport",
    "NormSpec",
    "checkpoint_from_model",
    "complete_weights",
    "file_sha256",
    "load_checkpoint",
    "model_from_checkpoint",
    "model_with_report",
    "save_checkpoint",
]

FORMAT = "lncli-checkpoint"
FORMAT_VERSION = 1
# Wrapper keys of foreign checkpoints, in the order they are tried. "state_dict"
# before "state_dict_ema", as timm's validate does by default.
_FOREIGN_WRAPPERS = ("state_dict", "model", "state_dict_ema")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
# Missing keys of a non-strict load keep their fresh initial values: drawn from this seed,
# so that a sweep's records do not depend on the global RNG.
_FILL_SEED = 0

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt")
"""File suffixes of checkpoints: what ``lncli evaluate FOLDER`` picks up and ``lncli convert`` may write."""


NormSpec = NormConfig
"""Which norm layer a checkpoint's model uses: the same dataclass as a train config's ``norm`` section.

Its :meth:`~lncli.config.train.NormConfig.to_dict` / ``from_dict`` are the on-disk ``norm`` record.
"""


@dataclass
class Checkpoint:
    """A model's weights plus everything needed to rebuild and evaluate it.

    Attributes:
        arch: the architecture: a registry name (:func:`lncli.models.list_models`),
            ``torchvision:NAME``, ``timm:NAME`` or ``package.module:function``.
        arch_kwargs: model-specific keyword arguments (not num_classes / in_channels, which come from ``data``).
        norm: the norm layer the weights belong to.
        data: dataset metadata (classes, channels, size, mean/std).
        state_dict: the model's state_dict (CPU tensors).
        config: the resolved training config, as plain types.
        metrics: e.g. final accuracy.
        provenance: where the weights came from (source file, conversion, git commit...).
        train_state: optimizer / scheduler / RNG / epoch state for resuming; None in released checkpoints.
        lncli_version: the version that wrote it.
        allow_code: whether :func:`model_from_checkpoint` may import and run a ``package.module:function``
            arch. Never written to or read from a file: True only when the caller named this
            arch itself (:func:`load_checkpoint`'s ``allow_code``).
    """

    arch: str
    arch_kwargs: dict[str, Any]
    norm: NormSpec
    data: DataMeta
    state_dict: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    lncli_version: str = __version__
    allow_code: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the on-disk payload (plain types and tensors only)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "arch_kwargs": dict(self.arch_kwargs),
            "norm": self.norm.to_dict(),
            "data": self.data.to_dict(),
            "state_dict": dict(self.state_dict),
            "config": dict(self.config),
            "metrics": dict(self.metrics),
            "provenance": dict(self.provenance),
            "train_state": self.train_state,
            "lncli_version": self.lncli_version,
        }


# --------------------------------------------------------------------------- writing


_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)


def _check_plain(obj: Any, where: str) -> None:
    """Fail at save time, not at load time, on anything weights_only cannot read back."""
    if isinstance(obj, (Tensor, *_PLAIN_SCALARS)):
        return
    if isinstance(obj, dict):  # includes OrderedDict
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"checkpoint field {where} has a key of type {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{where}.{k}")
        return
    if type(obj) in (list, tuple, set):  # exact types: namedtuples and subclasses need code to unpickle
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint field {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which "
        "torch.load(weights_only=True) cannot read; convert it to tensors or plain Python types"
    )


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike[str]) -> None:
    """Write ``ckpt`` to ``path`` atomically (a reader never sees a partial file).

    Args:
        ckpt: the checkpoint.
        path: destination file (parent folders are created).

    Raises:
        TypeError: a field holds an object that ``weights_only`` loading could not read
            (e.g. a numpy array or a custom class); a programming error, caught before writing.
    """
    payload = ckpt.to_dict()
    _check_plain(payload, "checkpoint")
    # Saved through a file object, not the temporary path: torch.save names the zip's root
    # folder after a path's stem, so a path would put the random temporary name into the
    # bytes. Through a file object the bytes depend on the contents alone.
    with atomic_write(path, "wb") as fh:
        torch.save(payload, fh)


def checkpoint_from_model(
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    norm: NormSpec,
    data: DataMeta,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Checkpoint:
    """Snapshot a model into a :class:`Checkpoint` (detached CPU copies of its state_dict).

    DDP (``.module``) and torch.compile (``._orig_mod``) wrappers are unwrapped, so
    the keys are those of the bare model.

    Args:
        model: the model (any device, possibly wrapped).
        arch: its registered name.
        arch_kwargs: the model-specific kwargs it was built with.
        norm: its norm spec.
        data: the data it was trained on.
        config: resolved config (plain types).
        metrics: metrics to record.
        provenance: where it came from.
        train_state: resume state (plain types / tensors).

    Returns:
        The checkpoint; mutating the model afterwards does not change it.
    """
    while True:
        # Not `a or b`: an nn.Sequential with no children is falsy.
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    return Checkpoint(
        arch=arch,
        arch_kwargs=dict(arch_kwargs),
        norm=norm,
        data=data,
        state_dict=state,
        config=dict(config or {}),
        metrics=dict(metrics or {}),
        provenance=dict(provenance or {}),
        train_state=train_state,
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks.

    Raises:
        CheckpointError: the file cannot be read.
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one clear line."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    is_zip = head.startswith(b"PK")
    is_legacy = head[:1] == b"\x80"  # a pickle protocol opcode: torch's pre-1.6 format
    if is_zip:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is truncated or corrupt (its zip archive is incomplete)")
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            raise CheckpointError(f"{path} is truncated or corrupt (its zip archive is unreadable)") from None
        if not any(n.endswith("data.pkl") for n in names):
            raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        # torch's weights_only unpickler names a disallowed class as "Unsupported global";
        # other failures (bad opcodes) mean the bytes are not a clean pickle at all.
        if any(
            m in msg for m in ("Unsupported global", "unsupported GLOBAL", "unrecognized function", "Can only build")
        ):
            culprit = _unsupported_global(msg)
            raise CheckpointError(
                f"{path} needs code to unpickle{culprit}; lncli only reads weights-only files. "
                "Re-save its state_dict with torch.save(model.state_dict(), path)"
            ) from None
        if is_zip or is_legacy:
            raise CheckpointError(f"{path} is truncated or corrupt (its pickle data is unreadable)") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint") from None
    except (
        EOFError,
        RuntimeError,
        ValueError,
        OSError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
    ) as exc:
        if is_zip or is_legacy:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{path} is truncated or corrupt ({first})") from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint") from None


def _unsupported_global(msg: str) -> str:
    """Pull the offending class name out of torch's weights_only error, if it names one."""
    match = re.search(r"GLOBAL ([\w.]+)", msg)
    return f" (it contains a {match.group(1).rstrip('.')} object)" if match else ""


def _strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes when every key has one."""
    for prefix in _STRIP_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _as_state_dict(obj: Any) -> dict[str, Tensor] | None:
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


_HYPER_PARAMETERS = "hyper_parameters"
"""Where a PyTorch Lightning checkpoint keeps its module's ``__init__`` arguments (``save_hyperparameters``)."""


def _validate_arch(arch: str, where: str, *, allow_code: bool = False) -> None:
    try:
        models.check_arch(arch, allow_code=allow_code)
    except LncliError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def _recorded_code_allowed(recorded: str, path: Path, arch: str | None, allow_code: bool) -> bool:
    """Whether a file's recorded arch may run code: never by itself, only when the caller named it.

    Raises:
        CheckpointError: the file records a ``package.module:function`` arch that the caller did not name
            (nothing is imported: the refusal comes from the string alone).
    """
    try:
        runs_code = parse_arch(recorded).runs_code
    except LncliError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if not runs_code:
        return False
    if allow_code and arch == recorded:
        return True
    raise CheckpointError(
        f"{path} records arch {recorded!r}, a package.module:function builder; lncli never runs code named "
        f"by a file (if it is your own builder, name it yourself: --arch {recorded})"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    data: DataMeta | None = None,
    norm: NormSpec | None = None,
    allow_code: bool = False,
) -> Checkpoint:
    """Read an lncli checkpoint, or a foreign one with the caller's arch and data.

    Always ``torch.load(weights_only=True)`` on the CPU.

    For an **lncli** file, ``arch`` (if given) must match the recorded arch; ``arch_kwargs``,
    ``data`` and ``norm`` are ignored, since the file records them. A recorded
    ``package.module:function`` arch is refused unless ``arch`` names it and ``allow_code`` is set.

    For a **foreign** file (a bare state_dict or one under ``state_dict`` / ``model`` /
    ``state_dict_ema``; ``module.`` / ``_orig_mod.`` prefixes are removed), ``arch`` and
    ``data`` are required, and the weights' classes and channels must be the data's.
    ``norm`` defaults to BatchNorm, or to LocalNorm with the file's number of heads when
    its keys include ``head_weight``.

    Args:
        path: the file.
        arch: any form of :func:`lncli.models.check_arch` (required for foreign files; checked
            for lncli files).
        arch_kwargs: model-specific kwargs for foreign files.
        data: dataset metadata for foreign files (e.g. ``lncli.data.dataset_meta("cifar10")``).
        norm: norm spec for foreign files.
        allow_code: ``arch`` comes from the user (command line, Python API), so a
            ``package.module:function`` arch may be imported and, at build time, run.

    Returns:
        The :class:`Checkpoint` (keys not yet checked against the arch: see :func:`model_from_checkpoint`).

    Raises:
        CheckpointError: missing file, not a checkpoint, truncated, needs code to unpickle,
            malformed lncli payload, wrong or unknown arch, a recorded code arch, a foreign
            file without arch/data, or weights whose classes/channels are not the data's.
    """
    path = Path(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        ckpt = _from_lncli_payload(obj, path)
        if arch is not None and arch != ckpt.arch:
            raise CheckpointError(f"{path} holds a {ckpt.arch!r} model, not {arch!r}")
        ckpt.allow_code = _recorded_code_allowed(ckpt.arch, path, arch, allow_code)
        return ckpt
    state = _as_state_dict(obj)
    wrapper = "bare state_dict"
    if state is None and isinstance(obj, dict):
        for key in _FOREIGN_WRAPPERS:
            state = _as_state_dict(obj.get(key))
            if state is not None:
                wrapper = f"state_dict under {key!r}"
                break
    if state is None:
        what = (
            f"a dict with keys {sorted(map(str, obj))[:SHOW]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        )
        raise CheckpointError(f"{path} is not a model checkpoint: it holds {what}, not a state_dict")
    if arch is None or data is None:
        needed = " and ".join(
            flag for flag, value in (("--arch NAME", arch), ("--data DATASET", data)) if value is None
        )
        raise CheckpointError(
            f"{path} is a foreign checkpoint ({wrapper}) that records no architecture or data; pass {needed}"
        )
    _validate_arch(arch, str(path), allow_code=allow_code)
    state = _strip_prefixes(state)
    try:
        check_fits_data(state, num_classes=data.num_classes, in_channels=data.in_channels, data_name=data.name)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if norm is None:
        heads = [v for k, v in state.items() if k.endswith("head_weight")]
        norm = NormSpec("localnorm", num_heads=int(heads[0].shape[0])) if heads else NormSpec()
    provenance: dict[str, Any] = {"source": str(path), "foreign": wrapper}
    kwargs = dict(arch_kwargs or {})
    if isinstance(obj, dict) and _HYPER_PARAMETERS in obj:
        try:
            passed, left_out = hyper_parameter_kwargs(obj[_HYPER_PARAMETERS], arch, allow_code=allow_code)
        except LncliError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        kwargs = {**passed, **kwargs}  # the caller's own arch_kwargs win
        provenance[_HYPER_PARAMETERS] = {"passed": list(passed), "left_out": left_out}
    return Checkpoint(
        arch=arch,
        arch_kwargs=kwargs,
        norm=norm,
        data=data,
        state_dict=state,
        provenance=provenance,
        allow_code=allow_code,
    )


def _from_lncli_payload(obj: dict[str, Any], path: Path) -> Checkpoint:
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this lncli ({__version__}) reads up to {FORMAT_VERSION}"
        )
    missing = [k for k in ("arch", "norm", "data", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"{path} is a malformed lncli checkpoint: missing {', '.join(missing)}")
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} is a malformed lncli checkpoint: state_dict is not a dict of tensors")
    if not isinstance(obj["arch"], str):
        raise CheckpointError(f"{path} is a malformed lncli checkpoint: arch is not a string")
    for key in ("arch_kwargs", "config", "metrics", "provenance", "train_state"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise CheckpointError(f"{path} is a malformed lncli checkpoint: {key} is not a dict")
    try:
        data = DataMeta.from_dict(obj["data"])
    except DataError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if not isinstance(obj["norm"], dict):
        raise CheckpointError(f"{path} is a malformed lncli checkpoint: norm is not a dict")
    return Checkpoint(
        arch=obj["arch"],
        arch_kwargs=dict(obj.get("arch_kwargs") or {}),
        norm=NormSpec.from_dict(obj["norm"]),
        data=data,
        state_dict=dict(state),
        config=dict(obj.get("config") or {}),
        metrics=dict(obj.get("metrics") or {}),
        provenance=dict(obj.get("provenance") or {}),
        train_state=obj.get("train_state"),
        lncli_version=str(obj.get("lncli_version", "unknown")),
    )


# --------------------------------------------------------------------------- building


def model_with_report(ckpt: Checkpoint, *, strict: bool = True) -> tuple[nn.Module, LoadReport]:
    """Build ``ckpt``'s architecture with its norm layer and load its weights.

    Args:
        ckpt: a checkpoint from :func:`load_checkpoint` or :func:`checkpoint_from_model`.
        strict: refuse missing or unexpected keys; without it they are reported (missing
            ones keep their fresh initial values). Shapes must match either way.

    Returns:
        The model on the CPU, in eval mode, and the :class:`LoadReport` (empty when strict).

    Raises:
        CheckpointError: unknown arch or bad kwargs, a ``package.module:function`` arch the
            caller did not allow (``ckpt.allow_code``), or weights that do not fit the model
            (shape mismatches; with ``strict`` missing/unexpected keys; the first few named),
            which is what a wrong ``--arch`` looks like.
    """
    _validate_arch(ckpt.arch, "checkpoint", allow_code=ckpt.allow_code)
    try:
        model = models.build_model(
            ckpt.arch,
            norm=ckpt.norm,
            num_classes=ckpt.data.num_classes,
            in_channels=ckpt.data.in_channels,
            arch_kwargs=ckpt.arch_kwargs,
            allow_code=ckpt.allow_code,
        )
    except LncliError as exc:
        raise CheckpointError(f"cannot build {ckpt.arch!r} from the checkpoint's settings: {exc}") from None
    # Worded after the model as built: a builder's model may have other norm layers than the record says, or none.
    what = (
        f"arch {ckpt.arch!r} with {describe_norms(model)}, {ckpt.data.num_classes} classes, "
        f"{ckpt.data.in_channels} channels"
    )
    report = load_weights(model, ckpt.state_dict, strict=strict, what=what)
    return model.eval(), report


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Build ``ckpt``'s architecture with its norm layer and load its weights strictly.

    (:func:`lncli.models.build_model` builds an architecture by name with fresh weights; this
    builds the one a checkpoint records, through it, and fills it.)

    Args:
        ckpt: a checkpoint from :func:`load_checkpoint` or :func:`checkpoint_from_model`.

    Returns:
        The model on the CPU, in eval mode.

    Raises:
        CheckpointError: as :func:`model_with_report` with ``strict=True``.
    """
    return model_with_report(ckpt, strict=True)[0]


def complete_weights(ckpt: Checkpoint, *, strict: bool = True) -> tuple[Checkpoint, LoadReport]:
    """Check ``ckpt``'s weights against its model now, and make them complete for a non-strict load.

    The model is built once (under a fixed seed, so missing keys get the same initial values
    on every run, and the global RNG is left as it was). When keys were missing or
    unexpected (``strict=False`` only), the returned checkpoint holds the model's full
    state_dict instead (missing keys at their initial values, unexpected ones dropped),
    so that every later :func:`model_from_checkpoint` loads it strictly, and its provenance records
    the keys under ``"load"``.

    Args:
        ckpt: the checkpoint.
        strict: as for :func:`model_with_report`.

    Returns:
        ``(checkpoint, report)``: ``ckpt`` itself when every key matched.

    Raises:
        CheckpointError: as :func:`model_with_report`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_FILL_SEED)
        model, report = model_with_report(ckpt, strict=strict)
    if not report:
        return ckpt, report
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    provenance = {**ckpt.provenance, "load": {"strict": False, **report.to_dict()}}
    return replace(ckpt, state_dict=state, provenance=provenance), report
