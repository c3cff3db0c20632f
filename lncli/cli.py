"""The ``lncli`` command line: a thin Typer layer over the library.

Each command only translates: it parses options into a frozen config, makes one
library call, and hands the returned records to :mod:`lncli.report`. Any
:class:`lncli.errors.LncliError` raised below becomes one line on stderr and
exit code 2; a failed robustness threshold in ``evaluate`` is exit code 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, TypeVar

import typer
import typer.rich_utils
from rich.console import Console
from rich.markup import escape

from lncli import __version__
from lncli.errors import LncliError
from lncli.io import check_distinct, check_output_file

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
# Commands. Each one: parse -> frozen config -> one library call -> report.
# ---------------------------------------------------------------------------

class ProfileChoice(str, Enum):
    """Noise constants: ImageNet-C, CIFAR-10-C, or the LocalNorm authors' own protocol."""

    imagenet_c = "imagenet-c"
    cifar_10_c = "cifar-10-c"
    paper = "paper"


# --- convert ----------------------------------------------------------------


class ConvertTarget(str, Enum):
    """Norm layer to convert to."""

    localnorm = "localnorm"
    batchnorm = "batchnorm"


class ConvertGrouping(str, Enum):
    """How LocalNorm cuts a batch into groups."""

    consecutive = "consecutive"
    strided = "strided"


@command("convert", no_args_is_help=True)
def convert_command(
    src: Annotated[Path, typer.Argument(metavar="IN", help="lncli checkpoint to convert.", exists=True, dir_okay=False)],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the result (never IN; written atomically).")],
    to: Annotated[ConvertTarget, typer.Option(help="Target norm. localnorm: every head starts from BN's weight/bias. batchnorm: the LocalNorm heads are AVERAGED into weight/bias.")],
    group_size: Annotated[int, typer.Option(help="LocalNorm group size G (samples per group).")] = 16,
    heads: Annotated[int, typer.Option(help="LocalNorm affine heads per layer (the paper: batch/G).")] = 1,
    grouping: Annotated[ConvertGrouping, typer.Option(help="LocalNorm grouping: consecutive (the authors') or strided (faster).")] = ConvertGrouping.consecutive,
    finetune: Annotated[int, typer.Option("--finetune", metavar="EPOCHS", help="Then fine-tune this many epochs on --data (norm layers only unless --finetune-all).")] = 0,
    data: Annotated[str | None, typer.Option("--data", metavar="SPEC", help="Training data for --finetune: fashion-mnist, cifar10, synthetic, imagefolder:PATH.")] = None,
    finetune_all: Annotated[bool, typer.Option("--finetune-all", help="Fine-tune every parameter, not just norm gamma/beta/heads.")] = False,
) -> None:
    """Convert a checkpoint between BatchNorm and LocalNorm (LN -> BN averages the heads)."""
    from lncli.checkpoint import Checkpoint
    from lncli.convert import ConvertConfig, run_convert

    if finetune and not data:  # fail before any work
        raise LncliError("--finetune needs --data SPEC (the training data, e.g. --data fashion-mnist)")
    cfg = ConvertConfig(src=src, dst=dst, to=to.value, group_size=group_size, num_heads=heads, grouping=grouping.value)
    tuned: list[Checkpoint] = []

    def then(ckpt: Checkpoint) -> Checkpoint:  # fine-tune before OUT is written: a bad --data leaves no OUT
        from lncli.train import finetune as run_finetune

        with _train_progress(True) as progress:
            tuned.append(run_finetune(ckpt, data or "", finetune, train_all=finetune_all, progress=progress))
        return tuned[-1]

    summary = run_convert(cfg, then=then if finetune else None)
    for line in summary.lines():
        typer.echo(line)
    if tuned:
        typer.echo(f"fine-tuned {finetune} epoch(s) on {data}: train loss {tuned[-1].metrics['finetune_train_loss']:.4f}")
    typer.echo(f"wrote {dst}")


# --- corrupt ---------------------------------------------------------------------


class CorruptFormat(str, Enum):
    """Output format for ``corrupt``."""

    png = "png"
    jpeg = "jpeg"
    npy = "npy"


