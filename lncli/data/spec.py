"""The ``--data`` grammar, parsed once into a tagged :class:`DataSpec`.

A spec is one of:

* a registered dataset (:data:`~lncli.data.meta.DATASETS`): ``fashion-mnist``, ``cifar10``,
  ``synthetic``, ``synthetic-gray``, in any case, with the other spellings ``fashionmnist`` and
  ``cifar-10``;
* ``imagefolder:PATH``: torchvision's ``ImageFolder`` layout;
* ``cifar10c:DIR``: an array release (CIFAR-10-C, CIFAR-100-C, ``lncli corrupt --format npy``);
* ``imagenetc:DIR``: a folder release (ImageNet-C, Tiny-ImageNet-C).

The prefix is case-insensitive; the path is kept as written. Every loader, the evaluate job's
test set and the convert job read specs through :meth:`DataSpec.parse`, so a spec means the same
everywhere and a bad one is refused with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from lncli.data.meta import DATASETS
from lncli.errors import DataError

__all__ = ["DATA_FORMS", "FOLDER_KINDS", "DataKind", "DataSpec", "named_dataset"]

DataKind = Literal["dataset", "imagefolder", "cifar10c", "imagenetc"]
"""What a spec names: a registered dataset, or one of the three path forms (named by their prefix)."""

_PATH_KINDS: tuple[DataKind, ...] = get_args(DataKind)[1:]
_PLACEHOLDER = {"imagefolder": "PATH", "cifar10c": "DIR", "imagenetc": "DIR"}

FOLDER_KINDS: tuple[DataKind, ...] = ("imagefolder", "imagenetc")
"""The kinds whose images are files decoded to what a model takes (ImageNet's preprocessing by default)."""

DATA_FORMS: tuple[str, ...] = (*DATASETS, *(f"{kind}:{_PLACEHOLDER[kind]}" for kind in _PATH_KINDS))
"""Every form a spec may take, for messages and help."""

_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}
"""Other spellings of the registered names (:data:`~lncli.data.meta.DATASETS`)."""


def named_dataset(spec: str) -> str | None:
    """The registered dataset a spec names (``"FashionMNIST"`` -> ``"fashion-mnist"``), or None (folders, releases).

    Args:
        spec: any text; case and surrounding spaces are ignored.

    Returns:
        A key of :data:`~lncli.data.meta.DATASETS`, or None.
    """
    name = str(spec).strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in DATASETS else None


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` spec: exactly one kind, with its dataset name or its path.

    Attributes:
        kind: ``"dataset"`` or a path form's prefix (:data:`DataKind`).
        name: the registered name for ``"dataset"`` (``"fashion-mnist"``...), else the kind.
        path: the folder of a path form; None for ``"dataset"``.
        text: the spec as written (for messages).
    """

    kind: DataKind
    name: str
    path: Path | None
    text: str

    @classmethod
    def parse(cls, spec: str | DataSpec) -> DataSpec:
        """Parse a spec (a :class:`DataSpec` is returned as it is).

        Args:
            spec: e.g. ``"Fashion-MNIST"``, ``"imagefolder:photos/"``, ``"cifar10c:data/CIFAR-10-C"``.

        Returns:
            The spec.

        Raises:
            DataError: a path form without its path, or a name that is no registered dataset
                (the valid forms are listed).
        """
        if isinstance(spec, DataSpec):
            return spec
        text = str(spec)
        prefix, _, arg = text.partition(":")
        kind = prefix.strip().lower()
        for path_kind in _PATH_KINDS:
            if kind == path_kind:
                if not arg:
                    raise DataError(f"{kind} needs a path: use {kind}:{_PLACEHOLDER[kind]}")
                return cls(path_kind, path_kind, Path(arg), text)
        name = named_dataset(text)
        if name is None:
            raise DataError(f"unknown dataset {text!r}; valid: {', '.join(DATA_FORMS)}")
        return cls("dataset", name, None, text)

    @property
    def folder(self) -> Path:
        """The folder of a path form (every path form names a folder).

        Raises:
            ValueError: the spec names a registered dataset (a caller's mistake: check ``kind`` first).
        """
        if self.path is None:
            raise ValueError(f"data {self.text!r} is a registered dataset, not a folder")
        return self.path

    @property
    def reads_image_files(self) -> bool:
        """Whether the images are files of a folder (``imagefolder:``, ``imagenetc:``)."""
        return self.kind in FOLDER_KINDS

    def __str__(self) -> str:
        return self.text
