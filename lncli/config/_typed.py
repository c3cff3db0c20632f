"""Typed, frozen configs from nested mappings: coercion, overrides and YAML, shared by every command.

A config is a frozen dataclass whose nested dataclass fields are sections. :func:`build`
checks a (possibly partial) nested mapping against the type hints and returns the
dataclass, so every command's config gets the same rules: ``Literal`` choices with
accepted aliases, numbers written as ``1e-3``, lists for tuples, and one-line
:class:`~lncli.errors.ConfigError` messages naming the key (with a close match).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from lncli.errors import ConfigError


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _describe(tp: Any) -> str:
    """A short human description of a field type, for error messages."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} numbers"
    if origin is dict or tp is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any, aliases: Mapping[str, Mapping[str, str]]) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"config key '{key}': {value!r} is not valid; expected {_describe(tp)}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if value is None:
            raise bad
        if len(inner) == 1:
            try:
                return _coerce(key, value, inner[0], aliases)
            except ConfigError:
                raise bad from None
        for a in inner:
            try:
                return _coerce(key, value, a, aliases)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if isinstance(value, str):
            v = value.strip().lower()
            v = aliases.get(key, {}).get(v, v)
            if v in args:
                return v
        elif value is False and "none" in args:
            return "none"  # YAML turns a bare `off`/`no` into False
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            # PyYAML (YAML 1.1) reads `1e-3` as a string; accept it as a number.
            try:
                out = float(value)
            except ValueError:
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):
            raise bad
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if origin is tuple:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, v, args[0], aliases) for v in items)
        if len(items) != len(args):
            raise bad
        return tuple(_coerce(key, v, a, aliases) for v, a in zip(items, args))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad
        return {str(k): v for k, v in value.items()}
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # programming error


def _unknown_key(key: str, valid: Sequence[str]) -> ConfigError:
    leaf = {v.rsplit(".", 1)[-1]: v for v in valid}
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaf), n=1)
    hint = f" (did you mean '{leaf[close[0]]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}; valid keys: {', '.join(valid)}")


def build(
    cls: type, raw: Mapping[str, Any], aliases: Mapping[str, Mapping[str, str]] | None = None, prefix: str = ""
) -> Any:
    """Build the frozen dataclass ``cls`` from a (possibly partial) nested mapping.

    Args:
        cls: the dataclass; nested dataclass fields are sections (nested mappings).
        raw: the values, checked and coerced against ``cls``'s type hints.
        aliases: accepted spellings per dotted key (``{"norm.kind": {"bn": "batchnorm"}}``).
        prefix: the dotted path of ``cls`` inside the whole config (for messages).

    Returns:
        The dataclass instance.

    Raises:
        ConfigError: an unknown key (with a close match suggested) or a bad value.
    """
    aliases = aliases or {}
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise _unknown_key(key, [f"{prefix}{n}" for n in names])
        tp = hints[k]
        if _is_section(tp):
            if v is None:
                continue
            if not isinstance(v, Mapping):
                raise ConfigError(
                    f"config key '{key}' must be a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
                )
            kwargs[k] = build(tp, v, aliases, f"{key}.")
        else:
            kwargs[k] = _coerce(key, v, tp, aliases)
    return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a nested dict of plain YAML/JSON types (tuples become lists).

    Args:
        cfg: a frozen config dataclass (or any of its sections).

    Returns:
        A new dict; building the config back from it gives an equal config.
    """
    return _to_plain(cfg)


# ---------------------------------------------------------------------------
# Overrides: --set key=value with dotted keys and YAML-parsed values.
# ---------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"optim.lr=0.05"`` into ``("optim.lr", 0.05)`` (the value parsed as YAML).

    Args:
        text: ``KEY=VALUE``; KEY is dotted, VALUE is any YAML scalar/list/mapping.

    Returns:
        The key and the parsed value.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.05), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r} as YAML") from None
    return key, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of nested mapping ``raw`` with dotted overrides applied.

    Args:
        raw: the nested mapping (from YAML), not modified.
        overrides: ``["optim.lr=0.05", ...]`` or ``{"optim.lr": 0.05}``.

    Returns:
        The merged nested dict (validation happens when it is built).
    """
    out = _deep_copy(raw)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"config key '{key}': '{p}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def read_yaml_mapping(path: str | Path, what: str = "config") -> Any:
    """Read a YAML file for a config: one-line errors for unreadable, binary or invalid files.

    Args:
        path: the YAML file.
        what: how messages name the file (``config``, ``evaluate config``...).

    Returns:
        What the YAML holds (the caller checks that it is a mapping); None for an empty file.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 text, or is not valid YAML.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # e.g. a checkpoint passed by mistake
        raise ConfigError(f"{what} {p} is not a UTF-8 text (YAML) file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{what} {p} is not valid YAML{where}") from None
    return raw
