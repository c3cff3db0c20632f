"""The convert job (lncli.jobs.convert): checkpoints converted in memory, and the file edge (checks before
reading, one atomic write, provenance)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from lncli.checkpoint import Checkpoint, NormSpec, checkpoint_from_model, load_checkpoint
from lncli.config.convert import ConvertConfig
from lncli.data import DATASETS
from lncli.errors import LncliError, OutputError
from lncli.jobs.convert import check_convert_files, convert_checkpoint, run_convert
from lncli.models import create_model
from lncli.nn import ConversionSummary


def test_run_convert_writes_out_with_its_source(bn_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "ln.pt"
    summary = run_convert(ConvertConfig(src=bn_checkpoint, dst=out, to="ln", group_size=4, num_heads=3))
    assert (summary.direction, summary.group_size, summary.num_heads) == ("batchnorm->localnorm", 4, 3)
    src, new = load_checkpoint(bn_checkpoint), load_checkpoint(out)
    assert (new.norm.kind, new.norm.group_size, new.norm.num_heads, new.norm.grouping) == (
        "localnorm",
        4,
        3,
        "consecutive",
    )
    record = new.provenance["conversions"][-1]
    assert record["source"] == str(bn_checkpoint) and record["layers_converted"] == summary.layers_converted > 0
    for key, value in src.state_dict.items():  # every head starts from BN's weight/bias
        assert torch.equal(new.state_dict[key], value), key
        if key.endswith(".weight") and key.replace(".weight", ".head_weight") in new.state_dict:
            heads = new.state_dict[key.replace(".weight", ".head_weight")]
            assert heads.shape == (3, value.numel()) and torch.equal(heads, value.expand(3, -1))
    assert sorted(p.name for p in out.parent.iterdir()) == ["ln.pt"], "atomic write: no temporary file left"


def test_then_runs_before_the_write(bn_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ln.pt"
    seen: list[str] = []

    def then(ckpt: Checkpoint) -> Checkpoint:
        seen.append(ckpt.norm.kind)
        assert not out.exists(), "OUT is written after the last step only"
        ckpt.metrics["tuned"] = 1.0
        return ckpt

    run_convert(ConvertConfig(src=bn_checkpoint, dst=out, to="localnorm"), then=then)
    assert seen == ["localnorm"] and load_checkpoint(out).metrics["tuned"] == 1.0

    def fail(ckpt: Checkpoint) -> Checkpoint:
        raise LncliError("fine-tune data missing")

    failed = tmp_path / "failed.pt"
    with pytest.raises(LncliError, match="fine-tune data missing"):
        run_convert(ConvertConfig(src=bn_checkpoint, dst=failed, to="localnorm"), then=fail)
    assert not failed.exists(), "a failing last step leaves no OUT"


def test_out_is_checked_before_in_is_read(tmp_path: Path) -> None:
    """A junk IN would fail to load: the OUT errors must come first (nothing read, nothing written)."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    (tmp_path / "folder.pt").mkdir()
    cases = {
        "folder.pt": "is a folder",
        "out.txt": "suffix must be one of .pt",
        "junk.pt": "refusing to overwrite",
    }
    for name, message in cases.items():
        cfg = ConvertConfig(src=junk, dst=tmp_path / name, to="localnorm")
        with pytest.raises(OutputError, match=message):
            check_convert_files(cfg)
        with pytest.raises(OutputError, match=message):
            run_convert(cfg)
    assert junk.read_bytes() == b"not a checkpoint at all"
    assert not (tmp_path / "out.txt").exists()
    with pytest.raises(LncliError, match="junk.pt"):  # a good OUT: now IN is read, and refused
        run_convert(ConvertConfig(src=junk, dst=tmp_path / "out.pt", to="localnorm"))
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"to": "groupnorm"}, "unknown conversion target"),
        ({"to": "localnorm", "group_size": 0}, "group_size"),
        ({"to": "localnorm", "num_heads": -1}, "num_heads"),
        ({"to": "localnorm", "grouping": "diagonal"}, "grouping"),
        ({"to": "batchnorm"}, "already uses batchnorm"),
    ],
)
def test_bad_settings_leave_no_out(bn_checkpoint: Path, tmp_path: Path, settings: dict, message: str) -> None:
    out = tmp_path / "out.pt"
    with pytest.raises(LncliError, match=message):
        run_convert(ConvertConfig(src=bn_checkpoint, dst=out, **settings))
    assert not out.exists()


