"""End-to-end tests of ``lncli evaluate`` through Typer's CliRunner on tiny models and synthetic data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from evaluate_helpers import fmnist_ckpt  # tests/ is on sys.path under pytest
from typer.testing import CliRunner

from lncli.cli import app
from lncli.records import RECORD_FIELDS

runner = CliRunner()
# Small but not trivial: 40 images = 2 batches of 16 + a ragged 8; two noises at two severities + clean.
FAST = [
    "--data",
    "synthetic",
    "--limit",
    "40",
    "--batch-size",
    "16",
    "--noise",
    "gaussian,impulse",
    "--severity",
    "0,2,5",
    "--device",
    "cpu",
]


@pytest.fixture
def ckpts(eval_ckpts: dict[str, Path]) -> dict[str, Path]:
    return eval_ckpts  # a folder holding exactly bn.pt and ln.pt (conftest.py)


def invoke(*args: str | Path, width: int = 120):
    return runner.invoke(app, ["evaluate", *map(str, args)], env={"COLUMNS": str(width), "TERM": "dumb"})


def test_end_to_end_outputs(ckpts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = invoke(
        ckpts["bn"], ckpts["ln"], *FAST, "--csv", out / "r.csv", "--json", out / "r.json", "--plot", out / "p.png"
    )
    assert res.exit_code == 0, res.output + res.stderr
    # table on stdout: rows and columns
    for text in ("running", "batch", "local", "clean", "gaussian 5", "impulse mean", "mCE %", "baseline bn:running"):
        assert text in " ".join(res.stdout.split()), text
    assert "\x1b[" not in res.stdout
    with open(out / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS
    assert len(rows) == 3 * 5  # 3 columns x (clean + 2 noises x 2 severities)
    assert {r["n"] for r in rows} == {"40"} and {r["batch_size"] for r in rows} == {"16"}
    assert {(r["mode"], r["group_size"]) for r in rows} == {("running", ""), ("batch", "16"), ("local", "8")}
    doc = json.loads((out / "r.json").read_text())
    assert doc["format"] == "lncli-eval" and len(doc["records"]) == 15
    assert doc["config"]["batch_size"] == 16 and doc["config"]["noises"] == ["gaussian", "impulse"]
    assert (out / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_deterministic_across_runs(ckpts: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert invoke(ckpts["bn"], *FAST, "--csv", a).exit_code == 0
    assert invoke(ckpts["bn"], *FAST, "--csv", b, "--workers", "2").exit_code == 0
    assert a.read_text() == b.read_text()


def test_directory_and_glob_arguments(ckpts: dict[str, Path]) -> None:
    folder = ckpts["bn"].parent
    res = invoke(folder, *FAST, "--mode", "running")
    assert res.exit_code == 0, res.stderr
    assert (
        "baseline bn:running" in " ".join(res.stdout.split()) and res.stdout.count("running") >= 3
    )  # caption + 2 headers
    res = invoke(str(folder / "l*.pt"), *FAST)
    assert res.exit_code == 0 and "baseline ln:local" in " ".join(res.stdout.split()) and "bn" not in res.stdout


def test_table_fixed_width(ckpts: dict[str, Path]) -> None:
    res = invoke(ckpts["bn"], *FAST, width=90)
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 90


def test_threshold_failure_exit_1_names_cells(ckpts: dict[str, Path], tmp_path: Path) -> None:
    res = invoke(ckpts["bn"], *FAST, "--mode", "running", "--fail-under", "1.0", "--csv", tmp_path / "r.csv")
    assert res.exit_code == 1
    assert "FAIL bn:running clean:" in res.stderr and "FAIL bn:running gaussian 5:" in res.stderr
    assert (tmp_path / "r.csv").exists()  # results are written before the gate fails
    res = invoke(ckpts["bn"], *FAST, "--mode", "running", "--max-drop", "0")
    assert res.exit_code == 1 and "FAIL bn:running gaussian 5: drop" in res.stderr  # severity 5 costs accuracy
    assert invoke(ckpts["bn"], *FAST, "--fail-under", "0", "--max-drop", "1").exit_code == 0


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--noise", "fog_noise_x"], "unknown noise"),
        (["--mode", "running,bogus"], "unknown mode 'bogus'"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--group-size", "0"], "--group-size must be >= 1"),
        (["--severity", "6"], "severity"),
        (["--severity", "x"], "--severity"),
        (["--data", "synthetic-gray"], "does not match"),
        (["--channels", "1"], "takes 3-channel images"),
        (["--channels", "2"], "--channels must be 1 or 3"),
        (["--mean", "0.1,0.2"], "--mean"),
        (["--data", "nope"], "unknown dataset"),
        (["--fail-under", "gaussian:x=1"], "--fail-under"),
        (["--fail-under", "shot:1=0.5"], "not evaluated"),
        (["--baseline", "zzz"], "--baseline"),
        (["--limit", "0"], "--limit"),
        (["--max-drop", "2"], "--max-drop"),
        (["--workers", "-1"], "--workers"),
    ],
)
def test_bad_input_exit_2_one_line(ckpts: dict[str, Path], extra: list[str], needle: str) -> None:
    args = [a for a in FAST]
    for flag, value in zip(extra[::2], extra[1::2]):  # later flags override FAST's
        if flag in args:
            i = args.index(flag)
            del args[i : i + 2]
        args += [flag, value]
    res = invoke(ckpts["bn"], *args)
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert needle in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert res.stderr.strip().count("\n") == 0, res.stderr  # one line


def test_bad_files_exit_2(ckpts: dict[str, Path], tmp_path: Path) -> None:
    res = invoke(tmp_path / "missing.pt", *FAST)
    assert res.exit_code == 2 and "checkpoint not found" in res.stderr
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    res = invoke(junk, *FAST)
    assert res.exit_code == 2 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_unknown_choice_is_usage_error(ckpts: dict[str, Path]) -> None:
    assert invoke(ckpts["bn"], *FAST, "--heads", "vote").exit_code == 2
    assert invoke(ckpts["bn"], *FAST, "--profile", "nope").exit_code == 2


def test_cli_rescale_records_the_training_range(fmnist_dir: Path, tmp_path: Path) -> None:
    ckpt = fmnist_ckpt(tmp_path / "f.pt")
    out = tmp_path / "r.csv"
    args = [
        "evaluate",
        str(ckpt),
        "--data-dir",
        str(fmnist_dir),
        "--profile",
        "paper",
        "--rescale",
        "--noise",
        "gaussian",
        "--severity",
        "0,5",
        "--mode",
        "running",
        "--device",
        "cpu",
        "--csv",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["rescale"], r["rescale_range"]) for r in rows] == [("False", ""), ("True", "train")]


def test_unset_options_take_the_config_defaults(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """The CLI's defaults are EvalConfig's: a run that sets only data and size records the config's defaults."""
    from dataclasses import asdict

    from lncli.config.evaluate import EvalConfig

    out = tmp_path / "r.json"
    res = invoke(ckpts["bn"], "--data", "synthetic", "--limit", "8", "--device", "cpu", "--json", out)
    assert res.exit_code == 0, res.stderr
    config = json.loads(out.read_text())["config"]
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(EvalConfig(device="cpu")).items()}
    assert {k: config[k] for k in defaults} == defaults


