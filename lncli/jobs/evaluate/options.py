"""Every option of ``lncli evaluate``, declared once, and their torch-free checks.

:class:`EvalOptions` is the one declaration of the options: the command line's flags are made from
its fields (their help, panel and metavar ride in the field metadata, :class:`OptionSpec`), a
``--config`` file's keys are the same names, and :func:`lncli.evaluate` takes them as keywords. A
field holds what the user gave: the command line's text, or a Python value (``severity=(0, 3, 5)``,
``noise=["gaussian"]``, ``csv=Path(...)``).

:func:`parse_options` checks everything that needs no model, data or torch (names, numbers,
grammars, output paths, the gate's bounds) and returns an :class:`EvalRequest`: the typed sweep
(:class:`~lncli.config.evaluate.EvalConfig`), the outputs and the gate. The CLI calls it before torch
is imported, so a typo costs a fraction of a second. :mod:`.plan` then loads and checks the rest.
This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lncli.config.common import (
    CROP_MODES,
    DATA_DIR_HELP,
    DEFAULT_PRIOR_N,
    DEVICES,
    DOWNLOAD_HELP,
    INTERPOLATIONS,
    NORMALIZATION_PRESETS,
    PROFILE_NAMES,
    close_names,
    parse_list,
    parse_severities,
)
from lncli.config.evaluate import DEFAULT_TENT_LR, HEADS, MODES, NOISE_FAMILY, ORDERS, EvalConfig, check_config
from lncli.errors import LncliError
from lncli.io import check_distinct, check_output_file, image_suffixes
from lncli.noise.profiles import canonical_noise
from lncli.report.thresholds import Threshold, check_max_drop, parse_threshold

__all__ = [
    "PANELS",
    "EvalOptions",
    "EvalRequest",
    "GateOptions",
    "OptionSpec",
    "Outputs",
    "evaluate_options",
    "parse_options",
]

RUN = "What to run"
MODES_PANEL = "Test-time modes"
CONDITIONS = "Deployment conditions"
DATA = "Data and preprocessing"
OUTPUTS = "Outputs"
GATE = "CI gate"
PERFORMANCE = "Performance"
PANELS: tuple[str, ...] = (RUN, MODES_PANEL, CONDITIONS, DATA, OUTPUTS, GATE, PERFORMANCE)
"""The help's panels, in order."""

NO_ORDER_SEED = -1
"""``--order-seed`` that keeps the dataset order (any negative seed does), the older spelling of ``--order dataset``."""


@dataclass(frozen=True)
class OptionSpec:
    """How an option appears on the command line (the field's name is the option's long name).

    Attributes:
        help: one line of ``--help``.
        panel: the ``--help`` panel (:data:`PANELS`).
        cli: the type the command line parses: ``str``, ``int``, ``float``, ``bool`` (a flag), ``Path``,
            ``list[str]`` (repeatable), or a tuple of choices.
        metavar: what the value looks like in ``--help`` (empty for flags and choices).
        argument: a positional argument (``CKPT...``) rather than an option.
    """

    help: str
    panel: str
    cli: Any
    metavar: str = ""
    argument: bool = False


def _option(default: Any, help: str, panel: str, cli: Any, metavar: str = "", *, argument: bool = False) -> Any:
    """A field of :class:`EvalOptions`: its default, and its :class:`OptionSpec` in the metadata."""
    return field(default=default, metadata={"option": OptionSpec(help, panel, cli, metavar, argument)})


_PRE = "default: the checkpoint's, the data's, timm's, ImageNet's"


