"""The ``lncli`` command line: a thin Typer layer over the library.

Each command only translates: it parses options into a frozen config, makes one
library call, and hands the returned records to :mod:`lncli.report`. Any
:class:`lncli.errors.LncliError` raised below becomes one line on stderr and
exit code 2; a failed robustness threshold in ``evaluate`` is exit code 1.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Callable, TypeVar

import typer
from rich.console import Console

from lncli import __version__
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
# Commands. Each one: parse -> frozen config -> one library call -> report.
# Keep each section to its own command; helpers live in the library modules.
# ---------------------------------------------------------------------------

# <convert>
# </convert>

# <corrupt>
# </corrupt>

# <train>
# </train>

# <evaluate>
# </evaluate>


def main() -> None:
    """Entry point for ``python -m lncli``."""
    app()


if __name__ == "__main__":
    main()
