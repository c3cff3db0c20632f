"""A short fine-tune of a checkpoint, by default of its norm layers only (``lncli convert --finetune``).

After ``convert --to localnorm`` the heads start as copies of the BN affine and
the network has never seen group statistics; a few epochs on the norm
parameters (gamma, beta, LocalNorm heads) adapt it at negligible cost, which
makes the paper's "applicable to already-trained networks" concrete. The epochs
run through the same :class:`~lncli.jobs.train.loop.Loop` as ``lncli train``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lncli import __version__
from lncli import distributed as D
from lncli.checkpoint import Checkpoint, model_from_checkpoint
from lncli.config import config_to_dict
from lncli.config.train import TrainConfig, train_config_from_dict
from lncli.data import load_dataset
from lncli.errors import ConfigError, DataError
from lncli.jobs.train.events import ProgressFn, emit, epoch_event
from lncli.jobs.train.loop import Interrupted, Loop, StopFlag
from lncli.jobs.train.recipe import norm_parameters

__all__ = ["finetune"]

# Without a recorded batch size: the paper's 8 heads of G for LocalNorm, the usual CIFAR batch otherwise.
_DEFAULT_HEADS = 8
_DEFAULT_BATCH = 128


def finetune(
    ckpt: Checkpoint,
    data_spec: str,
    epochs: int,
    *,
    train_all: bool = False,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: Path | None = None,
    limit: int | None = None,
    augment: str = "auto",
    progress: ProgressFn | None = None,
) -> Checkpoint:
    """Fine-tune a (converted) checkpoint briefly: by default only its norm layers.

    Args:
        ckpt: the checkpoint to adapt (its ``data`` meta sets the normalisation).
        data_spec: training data (``lncli.data.load_dataset`` spec, train split).
        epochs: number of epochs (>= 1).
        train_all: train every parameter instead of the norm layers only.
        lr: SGD rate; default 0.05 (norm-only: few, well-conditioned parameters) or 0.01 (all), with cosine decay.
        batch_size: default the checkpoint's training batch size if recorded,
            else group_size x num_heads for LocalNorm (the paper's batch), else 128.
        seed: shuffling / augmentation seed.
        device: ``auto``, ``cpu`` or ``cuda``.
        data_dir: where to look for the data first.
        limit: use only the first ``limit`` training images.
        augment: ``auto``, ``none``, ``flip`` or ``crop_flip``.
        progress: optional :class:`~lncli.jobs.train.events.TrainEvent` callback.

    Returns:
        A new :class:`Checkpoint` with the tuned weights; ``provenance["finetune"]``
        records how, ``metrics`` the final training loss and accuracy.

    Raises:
        ConfigError: bad settings, or nothing to tune.
        DataError: the data do not match the checkpoint's classes / channels.
    """
    if epochs < 1:
        raise ConfigError(f"--finetune: epochs must be >= 1, got {epochs}")
    batch_size = batch_size if batch_size is not None else _default_batch_size(ckpt)
    lr = lr if lr is not None else (0.01 if train_all else 0.05)
    how: dict[str, Any] = {"data": data_spec, "epochs": epochs, "train_all": train_all, "lr": lr,
                           "batch_size": batch_size, "seed": seed, "limit": limit}  # fmt: skip
    cfg = _config(ckpt, how, device=device, data_dir=data_dir, augment=augment)
    train_set = load_dataset(data_spec, "train", data_dir=data_dir, limit=limit)
    if (train_set.meta.num_classes, train_set.meta.in_channels) != (ckpt.data.num_classes, ckpt.data.in_channels):
        raise DataError(
            f"--data {data_spec}: {train_set.meta.num_classes} classes / {train_set.meta.in_channels} channels, "
            f"but the checkpoint expects {ckpt.data.num_classes} / {ckpt.data.in_channels}"
        )
    dev = D.local_device(device)
    torch.manual_seed(seed)
    model = model_from_checkpoint(ckpt)
    trainable, params = _select(model, train_all)
    loop = Loop(
        cfg, model=model, params=params, train_set=train_set, test_set=None, norm_meta=ckpt.data,
        device=dev, dist_info=D.DistInfo(), progress=progress,
    )  # fmt: skip
    _run_epochs(loop, progress)
    for p in trainable:
        p.requires_grad_(True)
    model.eval()
    how["trained_parameters"] = sum(p.numel() for p in params)
    return _tuned(ckpt, model, loop, how)


def _config(ckpt: Checkpoint, how: dict[str, Any], *, device: str, data_dir: Path | None, augment: str) -> TrainConfig:
    """The validated train config of the fine-tune: SGD + Nesterov, cosine decay, no weight decay, no evaluation."""
    data = {
        "spec": how["data"],
        "data_dir": str(data_dir) if data_dir else None,
        "train_limit": how["limit"],
        "augment": augment,
    }
    return train_config_from_dict(
        {
            "data": data,
            "model": {"arch": ckpt.arch, "kwargs": dict(ckpt.arch_kwargs)},
            "norm": config_to_dict(ckpt.norm),
            "optim": {"name": "sgd", "lr": how["lr"], "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
            "schedule": {"name": "cosine"},
            "epochs": how["epochs"],
            "batch_size": how["batch_size"],
            "seed": how["seed"],
            "device": device,
            "eval_every": 0,
        }
    )


def _select(model: nn.Module, train_all: bool) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(the model's trainable parameters, those to tune); every other one is frozen until the caller thaws it.

    Raises:
        ConfigError: norm-only, and the model has no norm layers.
    """
    # Respect parameters the model itself freezes (LocalNorm's unused BN weight/bias).
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = trainable if train_all else [p for p in norm_parameters(model) if p.requires_grad]
    if not params:
        raise ConfigError("--finetune: the model has no norm layers to tune; pass --finetune-all")
    chosen = {id(p) for p in params}
    for p in trainable:
        p.requires_grad_(id(p) in chosen)  # frozen ones get no gradient work at all
    return trainable, params


def _default_batch_size(ckpt: Checkpoint) -> int:
    """The checkpoint's training batch if recorded (and whole groups), else G x heads for LocalNorm, else 128."""
    norm = ckpt.norm
    recorded = ckpt.config.get("batch_size") if isinstance(ckpt.config, dict) else None
    if isinstance(recorded, int) and recorded > 0 and (norm.kind != "localnorm" or recorded % norm.group_size == 0):
        return recorded
    if norm.kind == "localnorm":
        return norm.group_size * (norm.num_heads or _DEFAULT_HEADS)
    return _DEFAULT_BATCH


def _run_epochs(loop: Loop, progress: ProgressFn | None) -> None:
    """Train every epoch of ``loop.cfg``; Ctrl-C stops at a step boundary and re-raises (nothing is saved)."""
    epochs = loop.cfg.epochs
    with StopFlag() as stop:
        while loop.state.epoch < epochs:
            try:
                loop.run_epoch(stop)
            except Interrupted:
                raise KeyboardInterrupt from None
            rec = loop.end_epoch(False)
            emit(progress, epoch_event(rec, epochs, loop.steps_per_epoch))


def _tuned(ckpt: Checkpoint, model: nn.Module, loop: Loop, how: dict[str, Any]) -> Checkpoint:
    """``ckpt`` with the tuned weights, the final training metrics and ``provenance["finetune"] = how``."""
    final = loop.state.history[-1]
    provenance = dict(ckpt.provenance)
    provenance["finetune"] = {**how, "lncli_version": __version__}
    metrics = dict(ckpt.metrics)
    metrics.update({"finetune_train_loss": final.train_loss, "finetune_train_accuracy": final.train_accuracy})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics, provenance=provenance, train_state=None)
