"""Tests for the ``lncli corrupt`` command: its flags, its one-line errors and what it prints.

What the job writes is tested in tests/test_jobs_corrupt.py, image files in tests/test_images.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lncli.cli import app
from lncli.config.common import parse_severities
from lncli.config.corrupt import CorruptConfig, OutputFormat
from lncli.jobs.corrupt import run_corrupt

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["corrupt", *args])


def _one_error_line(result) -> str:
    out = result.output.strip()
    assert result.exit_code == 2, result.output
    assert out.count("\n") == 0 and out.startswith("error:"), out
    return out


def test_npy_needs_all_severities(sample_images: Path, tmp_path: Path):
    _one_error_line(
        _invoke(str(sample_images / "a.png"), "--format", "npy", "--severity", "1,2", "--out", str(tmp_path / "x"))
    )


def test_overwrite_refused_then_allowed(sample_images: Path, tmp_path: Path):
    out = tmp_path / "ow"
    args = [str(sample_images), "--noise", "gaussian", "--severity", "1", "--out", str(out)]
    assert _invoke(*args).exit_code == 0
    target = out / "gaussian" / "1" / "a.png"
    before = target.read_bytes()
    msg = _one_error_line(_invoke(*args, "--seed", "9"))
    assert "--overwrite" in msg
    assert target.read_bytes() == before  # untouched
    r = _invoke(*args, "--seed", "9", "--overwrite")
    assert r.exit_code == 0, r.output
    assert target.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--noise", "pink"], "gaussian, shot, impulse"),
        (["--severity", "6"], "0..5"),
        (["--severity", "3-1"], "range"),
        (["--severity", "x"], "severity"),
        (["--jpeg-quality", "0"], "jpeg-quality"),
        (["--data", "synthetic"], "not both"),
    ],
)
def test_bad_inputs_one_line(sample_images: Path, tmp_path: Path, args: list[str], needle: str):
    msg = _one_error_line(_invoke(str(sample_images), "--out", str(tmp_path / "b"), *args))
    assert needle in msg


def test_missing_input_one_line(tmp_path: Path):
    msg = _one_error_line(_invoke(str(tmp_path / "nope.png"), "--out", str(tmp_path / "m")))
    assert "nope.png" in msg and "does not exist" in msg


def test_unknown_profile_rejected(sample_images: Path, tmp_path: Path):
    r = _invoke(str(sample_images), "--profile", "imagenet", "--out", str(tmp_path / "b"))
    assert r.exit_code == 2


def test_unreadable_file(sample_images: Path, tmp_path: Path):
    (sample_images / "broken.png").write_bytes(b"\x89PNG not really")
    msg = _one_error_line(
        _invoke(str(sample_images), "--out", str(tmp_path / "u"), "--noise", "gaussian", "--severity", "1")
    )
    assert "broken.png" in msg
    r = _invoke(
        str(sample_images), "--out", str(tmp_path / "v"), "--noise", "gaussian", "--severity", "1", "--skip-unreadable"
    )
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "broken.png" in r.output
    assert (tmp_path / "v" / "gaussian" / "1" / "sub" / "b.png").is_file()


@pytest.mark.parametrize(
    ("spec", "want"),
    [("1-5", (1, 2, 3, 4, 5)), ("1,3,5", (1, 3, 5)), ("0-2,5", (0, 1, 2, 5)), ("3", (3,)), ("5,1,1", (1, 5))],
)
def test_parse_severities(spec: str, want: tuple[int, ...]):
    assert parse_severities(spec) == want


def test_inputs_differing_only_in_suffix_are_refused_not_overwritten(tmp_path: Path, rgb_array):
    # a.png and a.bmp both map to OUT/<noise>/<sev>/a.png: the second silently replaced the first.
    src = tmp_path / "dup"
    src.mkdir()
    Image.fromarray(rgb_array(0)).save(src / "a.png")
    Image.fromarray(rgb_array(1)).save(src / "a.bmp")
    out = tmp_path / "o"
    msg = _one_error_line(_invoke(str(src), "--noise", "gaussian", "--severity", "1", "--out", str(out)))
    assert "a.png" in msg
    assert not out.exists()  # refused before anything was written


def test_bad_preview_suffix_fails_before_writing(sample_images: Path, tmp_path: Path):
    out = tmp_path / "o"
    msg = _one_error_line(
        _invoke(
            str(sample_images),
            "--noise",
            "gaussian",
            "--severity",
            "1",
            "--out",
            str(out),
            "--preview",
            str(tmp_path / "grid.txt"),
        )
    )
    assert "grid.txt" in msg and "png" in msg
    assert not out.exists()


def test_out_that_is_a_file_one_line(sample_images: Path, tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    msg = _one_error_line(_invoke(str(sample_images), "--noise", "gaussian", "--severity", "1", "--out", str(f)))
    assert "not a folder" in msg


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_flags_reach_the_job(sample_images: Path, tmp_path: Path):
    # Every flag lands in the CorruptConfig field it names: the CLI's files equal the library's, byte for byte.
    flags = [
        "--noise",
        "shot,impulse",
        "--severity",
        "0,4",
        "--seed",
        "5",
        "--format",
        "jpeg",
        "--jpeg-quality",
        "70",
        "--limit",
        "2",
        "--profile",
        "cifar-10-c",
        "--threads",
        "2",
    ]
    r = _invoke(str(sample_images), "--out", str(tmp_path / "cli"), *flags)
    assert r.exit_code == 0, r.output
    cfg = CorruptConfig(
        tmp_path / "lib",
        noises=("shot", "impulse"),
        severities=(0, 4),
        inputs=(sample_images,),
        seed=5,
        format=OutputFormat.jpeg,
        jpeg_quality=70,
        limit=2,
        profile="cifar-10-c",
        num_threads=2,
    )
    run_corrupt(cfg)
    cli, lib = _tree(tmp_path / "cli"), _tree(tmp_path / "lib")
    assert len(cli) == 2 * 2 * 2 and cli == lib
    assert "wrote 8 file(s)" in r.output


def test_cli_dataset_npy_and_preview_reach_the_job(tmp_path: Path):
    flags = ["--data", "synthetic", "--limit", "5", "--noise", "gaussian", "--format", "npy", "--seed", "4"]
    r = _invoke(*flags, "--out", str(tmp_path / "cli"), "--preview", str(tmp_path / "cli.png"))
    assert r.exit_code == 0, r.output
    cfg = CorruptConfig(
        tmp_path / "lib",
        noises=("gaussian",),
        data="synthetic",
        limit=5,
        format=OutputFormat.npy,
        seed=4,
        preview=tmp_path / "lib.png",
    )
    run_corrupt(cfg)
    assert _tree(tmp_path / "cli") == _tree(tmp_path / "lib") and len(_tree(tmp_path / "lib")) == 2
    assert (tmp_path / "cli.png").read_bytes() == (tmp_path / "lib.png").read_bytes()


def test_dataset_output_reads_back_with_the_datasets_labels(tmp_path: Path) -> None:
    """corrupt --data writes <index>_<name> class folders: read back as an image folder (sorted by name, as
    torchvision's ImageFolder does), class k is label k. Fashion-MNIST's names alone sort 'Ankle boot' first."""
    from lncli.data import list_image_folder, load_dataset

    out = tmp_path / "out"
    res = runner.invoke(app, ["corrupt", "--data", "synthetic", "--limit", "40", "--noise", "gaussian",
                              "--severity", "0", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    cell = out / "gaussian" / "0"  # <noise>/<severity>/<class>/<index>.png
    listing = list_image_folder(cell)
    truth = load_dataset("synthetic", "test", limit=40)
    index_of = [int(name.split("_", 1)[0]) for name in listing.classes]  # the dataset's label of each folder
    assert index_of == sorted(index_of) and len(index_of) == len(set(truth.labels.tolist()))  # sorted = label order
    by_image = {int(f.stem): index_of[t] for f, t in zip(listing.files, listing.targets)}
    assert [by_image[i] for i in range(40)] == truth.labels.tolist()
