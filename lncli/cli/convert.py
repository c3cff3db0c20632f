"""``lncli convert``: a checkpoint between BatchNorm and LocalNorm, optionally fine-tuned before it is written."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from lncli.cli.app import GroupingChoice, NormChoice, command, err_console
from lncli.cli.progress import train_progress
from lncli.config.convert import ConvertConfig
from lncli.errors import LncliError

if TYPE_CHECKING:  # lncli.checkpoint imports every model (torchvision): too slow for `lncli --help`
    from lncli.checkpoint import Checkpoint

# The options, one alias each (Typer's Annotated form), so that the command reads as its --help.
In = Annotated[
    Path,
    typer.Argument(
        metavar="IN",
        help="Checkpoint to convert: lncli's, or a foreign state_dict with --arch and --data.",
        exists=True,
        dir_okay=False,
    ),
]
Out = Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the result (never IN; written atomically).")]
To = Annotated[
    NormChoice,
    typer.Option(
        help="Target norm. localnorm: every head starts from BN's weight/bias. "
        "batchnorm: the LocalNorm heads are AVERAGED into weight/bias."
    ),
]
GroupSize = Annotated[int, typer.Option(help="LocalNorm group size G (samples per group).")]
Heads = Annotated[int, typer.Option(help="LocalNorm affine heads per layer (the paper: batch/G).")]
Grouping = Annotated[
    GroupingChoice, typer.Option(help="LocalNorm grouping: consecutive (the authors') or strided (faster).")
]
Finetune = Annotated[
    int,
    typer.Option(
        "--finetune",
        metavar="EPOCHS",
        help="Then fine-tune this many epochs on --data (norm layers only unless --finetune-all).",
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="SPEC",
        help="The dataset of a foreign IN (its classes and channels), and the training data for --finetune: "
        "fashion-mnist, cifar10, synthetic, imagefolder:PATH.",
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        help="Architecture of a foreign IN: an lncli model name, torchvision:NAME, timm:NAME or "
        "package.module:function (your own builder; runs your code). Recorded in OUT."
    ),
]
NonStrict = Annotated[
    bool,
    typer.Option(
        "--non-strict",
        help="Load weights with missing or unexpected keys anyway; they are listed on stderr and recorded in OUT.",
    ),
]
FinetuneAll = Annotated[
    bool, typer.Option("--finetune-all", help="Fine-tune every parameter, not just norm gamma/beta/heads.")
]


# A name, not a call in the signature: ruff's B008 flags calls in argument defaults (they run once, at definition).
_GROUPING = GroupingChoice(ConvertConfig.grouping)


@command("convert", no_args_is_help=True)
def convert_command(
    src: In,
    dst: Out,
    to: To,
    group_size: GroupSize = ConvertConfig.group_size,
    heads: Heads = ConvertConfig.num_heads,
    grouping: Grouping = _GROUPING,
    finetune: Finetune = 0,
    data: Data = None,
    finetune_all: FinetuneAll = False,
    arch: Arch = ConvertConfig.arch,
    non_strict: NonStrict = not ConvertConfig.strict,
) -> None:
    """Convert a checkpoint between BatchNorm and LocalNorm (LN -> BN averages the heads); OUT records arch and data."""
    if finetune and not data:  # fail before any work
        raise LncliError("--finetune needs --data SPEC (the training data, e.g. --data fashion-mnist)")
    cfg = ConvertConfig(
        src=src,
        dst=dst,
        to=to.value,
        group_size=group_size,
        num_heads=heads,
        grouping=grouping.value,
        arch=arch,
        data=data,
        strict=not non_strict,
    )
    then = functools.partial(_finetune, data=data or "", epochs=finetune, train_all=finetune_all)
    from lncli.jobs.convert import convert_file  # the job imports torch: not at `lncli --help` time

    result = convert_file(cfg, then=then if finetune else None)
    if result.report:
        err_console.print(
            f"[yellow]warning:[/] {escape(src.name)} loaded with --non-strict: {escape(result.report.summary())}",
            highlight=False,
            soft_wrap=True,
        )
    for line in result.summary.lines():
        typer.echo(line)
    if finetune:
        loss = result.written.metrics["finetune_train_loss"]
        typer.echo(f"fine-tuned {finetune} epoch(s) on {data}: train loss {loss:.4f}")
    typer.echo(f"wrote {dst}")


def _finetune(ckpt: Checkpoint, *, data: str, epochs: int, train_all: bool) -> Checkpoint:
    """Fine-tune the converted checkpoint before OUT is written (so a bad --data leaves no OUT)."""
    from lncli.jobs.train import finetune

    with train_progress(True) as progress:
        return finetune(ckpt, data, epochs, train_all=train_all, progress=progress)
