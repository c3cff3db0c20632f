"""Which checkpoints a sweep evaluates: CKPT arguments (files, folders, globs) resolved and loaded.

:func:`resolve_checkpoint_paths` expands the arguments (folders in natural order, globs
sorted, duplicates dropped) and :func:`load_checkpoints` loads each file with
:func:`lncli.checkpoint.load_checkpoint` (``weights_only=True``) as a :class:`LoadedCheckpoint`.
Foreign files (bare state_dicts) take the caller's ``arch`` and data metadata (``--arch``,
``--data``), and their weights are checked against the model before any data is read.
:func:`checkpoint_notes` says, one line per file, which of a Lightning checkpoint's
``hyper_parameters`` its builder received.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lncli.checkpoint import CHECKPOINT_SUFFIXES, Checkpoint, LoadReport, complete_weights, file_sha256, load_checkpoint
from lncli.data import DataMeta
from lncli.errors import CheckpointError, LncliError

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LoadedCheckpoint",
    "checkpoint_notes",
    "load_checkpoints",
    "natural_key",
    "resolve_checkpoint_paths",
]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint together with where it came from, and what a non-strict load left out."""

    path: str
    sha256: str  # full hex digest of the file
    checkpoint: Checkpoint
    load_report: LoadReport = field(default_factory=LoadReport)  # empty unless loaded with strict=False
    # A Python caller's model (lncli.evaluate): the sweep runs a deep copy of it instead of building
    # one from ``checkpoint`` (whose state_dict and metadata then describe the module).
    module: nn.Module | None = field(default=None, compare=False)


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``ep2`` before ``ep10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


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


def load_checkpoints(
    specs: Sequence[str | Path],
    *,
    arch: str | None = None,
    data: DataMeta | None = None,
    strict: bool = True,
    allow_code: bool = False,
) -> list[LoadedCheckpoint]:
    """Resolve CKPT arguments and load each file with :func:`lncli.checkpoint.load_checkpoint`.

    A foreign file's weights (and, with ``strict=False``, every file's) are loaded into
    their model once here (:func:`lncli.checkpoint.complete_weights`), so a wrong
    ``--arch`` or ``--data`` fails before the test set is read.

    Args:
        specs: see :func:`resolve_checkpoint_paths`.
        arch: the architecture of foreign files (``--arch``); an lncli file must record the same.
        data: the data metadata of foreign files (from ``--data``: :func:`lncli.data.dataset_meta`).
        strict: refuse missing or unexpected keys; without it they are reported in
            :attr:`LoadedCheckpoint.load_report` and the checkpoint's provenance.
        allow_code: ``arch`` comes from the user, so a ``package.module:function`` arch may run.

    Returns:
        One :class:`LoadedCheckpoint` per file.

    Raises:
        CheckpointError: a file is not a usable checkpoint, or its weights do not fit.
    """
    loaded = []
    for path in resolve_checkpoint_paths(specs):
        try:
            ckpt = load_checkpoint(path, arch=arch, data=data, allow_code=allow_code)
        except LncliError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user file can fail torch.load in many ways; none is our bug
            raise CheckpointError(f"{path}: not a readable lncli checkpoint ({type(exc).__name__}: {exc})") from None
        report = LoadReport()
        if not strict or "foreign" in ckpt.provenance:
            try:
                ckpt, report = complete_weights(ckpt, strict=strict)
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
        loaded.append(LoadedCheckpoint(path=str(path), sha256=file_sha256(path), checkpoint=ckpt, load_report=report))
    return loaded


def checkpoint_notes(models: Sequence[LoadedCheckpoint]) -> list[str]:
    """One line per checkpoint whose file held ``hyper_parameters``: which went to its builder, which did not.

    Args:
        models: the loaded checkpoints (their provenance, :func:`lncli.checkpoint.load_checkpoint`).

    Returns:
        e.g. ``lit.ckpt: its hyper_parameters num_filters=8, hidden_size=64 went to lit:Net (left out: lr: not
        in the builder's signature)``; nothing for other files.
    """
    notes = []
    for m in models:
        record = m.checkpoint.provenance.get("hyper_parameters")
        if not isinstance(record, dict):
            continue
        name, arch = Path(m.path).name, m.checkpoint.arch
        passed = ", ".join(f"{k}={m.checkpoint.arch_kwargs[k]!r}" for k in record.get("passed", ()))
        reasons: dict[str, list[str]] = {}
        for key, why in dict(record.get("left_out", {})).items():
            reasons.setdefault(str(why), []).append(str(key))
        left = "; ".join(f"{', '.join(keys)}: {why}" for why, keys in reasons.items())
        said = (
            f"its hyper_parameters {passed} went to {arch}"
            if passed
            else f"none of its hyper_parameters went to {arch}"
        )
        notes.append(f"{name}: {said}" + (f" (left out: {left})" if left else ""))
    return notes