@dataclass(frozen=True)
class EvalOptions:
    """Every option of ``lncli evaluate``, by its long name; the defaults are the command line's.

    Values are the command line's text or Python values (sequences for lists, numbers, paths).
    """

    # -- what to run
    checkpoints: str | Path | Sequence[str | Path] = _option(
        (), "Checkpoint files, folders (natural sort) or globs.", RUN, list[str], "CKPT...", argument=True
    )
    noise: str | Sequence[str] = _option(
        ",".join(NOISE_FAMILY), f"Noises, a comma list, or all ({','.join(NOISE_FAMILY)}).", RUN, str, "LIST"
    )
    severity: str | int | Sequence[int] = _option(
        "0-5", "Severities, e.g. 0-5 or 1,3,5; 0 is the clean row.", RUN, str, "LIST"
    )
    profile: str = _option("imagenet-c", "Noise constants (paper: the LocalNorm authors' own).", RUN, PROFILE_NAMES)
    seed: int = _option(0, "Noise seed: image i's noise depends on (seed, noise, severity, i).", RUN, int, "N")
    rescale: bool = _option(False, "With --profile paper: the authors' min-max rescale of the noisy set.", RUN, bool)

    # -- test-time modes
    mode: str | Sequence[str] | None = _option(
        None,
        f"Comma list of {', '.join(MODES)}. Default: BN running,batch; LocalNorm local; GroupNorm always "
        "groupnorm. tent on LocalNorm: local statistics, position heads, every head adapted.",
        MODES_PANEL,
        str,
        "LIST",
    )
    heads: str | None = _option(
        None,
        "LocalNorm head where images form groups (default position); running/single: the mean.",
        MODES_PANEL,
        HEADS,
    )
    group_size: int | None = _option(
        None, "G of local mode (default: the checkpoint's, else 16; at most the batch).", MODES_PANEL, int, "G"
    )
    prior_n: float = _option(
        DEFAULT_PRIOR_N,
        "prior's N (lncli's default): (N*running + n*batch)/(N + n); 0 = batch.",
        MODES_PANEL,
        float,
        "N",
    )
    tent_lr: float = _option(
        DEFAULT_TENT_LR, "tent's Adam learning rate (TENT's CIFAR setting).", MODES_PANEL, float, "LR"
    )
    tent_steps: int = _option(1, "tent's Adam steps per test batch.", MODES_PANEL, int, "N")

    # -- deployment conditions
    batch_size: str | int | Sequence[int] = _option(
        "128", "Test batch size, or a comma list (1,16,128): each is run.", CONDITIONS, str, "LIST"
    )
    order: str = _option(
        "shuffled", "The test stream: shuffled, sorted by label, or the dataset's.", CONDITIONS, ORDERS
    )
    order_seed: int | None = _option(
        0, "Shuffle seed of --order shuffled (-1: the dataset order).", CONDITIONS, int, "N"
    )
    mix: bool = _option(False, "One mixed stream: each image its own noise and severity.", CONDITIONS, bool)

    # -- data and preprocessing
    data: str | None = _option(
        None,
        "fashion-mnist, cifar10, synthetic, imagefolder:PATH, cifar10c:DIR or imagenetc:DIR "
        "(default: the checkpoints'; for a bare state_dict, its dataset).",
        DATA,
        str,
        "SPEC",
    )
    limit: int | None = _option(None, "Only the first N test images (image folders: every class kept).", DATA, int, "N")
    data_dir: Path | None = _option(None, DATA_DIR_HELP, DATA, Path, "DIR")
    download: bool = _option(False, DOWNLOAD_HELP, DATA, bool)
    arch: str | None = _option(
        None,
        "For a bare state_dict: an lncli model, torchvision:NAME, timm:NAME or module:function.",
        DATA,
        str,
        "ARCH",
    )
    non_strict: bool = _option(False, "Load weights with missing or unexpected keys, and list them.", DATA, bool)
    channels: int | None = _option(
        None, "Read images as 1 (L) or 3 (RGB) channels (default: the model's).", DATA, int, "C"
    )
    image_size: int | None = _option(None, f"Side of the centre crop fed to the model ({_PRE}).", DATA, int, "PX")
    resize: int | None = _option(None, "Short side images are resized to before the crop.", DATA, int, "PX")
    crop_mode: str | None = _option(
        None, "How the resized image becomes the crop, as timm's crop_mode.", DATA, CROP_MODES
    )
    interpolation: str | None = _option(None, "The resize's interpolation.", DATA, INTERPOLATIONS)
    mean: str | float | Sequence[float] | None = _option(
        None, f"Per-channel mean of [0, 1] pixels: numbers or {'/'.join(NORMALIZATION_PRESETS)}.", DATA, str, "LIST"
    )
    std: str | float | Sequence[float] | None = _option(
        None, "Per-channel std: numbers or a --mean name (default: as --mean).", DATA, str, "LIST"
    )
    skip_unreadable: bool = _option(False, "Leave out image files that cannot be opened (counted).", DATA, bool)

    # -- outputs
    csv: str | Path | None = _option(None, "Write the long-format CSV here.", OUTPUTS, Path, "FILE")
    json: str | Path | None = _option(None, "Write the records and the config as JSON here.", OUTPUTS, Path, "FILE")
    plot: str | Path | None = _option(None, "Write the accuracy plot here (PNG, PDF, SVG...).", OUTPUTS, Path, "FILE")
    junit: str | Path | None = _option(
        None, "Write JUnit XML here: a test case per checked cell.", OUTPUTS, Path, "FILE"
    )
    markdown: str | Path | None = _option(
        None, "Write a Markdown summary here ($GITHUB_STEP_SUMMARY).", OUTPUTS, Path, "FILE"
    )
    baseline: str | None = _option(
        None, "The table's mCE baseline column: index or label (default the first).", OUTPUTS, str, "COLUMN"
    )

    # -- CI gate
    fail_under: str | float | Sequence[str | float] | None = _option(
        None,
        "Exit 1 below a bound: 0.5, 90%, gaussian:5=0.3, gaussian=0.4, clean=0.9, mean=0.6.",
        GATE,
        list[str],
        "BOUND",
    )
    max_drop: float | None = _option(None, "Exit 1 when clean minus corrupted accuracy exceeds this.", GATE, float, "D")
    compare: str | Path | None = _option(
        None, "An earlier run's --json: compare every cell; exit 1 on a significant fall.", GATE, Path, "FILE"
    )
    max_regression: float | None = _option(
        None, "With --compare: the largest fall tolerated (0.02 = 2 points; default 0).", GATE, float, "D"
    )
    significance: float = _option(
        0.05, "With --compare: one-sided test level per cell (paired McNemar when it can).", GATE, float, "ALPHA"
    )

    # -- performance
    device: str = _option("auto", "Where the models run (auto: CUDA if there is one).", PERFORMANCE, DEVICES)
    workers: int = _option(0, "Workers preparing batches ahead of the models (0: inline).", PERFORMANCE, int, "N")
    amp: bool = _option(False, "float16 autocast on CUDA (ignored on the CPU; recorded).", PERFORMANCE, bool)


