"""``lncli train``: one :class:`~lncli.config.train.TrainConfig` run, resumable, alone or under ``torchrun``.

:func:`train` writes, atomically (via :mod:`lncli.io` and
:func:`lncli.checkpoint.save_checkpoint`), rank 0 only:

- ``OUT/config.yaml``  the resolved config;
- ``OUT/last.pt``      the latest weights plus ``train_state`` (optimizer, LR
  step, epoch, position in the epoch, RNG state, epoch sums, history) for
  ``--resume``;
- ``OUT/best.pt``      the weights with the best test accuracy so far;
- ``OUT/history.csv``  one row per epoch: loss, accuracy, test loss/accuracy, lr, seconds.

``--resume`` -- from an epoch boundary or from the middle of an epoch after
Ctrl-C -- reaches the same final weights as an uninterrupted run (bit-identical
on CPU; see :mod:`lncli.jobs.train.loop` for why).

The number of LocalNorm heads comes from ``norm.num_heads`` (default batch/G, as
in the paper). The per-epoch test accuracy uses the layers' default test mode
(LocalNorm: local statistics of groups of G test images, heads by position) on
test batches of ``eval_batch_size`` (default ``batch_size``) in dataset order;
``best.pt`` is chosen on it (there is no separate validation split).

Under ``torchrun`` each rank trains on its shard with DDP (gloo on CPU, nccl on
GPU); ``batch_size`` is per rank.

Interruption. After the first Ctrl-C the step in progress finishes, ``last.pt``
is saved at that consistent point and :class:`KeyboardInterrupt` is re-raised
for the caller. A non-finite loss raises :class:`~lncli.errors.LncliError`
before the bad step is applied; the last good ``last.pt`` stays on disk.
"""

from __future__ import annotations

import csv
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lncli import __version__
from lncli import distributed as D
from lncli.checkpoint import checkpoint_from_model, load_checkpoint, save_checkpoint
from lncli.config import config_to_dict
from lncli.config.train import TrainConfig, dump_yaml, validate
from lncli.data import DataMeta, ImageSet, load_dataset
from lncli.errors import CheckpointError, ConfigError, LncliError
from lncli.io import atomic_write, check_output_dir
from lncli.jobs.train.events import ProgressFn, TrainEvent, TrainResult, emit, epoch_event
from lncli.jobs.train.loop import Interrupted, Loop, StopFlag
from lncli.models import build_model
from lncli.records import HISTORY_FIELDS, EpochRecord

__all__ = ["train"]

# Config keys that must not change across --resume: they decide the data, the model and the batches.
_IDENTITY_KEYS = ("data.spec", "data.train_limit", "model", "norm", "batch_size", "optim.name", "seed")


def train(
    config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: ProgressFn | None = None
) -> TrainResult:
    """Train one model as described by ``config``; write checkpoints and history into ``out_dir``.

    Works alone and under ``torchrun`` (DDP; rank 0 writes, every rank returns).

    Args:
        config: the run (see :mod:`lncli.config`).
        out_dir: folder for ``last.pt``, ``best.pt``, ``history.csv`` and ``config.yaml``.
        resume: continue from ``out_dir/last.pt`` (its epoch and step); without
            it, an ``out_dir`` that already holds ``last.pt`` is refused.
        progress: called with :class:`TrainEvent` s (rank 0 only under DDP).

    Returns:
        A :class:`TrainResult` with the per-epoch history and the paths written.

    Raises:
        ConfigError / DataError / CheckpointError: bad config, data or resume state.
        LncliError: the loss became non-finite (``last.pt`` keeps the last good state).
        KeyboardInterrupt: after Ctrl-C, once ``last.pt`` has been saved.
    """
    cfg = validate(config)
    out = Path(out_dir)
    last_path = out / "last.pt"
    check_output_dir(out, "--out")  # a file, or a folder we may not write into: refused before any data is loaded
    if resume and not last_path.is_file():
        raise CheckpointError(f"--resume: {last_path} does not exist; run without --resume to start fresh")
    if not resume and last_path.exists():
        raise ConfigError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")

    device = D.local_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl collectives (barrier) use the current device
    joined = D.launched_by_torchrun() and not D.in_process_group()
    dist_info = D.init_distributed(device)
    try:
        return _train(cfg, out, device, dist_info, resume, progress if dist_info.is_main else None)
    finally:
        if joined:
            D.cleanup()


def _train(
    cfg: TrainConfig, out: Path, device: torch.device, dist_info: D.DistInfo, resume: bool, progress: ProgressFn | None
) -> TrainResult:
    """The run once the output folder, device and process group are settled."""
    _configure_backends(cfg, device)
    train_set, test_set = _load_data(cfg)
    cfg_dict = config_to_dict(cfg)
    # Model init is the only use of the plain global seed.
    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, train_set.meta)
    loop = Loop(
        cfg,
        model=model,
        params=[p for p in model.parameters() if p.requires_grad],
        train_set=train_set,
        test_set=test_set,
        norm_meta=train_set.meta,
        device=device,
        dist_info=dist_info,
        progress=progress,
    )
    resumed_from = _resume(loop, cfg_dict, out / "last.pt") if resume else None
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "config.yaml") as fh:
            fh.write("# Resolved lncli train config (defaults < YAML < --set).\n")
            fh.write(dump_yaml(cfg))
    D.barrier()
    writer = _Writer(cfg, cfg_dict, train_set.meta, loop, out, device, dist_info, progress)
    emit(progress, TrainEvent("start", loop.state.epoch, cfg.epochs, loop.state.step, loop.steps_per_epoch))
    _run_epochs(loop, writer)
    s = loop.state
    return TrainResult(
        out_dir=out,
        history=tuple(s.history),
        best_test_accuracy=s.best_test_accuracy,
        last_checkpoint=writer.last,
        best_checkpoint=writer.best if s.best_test_accuracy is not None else None,
        resumed_from=resumed_from,
        world_size=dist_info.world_size,
        device=str(device),
        samples_per_second=loop.train_samples / loop.train_seconds if loop.train_seconds > 0 else 0.0,
        config=cfg,
        model=loop.model,
    )


