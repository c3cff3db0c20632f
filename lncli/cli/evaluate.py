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
    OrderChoice,
    ProfileChoice,
    comma_list,
    command,
    err_console,
    severity_text,
)
from lncli.cli.progress import eval_progress
from lncli.config.common import DEFAULT_GROUP_SIZE, parse_list, parse_severities
from lncli.config.evaluate import MODES, NOISE_FAMILY, EvalConfig, parse_batch_sizes
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
"""``--order-seed`` value that keeps the dataset order (any negative seed does: ``EvalConfig.order_seed=None``),
the older spelling of ``--order dataset``."""

_MODE_HELP = (
    f"Comma list of {','.join(MODES)} (vote: softmax averaged over heads; majority: the authors' per-head argmax "
    "majority, ties to the lowest class; prior: running and batch statistics mixed with weights N and n; tent: "
    "online entropy minimisation over the norm affines; default: BN running,batch; LocalNorm local)."
)

_MIX_IS_PLAIN = (
    "note: --mix with one noise and one severity draws the same cell for every image: identical to not mixing"
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
BatchSize = Annotated[
    str,
    typer.Option(
        help="Test batch size (fixes which images share statistics), or a comma list (1,16,128): each is run."
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        help="fashion-mnist, cifar10, synthetic, imagefolder:PATH or cifar10c:DIR (default: from the checkpoints)."
    ),
]
Limit = Annotated[int | None, typer.Option(help="Evaluate only the first N test images.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Download = Annotated[bool, typer.Option("--download", help=DOWNLOAD_HELP)]
Seed = Annotated[int, typer.Option(help="Noise seed.")]
OrderSeed = Annotated[
    int, typer.Option(help="Test-set shuffle seed (--order shuffled); -1 keeps the dataset order (= --order dataset).")
]
Order = Annotated[
    OrderChoice,
    typer.Option(
        help="Test stream: shuffled (--order-seed), sorted by label (class-correlated), or the dataset's order."
    ),
]
Mix = Annotated[
    bool,
    typer.Option(
        "--mix",
        help="One mixed stream: each image draws its own noise and severity from --noise/--severity "
        "(0 = clean), seeded by its index and --seed. Recorded as noise and severity 'mixed'.",
    ),
]
PriorN = Annotated[
    float,
    typer.Option(
        help="prior mode's N: (N*running + n*batch)/(N + n) for mean and variance, n = batch size. Default 16, "
        "Schneider et al. 2020 (NeurIPS, 'Improving robustness against common corruptions by covariate shift "
        "adaptation') for small batches; 0 = batch, large = running.",
    ),
]
TentLr = Annotated[float, typer.Option(help="tent mode's Adam learning rate (TENT's CIFAR setting, Wang et al. 2021).")]
TentSteps = Annotated[int, typer.Option(help="tent mode's Adam steps per test batch (TENT takes one).")]
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
Workers = Annotated[int, typer.Option(help="Threads generating noisy batches ahead of the models (0 = inline).")]
Amp = Annotated[bool, typer.Option("--amp", help="float16 autocast on CUDA (ignored on CPU; recorded).")]
Rescale = Annotated[
    bool,
    typer.Option(
        "--rescale",
        help="With --profile paper: min-max rescale the whole noisy test set per channel onto the training split's "
        "range, as the authors did (the clean test set's when there is no training split).",
    ),
]

# Defaults read from EvalConfig (module-level: an Enum call as a default argument would run at each definition).
_NOISES = ",".join(EvalConfig.noises)
_SEVERITIES = severity_text(EvalConfig.severities)
_PROFILE = ProfileChoice(EvalConfig.profile)
_HEADS = HeadsChoice(EvalConfig.heads)
_DEVICE = DeviceChoice(EvalConfig.device)
_ORDER_SEED = _NO_ORDER_SEED if EvalConfig.order_seed is None else EvalConfig.order_seed
_ORDER = OrderChoice(EvalConfig.order)


@command("evaluate", no_args_is_help=True)
def evaluate_command(
    checkpoints: Checkpoints,
    noise: Noise = _NOISES,
    severity: Severity = _SEVERITIES,
    profile: Profile = _PROFILE,
    mode: Mode = None,
    heads: Heads = _HEADS,
    group_size: GroupSize = None,
    batch_size: BatchSize = str(EvalConfig.batch_size),
    data: Data = None,
    limit: Limit = None,
    data_dir: DataDir = None,
    download: Download = False,
    seed: Seed = EvalConfig.seed,
    order_seed: OrderSeed = _ORDER_SEED,
    order: Order = _ORDER,
    mix: Mix = EvalConfig.mix,
    prior_n: PriorN = EvalConfig.prior_n,
    tent_lr: TentLr = EvalConfig.tent_lr,
    tent_steps: TentSteps = EvalConfig.tent_steps,
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
) -> None:
    """Evaluate checkpoints side by side over noises x severities (BN running/batch stats vs LocalNorm)."""
    from lncli.jobs.evaluate import (  # models: slow import
        check_config,
        check_group_sizes,
        column_keys,
        evaluate_grid,
        load_checkpoints,
        resolve_data,
    )

    thresholds = [report.parse_threshold(t) for t in fail_under or []]  # bad bounds fail before any compute
    _check_eval_outputs(csv_path, json_path, plot, max_drop)
    sizes = parse_batch_sizes(batch_size)
    config = EvalConfig(
        noises=NOISE_FAMILY if noise.strip().lower() == "all" else comma_list(noise),
        severities=parse_severities(severity),
        profile=profile.value,
        modes=parse_list(mode, MODES, "mode") if mode else None,
        heads=heads.value,
        group_size=group_size,
        batch_size=sizes[0],
        batch_sizes=sizes if len(sizes) > 1 else (),
        seed=seed,
        order_seed=None if order_seed < 0 else order_seed,
        order=order.value,
        mix=mix,
        prior_n=prior_n,
        tent_lr=tent_lr,
        tent_steps=tent_steps,
        device=device.value,
        amp=amp,
        workers=workers,
        rescale=rescale,
    )
    check_config(config)  # before any checkpoint or data is read
    from lncli import distributed  # imports torch: not at `lncli --help` time

    info = distributed.init_distributed(distributed.local_device(config.device))
    if mix and info.is_main and len(config.noises) * len(config.severities) == 1:
        err_console.print(_MIX_IS_PLAIN, highlight=False, soft_wrap=True)
    try:
        models = load_checkpoints(checkpoints)
        check_group_sizes(models, config)
        if baseline:  # against the columns the sweep will have, before any compute
            report.resolve_baseline(report.columns(column_keys(models, config)), baseline)
        test_set = resolve_data(
            data, models, limit=limit, data_dir=data_dir, download=download, with_train_range=rescale
        )
        with eval_progress(info.is_main) as progress:
            records = evaluate_grid(models, test_set, config, progress=progress)
    finally:
        distributed.cleanup()
    if info.is_main:
        run = {**asdict(config), "checkpoints": [m.path for m in models], "data": data, "limit": limit}
        _report_evaluation(records, run, (csv_path, json_path, plot), baseline, thresholds, max_drop)
