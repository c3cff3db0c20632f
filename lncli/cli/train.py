"""``lncli train``: a BatchNorm or LocalNorm model from a YAML config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lncli.cli.app import command, err_console
from lncli.cli.progress import train_progress
from lncli.io import check_distinct

# The options, one alias each (Typer's Annotated form), so that the command reads as its --help.
Config = Annotated[
    Path,
    typer.Argument(
        help="YAML train config (see sample_configs/); model.arch may be an lncli model, torchvision:NAME, "
        "timm:NAME or package.module:function.",
        exists=True,
        dir_okay=False,
    ),
]
Set = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set optim.lr=0.05 (dotted key, YAML value; repeatable)."),
]
Out = Annotated[Path | None, typer.Option("--out", help="Output folder (default: runs/<config name>).")]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue from OUT/last.pt (same final weights as an uninterrupted run).")
]


def _check_arch(arch: str) -> None:
    """An unknown or unimportable model.arch fails before any data is read (the config is the user's: code may load)."""
    from lncli.errors import ConfigError, LncliError
    from lncli.models import check_arch

    try:
        check_arch(arch, allow_code=True)
    except LncliError as exc:
        raise ConfigError(f"config key 'model.arch': {exc}") from None


@command("train", no_args_is_help=True)
def train_command(config: Config, set_: Set = None, out: Out = None, resume: Resume = False) -> None:
    """Train a BatchNorm or LocalNorm model from a YAML config; writes last.pt, best.pt, history.csv, config.yaml."""
    from lncli import distributed  # imports torch: not at `lncli --help` time
    from lncli.config.train import load_train_config
    from lncli.jobs.train import train

    cfg = load_train_config(config, set_ or [])
    _check_arch(cfg.model.arch)
    out_dir = out or Path("runs") / config.stem
    if not resume:  # a resumed run rewrites its own config.yaml; a fresh one must not replace the user's file
        check_distinct({"--out": out_dir / "config.yaml"}, {"CONFIG": config})
    is_main = not distributed.launched_by_torchrun() or os.environ.get("RANK", "0") == "0"
    try:
        with train_progress(is_main) as progress:
            result = train(cfg, out_dir, resume=resume, progress=progress)
    except KeyboardInterrupt:
        if is_main:
            err_console.print(
                f"[yellow]interrupted:[/] saved {out_dir / 'last.pt'}; continue with --resume --out {out_dir}"
            )
        raise typer.Exit(code=130) from None
    if is_main and result.final is not None:
        f = result.final
        best = f"{result.best_test_accuracy:.2%}" if result.best_test_accuracy is not None else "n/a"
        done = f"done: {len(result.history)} epochs, train loss {f.train_loss:.4f}, best test accuracy {best}"
        err_console.print(f"{done}; wrote {out_dir}/", highlight=False)
