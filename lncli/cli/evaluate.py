"""``lncli evaluate``: parse, plan, run, render.

The options are :class:`lncli.jobs.evaluate.options.EvalOptions`'s fields, made into Typer parameters
(:mod:`lncli.cli.options`): declared once, shared with ``--config`` files and ``lncli.evaluate``.
Every argument that needs no torch (names, numbers, grammars, paths) is checked before torch is
imported (:func:`~lncli.jobs.evaluate.options.parse_options`); every other user error is raised while
the plan is built (:func:`~lncli.jobs.evaluate.plan.build_plan`), before the first forward pass.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from lncli.cli import options as cli_options
from lncli.cli.app import command, config_option, err_console, option_sources
from lncli.cli.progress import eval_progress
from lncli.jobs.evaluate.options import RUN, EvalOptions, defaults, option_specs, parse_options

if TYPE_CHECKING:
    from lncli.jobs.evaluate.result import EvalResult

_SPECS = option_specs()


def evaluate_command(ctx: Any, **parsed: Any) -> None:
    """Evaluate checkpoints side by side over noises x severities (BN running/batch stats vs LocalNorm)."""
    request = parse_options(EvalOptions(**cli_options.values(parsed, _SPECS)))  # no torch yet: typos cost little
    from lncli import distributed  # imports torch
    from lncli.jobs.evaluate.plan import build_plan, run_plan

    info = distributed.init_distributed(distributed.local_device(request.config.device))
    try:
        plan = build_plan(request, provenance=option_sources(ctx))
        if info.is_main:
            for line in plan.warnings:
                err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
            for line in plan.notes:
                err_console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True)
        with eval_progress(info.is_main) as progress:
            result = run_plan(plan, progress=progress)
    finally:
        distributed.cleanup()
    if info.is_main:
        _render(result, request)


def _render(result: EvalResult, request: Any) -> None:
    """Write the files, print the tables, and exit 1 when a bound or the regression gate fails."""
    import typer

    result.write(request.outputs)
    out = Console()
    for table in result.renderables(width=out.width):
        out.print(table)
    for check in result.failures:
        err_console.print(f"[bold red]FAIL[/] {escape(check.message)}", highlight=False, soft_wrap=True)
    if result.failures:
        raise typer.Exit(code=1)


_config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=config_option(RUN))
cli_options.declare(evaluate_command, cli_options.signature(_SPECS, defaults(), [_config]))
command("evaluate")(evaluate_command)
