"""Models from outside lncli's registry: ``torchvision:NAME``, ``timm:NAME`` and ``package.module:function``.

The arch grammar is :func:`lncli.config.train.parse_arch`; :mod:`lncli.models.build` calls
this module for every arch that is not a registry name, so an arch string still becomes a
module in one place.

* ``torchvision:NAME`` resolves only through ``torchvision.models.list_models`` (the
  classification models) and is built with ``torchvision.models.get_model(NAME,
  weights=None, num_classes=K)``. Those builders take no channel count: for C != 3 the
  stem (the model's first ``nn.Conv2d``, which takes 3 channels) is replaced by a freshly
  initialised conv with the same settings that takes C.
* ``timm:NAME`` resolves only through ``timm.is_model`` and is built with
  ``timm.create_model(NAME, pretrained=False, num_classes=K, in_chans=C)``. timm is the
  optional extra ``lncli[timm]``.
* ``package.module:function`` imports the user's module and calls the function with
  ``num_classes`` and ``in_chans`` (or ``in_channels``) where its signature names them.
  It runs the user's code, so it is built only with ``allow_code=True``, which lncli sets
  only for an arch the user named (command line, train config, Python API), never for one
  read from a checkpoint. A library arch never imports a module named by a string. Such a
  builder also receives a Lightning checkpoint's ``hyper_parameters`` that its signature
  names (:func:`hyper_parameter_kwargs`).

None of these builders takes a ``norm_layer``: they are built with BatchNorm and, for
LocalNorm, converted with :func:`lncli.nn.convert_batchnorm_to_localnorm` (the route
``lncli convert`` takes), so a LocalNorm checkpoint of a foreign model loads into the
same modules its conversion made.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lncli.config.train import ArchSpec, NormConfig, parse_arch
from lncli.errors import LncliError
from lncli.models._registry import UnknownModelError
from lncli.nn import convert_batchnorm_to_localnorm

__all__ = ["RESERVED_FOREIGN_KWARGS", "build_foreign", "builder_keywords", "check_foreign", "hyper_parameter_kwargs"]

RESERVED_FOREIGN_KWARGS: tuple[str, ...] = (
    "num_classes",
    "in_chans",
    "in_channels",
    "norm_layer",
    # Anything that would fetch or read weights: a model is always built from scratch and
    # filled from the checkpoint alone (these can arrive in a file's arch_kwargs).
    "weights",
    "weights_backbone",
    "progress",
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "cache_dir",
)
"""Builder keywords lncli sets itself (from the data) or never lets through (downloads, file reads)."""

_TIMM_EXTRA = "pip install 'lncli[timm]'"
_CLOSE = 5  # close matches listed for an unknown library name


def _timm(arch: str) -> Any:
    """The timm package, or one line naming the extra that installs it."""
    try:
        import timm
    except ImportError:
        raise LncliError(f"arch {arch!r} needs timm, which is not installed; {_TIMM_EXTRA}") from None
    return timm


def _torchvision_names() -> list[str]:
    """torchvision's classification models (not detection, segmentation, video or quantized)."""
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