def test_groupnorm_ignores_mode_with_exactly_one_note(
    gn_checkpoint: Path, ckpts: dict[str, Path], tmp_path: Path
) -> None:
    """GroupNorm has no test-time statistics: it runs in its only mode whatever --mode asks, and says so once."""
    csv_path = tmp_path / "r.csv"
    res = invoke(gn_checkpoint, ckpts["bn"], *FAST, "--mode", "running,batch,single", "--csv", csv_path)
    assert res.exit_code == 0, res.output + res.stderr
    notes = [line for line in res.stderr.splitlines() if line.strip()]
    note = "note: gn.pt uses GroupNorm, which has no test-time statistics; evaluated as it is (mode 'groupnorm')"
    assert notes == [f"{note}, not in running, batch, single"], res.stderr
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    gn_rows = [r for r in rows if r["checkpoint"].endswith("gn.pt")]
    assert len(gn_rows) == 5 and len(rows) == 5 * 4  # gn: one column; bn: the three modes asked
    assert {(r["norm"], r["mode"], r["heads"], r["group_size"]) for r in gn_rows} == {
        ("groupnorm", "groupnorm", "none", "")
    }
    # Its own mode, or no --mode: nothing to say.
    for extra in (["--mode", "groupnorm"], []):
        res = invoke(gn_checkpoint, *FAST, *extra)
        assert res.exit_code == 0 and res.stderr.strip() == "", res.stderr
    # groupnorm asked for a BatchNorm checkpoint: one line, exit 2.
    res = invoke(ckpts["bn"], *FAST, "--mode", "groupnorm")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "bn.pt uses batchnorm" in lines[0], res.output


