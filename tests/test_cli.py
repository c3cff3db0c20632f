"""The CLI shell: --version, python -m lncli, and one-line usage errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lncli import __version__
from lncli.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"lncli {__version__}"


def test_python_dash_m() -> None:
    out = subprocess.run([sys.executable, "-m", "lncli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lncli {__version__}"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bogus"], "No such command 'bogus'"),
        (["convert", "a.pt"], "'a.pt' does not exist"),
        (["corrupt", "--data", "synthetic", "--profile", "xx"], "'xx' is not one of"),
        (["evaluate", "x.pt", "--limit", "abc"], "--limit"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert needle in lines[0], lines[0]


def test_choices_are_built_from_the_library() -> None:
    import typer.main

    from lncli.cli.app import GroupingChoice, NormChoice, ProfileChoice
    from lncli.config.common import CONVERT_TARGETS, CROP_MODES, DEVICES, INTERPOLATIONS
    from lncli.config.evaluate import HEADS, ORDERS
    from lncli.nn import GROUPINGS
    from lncli.noise import PROFILES

    for choice, values in (
        (ProfileChoice, tuple(PROFILES)),
        (NormChoice, CONVERT_TARGETS),  # convert --to: the kinds with batch statistics, not GroupNorm
        (GroupingChoice, GROUPINGS),
    ):
        assert tuple(c.value for c in choice) == values and all(isinstance(c, str) for c in choice)
    # evaluate's options are made from their declaration (lncli.jobs.evaluate.options): its choices too.
    params = {p.name: p for p in typer.main.get_command(app).commands["evaluate"].params}  # type: ignore[attr-defined]
    for name, values in (
        ("profile", tuple(PROFILES)),
        ("heads", HEADS),
        ("device", DEVICES),
        ("order", ORDERS),
        ("interpolation", INTERPOLATIONS),
        ("crop_mode", CROP_MODES),
    ):
        assert tuple(str(getattr(c, "value", c)) for c in params[name].type_descriptor.choices) == values, name
    wide = {"COLUMNS": "200", "TERM": "dumb"}
    corrupt_help = runner.invoke(app, ["corrupt", "--help"], env=wide).stdout
    assert f"<{'|'.join(PROFILES)}>" in corrupt_help
    evaluate_help = " ".join(runner.invoke(app, ["evaluate", "--help"], env=wide).stdout.split())
    assert f"One of {', '.join(PROFILES)}." in evaluate_help  # listed whole, in the help text


@pytest.mark.parametrize("seed", range(5))
def test_severity_defaults_are_written_in_the_severity_grammar(seed: int) -> None:
    import random

    from lncli.cli.app import severity_text
    from lncli.config.common import MAX_SEVERITY, parse_severities

    rng = random.Random(seed)
    sevs = tuple(sorted(rng.sample(range(MAX_SEVERITY + 1), rng.randint(1, MAX_SEVERITY + 1))))
    assert parse_severities(severity_text(sevs)) == sevs
    assert severity_text((0, 1, 2, 3, 4, 5)) == "0-5" and severity_text((1, 3, 4, 5)) == "1,3-5"
