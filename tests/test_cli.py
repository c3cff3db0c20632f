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
