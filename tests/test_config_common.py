"""lncli.config.common: the one severity grammar, the list grammar and the norm aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from lncli.config.common import NORM_KINDS, canonical_norm, close_names, parse_list, parse_severities
from lncli.errors import LncliError


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("0-5", (0, 1, 2, 3, 4, 5)),
        ("5,1,2-3", (1, 2, 3, 5)),
        ("1,,3", (1, 3)),
        (" 0 , 2-4 ", (0, 2, 3, 4)),
        ("5,1,1", (1, 5)),
    ],
)
def test_severities(spec: str, want: tuple[int, ...]) -> None:
    assert parse_severities(spec) == want


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "no severity"),
        ("a", "bad item"),
        ("3-1", "backwards"),
        ("1,,x", "bad item"),
        ("0-6", "out of range"),
        ("-1", "bad item"),
    ],
)
def test_bad_severities_name_the_option(spec: str, match: str) -> None:
    with pytest.raises(LncliError, match=f"--severity.*{match}"):
        parse_severities(spec)


def test_both_commands_share_the_grammar(tmp_path: Path) -> None:
    # corrupt and evaluate once parsed severities differently ('1,,3' worked in one only): both
    # commands must refuse a bad list with the grammar's own words, before any work.
    from typer.testing import CliRunner

    from lncli.cli import app

    ckpt = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "fashion_mnist_small_cnn_bn.pt"
    commands = {
        "corrupt": ["corrupt", "--data", "synthetic", "--out", str(tmp_path / "out")],
        "evaluate": ["evaluate", str(ckpt), "--data", "synthetic-gray"],
    }
    with pytest.raises(LncliError) as want:
        parse_severities("0,3-1")
    for name, argv in commands.items():
        result = CliRunner().invoke(app, [*argv, "--severity", "0,3-1"])
        assert result.exit_code == 2, (name, result.output)
        assert str(want.value) in " ".join(result.output.split()), (name, result.output)
    assert not (tmp_path / "out").exists()


def test_list_grammar() -> None:
    assert parse_list("batch,running,batch", ("running", "batch"), "mode") == ("batch", "running")
    assert parse_list(" ALL ", ("running", "batch"), "mode") == ("running", "batch")
    with pytest.raises(LncliError, match="unknown mode 'bogus'; valid: running, batch"):
        parse_list("bogus", ("running", "batch"), "mode")
    with pytest.raises(LncliError, match="--mode is empty"):
        parse_list(" , ", ("running", "batch"), "mode")


def test_unknown_names_suggest_the_close_one() -> None:
    """Every list option and name vocabulary words its refusal the same way (the modes, noises, norms, crop modes)."""
    from lncli.noise import canonical_noise

    assert close_names("gausian", ["gaussian", "shot", "impulse"]) == " (did you mean 'gaussian'?)"
    assert close_names("xyz", ["gaussian", "shot"]) == ""
    with pytest.raises(LncliError, match=r"unknown mode 'runing' \(did you mean 'running'\?\); valid: running, batch"):
        parse_list("runing,batch", ("running", "batch"), "mode")
    with pytest.raises(LncliError, match=r"unknown noise 'gausian' for profile 'imagenet-c' \(did you mean 'gaussian'"):
        canonical_noise("gausian")
    with pytest.raises(LncliError, match=r"unknown noise 'dropuot' for profile 'paper' \(did you mean 'dropout'\?\)"):
        canonical_noise("dropuot", "paper")
    with pytest.raises(LncliError, match=r"unknown norm kind 'localnrom' \(did you mean 'localnorm'"):
        canonical_norm("localnrom")


def test_norm_aliases() -> None:
    assert [canonical_norm(k) for k in ("BN", "ln", "batch_norm", "LocalNorm", "GN", "group_norm")] == [
        "batchnorm",
        "localnorm",
        "batchnorm",
        "localnorm",
        "groupnorm",
        "groupnorm",
    ]
    assert set(NORM_KINDS) == {"batchnorm", "localnorm", "groupnorm"}
    with pytest.raises(LncliError, match="unknown norm kind 'in'"):
        canonical_norm("in")


def test_profile_names_are_the_noise_profiles() -> None:
    # The CLI builds --profile's choices from PROFILE_NAMES so that it need not import torch.
    from lncli.config.common import PROFILE_NAMES
    from lncli.noise import PROFILES

    assert PROFILE_NAMES == tuple(PROFILES)


def test_preset_names_are_the_preprocessing_presets() -> None:
    # Names here (torch-free, for the CLI's help), values beside the preprocessing: the two must agree.
    from lncli.config.common import INTERPOLATIONS, NORMALIZATION_PRESETS
    from lncli.data.meta import DEFAULT_INTERPOLATION
    from lncli.data.preprocess import PRESETS

    assert NORMALIZATION_PRESETS == tuple(PRESETS)
    assert DEFAULT_INTERPOLATION in INTERPOLATIONS


def test_cli_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, lncli.cli.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