def option_specs() -> dict[str, OptionSpec]:
    """Each option's :class:`OptionSpec`, by name, in declaration order."""
    return {f.name: f.metadata["option"] for f in fields(EvalOptions)}


def evaluate_options(values: Mapping[str, Any]) -> EvalOptions:
    """:class:`EvalOptions` from keywords, refusing an unknown name in one line (with the close one).

    Raises:
        LncliError: a name that is not an option of ``lncli evaluate``.
    """
    names = option_specs()
    for key in values:
        if key not in names:
            hint = close_names(key, list(names))
            raise LncliError(f"unknown evaluate option {key!r}{hint}; the options are lncli evaluate's long names")
    return EvalOptions(**values)


@dataclass(frozen=True)
class Outputs:
    """The files a run writes (None: not asked for), each checked before any compute."""

    csv: Path | None = None
    json: Path | None = None
    plot: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None


@dataclass(frozen=True)
class GateOptions:
    """What decides the exit code: the bounds, and ``--compare``'s gate (the baseline is read by the plan)."""

    thresholds: tuple[Threshold, ...] = ()
    max_drop: float | None = None
    compare: Path | None = None
    max_regression: float = 0.0
    significance: float = 0.05


@dataclass(frozen=True)
class EvalRequest:
    """The options, checked and typed: what :func:`lncli.jobs.evaluate.plan.build_plan` builds a plan from."""

    options: EvalOptions
    config: EvalConfig
    checkpoints: tuple[str, ...]
    outputs: Outputs
    gate: GateOptions


