"""The Typer app of ``lncli``, its error handling, and the option choices read from the library.

Every command registers through :func:`command`, which turns any
:class:`lncli.errors.LncliError` into one ``error: ...`` line on stderr and exit code 2;
click's own usage errors are printed as one line too. The ``str`` Enums of the options'
choices are built from the library's tuples (profiles, heads, devices, norm kinds,
groupings), so nothing is restated here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.rich_utils
from rich.console import Console
from rich.markup import escape

from lncli import __version__
from lncli.config.common import DEVICES, GROUPINGS, NORM_KINDS, PROFILE_NAMES
from lncli.config.evaluate import HEADS, INTERPOLATIONS
from lncli.errors import LncliError

err_console = Console(stderr=True)

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


def _guarded(fn: F) -> F:
    """Turn user-facing errors into one line on stderr and exit code 2.

    Anything a user can cause (a missing file, a bad value, an unknown name)
    raises :class:`LncliError` in the library; here it becomes
    ``error: <message>``, never a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LncliError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None
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


def _choices(name: str, values: Iterable[str], doc: str) -> type[Enum]:
    """A ``str`` Enum whose members are ``values``: Typer shows and checks them as the option's choices."""
    choice = Enum(name, [(v, v) for v in values], type=str)  # type: ignore[misc]  # members built at run time
    choice.__doc__ = doc
    return choice


if TYPE_CHECKING:
    # mypy cannot see members made at run time; to it every choice is this str Enum (``.value`` is the choice).
    class _Choice(str, Enum):
        pass

    ProfileChoice = _Choice
    HeadsChoice = _Choice
    DeviceChoice = _Choice
    NormChoice = _Choice
    GroupingChoice = _Choice
    InterpolationChoice = _Choice
else:
    ProfileChoice = _choices(
        "ProfileChoice",
        PROFILE_NAMES,
        "Noise constants: ImageNet-C, CIFAR-10-C, or the LocalNorm authors' own protocol.",
    )
    HeadsChoice = _choices("HeadsChoice", HEADS, "Which LocalNorm affine head a test group uses.")
    DeviceChoice = _choices("DeviceChoice", DEVICES, "Where the models run.")
    NormChoice = _choices("NormChoice", NORM_KINDS, "Norm layer to convert to.")
    GroupingChoice = _choices("GroupingChoice", GROUPINGS, "How LocalNorm cuts a batch into groups.")
    InterpolationChoice = _choices("InterpolationChoice", INTERPOLATIONS, "How images are resized.")


def severity_text(severities: Sequence[int]) -> str:
    """A severity tuple in the grammar of :func:`lncli.config.common.parse_severities`: runs as ``a-b``."""
    runs: list[list[int]] = []
    for s in sorted(severities):
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


DATA_DIR_HELP = "Folder searched first for the dataset's files (then $LNCLI_DATA, ~/.cache/lncli, /usr/share/datasets)."
DOWNLOAD_HELP = "Let torchvision download a missing dataset (needs the network)."


def comma_list(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())