@command("corrupt", no_args_is_help=True)
def corrupt_command(
    inputs: Annotated[list[Path] | None, typer.Argument(help="Image files or folders (relative paths kept).")] = None,  # existence: one-line LncliError in find_images
    data: Annotated[str | None, typer.Option(help="Corrupt a dataset's test split instead: fashion-mnist, cifar10, synthetic, imagefolder:PATH.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder searched first for the dataset's files (then $LNCLI_DATA, ~/.cache/lncli, /usr/share/datasets).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Let torchvision download a missing dataset (needs the network).")] = False,
    noise: Annotated[str, typer.Option(help="Comma list of noises (gaussian,shot,impulse,speckle, imagecorruptions names, paper: gaussian,poisson,dropout).")] = "gaussian,shot,impulse",
    severity: Annotated[str, typer.Option(help="Severities: 1-5, 1,3,5 or 0-2,5 (0 = clean copy).")] = "1-5",
    profile: Annotated[ProfileChoice, typer.Option(help="Noise constants.")] = ProfileChoice.imagenet_c,
    seed: Annotated[int, typer.Option(help="Noise seed; image i's noise depends only on (seed, noise, severity, i).")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("corrupted"),
    fmt: Annotated[CorruptFormat, typer.Option("--format", help="png (lossless), jpeg, or npy (CIFAR-10-C layout).")] = CorruptFormat.png,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality 1-100 (ImageNet-C used 85).")] = 85,
    preview: Annotated[Path | None, typer.Option(help="Also draw a contact sheet here (rows = severity, columns = images).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    limit: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    skip_unreadable: Annotated[bool, typer.Option("--skip-unreadable", help="Skip files Pillow cannot read (default: error).")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads for the noise (output does not depend on it).")] = 1,
) -> None:
    """Write noisy copies of images or a dataset (PNG/JPEG folders or CIFAR-10-C .npy arrays)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lncli.config.common import parse_severities
    from lncli.imageio import CorruptConfig, OutputFormat, run_corrupt

    cfg = CorruptConfig(out=out, noises=tuple(n.strip() for n in noise.split(",") if n.strip()), severities=parse_severities(severity),
                        inputs=tuple(inputs or ()), data=data, data_dir=data_dir, download=download, profile=profile.value, seed=seed, format=OutputFormat(fmt.value),
                        jpeg_quality=jpeg_quality, preview=preview, overwrite=overwrite, limit=limit, skip_unreadable=skip_unreadable,
                        num_threads=threads)  # fmt: skip
    cols = (TextColumn("corrupting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("corrupt", total=None)
        records = run_corrupt(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total))
    written = [r for r in records if r.status == "written"]
    for r in records:
        if r.status == "skipped":
            err_console.print(f"[yellow]skipped:[/] {r.detail}", highlight=False, soft_wrap=True)
    err_console.print(f"wrote {len(written)} file(s) to {out}/", highlight=False)


# --- train -----------------------------------------------------------------------


@contextlib.contextmanager
def _train_progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """One rich bar per epoch on stderr (loss, accuracy, lr); finished epochs stay as summary lines."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*cols, console=err_console, disable=not err_console.is_terminal) as bar:
        tasks: dict[int, Any] = {}

        def on_event(ev: Any) -> None:
            if ev.kind in ("start", "batch") and ev.epoch not in tasks:
                tasks[ev.epoch] = bar.add_task(f"epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps, completed=ev.step, stats="")
            if ev.kind == "batch":
                stats = f"loss {ev.loss:.4f}  acc {ev.accuracy:.2%}  lr {ev.lr:.3g}"
                bar.update(tasks[ev.epoch], completed=ev.step, stats=stats)
            elif ev.kind == "epoch" and ev.record is not None:
                r = ev.record
                test = f"  test {r.test_accuracy:.2%}" if r.test_accuracy is not None else ""
                stats = f"loss {r.train_loss:.4f}  acc {r.train_accuracy:.2%}{test}  {r.seconds:.1f}s"
                if ev.epoch not in tasks:
                    tasks[ev.epoch] = bar.add_task(f"epoch {ev.epoch + 1}/{ev.epochs}", total=ev.steps)
                bar.update(tasks[ev.epoch], completed=ev.steps, stats=stats)

        yield on_event


@command("train", no_args_is_help=True)
def train_command(
    config: Annotated[Path, typer.Argument(help="YAML train config (see sample_configs/).", exists=True, dir_okay=False)],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set optim.lr=0.05 (dotted key, YAML value; repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: runs/<config name>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt (same final weights as an uninterrupted run).")] = False,
) -> None:
    """Train a BatchNorm or LocalNorm model from a YAML config; writes last.pt, best.pt, history.csv, config.yaml."""
    from lncli.config import load_train_config
    from lncli.distributed import launched_by_torchrun
    from lncli.train import train

    cfg = load_train_config(config, set_ or [])
    out_dir = out or Path("runs") / config.stem
    if not resume:  # a resumed run rewrites its own config.yaml; a fresh one must not replace the user's file
        check_distinct({"--out": out_dir / "config.yaml"}, {"CONFIG": config})
    is_main = not launched_by_torchrun() or os.environ.get("RANK", "0") == "0"
    try:
        with _train_progress(is_main) as progress:
            result = train(cfg, out_dir, resume=resume, progress=progress)
    except KeyboardInterrupt:
        if is_main:
            err_console.print(f"[yellow]interrupted:[/] saved {out_dir / 'last.pt'}; continue with --resume --out {out_dir}")
        raise typer.Exit(code=130) from None
    if is_main and result.final is not None:
        f = result.final
        best = f"{result.best_test_accuracy:.2%}" if result.best_test_accuracy is not None else "n/a"
        err_console.print(f"done: {len(result.history)} epochs, train loss {f.train_loss:.4f}, best test accuracy {best}; wrote {out_dir}/",
                          highlight=False)  # fmt: skip


# --- evaluate --------------------------------------------------------------------


class HeadsChoice(str, Enum):
    """Which LocalNorm affine head a test group uses."""

    position = "position"
    mean = "mean"


class DeviceChoice(str, Enum):
    """Where the models run."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@contextlib.contextmanager
def _eval_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar with ETA on stderr; yields the ``progress(done, total)`` callback."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*cols, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("evaluate", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _check_baseline(models: Any, modes: tuple[str, ...] | None, baseline: str) -> None:
    """Resolve --baseline against the columns the sweep will have, before any compute.

    Why: a typo must not cost the whole grid and then exit 2 with the files written.
    The columns are one per checkpoint x mode, as :func:`lncli.evaluate.evaluate_grid` makes them.
    """
    from types import SimpleNamespace

    from lncli import report
    from lncli.evaluate import default_modes

    keys = [SimpleNamespace(checkpoint=m.path, mode=mode) for m in models for mode in modes or default_modes(m.checkpoint)]
    report.resolve_baseline(report.columns(keys), baseline)  # type: ignore[arg-type]  # columns reads .checkpoint and .mode only


@command("evaluate", no_args_is_help=True)
def evaluate_command(
    checkpoints: Annotated[list[str], typer.Argument(help="Checkpoint files, folders (natural sort) or globs.", metavar="CKPT...")],
    noise: Annotated[str, typer.Option(help="Comma list of noises, or 'all' (gaussian,shot,impulse).")] = "gaussian,shot,impulse",
    severity: Annotated[str, typer.Option(help="Severities, e.g. 0-5 or 1,3,5; 0 is the clean row.")] = "0-5",
    profile: Annotated[ProfileChoice, typer.Option(help="Noise constants.")] = ProfileChoice.imagenet_c,
    mode: Annotated[str | None, typer.Option(help="Comma list of running,batch,local,single,vote,majority (vote: softmax averaged over heads; majority: the authors' per-head argmax majority, ties to the lowest class; default: BN running,batch; LocalNorm local).")] = None,
    heads: Annotated[HeadsChoice, typer.Option(help="LocalNorm head per test group: by position (paper) or the mean.")] = HeadsChoice.position,
    group_size: Annotated[int | None, typer.Option(help="Images per statistics group in local mode (default: the checkpoint's, else 16).")] = None,
    batch_size: Annotated[int, typer.Option(help="Test batch size (fixes which images share statistics).")] = 128,
    data: Annotated[str | None, typer.Option(help="fashion-mnist, cifar10, synthetic, imagefolder:PATH or cifar10c:DIR (default: from the checkpoints).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N test images.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Folder searched first for the dataset's files (then $LNCLI_DATA, ~/.cache/lncli, /usr/share/datasets).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Let torchvision download a missing dataset (needs the network).")] = False,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    order_seed: Annotated[int, typer.Option(help="Test-set shuffle seed; -1 keeps the dataset order.")] = 0,
    device: Annotated[DeviceChoice, typer.Option(help="auto, cpu or cuda.")] = DeviceChoice.auto,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the long-format CSV here.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write records + config as JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write accuracy-vs-severity plot (PNG) here.")] = None,
    fail_under: Annotated[list[str] | None, typer.Option(help="Exit 1 below a bound: 0.5, gaussian:5=0.3, gaussian=0.4, clean=0.9, mean=0.6 (repeatable).")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Exit 1 when clean minus corrupted accuracy exceeds this in any cell.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Baseline column for mCE: 1-based index or (part of) its label; default the first.")] = None,
    workers: Annotated[int, typer.Option(help="Threads generating noisy batches ahead of the models (0 = inline).")] = 0,
    amp: Annotated[bool, typer.Option("--amp", help="float16 autocast on CUDA (ignored on CPU; recorded).")] = False,
    rescale: Annotated[bool, typer.Option("--rescale", help="With --profile paper: min-max rescale the whole noisy test set per channel onto the training split's range, as the authors did (the clean test set's when there is no training split).")] = False,
) -> None:
    """Evaluate checkpoints side by side over noises x severities (BN running/batch stats vs LocalNorm)."""
    from dataclasses import asdict

    from lncli import distributed, report
    from lncli.config.common import parse_list, parse_severities
    from lncli.evaluate import MODES, NOISE_FAMILY, EvalConfig, evaluate_grid, load_checkpoints, resolve_data

    thresholds = [report.parse_threshold(t) for t in fail_under or []]  # bad bounds fail before any compute
    if csv_path:  # bad output paths too: a typo must not cost the whole grid
        check_output_file(csv_path, "--csv", (".csv",))
    if json_path:
        check_output_file(json_path, "--json", (".json",))
    if plot:
        report.check_plot_path(plot)
    check_distinct({"--csv": csv_path, "--json": json_path, "--plot": plot})
    if max_drop is not None and not 0.0 <= max_drop <= 1.0:
        raise LncliError(f"--max-drop must be in [0, 1], got {max_drop}")
    noises = NOISE_FAMILY if noise.strip().lower() == "all" else tuple(n.strip() for n in noise.split(",") if n.strip())
    config = EvalConfig(
        noises=noises, severities=parse_severities(severity), profile=profile.value,
        modes=parse_list(mode, MODES, "mode") if mode else None, heads=heads.value, group_size=group_size,
        batch_size=batch_size, seed=seed, order_seed=None if order_seed < 0 else order_seed,
        device=device.value, amp=amp, workers=workers, rescale=rescale,
    )  # fmt: skip
    info = distributed.init_distributed(distributed.local_device(device.value))
    try:
        models = load_checkpoints(checkpoints)
        if baseline:
            _check_baseline(models, config.modes, baseline)
        with _eval_progress(info.is_main) as progress:
            records = evaluate_grid(models, resolve_data(data, models, limit=limit, data_dir=data_dir, download=download, with_train_range=rescale), config, progress=progress)
    finally:
        distributed.cleanup()
    if not info.is_main:
        return
    if csv_path:
        report.write_csv(records, csv_path)
    if json_path:
        run = {**asdict(config), "checkpoints": [m.path for m in models], "data": data, "limit": limit}
        report.write_json(records, json_path, config=run)
    if plot:
        report.plot_accuracy(records, plot)
    out = Console()  # after the files, so that a bad --baseline never costs the results
    out.print(report.render_table(records, baseline=baseline, width=out.width))
    failures = report.check_thresholds(records, thresholds, max_drop)
    for line in failures:
        err_console.print(f"[bold red]FAIL[/] {line}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(code=1)



def main() -> None:
    """Entry point for ``python -m lncli``."""
    app()


if __name__ == "__main__":
    main()
