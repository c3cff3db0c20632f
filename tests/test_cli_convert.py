"""`lncli convert IN OUT --to localnorm|batchnorm`: summary, atomic write, exit codes."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from lncli.checkpoint import load_checkpoint
from lncli.cli import app
from lncli.nn import LocalNorm2d


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


def test_convert_round_trip_via_cli(bn_checkpoint: Path, tmp_path: Path) -> None:
    runner = _runner()
    ln_path, back_path = tmp_path / "ln.pt", tmp_path / "sub" / "back.pt"
    res = runner.invoke(
        app, ["convert", str(bn_checkpoint), str(ln_path), "--to", "localnorm", "--group-size", "4", "--heads", "2"]
    )
    assert res.exit_code == 0, res.output
    assert "converted 2 layers: batchnorm->localnorm" in res.stdout
    assert "parameters added:" in res.stdout
    ln = load_checkpoint(ln_path)
    assert (ln.norm.kind, ln.norm.group_size, ln.norm.num_heads) == ("localnorm", 4, 2)
    assert any(k.endswith("head_weight") for k in ln.state_dict)
    from lncli.checkpoint import model_from_checkpoint

    assert any(isinstance(m, LocalNorm2d) for m in model_from_checkpoint(ln).modules())
    res = runner.invoke(app, ["convert", str(ln_path), str(back_path), "--to", "batchnorm"])
    assert res.exit_code == 0, res.output
    assert "averaged" in res.stdout and "parameters removed:" in res.stdout
    orig, back = load_checkpoint(bn_checkpoint), load_checkpoint(back_path)
    assert list(back.state_dict) == list(orig.state_dict)
    assert all(torch.equal(back.state_dict[k], v) for k, v in orig.state_dict.items())
    # Atomic write: no temporary files left behind.
    assert sorted(p.name for p in back_path.parent.iterdir()) == ["back.pt"]


def test_help_says_heads_are_averaged() -> None:
    res = _runner().invoke(app, ["convert", "--help"], terminal_width=200)
    assert res.exit_code == 0
    assert "AVERAGED" in res.stdout


def _one_line_error(res, needle: str) -> None:
    err = res.stderr if res.stderr_bytes is not None else res.output
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err


def test_refuses_to_overwrite_input(bn_checkpoint: Path) -> None:
    before = bn_checkpoint.read_bytes()
    res = _runner().invoke(app, ["convert", str(bn_checkpoint), str(bn_checkpoint), "--to", "localnorm"])
    _one_line_error(res, "refusing to overwrite")
    assert bn_checkpoint.read_bytes() == before
    alias = bn_checkpoint.parent / "." / bn_checkpoint.name
    res = _runner().invoke(app, ["convert", str(bn_checkpoint), str(alias), "--to", "localnorm"])
    _one_line_error(res, "refusing to overwrite")


def test_bad_inputs_exit_2_with_one_line(bn_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.pt"
    runner = _runner()
    _one_line_error(
        runner.invoke(app, ["convert", str(bn_checkpoint), str(out), "--to", "batchnorm"]), "already uses batchnorm"
    )
    _one_line_error(
        runner.invoke(app, ["convert", str(bn_checkpoint), str(out), "--to", "localnorm", "--group-size", "0"]),
        "group_size",
    )
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    _one_line_error(runner.invoke(app, ["convert", str(junk), str(out), "--to", "localnorm"]), "junk.pt")
    assert not out.exists()
    # Usage errors (missing IN, bad choice) are click's: exit 2 too.
    assert runner.invoke(app, ["convert", str(tmp_path / "missing.pt"), str(out), "--to", "localnorm"]).exit_code == 2
    assert runner.invoke(app, ["convert", str(bn_checkpoint), str(out), "--to", "groupnorm"]).exit_code == 2


def test_groupnorm_checkpoint_is_refused_in_one_line(gn_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ln.pt"
    res = _runner().invoke(app, ["convert", str(gn_checkpoint), str(out), "--to", "localnorm"])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: gn.pt uses groupnorm"), res.output
    assert "no batch statistics to swap" in lines[0] and not out.exists()
    # --to offers only the kinds with batch statistics.
    res = _runner().invoke(app, ["convert", str(gn_checkpoint), str(out), "--to", "groupnorm"])
    assert res.exit_code == 2 and not out.exists()
