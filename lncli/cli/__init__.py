"""The ``lncli`` command line: a thin Typer layer over the library.

Each command only translates: it parses options into a frozen config, calls the
library, and hands the returned records to :mod:`lncli.report`. Option choices and
defaults are read from the library's own names (profiles, norm kinds, groupings,
modes, heads, devices, output formats, the configs' defaults), never restated here.
Any :class:`lncli.errors.LncliError` raised below becomes one line on stderr and
exit code 2; a failed robustness threshold in ``evaluate`` is exit code 1.

* :mod:`.app`: the Typer app, the error guard, the choices;
* :mod:`.progress`: the rich progress bars;
* one module per command: :mod:`.convert`, :mod:`.corrupt`, :mod:`.train`, :mod:`.evaluate`.
"""

# Importing a command module registers it; this order is the order of `lncli --help`.
# isort: off
from lncli.cli import convert, corrupt, train, evaluate  # noqa: F401

# isort: on
from lncli.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point for ``python -m lncli``."""
    app()
