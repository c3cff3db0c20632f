"""The convert job (lncli.jobs.convert.run_convert): checks before reading, one atomic write, provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lncli.checkpoint import Checkpoint, load_checkpoint
from lncli.config.convert import ConvertConfig
from lncli.errors import LncliError, OutputError
from lncli.jobs.convert import check_convert_files, run_convert


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
    from lncli.nn import convert_checkpoint

    with pytest.raises(LncliError, match="uses groupnorm, which has no batch statistics to swap"):
        convert_checkpoint(load_checkpoint(gn_checkpoint), "localnorm")