def _configure_backends(cfg: TrainConfig, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _load_data(cfg: TrainConfig) -> tuple[ImageSet, ImageSet]:
    """The training and test splits of ``cfg.data``."""
    d = cfg.data
    data_dir = Path(d.data_dir) if d.data_dir else None
    train_set = load_dataset(d.spec, "train", data_dir=data_dir, download=d.download, limit=d.train_limit)
    test_set = load_dataset(d.spec, "test", data_dir=data_dir, download=d.download, limit=d.test_limit)
    return train_set, test_set


def _build_model(cfg: TrainConfig, meta: DataMeta) -> torch.nn.Module:
    try:
        return build_model(
            cfg.model.arch,
            norm=cfg.norm,
            num_classes=meta.num_classes,
            in_channels=meta.in_channels,
            arch_kwargs=cfg.model.kwargs,
            allow_code=True,  # the config is the user's own instruction, like the command line
        )
    except LncliError as exc:
        raise ConfigError(f"model.arch / model.kwargs: {exc}") from None


def _get_dotted(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d


def _resume(loop: Loop, cfg_dict: dict[str, Any], last_path: Path) -> tuple[int, int]:
    """Load ``last.pt`` into ``loop`` after checking it belongs to this config; return its (epoch, step)."""
    # The run's own arch (from the user's config) may be a package.module:function builder.
    ckpt = load_checkpoint(last_path, arch=cfg_dict["model"]["arch"], allow_code=True)
    for key in _IDENTITY_KEYS:
        old, new = _get_dotted(ckpt.config, key), _get_dotted(cfg_dict, key)
        if old != new:
            raise ConfigError(f"--resume: config key '{key}' is {new!r} but {last_path} was trained with {old!r}")
    if ckpt.train_state is None:
        raise CheckpointError(f"--resume: {last_path} has no train_state (was it written by lncli train?)")
    loop.model.load_state_dict(ckpt.state_dict)
    loop.load_train_state(ckpt.train_state)
    return loop.state.epoch, loop.state.step


@dataclass
class _Writer:
    """Writes the run's files (rank 0 only) and reports each checkpoint written."""

    cfg: TrainConfig
    cfg_dict: dict[str, Any]
    meta: DataMeta
    loop: Loop
    out: Path
    device: torch.device
    dist_info: D.DistInfo
    progress: ProgressFn | None

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    def save(self, path: Path, *, with_state: bool, record: EpochRecord | None) -> None:
        """Write a checkpoint of the model (with the resume state for ``last.pt``)."""
        s = self.loop.state
        ts = self.loop.train_state() if with_state else None  # collective-free, safe on rank 0 only
        if not self.dist_info.is_main:
            return
        metrics: dict[str, Any] = {"epochs_completed": s.epoch, "best_test_accuracy": s.best_test_accuracy}
        if record is not None:
            metrics.update({k: v for k, v in record.to_dict().items() if k != "epoch"})
        ckpt = checkpoint_from_model(
            self.loop.model,
            arch=self.cfg.model.arch,
            arch_kwargs=dict(self.cfg.model.kwargs),
            norm=self.cfg.norm,
            data=self.meta,
            config=self.cfg_dict,
            metrics=metrics,
            provenance=self._provenance(),
            train_state=ts,
        )
        save_checkpoint(ckpt, path)
        emit(self.progress, TrainEvent("saved", s.epoch, self.cfg.epochs, s.step, self.loop.steps_per_epoch, path=path))

    def write_history(self) -> None:
        """Rewrite ``history.csv`` with every epoch so far."""
        if not self.dist_info.is_main:
            return
        with atomic_write(self.out / "history.csv", "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(HISTORY_FIELDS))
            wr.writeheader()
            for r in self.loop.state.history:
                wr.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})

    def _provenance(self) -> dict[str, Any]:
        device = self.device
        return {
            "tool": "lncli train",
            "lncli_version": __version__,
            "torch_version": str(torch.__version__),
            "host": socket.gethostname(),
            "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
            "world_size": self.dist_info.world_size,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seed": self.cfg_dict.get("seed"),
        }


def _run_epochs(loop: Loop, writer: _Writer) -> None:
    """Train the remaining epochs: evaluate, keep the best, save and report after each.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once ``last.pt`` holds the step reached.
    """
    cfg, s = loop.cfg, loop.state
    with StopFlag() as stop:
        while s.epoch < cfg.epochs:
            try:
                loop.run_epoch(stop)
            except Interrupted:
                writer.save(writer.last, with_state=True, record=s.history[-1] if s.history else None)
                D.barrier()
                raise KeyboardInterrupt from None
            epoch_no = s.epoch + 1
            is_last = epoch_no == cfg.epochs
            rec = loop.end_epoch(is_last or (cfg.eval_every > 0 and epoch_no % cfg.eval_every == 0))
            improved = rec.test_accuracy is not None and (
                s.best_test_accuracy is None or rec.test_accuracy > s.best_test_accuracy
            )
            if improved:
                s.best_test_accuracy = rec.test_accuracy
            writer.write_history()
            if improved:
                writer.save(writer.best, with_state=False, record=rec)
            if is_last or epoch_no % cfg.save_every == 0:
                writer.save(writer.last, with_state=True, record=rec)
            D.barrier()
            emit(writer.progress, epoch_event(rec, cfg.epochs, loop.steps_per_epoch))
