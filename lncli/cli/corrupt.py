"""``lncli corrupt``: noisy copies of image files or of a dataset's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lncli.cli.app import ProfileChoice, comma_list, command, err_console, severity_text
from lncli.cli.progress import corrupt_progress
from lncli.config.common import DATA_DIR_HELP, DOWNLOAD_HELP, parse_severities
from lncli.config.corrupt import CorruptConfig, OutputFormat

# The options, one alias each (Typer's Annotated form), so that the command reads as its --help.
Inputs = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Image files or folders (relative paths kept; in folders torchvision's image suffixes, no .gif). Each "
        "is read as torchvision's ImageFolder reads it (Pillow's convert: alpha dropped, 16-bit clipped at 255), "
        "except that a grayscale file stays one channel."
    ),
]
Data = Annotated[
    str | None,
    typer.Option(help="Corrupt a dataset's test split instead: fashion-mnist, cifar10, synthetic, imagefolder:PATH."),
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Download = Annotated[bool, typer.Option("--download", help=DOWNLOAD_HELP)]
Noise = Annotated[
    str,
    typer.Option(
        help="Noises, a comma list: gaussian, shot, impulse, speckle or imagecorruptions' names "
        "(the paper profile: gaussian, poisson, dropout).",
        metavar="LIST",
    ),
]
Severity = Annotated[str, typer.Option(help="Severities: 1-5, 1,3,5 or 0-2,5 (0 = clean copy).", metavar="LIST")]
Profile = Annotated[ProfileChoice, typer.Option(help="Noise constants.")]
Seed = Annotated[int, typer.Option(help="Noise seed; image i's noise depends only on (seed, noise, severity, i).")]
Out = Annotated[Path, typer.Option(help="Output folder.")]
Format = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        help="png (lossless), jpeg, or npy (CIFAR-10-C's layout: <noise>_noise.npy with severities 1-5 stacked, "
        "and labels.npy). RobustBench's load_cifar10c expects exactly 10,000 rows per severity, so it misreads "
        "files of any other size (--limit 200: severity 2 comes back empty); lncli evaluate --data cifar10c:OUT "
        "reads any size.",
    ),
]
JpegQuality = Annotated[int, typer.Option(help="JPEG quality 1-100 (ImageNet-C used 85).")]
Preview = Annotated[
    Path | None, typer.Option(help="Also draw a contact sheet here (rows = severity, columns = images).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N images.")]
SkipUnreadable = Annotated[
    bool, typer.Option("--skip-unreadable", help="Skip files Pillow cannot read (default: error).")
]
Threads = Annotated[int, typer.Option(help="CPU threads for the noise (output does not depend on it).")]

# Defaults read from CorruptConfig (module-level: an Enum call as a default argument would run at each definition).
_NOISES = ",".join(CorruptConfig.noises)
_SEVERITIES = severity_text(CorruptConfig.severities)
_PROFILE = ProfileChoice(CorruptConfig.profile)
_OUT = Path("corrupted")


@command("corrupt", no_args_is_help=True)
def corrupt_command(
    inputs: Inputs = None,  # existence: one-line LncliError in find_images
    data: Data = None,
    data_dir: DataDir = None,
    download: Download = CorruptConfig.download,
    noise: Noise = _NOISES,
    severity: Severity = _SEVERITIES,
    profile: Profile = _PROFILE,
    seed: Seed = CorruptConfig.seed,
    out: Out = _OUT,
    fmt: Format = CorruptConfig.format,
    jpeg_quality: JpegQuality = CorruptConfig.jpeg_quality,
    preview: Preview = None,
    overwrite: Overwrite = CorruptConfig.overwrite,
    limit: Limit = None,
    skip_unreadable: SkipUnreadable = CorruptConfig.skip_unreadable,
    threads: Threads = CorruptConfig.num_threads,
) -> None:
    """Write noisy copies of images or a dataset (PNG/JPEG folders or CIFAR-10-C .npy arrays)."""
    cfg = CorruptConfig(
        out=out,
        noises=comma_list(noise),
        severities=parse_severities(severity),
        inputs=tuple(inputs or ()),
        data=data,
        data_dir=data_dir,
        download=download,
        profile=profile.value,
        seed=seed,
        format=fmt,
        jpeg_quality=jpeg_quality,
        preview=preview,
        overwrite=overwrite,
        limit=limit,
        skip_unreadable=skip_unreadable,
        num_threads=threads,
    )
    from lncli.jobs.corrupt import run_corrupt  # the job imports torch: not at `lncli --help` time

    with corrupt_progress() as progress:
        records = run_corrupt(cfg, progress=progress)
    for r in records:
        if r.status == "skipped":
            err_console.print(f"[yellow]skipped:[/] {r.detail}", highlight=False, soft_wrap=True)
    written = sum(r.status == "written" for r in records)
    err_console.print(f"wrote {written} file(s) to {out}/", highlight=False)
