"""The command line's help a person can read, and argument errors that cost no torch import (issue 21)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lncli.cli import app
from lncli.config.evaluate import MODES
from lncli.jobs.evaluate.options import PANELS, option_specs

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERM": "dumb"}


@pytest.mark.parametrize("command", ["evaluate", "corrupt", "convert", "train"])
def test_help_fits_80_columns_cuts_nothing_and_flags_take_no_value(command: str) -> None:
    res = runner.invoke(app, [command, "--help"], env=NARROW)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide[:3]
    assert "…" not in res.stdout, [line for line in lines if "…" in line][:3]  # nothing cut off
    assert "<bool>" not in res.stdout  # a flag shows no value


def test_evaluate_help_is_grouped_and_lists_its_choices_whole() -> None:
    text = runner.invoke(app, ["evaluate", "--help"], env=NARROW).stdout
    lines = text.splitlines()
    assert len(lines) <= 140, len(lines)  # was 254 in one panel
    panels = [p for p in PANELS if f"─ {p} ─" in text]
    assert panels == list(PANELS)
    assert [text.index(f"─ {p} ─") for p in PANELS] == sorted(text.index(f"─ {p} ─") for p in PANELS)
    flat = " ".join(text.replace("│", " ").split())
    assert ", ".join(MODES) in flat  # every mode, none cut
    for name, spec in option_specs().items():
        if not spec.argument:
            assert f"--{name.replace('_', '-')}" in text, name
    assert "--mix One mixed stream" in flat  # a flag: its help right after its name, no value


def test_evaluate_without_arguments_says_what_is_missing_in_one_line() -> None:
    res = runner.invoke(app, ["evaluate"], env=NARROW)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Missing argument 'CKPT...'" in lines[0] and "lncli evaluate --help" in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--noise", "gausian"], "did you mean 'gaussian'"),
        (["--severity", "9"], "--severity '9'"),
        (["--mode", "lokal"], "unknown mode 'lokal'"),
        (["--batch-size", "x"], "--batch-size 'x'"),
        (["--fail-under", "90"], "a percentage needs %"),
        (["--csv", "out.txt"], "--csv out.txt"),
        (["--mean", "abc"], "--mean 'abc'"),
        (["--profile", "imagenetc"], "'imagenetc' is not one of"),
        (["--tent-lr", "0"], "--tent-lr must be > 0"),
    ],
)
def test_an_argument_typo_is_refused_before_torch_is_imported(args: list[str], needle: str) -> None:
    """The check that keeps a typo under a second: the error comes before torch is imported."""
    code = (
        "import sys\n"
        "from lncli.cli import app\n"
        f"try:\n    app(['evaluate', 'missing.pt', *{args!r}])\n"
        "except SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.stdout.strip() == "exit 2 False", out.stdout + out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
