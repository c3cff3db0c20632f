"""The one route from an architecture string and a norm spec to a freshly built model.

``lncli train`` (from its config), checkpoints (from their recorded arch and norm)
and conversion all build models here, so an ``--arch`` string becomes a module in
exactly one place: :func:`check_arch` says whether an arch is buildable and
:func:`build_model` builds it with the norm layer that :func:`norm_layer_for`
makes from a :class:`~lncli.config.train.NormConfig`.

An arch is any form of :func:`lncli.config.train.parse_arch`: a registry name (built
with the norm layer injected), or ``torchvision:NAME``, ``timm:NAME`` and
``package.module:function`` (built by :mod:`lncli.models.foreign`, with BatchNorm and
then converted). A ``package.module:function`` arch runs the user's code, so both
functions refuse it unless the caller passes ``allow_code=True``, which lncli does only
for an arch the user named (never for one read from a checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lncli.config.train import ARCH_FORMS, NormConfig, parse_arch
from lncli.errors import LncliError
from lncli.models._registry import CORE_KWARGS, UnknownModelError, create_model, list_models
from lncli.models.foreign import build_foreign, check_foreign
from lncli.nn import get_norm_layer

__all__ = ["build_model", "check_arch", "norm_layer_for"]

NormLayer = Callable[..., nn.Module]


def check_arch(arch: str, *, allow_code: bool = False) -> None:
    """Check that ``arch`` names a model :func:`build_model` can build, without building it.

    Args:
        arch: a name from :func:`lncli.models.list_models`, ``torchvision:NAME``, ``timm:NAME``
            or ``package.module:function``.
        allow_code: accept (and import) a ``package.module:function`` arch; only for an
            arch the user named, never one read from a file.

    Raises:
        UnknownModelError: an unknown registry name (the valid ones listed) or library name
            (close matches listed), a malformed arch, timm missing, a code arch without
            ``allow_code``, or a builder module/function that cannot be found.
    """
    try:
        spec = parse_arch(arch)
    except LncliError as exc:
        raise UnknownModelError(str(exc)) from None
    if spec.kind != "registry":
        check_foreign(spec, arch, allow_code=allow_code)
    elif arch not in list_models():
        raise UnknownModelError(
            f"unknown arch {arch!r}; valid: {', '.join(list_models())} (or another form: {ARCH_FORMS})"
        )


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
    kwargs: dict[str, Any] = {"group_size": norm.group_size, "grouping": norm.grouping, "groups": norm.groups}
    if norm.num_heads is not None:
        kwargs["num_heads"] = norm.num_heads
    try:
        return get_norm_layer(norm.kind, **kwargs)
    except (LncliError, ValueError, TypeError) as exc:
        raise LncliError(f"bad norm spec {norm.to_dict()}: {exc}") from None


def build_model(
    arch: str,
    *,
    norm: NormConfig,
    num_classes: int,
    in_channels: int,
    arch_kwargs: Mapping[str, Any] | None = None,
    allow_code: bool = False,
) -> nn.Module:
    """Build ``arch`` with ``norm``'s layer and freshly initialised weights.

    (:func:`lncli.checkpoint.model_from_checkpoint` builds the model a checkpoint records through
    this, then loads its weights.)

    Draws its initial weights from torch's global RNG (seed it first for a
    reproducible model).

    Args:
        arch: any form :func:`check_arch` takes.
        norm: which norm layer every 2-D norm of the model is.
        num_classes: number of output logits.
        in_channels: image channels.
        arch_kwargs: model-specific options (:func:`lncli.models.model_kwargs`); a mapping, not
            ``**kwargs``, because it often comes from a file and must not name the arguments above.
        allow_code: build a ``package.module:function`` arch (see :func:`check_arch`).

    Returns:
        The model on the CPU, in training mode.

    Raises:
        LncliError: an unknown arch (:class:`UnknownModelError`), a bad norm spec, an
            option the model does not take or a value its builder rejects (one line).
    """
    check_arch(arch, allow_code=allow_code)
    norm_layer = norm_layer_for(norm)  # a bad norm spec fails here, for every form of arch
    spec = parse_arch(arch)
    if spec.kind != "registry":
        return build_foreign(
            spec,
            arch,
            norm=norm,
            num_classes=num_classes,
            in_channels=in_channels,
            arch_kwargs=arch_kwargs,
            allow_code=allow_code,
        )
    options = dict(arch_kwargs or {})
    reserved = [k for k in CORE_KWARGS if k in options]
    if reserved:
        raise UnknownModelError(
            f"model option {', '.join(reserved)} is set by lncli from the data and the norm; remove it"
        )
    try:
        return create_model(arch, num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, **options)
    except LncliError:
        raise
    except (ValueError, TypeError) as exc:  # a builder rejecting an option's value
        raise UnknownModelError(str(exc).splitlines()[0]) from None