def _unknown(library: str, name: str, names: list[str]) -> UnknownModelError:
    close = difflib.get_close_matches(name, names, n=_CLOSE, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else f"no close match ({len(names)} models in {library})"
    return UnknownModelError(f"unknown {library} model {name!r}; {hint}")


def _resolve_code(spec: ArchSpec, arch: str) -> Callable[..., Any]:
    """Import the user's module and return its builder (one line for every way that fails)."""
    module_name = str(spec.module)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):  # the module itself, not one it imports
            raise UnknownModelError(
                f"arch {arch!r}: cannot import module {module_name!r} (is it installed, or its folder on PYTHONPATH?)"
            ) from None
        raise UnknownModelError(f"arch {arch!r}: importing {module_name} failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failing at import time is their error, in one line
        raise UnknownModelError(f"arch {arch!r}: importing {module_name} failed: {_first_line(exc)}") from None
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            raise UnknownModelError(f"arch {arch!r}: module {module_name} has no {spec.name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownModelError(f"arch {arch!r}: {spec.name} is a {type(obj).__name__}, not a function")
    return obj


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_foreign(spec: ArchSpec, arch: str, *, allow_code: bool = False) -> None:
    """Check that a foreign arch can be built, without building it.

    Args:
        spec: the parsed arch (not ``registry``).
        arch: the arch string, for messages.
        allow_code: whether a ``package.module:function`` arch may be imported (see the module docstring).

    Raises:
        LncliError: an unknown library name (close matches listed), timm not installed, a code
            arch without ``allow_code``, or a module/function that cannot be found.
    """
    if spec.kind == "torchvision":
        names = _torchvision_names()
        if spec.name not in names:
            raise _unknown("torchvision", spec.name, names)
    elif spec.kind == "timm":
        timm = _timm(arch)
        if not timm.is_model(spec.name):
            raise _unknown("timm", spec.name, list(timm.list_models()))
    elif not allow_code:
        raise UnknownModelError(
            f"arch {arch!r} is a package.module:function builder, which runs code; lncli builds one only "
            "when you name it yourself (--arch, a train config, or allow_code=True in the Python API)"
        )
    else:
        _resolve_code(spec, arch)


def _accepted(fn: Callable[..., Any]) -> set[str]:
    """The keyword names ``fn`` takes (empty when its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def builder_keywords(spec: ArchSpec, arch: str) -> frozenset[str]:
    """The keywords a ``package.module:function`` builder names in its signature (``**kwargs`` names none).

    Only the user's own builder is asked, and only when the caller allows its code (the module is
    imported): see :func:`check_foreign`.

    Args:
        spec: the parsed arch (``kind == "code"``).
        arch: the arch string, for messages.

    Returns:
        The named positional-or-keyword and keyword-only parameters (empty when unreadable).

    Raises:
        LncliError: the module or function cannot be found.
    """
    return frozenset(_accepted(_resolve_code(spec, arch)))


def _plain(value: Any) -> bool:
    """A number, string, boolean or None, or a list/tuple/dict (string keys) of them: data, never code."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if type(value) in (list, tuple):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def hyper_parameter_kwargs(hparams: Any, arch: str, *, allow_code: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The keywords a file's ``hyper_parameters`` give the builder ``arch``, and why each other one is left out.

    Only a ``package.module:function`` builder the caller named (``allow_code``) receives them,
    and only those its signature names (:func:`builder_keywords`; a
    ``**kwargs`` receives none), with plain values, and not the ones lncli sets itself
    (:data:`RESERVED_FOREIGN_KWARGS`: the classes and channels come from the data).
    timm and torchvision builders receive none: they forward any keyword to the model class, so
    which ones a model takes cannot be read without building it.

    Args:
        hparams: the file's ``hyper_parameters`` (a dict, or anything else: then nothing is passed).
        arch: the arch the caller named.
        allow_code: whether the caller named it (the builder's module may be imported).

    Returns:
        ``(passed, left_out)``: the keywords and their values; each other name with its reason.

    Raises:
        LncliError: the builder's module or function cannot be found.
    """
    if not isinstance(hparams, dict) or not hparams:
        return {}, {}
    names = [str(k) for k in hparams]
    spec = parse_arch(arch)
    if not (spec.runs_code and allow_code):
        return {}, dict.fromkeys(names, "only a package.module:function --arch receives hyper_parameters")
    accepted = builder_keywords(spec, arch)
    passed: dict[str, Any] = {}
    left_out: dict[str, str] = {}
    for key, value in hparams.items():
        if key in RESERVED_FOREIGN_KWARGS:
            left_out[str(key)] = "set by lncli"
        elif key not in accepted:
            left_out[str(key)] = "not in the builder's signature"
        elif not _plain(value):
            left_out[str(key)] = f"a {type(value).__name__}, not a plain value"
        else:
            passed[key] = value
    return passed, left_out


def _call_builder(spec: ArchSpec, arch: str, num_classes: int, in_channels: int, options: dict[str, Any]) -> Any:
    """Build the raw model of a library or code arch (the norm is BatchNorm, whatever the checkpoint's)."""
    if spec.kind == "torchvision":
        import torchvision.models

        model = torchvision.models.get_model(spec.name, weights=None, num_classes=num_classes, **options)
        return _restem(model, arch, in_channels) if in_channels != 3 else model
    if spec.kind == "timm":
        return _timm(arch).create_model(
            spec.name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **options
        )
    fn = _resolve_code(spec, arch)
    accepted = _accepted(fn)
    kwargs = dict(options)
    if "num_classes" in accepted:
        kwargs["num_classes"] = num_classes
    channel_key = next((k for k in ("in_chans", "in_channels") if k in accepted), None)
    if channel_key is not None:
        kwargs[channel_key] = in_channels
    return fn(**kwargs)


def _restem(model: nn.Module, arch: str, in_channels: int) -> nn.Module:
    """Replace the first ``nn.Conv2d`` (3 channels in) by one that takes ``in_channels`` (fresh weights)."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first[1].in_channels != 3 or first[1].groups != 1:
        raise UnknownModelError(
            f"arch {arch!r} cannot take {in_channels} channels: its first conv is not a plain 3-channel stem"
        )
    name, conv = first
    stem = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]  # a tuple of ints, as the constructor takes
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    parent, _, leaf = name.rpartition(".")
    model.get_submodule(parent).add_module(leaf, stem)
    return model


def build_foreign(
    spec: ArchSpec,
    arch: str,
    *,
    norm: NormConfig,
    num_classes: int,
    in_channels: int,
    arch_kwargs: Mapping[str, Any] | None = None,
    allow_code: bool = False,
) -> nn.Module:
    """Build a torchvision, timm or user model with BatchNorm, converted to LocalNorm when ``norm`` says so.

    Args:
        spec: the parsed arch (not ``registry``).
        arch: the arch string, for messages.
        norm: the norm the weights belong to (``num_heads`` None = 1 head).
        num_classes: K, the logits.
        in_channels: C, the image channels.
        arch_kwargs: extra builder keywords (none of :data:`RESERVED_FOREIGN_KWARGS`).
        allow_code: build a ``package.module:function`` arch (see the module docstring).

    Returns:
        The model on the CPU, in training mode, freshly initialised (torch's global RNG).

    Raises:
        LncliError: what :func:`check_foreign` raises, a reserved keyword, a builder that fails
            or returns no ``nn.Module``, or LocalNorm for a model without BatchNorm2d layers.
    """
    check_foreign(spec, arch, allow_code=allow_code)
    options = dict(arch_kwargs or {})
    reserved = [k for k in RESERVED_FOREIGN_KWARGS if k in options]
    if reserved:
        raise UnknownModelError(f"arch {arch!r}: model option {', '.join(reserved)} is set by lncli or not allowed")
    try:
        model = _call_builder(spec, arch, num_classes, in_channels, options)
    except LncliError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library or user builder rejecting its arguments: one line
        raise UnknownModelError(f"building {arch!r} failed: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UnknownModelError(f"arch {arch!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if norm.kind != "localnorm":
        return model
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise UnknownModelError(f"arch {arch!r} has no BatchNorm2d layer, so it has nothing to make LocalNorm")
    heads = 1 if norm.num_heads is None else norm.num_heads
    return convert_batchnorm_to_localnorm(model, group_size=norm.group_size, num_heads=heads, grouping=norm.grouping)
