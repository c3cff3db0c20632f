"""Typer parameters made from a library's option declarations, so that each option is written once.

``lncli evaluate``'s options are the fields of :class:`lncli.jobs.evaluate.options.EvalOptions`:
name, default, help, ``--help`` panel, metavar and the type the command line parses. :func:`signature`
turns them into the ``Annotated[..., typer.Option(...)]`` parameters Typer reads (the same form a
hand-written command has), and :func:`values` turns what Typer parsed back into the declaration's
keywords (choices by their value). A new option is a new field: the flag, the ``--config`` key and
the Python keyword follow from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any

import typer

from lncli.cli.app import choices_enum

__all__ = ["declare", "signature", "values"]


def _help(spec: Any, default: Any, choices: tuple[str, ...] | None) -> str:
    """The option's help line, its choices and default inline (so each option takes as few lines as it can)."""
    text = spec.help
    if choices:
        text += f" One of {', '.join(choices)}."
    if default is not None and default is not False and default != ():
        text += f" \\[default: {default}]"  # escaped: not rich markup
    return text


def _parameter(name: str, spec: Any, default: Any) -> inspect.Parameter:
    """One option as Typer's ``Annotated`` parameter (``spec``: an ``OptionSpec``)."""
    if spec.argument:
        info = typer.Argument(help=spec.help, metavar=spec.metavar, show_default=False)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[list[str], info])
    kind, choices = spec.cli, None
    if isinstance(kind, tuple):  # choices: a str Enum, so that Typer checks them; the help lists them whole
        choices, kind = kind, choices_enum(f"{name.title().replace('_', '')}Choice", kind)
    flag = kind is bool
    info = typer.Option(
        f"--{name.replace('_', '-')}",
        help=_help(spec, default, choices),
        rich_help_panel=spec.panel,
        metavar=spec.metavar or ("NAME" if choices else ""),  # "": a flag takes no value
        show_default=False,  # in the help text
    )
    if choices and default is not None:
        default = kind(default)
    typ: Any = kind if default is not None or flag else kind | None
    annotation = Annotated[typ, info]  # built at run time from the declaration
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def signature(
    specs: Mapping[str, Any], defaults: Mapping[str, Any], extra: list[inspect.Parameter]
) -> inspect.Signature:
    """The parameters of a command: ``ctx``, then one per declared option, then ``extra`` (e.g. ``--config``).

    Args:
        specs: each option's ``OptionSpec``, by name, in declaration order.
        defaults: each option's default.
        extra: parameters the command has besides the declared options.
    """
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    params = [_parameter(name, spec, defaults.get(name)) for name, spec in specs.items()]
    arguments = [p for p in params if p.default is inspect.Parameter.empty]
    return inspect.Signature([ctx, *arguments, *[p for p in params if p not in arguments], *extra])


def values(parsed: Mapping[str, Any], names: Any) -> dict[str, Any]:
    """Typer's parsed values of the declared options, as the declaration's keywords (choices by value)."""
    out = {}
    for name in names:
        value = parsed[name]
        out[name] = value.value if isinstance(value, Enum) else tuple(value) if isinstance(value, list) else value
    return out


def declare(fn: Any, sig: inspect.Signature) -> None:
    """Give ``fn`` (a ``**kwargs`` command) the parameters Typer reads: its signature and their annotations."""
    fn.__signature__ = sig
    fn.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
