"""The Typer app of ``lncli``, its error handling, and the option choices read from the library.

Every command registers through :func:`command`, which turns any
:class:`lncli.errors.LncliError` into one ``error: ...`` line on stderr and exit code 2;
click's own usage errors are printed as one line too. The ``str`` Enums of the options'
choices are built from the library's tuples (profiles, heads, devices, norm kinds,
groupings), so nothing is restated here.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.rich_utils
from rich.console import Console
from rich.markup import escape

from lncli import __version__
from lncli.config import read_yaml_mapping
from lncli.config.common import CONVERT_TARGETS, GROUPINGS, PROFILE_NAMES
from lncli.errors import ConfigError, LncliError

err_console = Console(stderr=True, emoji=False)  # never turn ":b:" in a message into an emoji

app = typer.Typer(
    name="lncli",
    help="Measure how image classifiers hold up under noise, and make them hold up better with LocalNorm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_usage_error(self: Any) -> None:  # a click.ClickException (Typer vendors click)
    """Print a click usage error (bad choice, missing argument, bad number) as one line.

    Why: lncli promises one clear line and exit 2 for every bad input, and scripts grep
    stderr; Typer's default is a multi-line usage box. The exit code (2) is click's own.
    """
    if self.__class__.__name__ == "NoArgsIsHelpError":  # `lncli cmd` alone prints the help
        return
    ctx = getattr(self, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    err_console.print(f"[bold red]error:[/] {escape(self.format_message())}{hint}", highlight=False, soft_wrap=True)


# Typer's core calls rich_utils.rich_format_error(e) for every click usage error.
typer.rich_utils.rich_format_error = _one_line_usage_error


def _flag_type(self: Any, ctx: Any) -> str | None:
    """A flag's type column in ``--help``: none. (Typer shows ``<bool>``, as if a flag took a value.)"""
    if getattr(self, "is_flag", False) and not getattr(self, "count", False):
        return None
    return _option_type(self, ctx)


def _argument_type(self: Any, ctx: Any) -> str | None:
    """An argument's type column: none when its name says what it holds (``CKPT...``, not ``<list[str]>``)."""
    return None if self.metavar else _arg_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
_arg_type = typer.core.TyperArgument.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign]


def fail(exc: LncliError) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with the error's code (2)."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=exc.exit_code) from None


def _guarded(fn: F) -> F:
    """Turn user-facing errors into one line on stderr and exit code 2.

    Anything a user can cause (a missing file, a bad value, an unknown name)
    raises :class:`LncliError` in the library; here it becomes
    ``error: <message>``, never a traceback. When the value at fault came from
    ``--config``, the line says which key of which file (:func:`config_source_note`).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LncliError as exc:
            # Typer hands a command its click context (not always a typer.Context instance): found by its API.
            ctx = next((v for v in kwargs.values() if hasattr(v, "get_parameter_source")), None)
            note = config_source_note(ctx, str(exc)) if ctx is not None else ""
            fail(type(exc)(f"{exc}{note}") if note else exc)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def command(*args: Any, **kwargs: Any) -> Callable[[F], F]:
    """Register a command on :data:`app` with the error guard applied."""

    def deco(fn: F) -> F:
        app.command(*args, **kwargs)(_guarded(fn))
        return fn

    return deco


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Measure how image classifiers hold up under noise, and make them hold up better with LocalNorm."""


# ---------------------------------------------------------------------------
# Choices and defaults, read from the library
# ---------------------------------------------------------------------------


def choices_enum(name: str, values: Iterable[str], doc: str = "") -> type[Enum]:
    """A ``str`` Enum whose members are ``values``: Typer shows and checks them as the option's choices."""
    choice = Enum(name, [(v, v) for v in values], type=str)  # type: ignore[misc]  # members built at run time
    choice.__doc__ = doc
    return choice


if TYPE_CHECKING:
    # mypy cannot see members made at run time; to it every choice is this str Enum (``.value`` is the choice).
    class _Choice(str, Enum):
        pass

    ProfileChoice = _Choice
    NormChoice = _Choice
    GroupingChoice = _Choice
else:
    ProfileChoice = choices_enum(
        "ProfileChoice",
        PROFILE_NAMES,
        "Noise constants: ImageNet-C, CIFAR-10-C, or the LocalNorm authors' own protocol.",
    )
    NormChoice = choices_enum("NormChoice", CONVERT_TARGETS, "Norm layer to convert to.")
    GroupingChoice = choices_enum("GroupingChoice", GROUPINGS, "How LocalNorm cuts a batch into groups.")


def severity_text(severities: Sequence[int]) -> str:
    """A severity tuple in the grammar of :func:`lncli.config.common.parse_severities`: runs as ``a-b``."""
    runs: list[list[int]] = []
    for s in sorted(severities):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


# ---------------------------------------------------------------------------
# --config FILE: a command's options from YAML, built from the command's own parameters
# ---------------------------------------------------------------------------

CONFIG_OPTION = "config"
"""The key of ``--config`` itself: a command's option, never a key inside the file."""

_CONFIG_META = "lncli.config_file"
"""Where the context keeps the path of the file its defaults came from."""


def option_key(param: Any) -> str:
    """A parameter's config-file key: its long option name with underscores (``--fail-under`` -> ``fail_under``,
    ``--csv`` -> ``csv``), or an argument's name (``checkpoints``)."""
    longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return (longs[0][2:] if longs else str(param.name)).replace("-", "_")