def _text_list(value: str | Sequence[Any], option: str) -> tuple[str, ...]:
    """A comma list or a sequence, as stripped texts (empty items dropped)."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out = tuple(t.strip() for t in items if str(t).strip())
    if not out:
        raise LncliError(f"--{option} is empty")
    return out


def _noises(value: str | Sequence[str], profile: str) -> tuple[str, ...]:
    """``--noise``: ``all`` or names, each known to the profile (a close name is suggested)."""
    names = _text_list(value, "noise")
    if tuple(n.lower() for n in names) == ("all",):
        return NOISE_FAMILY
    for name in names:
        canonical_noise(name, profile)  # raises on an unknown name, naming the valid ones
    return names


def _severities(value: str | int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise LncliError(f"--severity {value!r}: expected severities such as 0-5 or 1,3,5")
    if isinstance(value, int):
        value = str(value)
    return parse_severities(value if isinstance(value, str) else ",".join(map(str, value)))


def _batch_sizes(value: str | int | Sequence[int]) -> tuple[int, ...]:
    """``--batch-size``: one size or a comma list, duplicates dropped, order kept."""
    texts = _text_list(str(value) if isinstance(value, int) else value, "batch-size")
    try:
        return tuple(dict.fromkeys(int(t) for t in texts))
    except ValueError:
        raise LncliError(f"--batch-size {value!r}: expected integers, e.g. 128 or 1,16,128") from None


def _stats(value: str | float | Sequence[float] | None) -> str | None:
    """``--mean``/``--std`` as the command line's text (the preprocessing grammar parses it)."""
    if value is None or isinstance(value, str):
        return value
    return str(value) if isinstance(value, (int, float)) else ",".join(map(str, value))


def _choice(value: str | None, valid: Sequence[str], option: str) -> str | None:
    if value is None or value in valid:
        return value
    hint = close_names(str(value), list(valid))
    raise LncliError(f"--{option} {value!r} is not one of {', '.join(valid)}{hint}")


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _sweep(o: EvalOptions) -> EvalConfig:
    """The typed sweep of the options (names, grammars and ranges checked: :func:`check_config`)."""
    profile = _choice(o.profile, PROFILE_NAMES, "profile") or o.profile
    sizes = _batch_sizes(o.batch_size)
    config = EvalConfig(
        noises=_noises(o.noise, profile),
        severities=_severities(o.severity),
        profile=profile,
        modes=None if o.mode is None else parse_list(",".join(_text_list(o.mode, "mode")), MODES, "mode"),
        heads=_choice(o.heads, HEADS, "heads"),
        group_size=o.group_size,
        batch_size=sizes[0],
        batch_sizes=sizes if len(sizes) > 1 else (),
        seed=o.seed,
        order_seed=None if o.order_seed is None or o.order_seed < 0 else o.order_seed,
        order=_choice(o.order, ORDERS, "order") or o.order,
        mix=o.mix,
        prior_n=o.prior_n,
        tent_lr=o.tent_lr,
        tent_steps=o.tent_steps,
        device=_choice(o.device, DEVICES, "device") or o.device,
        amp=o.amp,
        workers=o.workers,
        rescale=o.rescale,
        arch=o.arch,
        strict=not o.non_strict,
        max_regression=o.max_regression if o.compare is not None else None,
        significance=o.significance,
        image_size=o.image_size,
        resize=o.resize,
        mean=_stats(o.mean),
        std=_stats(o.std),
        interpolation=_choice(o.interpolation, INTERPOLATIONS, "interpolation"),
        crop_mode=_choice(o.crop_mode, CROP_MODES, "crop-mode"),
        channels=o.channels,
        skip_unreadable=o.skip_unreadable,
    )
    check_config(config)
    return config


