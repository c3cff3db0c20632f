"""``lncli evaluate``: checkpoints side by side over noises x severities, rendered by :mod:`lncli.report`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lncli import report
from lncli.cli import evaluate_run as run
from lncli.cli.app import (
    DATA_DIR_HELP,
    DOWNLOAD_HELP,
    ConfigFile,
    CropModeChoice,
    DeviceChoice,
    HeadsChoice,
    InterpolationChoice,
    OrderChoice,
    ProfileChoice,
    comma_list,
    command,
    err_console,
    resolved_options,
    severity_text,
)
from lncli.cli.progress import eval_progress
from lncli.config.common import DEFAULT_GROUP_SIZE, NORMALIZATION_PRESETS, parse_list, parse_severities
from lncli.config.evaluate import MODES, NOISE_FAMILY, EvalConfig, parse_batch_sizes
from lncli.records import EvalRecord

if TYPE_CHECKING:  # the jobs import torch: not at `lncli --help` time
    from lncli.jobs.evaluate import LoadedCheckpoint


_NO_ORDER_SEED = -1
"""``--order-seed`` value that keeps the dataset order (any negative seed does: ``EvalConfig.order_seed=None``),
the older spelling of ``--order dataset``."""

_MODE_HELP = (
    f"Comma list of {','.join(MODES)} (vote: softmax averaged over heads; majority: the authors' per-head argmax "
    "majority, ties to the lowest class; prior: running and batch statistics mixed with weights N and n; tent: "
    "online entropy minimisation over the norm affines; default: BN running,batch; LocalNorm local). "
    "GroupNorm checkpoints always run in groupnorm, their only mode."
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
Heads = Annotated[
    HeadsChoice | None,
    typer.Option(
        help="LocalNorm's affine head where test images form groups (local, batch, prior, tent): by position "
        "(default, the paper) or the mean of the heads. running and single always take the mean."
    ),
]
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
        help="fashion-mnist, cifar10, synthetic, imagefolder:PATH, cifar10c:DIR (CIFAR-10-C/100-C arrays) or "
        "imagenetc:DIR (ImageNet-C folders) (default: from the checkpoints). For a foreign checkpoint (a bare "
        "state_dict) also the dataset it belongs to: its classes and channels."
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        help="Architecture of foreign checkpoints: an lncli model name, torchvision:NAME, timm:NAME or "
        "package.module:function (your own builder; runs your code). lncli checkpoints record theirs."
    ),
]
NonStrict = Annotated[
    bool,
    typer.Option("--non-strict", help="Load weights with missing or unexpected keys anyway, and list them on stderr."),
]
Limit = Annotated[
    int | None, typer.Option(help="Evaluate only the first N test images (image folders: every class kept).")
]
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
JunitPath = Annotated[
    Path | None,
    typer.Option("--junit", help="Write JUnit XML here: a test case per checked cell (bounds and --compare)."),
]
MarkdownPath = Annotated[
    Path | None,
    typer.Option(
        "--markdown", help="Write a Markdown summary here, failed and worst cells first ($GITHUB_STEP_SUMMARY)."
    ),
]
Compare = Annotated[
    Path | None,
    typer.Option(
        "--compare",
        help="The JSON of an earlier run (--json): compare every cell with it; settings that change accuracy must "
        "match. Exit 1 when a cell fell more than --max-regression, significantly.",
    ),
]
MaxRegression = Annotated[
    float | None,
    typer.Option(
        help="With --compare: largest tolerated fall in accuracy (0.02 = 2 points; default 0: any significant fall)."
    ),
]
Significance = Annotated[
    float,
    typer.Option(
        help="With --compare: one-sided test level per cell. Exact McNemar on the images lost/gained when both runs "
        "kept per-image results (same images, same noise), else the pooled two-proportion z-test on the counts."
    ),
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
CropMode = Annotated[
    CropModeChoice | None,
    typer.Option(
        help="How the resized image becomes the crop, as timm's crop_mode: center (short side to --resize, centre "
        "cut), squash (both sides scaled, aspect not kept) or border (long side scaled, padded with the mean "
        f"colour) {_PRE}."
    ),
]

# Defaults read from EvalConfig, as names: ruff's B008 flags calls in argument defaults (they run once, at definition).
_NOISES = ",".join(EvalConfig.noises)
_SEVERITIES = severity_text(EvalConfig.severities)
_PROFILE = ProfileChoice(EvalConfig.profile)
_DEVICE = DeviceChoice(EvalConfig.device)
_ORDER_SEED = _NO_ORDER_SEED if EvalConfig.order_seed is None else EvalConfig.order_seed
_ORDER = OrderChoice(EvalConfig.order)


@command("evaluate", no_args_is_help=True)
def evaluate_command(
    ctx: typer.Context,
    checkpoints: Checkpoints,
    noise: Noise = _NOISES,
    severity: Severity = _SEVERITIES,
    profile: Profile = _PROFILE,
    mode: Mode = None,
    heads: Heads = None,
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
    arch: Arch = EvalConfig.arch,
    non_strict: NonStrict = not EvalConfig.strict,
    junit: JunitPath = None,
    markdown: MarkdownPath = None,
    compare: Compare = None,
    max_regression: MaxRegression = EvalConfig.max_regression,
    significance: Significance = EvalConfig.significance,
    config_file: ConfigFile = None,
    image_size: ImageSize = None,
    resize: Resize = None,
    mean: Mean = None,
    std: Std = None,
    interpolation: Interpolation = None,
    crop_mode: CropMode = None,
    channels: Channels = None,
    skip_unreadable: SkipUnreadable = EvalConfig.skip_unreadable,
) -> None:
    """Evaluate checkpoints side by side over noises x severities (BN running/batch stats vs LocalNorm)."""
    from lncli import distributed  # imports torch: not at `lncli --help` time
    from lncli.jobs.evaluate import check_config, checkpoint_notes, mode_notes, preprocess_flags

    thresholds = [report.parse_threshold(t) for t in fail_under or []]  # bad bounds fail before any compute
    outputs = run.Outputs(csv_path, json_path, plot, junit, markdown)
    run.check_outputs(outputs, max_drop, compare)
    gate = run.check_gate(thresholds, max_drop, compare, max_regression, significance)
    config = _config(ctx.params, gate)
    check_config(config)  # before any checkpoint or data is read
    pre = preprocess_flags(config)  # bad --mean, --resize, ... fail before any model is loaded
    info = distributed.init_distributed(distributed.local_device(config.device))
    if mix and info.is_main and len(config.noises) * len(config.severities) == 1:
        err_console.print(_MIX_IS_PLAIN, highlight=False, soft_wrap=True)
    try:
        models, records, data_notes = _sweep(ctx.params, config, gate, pre, info.is_main)
    finally:
        distributed.cleanup()
    if info.is_main:
        # The choices made without a flag, one line each; after the sweep: a failed run prints its error alone.
        notes = [*checkpoint_notes(models), *data_notes, *mode_notes(models, config)]
        for line in notes:
            err_console.print(f"note: {line}", highlight=False, soft_wrap=True)
        resolved = {**asdict(config), "checkpoints": [m.path for m in models], "data": data, "limit": limit}
        resolved["notes"] = notes
        resolved |= resolved_options(ctx)  # every option as resolved (defaults < --config < flags), by config key
        run.report_evaluation(records, resolved, outputs, baseline, gate)


def _config(p: dict[str, Any], gate: run.Gate) -> EvalConfig:
    """The sweep's frozen config from the command's parsed options (``ctx.params``)."""
    sizes = parse_batch_sizes(p["batch_size"])
    interpolation, crop_mode = p["interpolation"], p["crop_mode"]
    return EvalConfig(
        noises=NOISE_FAMILY if p["noise"].strip().lower() == "all" else comma_list(p["noise"]),
        severities=parse_severities(p["severity"]),
        profile=p["profile"].value,
        modes=parse_list(p["mode"], MODES, "mode") if p["mode"] else None,
        heads=None if p["heads"] is None else p["heads"].value,
        group_size=p["group_size"],
        batch_size=sizes[0],
        batch_sizes=sizes if len(sizes) > 1 else (),
        seed=p["seed"],
        order_seed=None if p["order_seed"] < 0 else p["order_seed"],
        order=p["order"].value,
        mix=p["mix"],
        prior_n=p["prior_n"],
        tent_lr=p["tent_lr"],
        tent_steps=p["tent_steps"],
        device=p["device"].value,
        amp=p["amp"],
        workers=p["workers"],
        rescale=p["rescale"],
        arch=p["arch"],
        strict=not p["non_strict"],
        max_regression=gate.max_regression if gate.baseline is not None else None,
        significance=p["significance"],
        image_size=p["image_size"],
        resize=p["resize"],
        mean=p["mean"],
        std=p["std"],
        interpolation=None if interpolation is None else interpolation.value,
        crop_mode=None if crop_mode is None else crop_mode.value,
        channels=p["channels"],
        skip_unreadable=p["skip_unreadable"],
    )


def _sweep(
    p: dict[str, Any], config: EvalConfig, gate: run.Gate, pre: Any, show_progress: bool
) -> tuple[list[LoadedCheckpoint], list[EvalRecord], tuple[str, ...]]:
    """Load the checkpoints and the test set, check them against the asked columns, and run the grid.

    Returns the models, the records and the test set's notes (:attr:`lncli.jobs.evaluate.EvalData.notes`).
    """
    from lncli.jobs.evaluate import column_keys, evaluate_grid, resolve_data

    models = run.load_models(p["checkpoints"], config, p["data"], p["data_dir"], p["download"])
    if p["baseline"]:  # against the columns the sweep will have, before any compute
        report.resolve_baseline(report.columns(column_keys(models, config)), p["baseline"])
    run.check_columns(gate, models, config)
    test_set = resolve_data(
        p["data"],
        models,
        limit=p["limit"],
        data_dir=p["data_dir"],
        download=p["download"],
        with_train_range=config.rescale,
        preprocess=pre,
        channels=config.channels,
        skip_unreadable=config.skip_unreadable,
        workers=config.workers,
        severities=config.severities,
    )
    with eval_progress(show_progress) as progress:
        return models, evaluate_grid(models, test_set, config, progress=progress), test_set.notes