def test_groupnorm_checkpoint_is_refused_and_nothing_written(gn_checkpoint: Path, tmp_path: Path) -> None:
    """GroupNorm has no batch statistics: no BatchNorm or LocalNorm twin to convert to (issue 14)."""
    for to in ("localnorm", "batchnorm"):
        out = tmp_path / f"{to}.pt"
        with pytest.raises(LncliError) as info:
            run_convert(ConvertConfig(src=gn_checkpoint, dst=out, to=to))
        message = str(info.value)
        assert message.startswith("gn.pt uses groupnorm, which has no batch statistics to swap"), message
        assert "\n" not in message and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_convert_checkpoint_refuses_groupnorm_in_memory(gn_checkpoint: Path) -> None:
    with pytest.raises(LncliError, match="uses groupnorm, which has no batch statistics to swap"):
        convert_checkpoint(load_checkpoint(gn_checkpoint), "localnorm")


# --------------------------------------------------------------------------- in memory


def _checkpoint(arch: str = "tiny") -> Checkpoint:
    """A BatchNorm checkpoint whose norm layers hold values no fresh layer has."""
    data = DATASETS["synthetic"]
    torch.manual_seed(0)
    model = create_model(arch, num_classes=data.num_classes, in_channels=data.in_channels)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return checkpoint_from_model(
        model, arch=arch, arch_kwargs={}, norm=NormSpec(), data=data, metrics={"acc": 0.5}, train_state={"epoch": 3}
    )


def test_convert_checkpoint_round_trip_and_summary() -> None:
    ckpt = _checkpoint()
    ln_ckpt, s1 = convert_checkpoint(ckpt, "localnorm", group_size=4, num_heads=2, grouping="strided")
    n_layers = sum(k.endswith("running_mean") for k in ckpt.state_dict)
    channels = sum(v.numel() for k, v in ckpt.state_dict.items() if k.endswith("running_mean"))
    assert s1 == ConversionSummary("batchnorm->localnorm", n_layers, 2 * 2 * channels, 4, 2)
    assert (ln_ckpt.norm.kind, ln_ckpt.norm.group_size, ln_ckpt.norm.num_heads, ln_ckpt.norm.grouping) == (
        "localnorm",
        4,
        2,
        "strided",
    )
    assert ln_ckpt.train_state is None and ln_ckpt.metrics == {"acc": 0.5}
    assert ln_ckpt.provenance["conversions"][-1]["direction"] == "batchnorm->localnorm"
    bn_ckpt, s2 = convert_checkpoint(ln_ckpt, "bn")
    assert s2.direction == "localnorm->batchnorm" and s2.params_added == -s1.params_added
    assert bn_ckpt.norm.kind == "batchnorm"
    assert list(bn_ckpt.state_dict) == list(ckpt.state_dict)
    for k, v in ckpt.state_dict.items():
        assert torch.equal(bn_ckpt.state_dict[k], v), k
    assert len(bn_ckpt.provenance["conversions"]) == 2
    assert any("averaged" in line for line in s2.lines())


def test_convert_checkpoint_errors() -> None:
    ckpt = _checkpoint()
    with pytest.raises(LncliError, match="localnorm, batchnorm"):
        convert_checkpoint(ckpt, "groupnorm")
    with pytest.raises(LncliError, match="already uses batchnorm"):
        convert_checkpoint(ckpt, "batchnorm")
    with pytest.raises(LncliError, match="group_size"):
        convert_checkpoint(ckpt, "localnorm", group_size=0)
    with pytest.raises(LncliError, match="grouping"):
        convert_checkpoint(ckpt, "localnorm", grouping="diagonal")


def test_convert_checkpoint_checks_settings_before_building_the_model() -> None:
    # An arch that cannot be built: a settings error can only come first if nothing was built.
    ckpt = dataclasses.replace(_checkpoint(), arch="resnet21")
    with pytest.raises(LncliError, match="num_heads"):
        convert_checkpoint(ckpt, "localnorm", num_heads=0)
    with pytest.raises(LncliError, match="unknown arch 'resnet21'"):
        convert_checkpoint(ckpt, "localnorm")
