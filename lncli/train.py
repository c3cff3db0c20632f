"""Resumable training of BatchNorm and LocalNorm classifiers (``lncli train``), and fine-tuning after ``convert``.

:func:`train` runs one :class:`~lncli.config.TrainConfig` and writes, atomically
(via :mod:`lncli.io` and :func:`lncli.checkpoint.save_checkpoint`), rank 0 only:

- ``OUT/config.yaml``  the resolved config;
- ``OUT/last.pt``      the latest weights plus ``train_state`` (optimizer, LR
  step, epoch, position in the epoch, RNG state, epoch sums, history) for
  ``--resume``;
- ``OUT/best.pt``      the weights with the best test accuracy so far;
- ``OUT/history.csv``  one row per epoch: loss, accuracy, test loss/accuracy, lr, seconds.

Determinism and resume. All data randomness is a pure function of
``(seed, epoch, step)``: the epoch's permutation comes from a generator seeded
with ``(seed, epoch)`` and each batch's augmentation from ``(seed, epoch, step,
rank)``; the global torch RNG (dropout) is re-seeded from ``(seed, rank,
global step)`` before every step. Nothing but the weights, optimizer state and
the position ``(epoch, step)`` therefore has to be saved, and ``--resume`` --
from an epoch boundary or from the middle of an epoch after Ctrl-C -- reaches
the same final weights as an uninterrupted run (bit-identical on CPU).

LocalNorm (arXiv 1902.06550). Every training batch holds whole groups: training
uses ``drop_last`` (the shuffled tail that does not fill a batch is skipped,
a different one each epoch), and the config requires ``batch_size % G == 0``.
Groups are re-drawn every epoch because the permutation changes. The number of
heads comes from ``norm.num_heads`` (default batch/G, as in the paper). The
per-epoch test accuracy uses the layers' default test mode (LocalNorm: local
statistics of groups of G test images, heads by position) on test batches of
``eval_batch_size`` (default ``batch_size``) in dataset order; ``best.pt`` is
chosen on it (there is no separate validation split).

Distributed. Under ``torchrun`` each rank trains on its shard of the same
seeded permutation (``perm[rank::world]``, equal length on every rank -- the
sharding of ``DistributedSampler`` without its padding) with DDP: gloo on CPU,
nccl on GPU. ``batch_size`` is per rank. LocalNorm groups live inside one
rank's batch, so, unlike SyncBatchNorm, no statistics cross ranks.

Interruption. The first Ctrl-C (SIGINT) is turned into a flag that is checked
after each optimiser step: the step finishes, ``last.pt`` is saved at that
consistent point and :class:`KeyboardInterrupt` is re-raised for the caller. A
non-finite loss raises :class:`~lncli.errors.LncliError` before the bad step is
applied; the last good ``last.pt`` stays on disk.

Compute never prints: progress goes to the optional ``progress`` callback.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli import __version__
from lncli import distributed as D
from lncli.checkpoint import (
    Checkpoint,
    NormSpec,
    build_model,
    checkpoint_from_model,
    load_checkpoint,
    save_checkpoint,
)
from lncli.config import (
    ScheduleConfig,
    TrainConfig,
    config_to_dict,
    dump_yaml,
    train_config_from_dict,
    validate,
)
from lncli.data import DataMeta, ImageSet, load_dataset, normalize
from lncli.errors import CheckpointError, ConfigError, DataError, LncliError
from lncli.io import atomic_write, check_output_dir
from lncli.models import create_model
from lncli.norm import get_norm_layer
from lncli.records import HISTORY_FIELDS, EpochRecord

__all__ = [
    "EpochRecord",
    "TrainEvent",
    "TrainResult",
    "ProgressFn",
    "train",
    "finetune",
    "lr_factor",
    "augment_batch",
    "HISTORY_FIELDS",
]

@dataclass(frozen=True)
class TrainEvent:
    """What the ``progress`` callback receives.

    ``kind`` is ``"start"`` (once; ``step`` = the step resumed from), ``"batch"``
    (after every optimiser step; ``loss``/``accuracy`` are the epoch's running
    means on this rank), ``"epoch"`` (after each epoch, with ``record``) or
    ``"saved"`` (``path`` written).
    """

    kind: Literal["start", "batch", "epoch", "saved"]
    epoch: int  # 0-based epoch index
    epochs: int
    step: int  # steps done in this epoch
    steps: int  # steps per epoch
    loss: float = math.nan
    accuracy: float = math.nan
    lr: float = math.nan
    record: EpochRecord | None = None
    path: Path | None = None


ProgressFn = Callable[[TrainEvent], None]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns (on every rank; paths are where rank 0 wrote)."""

    out_dir: Path
    history: tuple[EpochRecord, ...]
    best_test_accuracy: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    resumed_from: tuple[int, int] | None  # (epoch, step) of last.pt, or None
    world_size: int
    device: str
    samples_per_second: float  # training throughput of this run (all ranks), excluding evaluation
    config: TrainConfig
    # The trained model (unwrapped from DDP, on the training device, train mode).
    model: nn.Module = dataclasses.field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def final(self) -> EpochRecord | None:
        return self.history[-1] if self.history else None


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------