def test_batch_size_list_order_and_new_modes(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """``--batch-size 8,16``: a table per size, each size recorded; ``--order`` and the mode settings recorded."""
    out = tmp_path / "r.csv"
    args = ["--data", "synthetic", "--limit", "32", "--noise", "gaussian", "--severity", "0,3", "--device", "cpu"]
    res = invoke(
        ckpts["bn"],
        *args,
        "--batch-size",
        "8,16",
        "--order",
        "sorted",
        "--mode",
        "batch,prior,tent",
        "--prior-n",
        "4",
        "--tent-lr",
        "0.01",
        "--csv",
        out,
        width=80,
    )
    assert res.exit_code == 0, res.stderr
    assert "lncli evaluate, batch 8" in res.stdout and "lncli evaluate, batch 16" in res.stdout
    assert "sorted by class" in " ".join(res.stdout.split())
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["batch_size"] for r in rows] == ["8"] * 6 + ["16"] * 6
    assert {(r["order"], r["order_seed"], r["mix"]) for r in rows} == {("sorted", "", "False")}
    assert {(r["mode"], r["prior_n"], r["tent_lr"], r["tent_steps"]) for r in rows} == {
        ("batch", "", "", ""),
        ("prior", "4.0", "", ""),
        ("tent", "", "0.01", "1"),
    }


def test_mix_records_one_mixed_row_and_notes_a_trivial_mix(ckpts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["--data", "synthetic", "--limit", "32", "--batch-size", "16", "--device", "cpu", "--mix"]
    res = invoke(ckpts["bn"], *args, "--noise", "gaussian,impulse", "--severity", "0,5", "--json", out)
    assert res.exit_code == 0, res.stderr
    assert "note:" not in res.stderr
    recs = json.loads(out.read_text())["records"]
    assert {(r["noise"], r["severity"], r["mix"], r["param"]) for r in recs} == {("mixed", "mixed", True, None)}
    assert len(recs) == 2  # running, batch
    assert "mixed" in res.stdout and "gaussian" not in res.stdout.split("mixed")[0]
    one = invoke(ckpts["bn"], *args, "--noise", "gaussian", "--severity", "3")
    assert one.exit_code == 0, one.stderr
    notes = [line for line in one.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: --mix with one noise and one severity")
    assert "identical to not mixing" in notes[0]


def test_order_seed_minus_one_is_the_dataset_order(ckpts: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert invoke(ckpts["bn"], *FAST, "--order-seed", "-1", "--csv", a).exit_code == 0
    assert invoke(ckpts["bn"], *FAST, "--order", "dataset", "--csv", b).exit_code == 0
    assert a.read_text() == b.read_text() and ",dataset," in a.read_text()


def test_image_folder_flags_are_used_and_recorded(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """A folder of mixed sizes and modes, read with every preprocessing flag: the CSV and JSON say what was used."""
    import numpy as np
    from PIL import Image

    from lncli.data import DATASETS

    rng = np.random.default_rng(0)
    for k, cls in enumerate(DATASETS["synthetic"].classes):
        (tmp_path / "f" / f"{k}-{cls}").mkdir(parents=True)
        for j, (h, w) in enumerate(((20, 31), (40, 40), (33, 27))):  # mixed sizes: the resize handles them
            shape = (h, w) if j == 1 else (h, w, 3)  # and a grayscale file among RGB ones
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
                tmp_path / "f" / f"{k}-{cls}" / f"{j}.png"
            )
    (tmp_path / "f" / "0-stripes-0" / "notes.txt").write_text("not an image: ignored")
    out = tmp_path / "o"
    flags = ["--image-size", "24", "--resize", "28", "--mean", "none", "--interpolation", "bicubic", "--workers", "2"]
    res = invoke(
        ckpts["bn"], "--data", f"imagefolder:{tmp_path / 'f'}", "--limit", "20", *flags, "--batch-size", "8",
        "--noise", "gaussian", "--severity", "0,3", "--device", "cpu", "--csv", out / "r.csv", "--json", out / "r.json",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    with (out / "r.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["n"], r["image_size"], r["resize"], r["interpolation"], r["mean"], r["std"], r["channels"], r["skipped"])
            for r in rows} == {("20", "24x24", "28", "bicubic", "0.0,0.0,0.0", "1.0,1.0,1.0", "3", "0")}  # fmt: skip
    doc = json.loads((out / "r.json").read_text())
    assert (doc["config"]["image_size"], doc["config"]["mean"], doc["config"]["interpolation"]) == (
        24,
        "none",
        "bicubic",
    )
    assert {r["data"] for r in doc["records"]} == {"imagefolder"}


def test_batch_sizes_below_g_run_with_one_note(ckpts: dict[str, Path], tmp_path: Path) -> None:
    """Issue 19: a LocalNorm checkpoint (G 8) swept over 4,8: the smaller size runs as one group, said once."""
    out = tmp_path / "r.csv"
    res = invoke(ckpts["ln"], *FAST[:4], "--batch-size", "4,8", "--noise", "gaussian", "--severity", "0", "--csv", out)
    assert res.exit_code == 0, res.output + res.stderr
    note = "ln.pt: batch size 4 is smaller than G = 8; local normalise each batch as one group there"
    assert res.stderr.count(note) == 1, res.stderr
    with open(out, newline="") as fh:
        assert {(r["batch_size"], r["group_size"]) for r in csv.DictReader(fh)} == {("4", "4"), ("8", "8")}
