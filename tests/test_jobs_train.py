"""lncli.jobs.train: end-to-end smoke, resume equivalence, atomic checkpoints, NaN stop, Ctrl-C,
LocalNorm batching, AMP, fine-tune after convert, the CLI, and 2-process DDP.

The schedule and augmentation pieces are in test_jobs_train_recipe.py."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

import lncli.checkpoint as ckpt_mod
import lncli.distributed as D
import lncli.jobs.train.loop as loop_mod
from lncli.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from lncli.cli import app
from lncli.config import (
    TrainConfig,
    load_train_config,
    train_config_from_dict,
)
from lncli.data import load_dataset, normalize
from lncli.errors import CheckpointError, ConfigError, LncliError, OutputError
from lncli.jobs.train import (
    HISTORY_FIELDS,
    TrainEvent,
    finetune,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sample_configs" / "smoke.yaml"

# A tiny, fast run: 256 synthetic images, batch 16 -> 16 steps per epoch.
TINY = {
    "data.spec": "synthetic",
    "data.train_limit": 256,
    "data.test_limit": 64,
    "model.arch": "tiny",
    "batch_size": 16,
    "epochs": 3,
    "device": "cpu",
    "optim.lr": 0.05,
}
TINY_LN = {**TINY, "norm.kind": "localnorm", "norm.group_size": 4, "data.augment": "crop_flip"}


def _cfg(**over: Any) -> TrainConfig:
    return train_config_from_dict({}, {**TINY, **over})


def _cfg_ln(**over: Any) -> TrainConfig:
    return train_config_from_dict({}, {**TINY_LN, **over})


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a)


# ---------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------


def test_smoke_config_trains_end_to_end_and_loss_falls(tmp_path: Path) -> None:
    cfg = load_train_config(SMOKE)
    events: list[TrainEvent] = []
    res = train(cfg, tmp_path / "run", progress=events.append)
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"last.pt", "best.pt", "history.csv", "config.yaml"}
    assert len(res.history) == cfg.epochs
    first, last = res.history[0], res.history[-1]
    assert last.train_loss < first.train_loss, [r.train_loss for r in res.history]
    assert last.test_accuracy is not None and last.test_accuracy > 0.15  # 10 classes: chance is 0.1
    # history.csv: one row per epoch with the documented columns.
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == HISTORY_FIELDS
    assert [int(r["epoch"]) for r in rows] == list(range(1, cfg.epochs + 1))
    assert float(rows[-1]["train_loss"]) == pytest.approx(last.train_loss)
    # config.yaml is the resolved config and loads back to the same thing.
    assert load_train_config(out / "config.yaml") == cfg
    # The checkpoints load weights-only, rebuild the model and carry the run's metadata.
    last_ck = load_checkpoint(out / "last.pt")
    assert last_ck.arch == "tiny" and last_ck.norm.kind == "batchnorm" and last_ck.data.synthetic
    assert last_ck.train_state is not None and last_ck.train_state["epoch"] == cfg.epochs
    assert last_ck.config["batch_size"] == cfg.batch_size and last_ck.config["seed"] == cfg.seed
    best_ck = load_checkpoint(out / "best.pt")
    assert best_ck.train_state is None
    assert best_ck.metrics["test_accuracy"] == pytest.approx(res.best_test_accuracy)
    model_from_checkpoint(last_ck)
    # Progress: a start event, one batch event per step, one epoch event per epoch.
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("epoch") == cfg.epochs
    assert sum(k == "batch" for k in kinds) == cfg.epochs * events[0].steps


@pytest.mark.parametrize("seed", [0, 1])
def test_localnorm_batches_hold_whole_groups_and_change_each_epoch(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 250 images with batch 16: the tail of 10 is dropped (drop_last), never a ragged group.
    cfg = _cfg_ln(**{"data.train_limit": 250, "epochs": 2, "seed": seed})
    assert cfg.norm.num_heads == 4  # default = batch / G, as in the paper
    seen: list[tuple[int, torch.Tensor]] = []
    orig = loop_mod.Loop._batches

    def spy(self: Any, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in orig(self, epoch, start):
            seen.append((epoch, y.clone()))
            yield x, y

    monkeypatch.setattr(loop_mod.Loop, "_batches", spy)
    train(cfg, tmp_path / "ln")
    assert all(len(y) == 16 and len(y) % cfg.norm.group_size == 0 for _, y in seen)
    assert sum(e == 0 for e, _ in seen) == 250 // 16
    ep0 = torch.cat([y for e, y in seen if e == 0])
    ep1 = torch.cat([y for e, y in seen if e == 1])
    assert not torch.equal(ep0, ep1)  # a new shuffle (hence new groups) every epoch
    ck = load_checkpoint(tmp_path / "ln" / "last.pt")
    assert ck.norm.kind == "localnorm" and (ck.norm.group_size, ck.norm.num_heads) == (4, 4)


# ---------------------------------------------------------------------------
# Resume, Ctrl-C, NaN, atomic writes
# ---------------------------------------------------------------------------


def _interrupt_at(epoch: int, step: int) -> Callable[[TrainEvent], None]:
    def cb(ev: TrainEvent) -> None:
        if ev.kind == "batch" and (ev.epoch, ev.step) == (epoch, step):
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize(
    ("make_cfg", "stop_at"),
    [(_cfg_ln, (1, 5)), (_cfg_ln, (0, 16)), (_cfg, (2, 1))],
    ids=["localnorm-mid-epoch", "localnorm-epoch-end", "batchnorm-last-epoch"],
)
def test_resume_reaches_the_same_weights(tmp_path: Path, make_cfg: Any, stop_at: tuple[int, int]) -> None:
    cfg = make_cfg(**{"schedule.warmup_epochs": 1})
    full = train(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=_interrupt_at(*stop_at))
    saved = load_checkpoint(tmp_path / "cut" / "last.pt").train_state
    assert saved is not None and (saved["epoch"], saved["step"]) == stop_at
    resumed = train(cfg, tmp_path / "cut", resume=True)
    assert resumed.resumed_from == stop_at
    a = load_checkpoint(tmp_path / "full" / "last.pt").state_dict
    b = load_checkpoint(tmp_path / "cut" / "last.pt").state_dict
    err = _max_diff(a, b)
    assert err == 0.0, f"resumed weights differ from an uninterrupted run: max abs error {err:.3g}"
    assert [r.train_loss for r in resumed.history] == pytest.approx(
        [r.train_loss for r in full.history], rel=1e-12, abs=0
    )
    assert [r.test_accuracy for r in resumed.history] == [r.test_accuracy for r in full.history]


def test_resume_with_another_world_size_keeps_the_lr_schedule(tmp_path: Path) -> None:
    # last.pt written by 2 ranks at an epoch boundary (8 steps per epoch there), resumed by 1
    # process (16 steps per epoch): the schedule must continue at epoch 1, not at step 8 of 16.
    cfg = _cfg(epochs=2)
    full: list[TrainEvent] = []
    train(cfg, tmp_path / "full", progress=full.append)
    train(_cfg(epochs=1), tmp_path / "cut")
    ck = load_checkpoint(tmp_path / "cut" / "last.pt")
    ts = dict(ck.train_state or {})
    assert (ts["epoch"], ts["step"], ts["global_step"]) == (1, 0, 16)
    ts.update(world_size=2, global_step=8, scheduler={**ts["scheduler"], "steps_per_epoch": 8})
    ckpt_mod.save_checkpoint(ckpt_mod.Checkpoint(**{**ck.__dict__, "train_state": ts}), tmp_path / "cut" / "last.pt")
    resumed: list[TrainEvent] = []
    train(cfg, tmp_path / "cut", resume=True, progress=resumed.append)
    want = [e.lr for e in full if e.kind == "batch" and e.epoch == 1]
    got = [e.lr for e in resumed if e.kind == "batch"]
    assert got == pytest.approx(want, rel=1e-12), f"max lr error {max(abs(a - b) for a, b in zip(got, want)):.3g}"
    assert load_checkpoint(tmp_path / "cut" / "last.pt").train_state["global_step"] == 32  # type: ignore[index]


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):  # refused before any data is loaded
        train(_cfg(epochs=1), f)


@pytest.mark.parametrize(("n", "bs", "world"), [(100, 16, 2), (10000, 128, 2), (10000, 128, 3), (5, 16, 4)])
def test_ddp_test_shards_are_whole_batches(n: int, bs: int, world: int) -> None:
    # Every rank must evaluate exactly the batches one process would (LocalNorm / batch
    # statistics depend on which images share a batch), and together cover every image once.
    single = D.whole_batches(n, bs, 0, 1)
    assert single == [(i, min(n, i + bs)) for i in range(0, n, bs)]
    shards = [D.whole_batches(n, bs, r, world) for r in range(world)]
    assert [b for s in shards for b in s] == single


def test_sigint_saves_at_a_step_boundary_then_raises(tmp_path: Path) -> None:
    cfg = _cfg(epochs=2)

    def cb(ev: TrainEvent) -> None:
        if ev.kind == "batch" and (ev.epoch, ev.step) == (0, 3):
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=cb)
    ts = load_checkpoint(tmp_path / "run" / "last.pt").train_state
    assert ts is not None and (ts["epoch"], ts["step"]) == (0, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    train(cfg, tmp_path / "run", resume=True)  # and it finishes from there


def test_resume_and_out_dir_errors(tmp_path: Path) -> None:
    cfg = _cfg(epochs=1)
    with pytest.raises(CheckpointError, match="does not exist"):
        train(cfg, tmp_path / "none", resume=True)
    train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="'model'"):
        train(_cfg(epochs=2, **{"model.kwargs": {"width": 4}}), tmp_path / "run", resume=True)


def test_nan_loss_stops_with_a_clear_error_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(epochs=1)
    train(cfg, tmp_path / "run")
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    calls = {"n": 0}
    real_normalize = loop_mod.normalize

    def poisoned(images: torch.Tensor, meta: Any) -> torch.Tensor:
        calls["n"] += 1
        out = real_normalize(images, meta)
        return out * float("nan") if calls["n"] >= 3 else out

    monkeypatch.setattr(loop_mod, "normalize", poisoned)
    with pytest.raises(LncliError, match="not finite") as info:
        train(_cfg(epochs=2), tmp_path / "run", resume=True)
    assert "\n" not in str(info.value)
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept.train_state is not None and kept.train_state["epoch"] == 1
    assert _max_diff(kept.state_dict, good.state_dict) == 0.0


def test_interrupted_checkpoint_write_leaves_previous_file_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(_cfg(epochs=1), tmp_path / "run")
    before = load_checkpoint(tmp_path / "run" / "last.pt")

    def crash_mid_write(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        f.write(b"PK\x03\x04 half a zip")  # a partial file ...
        raise OSError("disk full")  # ... then the write dies

    monkeypatch.setattr(ckpt_mod.torch, "save", crash_mid_write)
    with pytest.raises(OutputError, match="disk full"):  # the OSError, as one line naming the file
        train(_cfg(epochs=2), tmp_path / "run", resume=True)
    monkeypatch.undo()
    after = load_checkpoint(tmp_path / "run" / "last.pt")
    assert after.train_state is not None and after.train_state["epoch"] == 1
    assert _max_diff(after.state_dict, before.state_dict) == 0.0
    assert not [p.name for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]  # no debris


# ---------------------------------------------------------------------------
# AMP, channels_last, prefetch workers
# ---------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_runs(tmp_path: Path) -> None:
    res = train(_cfg(epochs=1, amp="bf16", channels_last=True, workers=1), tmp_path / "bf16")
    assert math.isfinite(res.history[-1].train_loss)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        train(_cfg(epochs=1, amp="fp16"), tmp_path / "fp16")


def test_workers_prefetch_gives_identical_results(tmp_path: Path) -> None:
    a = train(_cfg_ln(epochs=1), tmp_path / "w0")
    b = train(_cfg_ln(epochs=1, workers=2), tmp_path / "w2")
    assert a.history[0].train_loss == b.history[0].train_loss
    err = _max_diff(
        load_checkpoint(tmp_path / "w0" / "last.pt").state_dict, load_checkpoint(tmp_path / "w2" / "last.pt").state_dict
    )
    assert err == 0.0, f"max abs error {err:.3g}"


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_channels_last(tmp_path: Path, amp: str) -> None:
    res = train(_cfg_ln(epochs=2, device="cuda", amp=amp, channels_last=True), tmp_path / amp)
    assert res.device.startswith("cuda") and math.isfinite(res.history[-1].train_loss)
    assert res.history[-1].train_loss < res.history[0].train_loss


# ---------------------------------------------------------------------------
# Fine-tune after convert
# ---------------------------------------------------------------------------


def _test_loss(ck: Checkpoint, batch: int = 32) -> float:
    test = load_dataset("synthetic", "test", limit=256)
    model = model_from_checkpoint(ck).eval()
    x = normalize(test.images, ck.data)
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
    return F.cross_entropy(logits, test.labels).item()


def test_finetune_after_convert_improves_over_convert_alone(tmp_path: Path) -> None:
    from lncli.jobs.convert import convert_checkpoint

    cfg = load_train_config(SMOKE, ["epochs=3", "data.train_limit=1024"])
    train(cfg, tmp_path / "bn")
    bn = load_checkpoint(tmp_path / "bn" / "last.pt")
    ln, _ = convert_checkpoint(bn, "localnorm", group_size=4, num_heads=8)
    base = _test_loss(ln)
    tuned = finetune(ln, "synthetic", 2, limit=512, batch_size=32)
    tuned_all = finetune(ln, "synthetic", 2, limit=512, batch_size=32, train_all=True)
    loss, loss_all = _test_loss(tuned), _test_loss(tuned_all)
    assert loss < base, f"norm-only fine-tune: test loss {loss:.4f} vs {base:.4f} after convert alone"
    assert loss_all < base, f"full fine-tune: test loss {loss_all:.4f} vs {base:.4f} after convert alone"
    # Norm-only leaves convs and the classifier untouched; heads move.
    for k, v in ln.state_dict.items():
        moved = not torch.equal(v, tuned.state_dict[k])
        is_norm = any(s in k for s in ("head_", "running_", "num_batches"))
        if not is_norm and k.endswith("weight") and v.dim() > 1:
            assert not moved, k
    assert any(not torch.equal(ln.state_dict[k], tuned.state_dict[k]) for k in ln.state_dict if "head_weight" in k)
    assert tuned.norm == ln.norm and tuned.provenance["finetune"]["train_all"] is False
    assert tuned_all.provenance["finetune"]["train_all"] is True
    with pytest.raises(LncliError, match="classes"):
        finetune(ln, "synthetic-gray", 1, limit=64, batch_size=32)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_cli_train_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    args = [
        "train",
        str(SMOKE),
        "--out",
        str(out),
        "--set",
        "epochs=1",
        "--set",
        "data.train_limit=64",
        "--set",
        "batch_size=16",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (out / "last.pt").is_file() and yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 1
    r = runner.invoke(app, ["train", str(SMOKE), "--out", str(tmp_path / "x"), "--set", "optim.lrr=1"])
    assert r.exit_code == 2 and "optim.lrr" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, args)  # out already holds a run
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(
        app, [*args[:-4], "--set", "epochs=2", "--set", "data.train_limit=64", "--set", "batch_size=16", "--resume"]
    )
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "last.pt").train_state["epoch"] == 2  # type: ignore[index]


# ---------------------------------------------------------------------------
# Distributed: 2 CPU processes under torchrun (gloo)
# ---------------------------------------------------------------------------

_DDP_WORKER = textwrap.dedent(
    """
    import os, sys, torch
    import lncli.jobs.train.run as T
    from lncli.config import train_config_from_dict
    out = sys.argv[1]
    calls = []
    real_save = T.save_checkpoint
    def counting_save(ckpt, path):
        calls.append(os.path.basename(str(path)))
        real_save(ckpt, path)
    T.save_checkpoint = counting_save
    cfg = train_config_from_dict({}, {
        "data.spec": "synthetic", "data.train_limit": 256, "data.test_limit": 64, "model.arch": "tiny",
        "norm.kind": "localnorm", "norm.group_size": 4, "data.augment": "crop_flip",
        "batch_size": 16, "epochs": 2, "device": "cpu", "optim.lr": 0.05})
    res = T.train(cfg, out)
    state = {k: v.detach().cpu() for k, v in res.model.state_dict().items()}
    torch.save({"calls": calls, "state": state, "world": res.world_size,
                "history": [r.to_dict() for r in res.history]},
               os.path.join(out, "rank%s.info" % os.environ["RANK"]))
    """
)


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(_DDP_WORKER)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker), str(out)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = [torch.load(out / f"rank{r}.info", weights_only=True) for r in (0, 1)]
    assert info[0]["world"] == info[1]["world"] == 2
    assert "last.pt" in info[0]["calls"] and info[1]["calls"] == []  # rank 0 alone writes
    err = _max_diff(info[0]["state"], info[1]["state"])
    assert err == 0.0, f"ranks' weights differ: max abs error {err:.3g}"
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in i["history"]] for i in info]
    assert strip[0] == strip[1]  # metrics are reduced over ranks
    ck = load_checkpoint(out / "last.pt")
    assert ck.provenance["world_size"] == 2 and ck.train_state is not None and ck.train_state["epoch"] == 2
    # Each rank took 256 / 2 = 128 images = 8 steps of 16 per epoch.
    assert ck.train_state["global_step"] == 2 * 8
    assert _max_diff(ck.state_dict, info[0]["state"]) == 0.0


def test_cli_convert_finetune(tmp_path: Path) -> None:
    runner = CliRunner()
    train(_cfg(epochs=1), tmp_path / "bn")
    src, dst = tmp_path / "bn" / "last.pt", tmp_path / "ln.pt"
    r = runner.invoke(app, ["convert", str(src), str(dst), "--to", "localnorm", "--group-size", "4", "--finetune", "1"])
    assert r.exit_code == 2 and "--data" in r.output and not dst.exists()
    base = ["convert", str(src), str(dst), "--to", "localnorm", "--group-size", "4", "--heads", "4"]
    r = runner.invoke(app, [*base, "--finetune", "1", "--data", "synthetic"])
    assert r.exit_code == 0, r.output
    tuned = load_checkpoint(dst)
    assert tuned.norm.kind == "localnorm" and tuned.provenance["finetune"]["epochs"] == 1
    assert tuned.provenance["finetune"]["train_all"] is False


def test_groupnorm_trains_and_its_checkpoint_loads_back(tmp_path: Path) -> None:
    """norm.kind gn: a few steps on synthetic data; the checkpoint records GroupNorm and rebuilds it (issue 14)."""
    from torch import nn

    cfg = _cfg(**{"norm.kind": "gn", "norm.groups": 4, "epochs": 2})
    res = train(cfg, tmp_path / "run")
    assert res.history[-1].train_loss < res.history[0].train_loss, [r.train_loss for r in res.history]
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (ckpt.norm.kind, ckpt.norm.groups) == ("groupnorm", 4)
    assert ckpt.config["norm"]["kind"] == "groupnorm" and ckpt.config["norm"]["groups"] == 4
    model = model_from_checkpoint(ckpt)
    assert {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)} == {4}
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert load_train_config(tmp_path / "run" / "config.yaml") == cfg


def test_groupnorm_sample_config_is_the_bn_recipe_but_for_the_norm() -> None:
    import dataclasses

    bn = load_train_config(ROOT / "sample_configs" / "fashion_mnist_bn.yaml")
    gn = load_train_config(ROOT / "sample_configs" / "fashion_mnist_groupnorm.yaml")
    assert (gn.norm.kind, gn.norm.groups) == ("groupnorm", None)
    assert dataclasses.replace(gn, norm=bn.norm) == bn