def config_keys(command: Any) -> dict[str, Any]:
    """Every key a config file may hold for ``command`` (a click command): ``{key: parameter}``.

    Read from the command's parameters, so an option added to the command is a key with no further work.
    """
    return {
        option_key(p): p
        for p in command.params
        if p.name and option_key(p) != CONFIG_OPTION and not getattr(p, "is_eager", False)
    }


def _many(param: Any) -> bool:
    """Whether the parameter takes several values (a repeatable option, or an argument such as ``CKPT...``)."""
    return bool(getattr(param, "multiple", False)) or param.nargs != 1


def _command_line_value(param: Any, value: Any) -> Any:
    """A YAML value in the form a command line gives it: text, a list of texts for a parameter that takes
    several, ``True``/``False`` for a flag. A list for a one-value option becomes its comma string."""

    def text(v: Any) -> str:
        if isinstance(v, (Mapping, list, tuple)) or v is None:
            raise ConfigError(f"{v!r} is not a value (expected text, a number or a list of them)")
        return str(v).lower() if isinstance(v, bool) else str(v)

    if getattr(param, "is_flag", False) and not _many(param):
        if not isinstance(value, bool):
            raise ConfigError(f"{value!r} is not valid; expected true or false")
        return value
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if _many(param):
        return [text(v) for v in items]
    return ",".join(text(v) for v in items)


def _file_value(ctx: typer.Context, param: Any, value: Any) -> Any:
    """The file's ``value`` for ``param`` as a command line would give it, checked by the parameter's own parsing
    (so that a bad one names its key now, not as an option later)."""
    given = _command_line_value(param, value)
    try:
        param.process_value(ctx, given)
    except typer.BadParameter as exc:
        raise ConfigError(exc.message) from None
    return given


def _defaults_from_file(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """The file's values by parameter name, each checked by the parameter's own parsing.

    Raises:
        ConfigError: the file is unreadable or not a mapping, a key is unknown (a close one is suggested),
            or a value does not parse.
    """
    raw = read_yaml_mapping(path, "config")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config {path} must be a mapping of option names to values (e.g. noise: gaussian)")
    keys = config_keys(ctx.command)
    defaults: dict[str, Any] = {}
    for k, v in raw.items():
        key = str(k)
        if key not in keys:
            close = difflib.get_close_matches(key.replace("-", "_"), list(keys), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{key}' in {path}{hint}; valid keys: {', '.join(sorted(keys))}")
        if v is None:  # `key:` with no value leaves the option at its default
            continue
        try:
            defaults[keys[key].name] = _file_value(ctx, keys[key], v)
        except ConfigError as exc:
            raise ConfigError(f"config key '{key}' in {path}: {exc}") from None
    return defaults


def load_config_file(ctx: typer.Context, value: Path | None) -> Path | None:
    """The eager ``--config`` callback: the file's values become the command's defaults (click's ``default_map``).

    Click then parses each one exactly as the flag it stands for, and a flag on the command line still
    wins: precedence is defaults < file < flags, for every option of the command, with no code per option.
    Errors print one ``error:`` line naming the key and exit 2.
    """
    if value is None or ctx.resilient_parsing:
        return value
    try:
        defaults = _defaults_from_file(ctx, value)
    except LncliError as exc:
        fail(exc)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_CONFIG_META] = value
    return value


CONFIG_HELP = (
    "YAML file of options: keys are the long option names with underscores (fail_under, max_drop, ...) "
    "and the arguments' names; a list may be a YAML list or the option's comma string. Flags win over the file."
)


def config_option(panel: str | None = None) -> Any:
    """The ``--config FILE`` parameter (its values become the command's defaults), in ``panel`` of ``--help``."""
    return Annotated[
        Path | None,
        typer.Option(
            "--config",
            help=CONFIG_HELP,
            is_eager=True,  # first, so that the file's values are the defaults when the other options are read
            callback=load_config_file,
            dir_okay=False,
            metavar="FILE",
            rich_help_panel=panel,
        ),
    ]


ConfigFile = config_option()


def _from_file(ctx: typer.Context) -> list[Any]:
    """The parameters whose value came from the config file."""
    return [
        p
        for p in ctx.command.params
        if p.name and getattr(ctx.get_parameter_source(p.name), "name", "") == "DEFAULT_MAP"
    ]


def config_source_note(ctx: typer.Context, message: str) -> str:
    """`` (config key 'severity' in check.yaml)`` when ``message`` is about a value that came from the file, else ``""``.

    An error names its option (``--severity``) or, failing that, the option's key as a word (``unknown noise``).
    """
    path = ctx.meta.get(_CONFIG_META)
    if path is None:
        return ""
    params = _from_file(ctx)
    for pattern in (lambda k: f"--{k.replace('_', '-')}", lambda k: k.replace("_", " ")):
        for p in params:
            key = option_key(p)
            if re.search(rf"(?<![\w-]){re.escape(pattern(key))}(?![\w-])", message):
                return f" (config key '{key}' in {path})"
    return ""


def option_sources(ctx: typer.Context) -> dict[str, Any]:
    """Where each option of the command came from: the ``--config`` file (and which keys), the command line.

    Returns:
        ``{"config_file": path or None, "from_file": [keys], "from_command_line": [keys]}``; the values
        themselves are the command's (its JSON records them as the options it ran with).
    """
    keys = config_keys(ctx.command)
    source = {k: getattr(ctx.get_parameter_source(p.name), "name", "") for k, p in keys.items()}
    path = ctx.meta.get(_CONFIG_META)
    return {
        "config_file": None if path is None else str(path),
        "from_file": [k for k, s in source.items() if s == "DEFAULT_MAP"],
        "from_command_line": [k for k, s in source.items() if s in ("COMMANDLINE", "ENVIRONMENT")],
    }
