"""The model registry: one map from a name to a builder, failing loudly.

Modelled on torchvision's ``models/_api.py``: registering a name twice is a
programming error (``ValueError``), and asking for an unknown name raises a
``ValueError`` that lists every valid name. :class:`UnknownModelError` is also an
:class:`~lncli.errors.LncliError`, so the CLI turns a user's typo into one line
and exit code 2.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from lncli.config.train import MODEL_CORE_KWARGS
from lncli.errors import LncliError

Builder = Callable[..., nn.Module]

_MODELS: dict[str, Builder] = {}

# Every builder takes these keywords; create_model passes them explicitly (so they
# are never model-specific options).
CORE_KWARGS = MODEL_CORE_KWARGS


class UnknownModelError(LncliError, ValueError):
    """An unknown model name, an option the model does not take or a value its builder rejects (exit code 2)."""


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator that adds a model builder to the registry under ``name``.

    The builder must accept the keyword-only arguments ``num_classes``,
    ``in_channels`` and ``norm_layer`` (plus any model-specific keywords).

    Args:
        name: the public name (lower case, e.g. ``"resnet20"``).

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
        params = inspect.signature(fn).parameters
        missing = [k for k in CORE_KWARGS if k not in params]
        if missing:
            raise TypeError(f"model builder {fn.__qualname__} must accept {', '.join(missing)}")
        _MODELS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Return the registered model names, sorted.

    Returns:
        A sorted list of names accepted by :func:`create_model`.
    """
    return sorted(_MODELS)


def model_kwargs(name: str) -> dict[str, Any]:
    """Return the model-specific keyword arguments of ``name`` and their defaults.

    Args:
        name: a registered model name.

    Returns:
        ``{keyword: default}`` for every keyword beyond num_classes / in_channels /
        norm_layer (``inspect.Parameter.empty`` when there is no default).
    """
    fn = _get(name)
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if k not in CORE_KWARGS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _get(name: str) -> Builder:
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model with freshly initialised weights.

    Args:
        name: a name from :func:`list_models`.
        num_classes: number of output logits.
        in_channels: image channels (1 for Fashion-MNIST, 3 for RGB).
        norm_layer: callable ``f(num_features) -> nn.Module`` used for every 2-D
            norm layer, e.g. ``nn.BatchNorm2d`` or ``lncli.nn.get_norm_layer("localnorm")``.
        **kwargs: model-specific options (see :func:`model_kwargs`).

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        UnknownModelError: (a ``ValueError``) unknown name or unknown keyword.
    """
    fn = _get(name)
    accepted = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise UnknownModelError(f"model {name!r} takes no option {', '.join(unknown)}; its options: {valid}")
    if num_classes < 1 or in_channels < 1:
        raise UnknownModelError(
            f"model {name!r} needs num_classes >= 1 and in_channels >= 1, got {num_classes}, {in_channels}"
        )
    return fn(num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, **kwargs)
