"""Weights against a model: do they fit the data, and what did loading them leave out?

A foreign state_dict records no classes or channels; the data names them. Before a
model is built, :func:`check_fits_data` compares K (classes) and C (channels) with the
classifier and stem tensors, found generically as the *last* 2-D ``weight`` (a Linear
classifier) and the *first* 4-D ``weight`` (the stem conv), and names the key that
disagrees. :func:`load_weights` then loads a state_dict into a built model, strictly
by default, and returns a :class:`LoadReport` of the missing and unexpected keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from lncli.errors import CheckpointError

__all__ = ["LoadReport", "check_fits_data", "classifier_key", "describe_norms", "few", "load_weights", "stem_key"]

SHOW = 5
"""How many key names a message lists."""


def few(keys: list[str]) -> str:
    """The first :data:`SHOW` keys, then how many there are in all."""
    shown = ", ".join(keys[:SHOW])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > SHOW else shown


def _weights(state: Mapping[str, Tensor], dim: int) -> list[str]:
    """Keys of ``dim``-D tensors named ``weight`` (LocalNorm's 2-D ``head_weight`` is not one)."""
    return [k for k, v in state.items() if k.rsplit(".", 1)[-1] == "weight" and v.dim() == dim]


def classifier_key(state: Mapping[str, Tensor]) -> str | None:
    """The key of the classifier's weight: the last 2-D ``weight`` (K, features), or None (e.g. a conv head).

    Args:
        state: a state_dict, in the model's order.

    Returns:
        The key, or None when the state_dict has no 2-D weight.
    """
    keys = _weights(state, 2)
    return keys[-1] if keys else None


def stem_key(state: Mapping[str, Tensor]) -> str | None:
    """The key of the stem conv's weight: the first 4-D ``weight`` (out, C, kh, kw), or None.

    Args:
        state: a state_dict, in the model's order.

    Returns:
        The key, or None when the state_dict has no 4-D weight.
    """
    keys = _weights(state, 4)
    return keys[0] if keys else None


def check_fits_data(state: Mapping[str, Tensor], *, num_classes: int, in_channels: int, data_name: str) -> None:
    """Refuse weights whose classifier or stem disagrees with the data's classes or channels.

    Args:
        state: the state_dict (prefixes already stripped).
        num_classes: K of the data.
        in_channels: C of the data.
        data_name: the dataset's name, for the message.

    Raises:
        CheckpointError: one line naming the key, e.g. ``fc.weight has 1000 classes, the data has 10``.
    """
    key = classifier_key(state)
    if key is not None and int(state[key].shape[0]) != num_classes:
        raise CheckpointError(
            f"{key} has {int(state[key].shape[0])} classes, the data ({data_name}) has {num_classes}; "
            "is --data the dataset the model was trained on?"
        )
    key = stem_key(state)
    if key is not None and int(state[key].shape[1]) != in_channels:
        took = int(state[key].shape[1])
        raise CheckpointError(
            f"{key} takes {took} channels, the data ({data_name}) has {in_channels}; is --data the dataset the "
            f"model was trained on? (--channels {took} reads the data as {took}-channel images)"
        )


_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
"""What counts as a norm layer when a message says what a model has (BatchNorm, LocalNorm and InstanceNorm
derive from ``_NormBase``)."""


def describe_norms(model: nn.Module) -> str:
    """The norm layers a built model has, for messages: ``3 BatchNorm2d layers``, ``no norm layer``.

    Args:
        model: the model.

    Returns:
        Each norm class with its count, most frequent first, e.g. ``4 LocalNorm2d and 1 LayerNorm layers``.
    """
    counts: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, _NORM_TYPES):
            counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    if not counts:
        return "no norm layer"
    parts = [f"{n} {name}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    total = sum(counts.values())
    return f"{' and '.join(parts)} layer{'s' if total > 1 else ''}"


@dataclass(frozen=True)
class LoadReport:
    """What a non-strict load left out: keys the model has and the file lacks, and the reverse.

    Attributes:
        missing_keys: the model's keys not in the file (left at their fresh initial values).
        unexpected_keys: the file's keys the model does not have (ignored).
    """

    missing_keys: tuple[str, ...] = ()
    unexpected_keys: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing_keys or self.unexpected_keys)

    def summary(self) -> str:
        """One line, e.g. ``2 missing keys (fc.weight, fc.bias); 1 unexpected key (head.weight)``."""
        parts = []
        for what, keys in (("missing", self.missing_keys), ("unexpected", self.unexpected_keys)):
            if keys:
                parts.append(f"{len(keys)} {what} key{'s' if len(keys) != 1 else ''} ({few(list(keys))})")
        return "; ".join(parts) or "every key matched"

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, for a checkpoint's provenance."""
        return {"missing_keys": list(self.missing_keys), "unexpected_keys": list(self.unexpected_keys)}


def load_weights(model: nn.Module, state: Mapping[str, Tensor], *, strict: bool = True, what: str) -> LoadReport:
    """Load ``state`` into ``model``; shapes must always match, keys only when ``strict``.

    Args:
        model: the freshly built model.
        state: its weights.
        strict: refuse missing or unexpected keys (else report them).
        what: the model, for messages (e.g. ``"arch 'tiny' with 2 BatchNorm2d layers, 10 classes, 3 channels"``).

    Returns:
        The :class:`LoadReport` (empty when every key matched).

    Raises:
        CheckpointError: shape mismatches (named), or with ``strict`` missing/unexpected keys (named).
    """
    expected = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        raise CheckpointError(f"weights do not fit {what}: shape mismatch for {few(mismatched)}; is --arch right?")
    # Non-strict load first so that a norm layer's own _load_from_state_dict hook
    # (e.g. LocalNorm filling missing heads from a BN checkpoint) can fill in keys;
    # then whatever is still missing or unexpected is an error, unless not strict.
    result = model.load_state_dict(dict(state), strict=False)
    report = LoadReport(tuple(result.missing_keys), tuple(result.unexpected_keys))
    if strict and report:
        problems = []
        if report.missing_keys:
            problems.append(f"missing keys: {few(list(report.missing_keys))}")
        if report.unexpected_keys:
            problems.append(f"unexpected keys: {few(list(report.unexpected_keys))}")
        raise CheckpointError(
            f"weights do not match {what}: {'; '.join(problems)}; is --arch right? (--non-strict loads anyway)"
        )
    return report