def _mix(*parts: int | str) -> int:
    """A stable 63-bit seed from ints/strings (independent of Python's hash salt)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _gen(*parts: int | str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(_mix(*parts))
    return g


def lr_factor(sched: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int, base_lr: float = 1.0) -> float:
    """Multiplier on ``optim.lr`` for optimiser step ``step`` (0-based, global).

    Args:
        sched: the schedule section.
        step: global step index (0 = first step of training).
        steps_per_epoch: optimiser steps in one epoch.
        epochs: total epochs.
        base_lr: ``optim.lr`` (only turns the absolute ``min_lr`` into a factor).

    Returns:
        The factor; linear warm-up over ``warmup_epochs`` multiplies the main schedule.
    """
    total = max(1, steps_per_epoch * epochs)
    warm = int(round(sched.warmup_epochs * steps_per_epoch))
    warm_f = (step + 1) / warm if step < warm else 1.0
    if sched.name == "constant":
        main = 1.0
    elif sched.name == "step":
        epoch = step // steps_per_epoch
        if sched.milestones:
            n = sum(1 for m in sched.milestones if epoch >= m)
        else:
            n = epoch // sched.step_every if sched.step_every > 0 else 0
        main = sched.gamma**n
    elif sched.name == "cosine":
        # Cosine over the steps after warm-up, from 1 down to min_lr / base_lr.
        t = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
        floor = sched.min_lr / base_lr
        main = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    elif sched.name == "onecycle":
        # torch's OneCycleLR (cosine annealing): lr/25 -> lr at pct_start -> lr/25/1e4.
        t = min(1.0, step / max(1, total - 1))
        start, peak, end = 1 / 25, 1.0, 1 / 25 / 1e4
        if t < sched.pct_start:
            u = t / sched.pct_start
            main = peak + (start - peak) * 0.5 * (1 + math.cos(math.pi * u))
        else:
            u = (t - sched.pct_start) / (1 - sched.pct_start)
            main = end + (peak - end) * 0.5 * (1 + math.cos(math.pi * u))
    else:  # pragma: no cover - the config validates the name
        raise ConfigError(f"unknown schedule {sched.name!r}")
    return warm_f * main


def augment_batch(images: Tensor, *, crop_padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop (after zero padding) and horizontal flip, batched, on uint8 images.

    All random numbers come from ``generator`` (CPU) so that the result is
    reproducible on any device; the work itself runs where ``images`` live.

    Args:
        images: uint8 (N, C, H, W) on any device.
        crop_padding: pad each side by this many pixels, then crop back to H x W at a random offset; 0 = no crop.
        flip: flip each image left-right with probability 1/2.
        generator: CPU generator for the offsets and flips.

    Returns:
        uint8 (N, C, H, W), a new tensor.
    """
    n, c, h, w = images.shape
    dev = images.device
    out = images
    if crop_padding > 0:
        p = crop_padding
        padded = F.pad(out, (p, p, p, p))  # (N, C, H+2p, W+2p), zeros
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (N, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (N, 1, 1, W)
        nn_ = torch.arange(n, device=dev)[:, None, None, None]  # (N, 1, 1, 1)
        cc = torch.arange(c, device=dev)[None, :, None, None]  # (1, C, 1, 1)
        out = padded[nn_, cc, rows, cols]  # (N, C, H, W)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(dev)[:, None, None, None]
        out = torch.where(mask, out.flip(3), out)
    return out if out is not images else images.clone()


def _augment_plan(cfg: TrainConfig, meta: DataMeta) -> tuple[int, bool]:
    """(crop_padding, flip) for ``data.augment``.

    ``auto`` = crop+flip for natural RGB images (CIFAR-10, ImageFolder), none
    otherwise: Fashion-MNIST (flips change some classes, crops barely help at
    28x28) and the synthetic sets, whose classes include stripe orientations
    that a flip would swap.
    """
    mode = cfg.data.augment
    if mode == "auto":
        mode = "crop_flip" if (meta.in_channels == 3 and not meta.synthetic) else "none"
    if mode == "none":
        return 0, False
    if mode == "flip":
        return 0, True
    return cfg.data.crop_padding, True


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def _param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, params: list[nn.Parameter]) -> list[dict[str, Any]]:
    """Split trainable ``params`` into decayed and non-decayed groups (norm affine/heads and biases)."""
    wanted = {id(p) for p in params}
    no_decay: set[int] = set()
    if not decay_norm_and_bias:
        for m in model.modules():
            if _is_norm(m):
                no_decay.update(id(p) for p in m.parameters(recurse=False))
        no_decay.update(id(p) for p in model.parameters() if p.ndim <= 1)
    seen: set[int] = set()
    decay, plain = [], []
    for p in model.parameters():
        if id(p) not in wanted or id(p) in seen:
            continue
        seen.add(id(p))
        (plain if id(p) in no_decay else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def _make_optimizer(cfg: TrainConfig, model: nn.Module, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = _param_groups(model, o.weight_decay, o.decay_norm_and_bias, params)
    if not groups:
        raise ConfigError("nothing to train: the model has no trainable parameters")
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)


def _norm_spec(cfg: TrainConfig) -> NormSpec:
    n = cfg.norm
    if n.kind == "localnorm":
        return NormSpec(kind="localnorm", group_size=n.group_size, num_heads=n.num_heads, grouping=n.grouping)
    return NormSpec(kind="batchnorm")


def _build_model(cfg: TrainConfig, meta: DataMeta) -> nn.Module:
    n = cfg.norm
    if n.kind == "localnorm":
        norm_layer = get_norm_layer("localnorm", group_size=n.group_size, num_heads=n.num_heads or 1, grouping=n.grouping)
    else:
        norm_layer = get_norm_layer("batchnorm")
    try:
        return create_model(
            cfg.model.arch, num_classes=meta.num_classes, in_channels=meta.in_channels, norm_layer=norm_layer, **cfg.model.kwargs
        )
    except LncliError as exc:
        raise ConfigError(f"model.arch / model.kwargs: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.arch / model.kwargs: {str(exc).splitlines()[0]}") from None


def _provenance(cfg_dict: dict[str, Any], dist_info: D.DistInfo, device: torch.device, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "tool": "lncli train",
        "lncli_version": __version__,
        "torch_version": str(torch.__version__),
        "host": socket.gethostname(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "world_size": dist_info.world_size,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": cfg_dict.get("seed"),
    }
    prov.update(extra or {})
    return prov


# ---------------------------------------------------------------------------
# The loop shared by train() and finetune()
# ---------------------------------------------------------------------------


class _StopFlag:
    """Turns the first SIGINT into a flag checked at step boundaries (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum: int, frame: Any) -> None:
                if self.requested:  # second Ctrl-C: stop now, no save
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class _Interrupted(Exception):
    """Internal: stop requested at a consistent step boundary."""


@dataclass
class _LoopState:
    """Everything that changes during training and is saved in ``train_state``."""

    epoch: int = 0  # 0-based epoch in progress
    step: int = 0  # optimiser steps done in this epoch
    global_step: int = 0
    loss_sum: float = 0.0  # this epoch, over all ranks' samples seen so far
    correct: float = 0.0
    seen: float = 0.0
    epoch_seconds: float = 0.0  # time spent in this epoch before an interruption
    best_test_accuracy: float | None = None
    history: list[EpochRecord] = dataclasses.field(default_factory=list)


class _Loop:
    """Training loop over in-memory uint8 data; used by train() and finetune()."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        model: nn.Module,
        params: list[nn.Parameter],
        train_set: ImageSet,
        test_set: ImageSet | None,
        norm_meta: DataMeta,
        device: torch.device,
        dist_info: D.DistInfo,
        progress: ProgressFn | None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.dist = dist_info
        self.progress = progress
        self.meta = norm_meta
        if cfg.amp == "fp16" and device.type != "cuda":
            raise ConfigError("config key 'amp': fp16 needs a CUDA device; use amp: bf16 or none on CPU")
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.memory_format)
        self.optimizer = _make_optimizer(cfg, self.model, params)
        for g in self.optimizer.param_groups:
            g["base_lr"] = cfg.optim.lr
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.ddp: nn.Module = self.model
        if dist_info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            # More LocalNorm heads than groups per batch leaves some heads without
            # a gradient in a step, which DDP must be told about.
            n = cfg.norm
            unused = n.kind == "localnorm" and (n.num_heads or 1) > cfg.batch_size // n.group_size
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        # Whole data set on the training device as uint8: 150 MB for CIFAR-10,
        # and slicing + augmenting there is far faster than a DataLoader.
        self.train_x = train_set.images.to(device)
        self.train_y = train_set.labels.to(device)
        self.test_x = test_set.images.to(device) if test_set is not None else None
        self.test_y = test_set.labels.to(device) if test_set is not None else None
        self.crop, self.flip = _augment_plan(cfg, train_set.meta)
        n = len(train_set)
        self.per_rank = n // dist_info.world_size
        self.steps_per_epoch = self.per_rank // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                f"the training split has {n} images, fewer than batch_size={cfg.batch_size} x {dist_info.world_size} rank(s); "
                "lower batch_size or raise data.train_limit"
            )
        self.state = _LoopState()
        self.train_seconds = 0.0
        self.train_samples = 0

    # -- state ----------------------------------------------------------------

    def train_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "epoch": s.epoch,
            "step": s.step,
            "global_step": s.global_step,
            "sampler_epoch": s.epoch,  # the permutation is a pure function of (seed, epoch)
            "loss_sum": s.loss_sum,
            "correct": s.correct,
            "seen": s.seen,
            "epoch_seconds": s.epoch_seconds,
            "best_test_accuracy": s.best_test_accuracy,
            "history": [r.to_dict() for r in s.history],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "lr_factor", "global_step": s.global_step, "steps_per_epoch": self.steps_per_epoch},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "scheme": "per-step: torch seed = mix(seed, rank, global_step); batch order = mix(seed, epoch)",
                "torch_cpu": torch.get_rng_state(),
            },
            "world_size": self.dist.world_size,
        }

    def load_train_state(self, ts: dict[str, Any]) -> None:
        if int(ts.get("world_size", 1)) != self.dist.world_size and int(ts.get("step", 0)) != 0:
            raise CheckpointError(
                f"last.pt was interrupted mid-epoch with {ts.get('world_size')} rank(s); resume it with the same number of ranks"
            )
        self.optimizer.load_state_dict(ts["optimizer"])
        for g in self.optimizer.param_groups:
            g["base_lr"] = self.cfg.optim.lr
        global_step = int(ts["global_step"])
        saved_spe = (ts.get("scheduler") or {}).get("steps_per_epoch")
        if saved_spe is not None and int(saved_spe) != self.steps_per_epoch:
            # Resumed at an epoch boundary with another number of ranks: the steps per epoch
            # changed, and the LR schedule is a function of global_step / steps_per_epoch, so
            # re-express the position in the new steps (else the schedule jumps ahead or back).
            global_step = int(ts["epoch"]) * self.steps_per_epoch + int(ts["step"])
        if self.scaler is not None and ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        if "rng" in ts and isinstance(ts["rng"].get("torch_cpu"), Tensor):
            torch.set_rng_state(ts["rng"]["torch_cpu"])
        main = self.dist.is_main
        self.state = _LoopState(
            epoch=int(ts["epoch"]),
            step=int(ts["step"]),
            global_step=global_step,
            # Saved sums are over all ranks; rank 0 carries them, the others restart at 0.
            loss_sum=float(ts["loss_sum"]) if main else 0.0,
            correct=float(ts["correct"]) if main else 0.0,
            seen=float(ts["seen"]) if main else 0.0,
            epoch_seconds=float(ts.get("epoch_seconds", 0.0)),
            best_test_accuracy=ts.get("best_test_accuracy"),
            history=[EpochRecord(**r) for r in ts.get("history", [])],
        )

    # -- data -----------------------------------------------------------------

    def _batches(self, epoch: int, start_step: int) -> Iterator[tuple[Tensor, Tensor]]:
        cfg, r, w = self.cfg, self.dist.rank, self.dist.world_size
        # Same permutation on every rank; rank r takes every w-th index.
        perm = torch.randperm(len(self.train_y), generator=_gen(cfg.seed, "perm", epoch))
        mine = perm[r::w][: self.per_rank].to(self.device)
        b = cfg.batch_size

        def make(step: int) -> tuple[Tensor, Tensor]:
            idx = mine[step * b : (step + 1) * b]  # drop_last: every batch is full
            x = self.train_x[idx]  # uint8 (B, C, H, W)
            if self.crop or self.flip:
                x = augment_batch(x, crop_padding=self.crop, flip=self.flip, generator=_gen(cfg.seed, "aug", epoch, step, r))
            x = normalize(x, self.meta).contiguous(memory_format=self.memory_format)  # float32 (B, C, H, W)
            return x, self.train_y[idx]

        # Each batch is a pure function of (seed, epoch, step): made ahead in threads, same bits.
        return D.prefetch(make, range(start_step, self.steps_per_epoch), cfg.workers)

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # -- one epoch --------------------------------------------------------------

    def _flags(self, nonfinite: Tensor, stop: bool) -> tuple[bool, bool]:
        """Agree across ranks on (some loss was not finite, someone asked to stop)."""
        if not self.dist.enabled:
            return bool(nonfinite.item()), stop
        t = torch.stack([nonfinite.float(), torch.tensor(float(stop), device=nonfinite.device)])
        D.all_reduce_sum(t)
        return bool(t[0].item() > 0), bool(t[1].item() > 0)

    def run_epoch(self, stop: _StopFlag) -> None:
        """Train from ``state.step`` to the end of ``state.epoch``; raise _Interrupted on a stop request."""
        cfg, s = self.cfg, self.state
        epochs = cfg.epochs
        self.model.train()
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        corr_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        seen_acc = 0
        t0 = time.perf_counter()

        def flush() -> None:
            nonlocal seen_acc
            s.loss_sum += float(loss_acc.item())
            s.correct += float(corr_acc.item())
            s.seen += seen_acc
            loss_acc.zero_()
            corr_acc.zero_()
            seen_acc = 0

        batches = self._batches(s.epoch, s.step)
        try:
            for x, y in batches:
                factor = lr_factor(cfg.schedule, s.global_step, self.steps_per_epoch, epochs, cfg.optim.lr)
                lr = cfg.optim.lr * factor
                for g in self.optimizer.param_groups:
                    g["lr"] = g["base_lr"] * factor
                # Dropout etc. draw from the global RNG: make it a function of the step.
                torch.manual_seed(_mix(cfg.seed, "step", self.dist.rank, s.global_step))
                with self._autocast():
                    logits = self.ddp(x)
                    loss = self.criterion(logits.float(), y)
                nonfinite, stop_now = self._flags(~torch.isfinite(loss.detach()), stop.requested)
                if nonfinite:
                    raise LncliError(
                        f"training diverged: the loss is not finite at epoch {s.epoch + 1}, step {s.step + 1}; "
                        "the last good checkpoint is kept (try a lower optim.lr, warm-up, or amp: none)"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    self.optimizer.step()
                bsz = y.shape[0]
                loss_acc += loss.detach().double() * bsz
                corr_acc += (logits.detach().argmax(1) == y).sum()
                seen_acc += bsz
                s.step += 1
                s.global_step += 1
                self.train_samples += bsz * self.dist.world_size
                if self.progress is not None:
                    running_seen = s.seen + seen_acc
                    ev = TrainEvent(
                        "batch", s.epoch, epochs, s.step, self.steps_per_epoch,
                        loss=(s.loss_sum + float(loss_acc.item())) / running_seen,
                        accuracy=(s.correct + float(corr_acc.item())) / running_seen,
                        lr=lr,
                    )  # fmt: skip
                    try:
                        self.progress(ev)
                    except KeyboardInterrupt:
                        # Alone: stop right here. Under DDP the other ranks must
                        # agree first, so it goes through the flag (next step).
                        if self.dist.enabled:
                            stop.requested = True
                        else:
                            stop_now = True
                if stop_now or (stop.requested and not self.dist.enabled):
                    flush()
                    self._reduce_sums()
                    raise _Interrupted
        finally:
            dt = time.perf_counter() - t0
            s.epoch_seconds += dt
            self.train_seconds += dt
            batches.close()  # stop a prefetch thread early on errors / interruption
        flush()
        self._reduce_sums()

    def _reduce_sums(self) -> None:
        """Sum the epoch accumulators over ranks (rank 0 then holds the totals)."""
        s = self.state
        if not self.dist.enabled:
            return
        t = torch.tensor([s.loss_sum, s.correct, s.seen], dtype=torch.float64, device=self.device)
        D.all_reduce_sum(t)
        s.loss_sum, s.correct, s.seen = (float(v) for v in t.tolist())
        if not self.dist.is_main:
            s.loss_sum = s.correct = s.seen = 0.0

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean loss, accuracy) on the test split, sharded over ranks, in eval mode."""
        assert self.test_x is not None and self.test_y is not None
        self.model.eval()
        n = len(self.test_y)
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for i, j in D.whole_batches(n, bs, self.dist.rank, self.dist.world_size):
            x = normalize(self.test_x[i:j], self.meta).contiguous(memory_format=self.memory_format)
            y = self.test_y[i:j]
            with self._autocast():
                logits = self.model(x).float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += j - i
        D.all_reduce_sum(sums)
        self.model.train()
        total = max(1.0, float(sums[2]))
        return float(sums[0]) / total, float(sums[1]) / total

    def _sync_buffers(self) -> None:
        """Average float buffers (BN/LN running statistics) over ranks.

        DDP copies rank 0's buffers into every rank at the start of each forward,
        but the last forward of an epoch leaves each rank with its own update.
        Averaging (timm's ``distribute_bn(reduce=True)``) makes every rank
        evaluate and save the same model, and uses all ranks' data.
        """
        if not self.dist.enabled:
            return
        with torch.no_grad():
            for buf in self.model.buffers():
                if buf.is_floating_point():
                    D.all_reduce_sum(buf)
                    buf.div_(self.dist.world_size)

    def end_epoch(self, do_eval: bool) -> EpochRecord:
        """Close the epoch in ``state``: evaluate, append the record, move to the next epoch."""
        s, cfg = self.state, self.cfg
        self._sync_buffers()
        test_loss = test_acc = None
        t0 = time.perf_counter()
        if do_eval and self.test_x is not None:
            test_loss, test_acc = self.evaluate()
        s.epoch_seconds += time.perf_counter() - t0
        seen = max(1.0, s.seen)
        # All ranks need the same record: broadcast rank 0's sums.
        sums = torch.tensor([s.loss_sum, s.correct, s.seen], dtype=torch.float64, device=self.device)
        D.all_reduce_sum(sums)  # only rank 0 is non-zero after _reduce_sums
        loss_sum, correct, seen = (float(v) for v in sums.tolist())
        seen = max(1.0, seen)
        last_lr = cfg.optim.lr * lr_factor(cfg.schedule, max(0, s.global_step - 1), self.steps_per_epoch, cfg.epochs, cfg.optim.lr)
        rec = EpochRecord(
            epoch=s.epoch + 1,
            train_loss=loss_sum / seen,
            train_accuracy=correct / seen,
            test_loss=test_loss,
            test_accuracy=test_acc,
            lr=last_lr,
            seconds=s.epoch_seconds,
        )
        s.history.append(rec)
        s.epoch += 1
        s.step = 0
        s.loss_sum = s.correct = s.seen = 0.0
        s.epoch_seconds = 0.0
        return rec


def _emit(progress: ProgressFn | None, ev: TrainEvent) -> None:
    if progress is not None:
        progress(ev)


# ---------------------------------------------------------------------------
# train()
# ---------------------------------------------------------------------------

_IDENTITY_KEYS = ("data.spec", "data.train_limit", "model", "norm", "batch_size", "optim.name", "seed")


def _get_dotted(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d


def _write_history(path: Path, history: list[EpochRecord]) -> None:
    with atomic_write(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(HISTORY_FIELDS))
        wr.writeheader()
        for r in history:
            wr.writerow({k: ("" if v is None else v) for k, v in r.to_dict().items()})


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: ProgressFn | None = None) -> TrainResult:
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
    joined = D.launched_by_torchrun() and not (torch.distributed.is_available() and torch.distributed.is_initialized())
    dist_info = D.init_distributed(device)
    try:
        return _train(cfg, out, device, dist_info, resume, progress)
    finally:
        if joined:
            D.cleanup()


def _configure_backends(cfg: TrainConfig, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _train(cfg: TrainConfig, out: Path, device: torch.device, dist_info: D.DistInfo, resume: bool, progress: ProgressFn | None) -> TrainResult:
    last_path, best_path = out / "last.pt", out / "best.pt"
    main = dist_info.is_main
    if not main:
        progress = None
    _configure_backends(cfg, device)
    data_dir = Path(cfg.data.data_dir) if cfg.data.data_dir else None
    train_set = load_dataset(cfg.data.spec, "train", data_dir=data_dir, download=cfg.data.download, limit=cfg.data.train_limit)
    test_set = load_dataset(cfg.data.spec, "test", data_dir=data_dir, download=cfg.data.download, limit=cfg.data.test_limit)
    meta = train_set.meta
    cfg_dict = config_to_dict(cfg)

    # Model init is the only use of the plain global seed.
    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, meta)
    loop = _Loop(
        cfg,
        model=model,
        params=[p for p in model.parameters() if p.requires_grad],
        train_set=train_set,
        test_set=test_set,
        norm_meta=meta,
        device=device,
        dist_info=dist_info,
        progress=progress,
    )
    resumed_from: tuple[int, int] | None = None
    if resume:
        ckpt = load_checkpoint(last_path)
        for key in _IDENTITY_KEYS:
            old, new = _get_dotted(ckpt.config, key), _get_dotted(cfg_dict, key)
            if old != new:
                raise ConfigError(f"--resume: config key '{key}' is {new!r} but {last_path} was trained with {old!r}")
        if ckpt.train_state is None:
            raise CheckpointError(f"--resume: {last_path} has no train_state (was it written by lncli train?)")
        loop.model.load_state_dict(ckpt.state_dict)
        loop.load_train_state(ckpt.train_state)
        resumed_from = (loop.state.epoch, loop.state.step)
    elif main:
        out.mkdir(parents=True, exist_ok=True)
    if main:
        with atomic_write(out / "config.yaml") as fh:
            fh.write("# Resolved lncli train config (defaults < YAML < --set).\n")
            fh.write(dump_yaml(cfg))
    D.barrier()

    norm = _norm_spec(cfg)

    def save(path: Path, *, with_state: bool, metrics: dict[str, Any]) -> None:
        ts = loop.train_state() if with_state else None  # collective-free, safe on rank 0 only
        if not main:
            return
        ckpt = checkpoint_from_model(
            loop.model,
            arch=cfg.model.arch,
            arch_kwargs=dict(cfg.model.kwargs),
            norm=norm,
            data=meta,
            config=cfg_dict,
            metrics=metrics,
            provenance=_provenance(cfg_dict, dist_info, device),
            train_state=ts,
        )
        save_checkpoint(ckpt, path)
        _emit(progress, TrainEvent("saved", loop.state.epoch, cfg.epochs, loop.state.step, loop.steps_per_epoch, path=path))

    def metrics_of(rec: EpochRecord | None) -> dict[str, Any]:
        m: dict[str, Any] = {"epochs_completed": loop.state.epoch, "best_test_accuracy": loop.state.best_test_accuracy}
        if rec is not None:
            m.update({k: v for k, v in rec.to_dict().items() if k != "epoch"})
        return m

    _emit(progress, TrainEvent("start", loop.state.epoch, cfg.epochs, loop.state.step, loop.steps_per_epoch))
    with _StopFlag() as stop:
        while loop.state.epoch < cfg.epochs:
            try:
                loop.run_epoch(stop)
            except _Interrupted:
                save(last_path, with_state=True, metrics=metrics_of(loop.state.history[-1] if loop.state.history else None))
                D.barrier()
                raise KeyboardInterrupt from None
            epoch_no = loop.state.epoch + 1
            is_last = epoch_no == cfg.epochs
            do_eval = is_last or (cfg.eval_every > 0 and epoch_no % cfg.eval_every == 0)
            rec = loop.end_epoch(do_eval)
            improved = rec.test_accuracy is not None and (
                loop.state.best_test_accuracy is None or rec.test_accuracy > loop.state.best_test_accuracy
            )
            if improved:
                loop.state.best_test_accuracy = rec.test_accuracy
            if main:
                _write_history(out / "history.csv", loop.state.history)
            if improved:
                save(best_path, with_state=False, metrics=metrics_of(rec))
            if is_last or epoch_no % cfg.save_every == 0:
                save(last_path, with_state=True, metrics=metrics_of(rec))
            D.barrier()
            _emit(progress, TrainEvent("epoch", rec.epoch - 1, cfg.epochs, loop.steps_per_epoch, loop.steps_per_epoch,
                                       loss=rec.train_loss, accuracy=rec.train_accuracy, lr=rec.lr, record=rec))  # fmt: skip
    return TrainResult(
        out_dir=out,
        history=tuple(loop.state.history),
        best_test_accuracy=loop.state.best_test_accuracy,
        last_checkpoint=last_path,
        best_checkpoint=best_path if loop.state.best_test_accuracy is not None else None,
        resumed_from=resumed_from,
        world_size=dist_info.world_size,
        device=str(device),
        samples_per_second=loop.train_samples / loop.train_seconds if loop.train_seconds > 0 else 0.0,
        config=cfg,
        model=loop.model,
    )


# ---------------------------------------------------------------------------
# finetune() -- after `lncli convert`
# ---------------------------------------------------------------------------


def _norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of normalisation layers: BN/LN gamma, beta and LocalNorm heads."""
    out: list[nn.Parameter] = []
    for m in model.modules():
        if _is_norm(m):
            out.extend(p for p in m.parameters(recurse=False))
    return out


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

    After ``convert --to localnorm`` the heads start as copies of the BN affine
    and the network has never seen group statistics; a few epochs on the norm
    parameters (gamma, beta, LocalNorm heads) adapt it at negligible cost, which
    makes the paper's "applicable to already-trained networks" concrete.

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
        progress: optional :class:`TrainEvent` callback.

    Returns:
        A new :class:`Checkpoint` with the tuned weights; ``provenance["finetune"]``
        records how, ``metrics`` the final training loss and accuracy.
    """
    if epochs < 1:
        raise ConfigError(f"--finetune: epochs must be >= 1, got {epochs}")
    norm = ckpt.norm
    if batch_size is None:
        recorded = ckpt.config.get("batch_size") if isinstance(ckpt.config, dict) else None
        if isinstance(recorded, int) and recorded > 0 and (norm.kind != "localnorm" or recorded % (norm.group_size or 1) == 0):
            batch_size = recorded
        elif norm.kind == "localnorm":
            batch_size = (norm.group_size or 16) * (norm.num_heads or 8)
        else:
            batch_size = 128
    lr = lr if lr is not None else (0.01 if train_all else 0.05)
    norm_dict: dict[str, Any] = {"kind": norm.kind, "grouping": norm.grouping}
    if norm.kind == "localnorm":
        norm_dict.update(group_size=norm.group_size, num_heads=norm.num_heads)
    cfg = train_config_from_dict(
        {
            "data": {"spec": data_spec, "data_dir": str(data_dir) if data_dir else None, "train_limit": limit, "augment": augment},
            "model": {"arch": ckpt.arch, "kwargs": dict(ckpt.arch_kwargs)},
            "norm": norm_dict,
            "optim": {"name": "sgd", "lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
            "schedule": {"name": "cosine"},
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "device": device,
            "eval_every": 0,
        }
    )
    train_set = load_dataset(data_spec, "train", data_dir=data_dir, limit=limit)
    if (train_set.meta.num_classes, train_set.meta.in_channels) != (ckpt.data.num_classes, ckpt.data.in_channels):
        raise DataError(
            f"--data {data_spec}: {train_set.meta.num_classes} classes / {train_set.meta.in_channels} channels, "
            f"but the checkpoint expects {ckpt.data.num_classes} / {ckpt.data.in_channels}"
        )
    dev = D.local_device(device)
    torch.manual_seed(seed)
    model = build_model(ckpt)
    # Respect parameters the model itself freezes (LocalNorm's unused BN weight/bias).
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = trainable if train_all else [p for p in _norm_parameters(model) if p.requires_grad]
    if not params:
        raise ConfigError("--finetune: the model has no norm layers to tune; pass --finetune-all")
    chosen = {id(p) for p in params}
    for p in trainable:
        p.requires_grad_(id(p) in chosen)  # frozen ones get no gradient work at all
    loop = _Loop(
        cfg, model=model, params=params, train_set=train_set, test_set=None, norm_meta=ckpt.data,
        device=dev, dist_info=D.DistInfo(), progress=progress,
    )  # fmt: skip
    with _StopFlag() as stop:
        while loop.state.epoch < epochs:
            try:
                loop.run_epoch(stop)
            except _Interrupted:
                raise KeyboardInterrupt from None
            rec = loop.end_epoch(False)
            _emit(progress, TrainEvent("epoch", rec.epoch - 1, epochs, loop.steps_per_epoch, loop.steps_per_epoch,
                                       loss=rec.train_loss, accuracy=rec.train_accuracy, lr=rec.lr, record=rec))  # fmt: skip
    for p in trainable:
        p.requires_grad_(True)
    model.eval()
    final = loop.state.history[-1]
    provenance = dict(ckpt.provenance)
    provenance["finetune"] = {
        "data": data_spec,
        "epochs": epochs,
        "train_all": train_all,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "limit": limit,
        "trained_parameters": sum(p.numel() for p in params),
        "lncli_version": __version__,
    }
    metrics = dict(ckpt.metrics)
    metrics.update({"finetune_train_loss": final.train_loss, "finetune_train_accuracy": final.train_accuracy})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return dataclasses.replace(ckpt, state_dict=state, metrics=metrics, provenance=provenance, train_state=None)
