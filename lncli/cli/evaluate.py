"""``lncli evaluate``: checkpoints side by side over noises x severities, rendered by :mod:`lncli.report`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lncli import report
from lncli.cli.app import (
    DATA_DIR_HELP,
    DOWNLOAD_HELP,
    DeviceChoice,
    HeadsChoice,
    InterpolationChoice,
    ProfileChoice,
    comma_list,
    command,
    err_console,
    severity_text,
)
from lncli.cli.progress import eval_progress
from lncli.config.common import DEFAULT_GROUP_SIZE, parse_list, parse_severities
from lncli.config.evaluate import MODES, NOISE_FAMILY, NORMALIZATION_PRESETS, EvalConfig
from lncli.io import check_distinct, check_output_file
from lncli.records import EvalRecord


def _check_eval_outputs(
    csv_path: Path | None, json_path: Path | None, plot: Path | None, max_drop: float | None
) -> None:
    """Refuse bad output paths and bounds before any compute: a typo must not cost the whole grid."""
    if csv_path:
        check_output_file(csv_path, "--csv", (".csv",))
    if json_path:
        check_output_file(json_path, "--json", (".json",))
    if plot:
        report.check_plot_path(plot)
    check_distinct({"--csv": csv_path, "--json": json_path, "--plot": plot})
    report.check_max_drop(max_drop)


def _report_evaluation(
    records: list[EvalRecord],
    run: dict[str, Any],
    files: tuple[Path | None, Path | None, Path | None],
    baseline: str | None,
    thresholds: list[report.Threshold],
    max_drop: float | None,
) -> None:
    """Write the files, print the table, and exit 1 when a threshold fails."""
    csv_path, json_path, plot = files
    if csv_path:
        report.write_csv(records, csv_path)
    if json_path:
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


_NO_ORDER_SEED = -1
"""``--order-seed`` default that keeps the dataset order (any negative seed does: ``EvalConfig.order_seed=None``)."""

_MODE_HELP = (
    f"Comma list of {','.join(MODES)} (vote: softmax averaged over heads; majority: the authors' per-head argmax "
    "majority, ties to the lowest class; default: BN running,batch; LocalNorm local)."
)


# The options, one alias each (Typer's Annotated form), so that the command reads as its --help.
Checkpoints = Annotated[
    list[str], typer.Argument(help="Checkpoint files, folders (natural sort) or globs.", metavar="CKPT...")
]
Noise = Annotated[str, typer.Option(help=f"Comma list of noises, or 'all' ({','.join(NOISE_FAMILY)}).")]
Severity = Annotated[str, typer.Option(help="Severities, e.g. 0-5 or 1,3,5; 0 is the clean row.")]
Profile = Annotated[ProfileChoice, typer.Option(help="Noise constants.")]
Mode = Annotated[str | None, typer.Option(help=_MODE_HELP)]
Heads = Annotated[HeadsChoice, typer.Option(help="LocalNorm head per test group: by position (paper) or the mean.")]
GroupSize = Annotated[
    int | None,
    typer.Option(
        help=f"Images per statistics group in local mode (default: the checkpoint's, else {DEFAULT_GROUP_SIZE})."
    ),
]
BatchSize = Annotated[int, typer.Option(help="Test batch size (fixes which images share statistics).")]
Data = Annotated[
    str | None,
    typer.Option(
        help="fashion-mnist, cifar10, synthetic, imagefolder:PATH, cifar10c:DIR (CIFAR-10-C/100-C arrays) or "
        "imagenetc:DIR (ImageNet-C folders) (default: from the checkpoints)."
    ),
]
Limit = Annotated[
    int | None, typer.Option(help="Evaluate only the first N test images (image folders: every class kept).")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Download = Annotated[bool, typer.Option("--download", help=DOWNLOAD_HELP)]
Seed = Annotated[int, typer.Option(help="Noise seed.")]
OrderSeed = Annotated[int, typer.Option(help="Test-set shuffle seed; -1 keeps the dataset order.")]
Device = Annotated[DeviceChoice, typer.Option(help="Where the models run (auto: CUDA when available).")]
CsvPath = Annotated[Path | None, typer.Option("--csv", help="Write the long-format CSV here.")]
JsonPath = Annotated[Path | None, typer.Option("--json", help="Write records + config as JSON here.")]
PlotPath = Annotated[Path | None, typer.Option("--plot", help="Write accuracy-vs-severity plot (PNG) here.")]
FailUnder = Annotated[
    list[str] | None,
    typer.Option(help="Exit 1 below a bound: 0.5, gaussian:5=0.3, gaussian=0.4, clean=0.9, mean=0.6 (repeatable)."),
]
MaxDrop = Annotated[
    float | None, typer.Option(help="Exit 1 when clean minus corrupted accuracy exceeds this in any cell.")
]
Baseline = Annotated[
    str | None, typer.Option(help="Baseline column for mCE: 1-based index or (part of) its label; default the first.")
]
Workers = Annotated[
    int,
    typer.Option(
        help="Workers preparing batches ahead of the models (0 = inline): noise threads, and for image files "
        "DataLoader processes that decode them."
    ),
]
Amp = Annotated[bool, typer.Option("--amp", help="float16 autocast on CUDA (ignored on CPU; recorded).")]
Rescale = Annotated[
    bool,
    typer.Option(
        "--rescale",
        help="With --profile paper: min-max rescale the whole noisy test set per channel onto the training split's "
        "range, as the authors did (the clean test set's when there is no training split).",
    ),
]

_PRE = "(default: the checkpoint's, the dataset's, timm's, then ImageNet's)"
ImageSize = Annotated[int | None, typer.Option(help=f"Side of the centre crop fed to the model {_PRE}.")]
Resize = Annotated[int | None, typer.Option(help=f"Short side images are resized to before the crop {_PRE}.")]
Mean = Annotated[
    str | None,
    typer.Option(
        help=f"Per-channel mean of [0, 1] pixels: numbers, or {'/'.join(NORMALIZATION_PRESETS)} "
        f"(none: the model normalises inside) {_PRE}."
    ),
]
Std = Annotated[str | None, typer.Option(help="Per-channel std: numbers, or a --mean name (default: as --mean).")]
Channels = Annotated[int | None, typer.Option(help="Read images as 1 (L) or 3 (RGB) channels (default: the model's).")]
SkipUnreadable = Annotated[
    bool,
    typer.Option("--skip-unreadable", help="Leave out image files that cannot be opened (counted in the records)."),
]
Interpolation = Annotated[InterpolationChoice | None, typer.Option(help=f"The resize's interpolation {_PRE}.")]

# Defaults read from EvalConfig (module-level: an Enum call as a default argument would run at each definition).
_NOISES = ",".join(EvalConfig.noises)
_SEVERITIES = severity_text(EvalConfig.severities)
_PROFILE = ProfileChoice(EvalConfig.profile)
_HEADS = HeadsChoice(EvalConfig.heads)
_DEVICE = DeviceChoice(EvalConfig.device)
_ORDER_SEED = _NO_ORDER_SEED if EvalConfig.order_seed is None else EvalConfig.order_seed


@command("evaluate", no_args_is_help=True)
def evaluate_command(
    checkpoints: Checkpoints,
    noise: Noise = _NOISES,
    severity: Severity = _SEVERITIES,
    profile: Profile = _PROFILE,
    mode: Mode = None,
    heads: Heads = _HEADS,
    group_size: GroupSize = None,
    batch_size: BatchSize = EvalConfig.batch_size,
    data: Data = None,
    limit: Limit = None,
    data_dir: DataDir = None,
    download: Download = False,
    seed: Seed = EvalConfig.seed,
    order_seed: OrderSeed = _ORDER_SEED,
    device: Device = _DEVICE,
    csv_path: CsvPath = None,
    json_path: JsonPath = None,
    plot: PlotPath = None,
    fail_under: FailUnder = None,
    max_drop: MaxDrop = None,
    baseline: Baseline = None,
    workers: Workers = EvalConfig.workers,
    amp: Amp = EvalConfig.amp,
    rescale: Rescale = EvalConfig.rescale,
    image_size: ImageSize = None,
    resize: Resize = None,
    mean: Mean = None,
    std: Std = None,
    interpolation: Interpolation = None,
    channels: Channels = None,
    skip_unreadable: SkipUnreadable = EvalConfig.skip_unreadable,
) -> None:
    """Evaluate checkpoints side by side over noises x severities (BN running/batch stats vs LocalNorm)."""
    from lncli.jobs.evaluate import (  # models: slow import
        column_keys,
        evaluate_grid,
        load_checkpoints,
        preprocess_flags,
        resolve_data,
    )

    thresholds = [report.parse_threshold(t) for t in fail_under or []]  # bad bounds fail before any compute
    _check_eval_outputs(csv_path, json_path, plot, max_drop)
    config = EvalConfig(
        noises=NOISE_FAMILY if noise.strip().lower() == "all" else comma_list(noise),
        severities=parse_severities(severity),
        profile=profile.value,
        modes=parse_list(mode, MODES, "mode") if mode else None,
        heads=heads.value,
        group_size=group_size,
        batch_size=batch_size,
        seed=seed,
        order_seed=None if order_seed < 0 else order_seed,
        device=device.value,
        amp=amp,
        workers=workers,
        rescale=rescale,
        image_size=image_size,
        resize=resize,
        mean=mean,
        std=std,
        interpolation=None if interpolation is None else interpolation.value,
        channels=channels,
        skip_unreadable=skip_unreadable,
    )
    pre = preprocess_flags(config)  # bad --mean, --resize, ... fail before any model is loaded
    from lncli import distributed  # imports torch: not at `lncli --help` time

    info = distributed.init_distributed(distributed.local_device(config.device))
    try:
        models = load_checkpoints(checkpoints)
        if baseline:  # against the columns the sweep will have, before any compute
            report.resolve_baseline(report.columns(column_keys(models, config)), baseline)
        test_set = resolve_data(
            data,
            models,
            limit=limit,
            data_dir=data_dir,
            download=download,
            with_train_range=rescale,
            preprocess=pre,
            channels=config.channels,
            skip_unreadable=config.skip_unreadable,
            workers=config.workers,
        )
        with eval_progress(info.is_main) as progress:
            records = evaluate_grid(models, test_set, config, progress=progress)
    finally:
        distributed.cleanup()
    if info.is_main:
        run = {**asdict(config), "checkpoints": [m.path for m in models], "data": data, "limit": limit}
        _report_evaluation(records, run, (csv_path, json_path, plot), baseline, thresholds, max_drop)