def _outputs(o: EvalOptions) -> Outputs:
    """The output files, each checked (suffix, folder, writable), none the ``--compare`` baseline.

    ``--markdown`` also takes a name without a suffix: ``$GITHUB_STEP_SUMMARY``'s file has none.
    """
    outputs = Outputs(_path(o.csv), _path(o.json), _path(o.plot), _path(o.junit), _path(o.markdown))
    suffixes = {
        "csv": lambda: (".csv",),
        "json": lambda: (".json",),
        "plot": image_suffixes,  # matplotlib's list: imported only when a plot is asked for
        "junit": lambda: (".xml",),
        "markdown": lambda: (".md", ".markdown", ""),
    }
    for name, allowed in suffixes.items():
        path = getattr(outputs, name)
        if path is not None:
            check_output_file(path, f"--{name}", allowed())
    # No output may replace the baseline: accepting a run as the new baseline is a deliberate copy.
    check_distinct({f"--{k}": v for k, v in asdict(outputs).items()}, {"--compare": _path(o.compare)})
    return outputs


def _gate(o: EvalOptions) -> GateOptions:
    """The bounds parsed and the regression gate's settings checked (the baseline is read by the plan)."""
    bounds = (
        [] if o.fail_under is None else [o.fail_under] if isinstance(o.fail_under, (str, float, int)) else o.fail_under
    )
    thresholds = tuple(parse_threshold(str(b)) for b in bounds)
    check_max_drop(o.max_drop)
    if o.max_regression is not None and not 0.0 <= o.max_regression <= 1.0:
        raise LncliError(f"--max-regression must be in [0, 1] (a fall in accuracy), got {o.max_regression}")
    if not (math.isfinite(o.significance) and 0.0 < o.significance < 1.0):
        raise LncliError(f"--significance must be in (0, 1) (a test level such as 0.05), got {o.significance}")
    if o.compare is None and o.max_regression is not None:
        raise LncliError("--max-regression needs --compare BASELINE.json (the run to compare with)")
    return GateOptions(thresholds, o.max_drop, _path(o.compare), o.max_regression or 0.0, o.significance)


def _checkpoints(value: str | Path | Sequence[str | Path]) -> tuple[str, ...]:
    return (str(value),) if isinstance(value, (str, Path)) else tuple(str(v) for v in value)


def parse_options(options: EvalOptions) -> EvalRequest:
    """Check every option that needs no model, data or torch, and type them.

    Args:
        options: the options as given.

    Returns:
        The request: the sweep, the checkpoints, the outputs and the gate.

    Raises:
        LncliError: the first bad option, in one line.
    """
    if options.limit is not None and options.limit < 1:
        raise LncliError(f"--limit must be >= 1, got {options.limit}")
    if options.channels is not None and options.channels not in (1, 3):
        raise LncliError(f"--channels must be 1 or 3, got {options.channels}")
    config = _sweep(options)
    return EvalRequest(options, config, _checkpoints(options.checkpoints), _outputs(options), _gate(options))


def defaults() -> dict[str, Any]:
    """Each option's default, by name."""
    return {f.name: f.default for f in fields(EvalOptions) if f.default is not MISSING}


def with_checkpoints(options: EvalOptions, checkpoints: Sequence[str]) -> EvalOptions:
    """The options with other checkpoints (a Python caller's models by name)."""
    return replace(options, checkpoints=tuple(checkpoints))
