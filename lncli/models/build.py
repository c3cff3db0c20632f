"""The one route from an architecture name and a norm spec to a freshly built model.

``lncli train`` (from its config), checkpoints (from their recorded arch and norm)
and conversion all build models here, so an ``--arch`` string becomes a module in
exactly one place: :func:`check_arch` says whether a name is buildable and
:func:`build_model` builds it with the norm layer that :func:`norm_layer_for`
makes from a :class:`~lncli.config.train.NormConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lncli.config.train import NormConfig
from lncli.errors import LncliError
from lncli.models._registry import CORE_KWARGS, UnknownModelError, create_model, list_models

__all__ = ["build_model", "check_arch", "norm_layer_for"]

NormLayer = Callable[..., nn.Module]


def check_arch(arch: str) -> None:
    """Check that ``arch`` names a model :func:`build_model` can build.

    Args:
        arch: a name from :func:`lncli.models.list_models`.

    Raises:
        UnknownModelError: an unknown name, with the valid ones listed.
    """
    if arch not in list_models():
        raise UnknownModelError(f"unknown arch {arch!r}; valid: {', '.join(list_models())}")


def norm_layer_for(norm: NormConfig) -> NormLayer:
    """Return the ``f(num_features) -> nn.Module`` factory that ``norm`` describes.

    Args:
        norm: the spec (``num_heads`` None = the layer's default).

    Returns:
        ``nn.BatchNorm2d``, or a LocalNorm or GroupNorm factory from :func:`lncli.nn.get_norm_layer`
        (GroupNorm's ``groups`` is checked against each layer's width as the model is built).

    Raises:
        LncliError: an unknown norm kind or invalid LocalNorm/GroupNorm settings (the spec is named).
    """
    # Imported here, not at the top: the norm package's conversion code reaches
    # checkpoints, which import this module, so a module-level import could cycle.
    from lncli.nn import get_norm_layer

    kwargs: dict[str, Any] = {"group_size": norm.group_size, "grouping": norm.grouping, "groups": norm.groups}
    if norm.num_heads is not None:
        kwargs["num_heads"] = norm.num_heads
    try:
        return get_norm_layer(norm.kind, **kwargs)
    except (LncliError, ValueError, TypeError) as exc:
        raise LncliError(f"bad norm spec {norm.to_dict()}: {exc}") from None


def build_model(
    arch: str, *, norm: NormConfig, num_classes: int, in_channels: int, arch_kwargs: Mapping[str, Any] | None = None
) -> nn.Module:
    """Build ``arch`` with ``norm``'s layer and freshly initialised weights.

    Draws its initial weights from torch's global RNG (seed it first for a
    reproducible model).

    Args:
        arch: a name from :func:`lncli.models.list_models`.
        norm: which norm layer every 2-D norm of the model is.
        num_classes: number of output logits.
        in_channels: image channels.
        arch_kwargs: model-specific options (:func:`lncli.models.model_kwargs`); a mapping, not
            ``**kwargs``, because it often comes from a file and must not name the arguments above.

    Returns:
        The model on the CPU, in training mode.

    Raises:
        LncliError: an unknown arch (:class:`UnknownModelError`), a bad norm spec, an
            option the model does not take or a value its builder rejects (one line).
    """
    check_arch(arch)
    options = dict(arch_kwargs or {})
    reserved = [k for k in CORE_KWARGS if k in options]
    if reserved:
        raise UnknownModelError(
            f"model option {', '.join(reserved)} is set by lncli from the data and the norm; remove it"
        )
    norm_layer = norm_layer_for(norm)
    try:
        return create_model(arch, num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, **options)
    except LncliError:
        raise
    except (ValueError, TypeError) as exc:  # a builder rejecting an option's value
        raise UnknownModelError(str(exc).splitlines()[0]) from None
