"""The epoch loop shared by ``train`` and ``finetune``: seeded batches, optimiser steps, Ctrl-C, DDP.

Determinism and resume. All data randomness is a pure function of
``(seed, epoch, step)``: the epoch's permutation comes from a generator seeded
with ``(seed, epoch)`` and each batch's augmentation from ``(seed, epoch, step,
rank)``; the global torch RNG (dropout) is re-seeded from ``(seed, rank,
global step)`` before every step. Nothing but the weights, optimizer state and
the position ``(epoch, step)`` therefore has to be saved (:meth:`Loop.train_state`),
and a resumed run reaches the same weights as an uninterrupted one.

LocalNorm (arXiv 1902.06550). Every training batch holds whole groups: batches
are ``drop_last`` (the shuffled tail that does not fill a batch is skipped, a
different one each epoch) and the config requires ``batch_size % G == 0``.
Groups are re-drawn every epoch because the permutation changes.

Distributed. Each rank trains on its shard of the same seeded permutation
(``perm[rank::world]``, equal length on every rank: the sharding of
``DistributedSampler`` without its padding) through DDP. LocalNorm groups live
inside one rank's batch, so, unlike SyncBatchNorm, no statistics cross ranks.

Interruption. :class:`StopFlag` turns the first Ctrl-C (SIGINT) into a flag that
is checked after each optimiser step; :meth:`Loop.run_epoch` then raises
:class:`Interrupted` at that consistent point, for the caller to save and stop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import threading
import time
from collections.abc import Generator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli import distributed as D
from lncli.config.train import TrainConfig
from lncli.data import DataMeta, ImageSet, normalize
from lncli.errors import CheckpointError, ConfigError, DataError, LncliError
from lncli.jobs.train.events import ProgressFn, TrainEvent
from lncli.jobs.train.recipe import augment_batch, augment_plan, lr_factor, make_optimizer
from lncli.records import EpochRecord

__all__ = ["Interrupted", "Loop", "LoopState", "StopFlag"]


def _mix(*parts: int | str) -> int:
    """A stable 63-bit seed from ints/strings (independent of Python's hash salt)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _gen(*parts: int | str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(_mix(*parts))
    return g


@final
class StopFlag:
    """Turns the first SIGINT into a flag checked at step boundaries (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum: int, frame: Any) -> None:
                if self.requested:  # second Ctrl-C: stop now, no save
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Interrupted(Exception):
    """A stop was requested; the loop stopped at a consistent step boundary."""


@dataclass
class LoopState:
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


class _StepSums:
    """This rank's loss / correct / seen since the last flush, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.seen = 0

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        bsz = y.shape[0]
        self.loss += loss.detach().double() * bsz
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += bsz

    def running_means(self, s: LoopState) -> tuple[float, float]:
        """(loss, accuracy) of the epoch so far on this rank: the state's sums plus these."""
        seen = s.seen + self.seen
        return (s.loss_sum + float(self.loss.item())) / seen, (s.correct + float(self.correct.item())) / seen

    def flush_into(self, s: LoopState) -> None:
        s.loss_sum += float(self.loss.item())
        s.correct += float(self.correct.item())
        s.seen += self.seen
        self.loss.zero_()
        self.correct.zero_()
        self.seen = 0


class Loop:
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
        # torch's stubs lack the (device, memory_format) form that Module.to takes at run time.
        self.model = model.to(device=device, memory_format=self.memory_format)  # type: ignore[call-overload]
        self.optimizer = make_optimizer(cfg, self.model, params)
        for g in self.optimizer.param_groups:
            g["base_lr"] = cfg.optim.lr
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.ddp = self._wrap_ddp()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        # Whole data set on the training device as uint8: 150 MB for CIFAR-10,
        # and slicing + augmenting there is far faster than a DataLoader.
        self.train_x = train_set.images.to(device)
        self.train_y = train_set.labels.to(device)
        self.test_x = test_set.images.to(device) if test_set is not None else None
        self.test_y = test_set.labels.to(device) if test_set is not None else None
        self.crop, self.flip = augment_plan(cfg, train_set.meta)
        n = len(train_set)
        self.per_rank = n // dist_info.world_size
        self.steps_per_epoch = self.per_rank // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                f"the training split has {n} images, fewer than batch_size={cfg.batch_size} x {dist_info.world_size} rank(s); "
                "lower batch_size or raise data.train_limit"
            )
        self.state = LoopState()
        self.train_seconds = 0.0
        self.train_samples = 0

    def _wrap_ddp(self) -> nn.Module:
        """The model under DDP when there are several ranks, else the model itself."""
        if not self.dist.enabled:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # More LocalNorm heads than groups per batch leaves some heads without
        # a gradient in a step, which DDP must be told about.
        n = self.cfg.norm
        unused = n.kind == "localnorm" and (n.num_heads or 1) > self.cfg.batch_size // n.group_size
        return nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=unused)

    # -- state ----------------------------------------------------------------

    def train_state(self) -> dict[str, Any]:
        """The resume state (plain types and tensors) saved as a checkpoint's ``train_state``."""
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
        """Continue from a saved :meth:`train_state` (optimizer, scaler, RNG and position).

        Raises:
            CheckpointError: the state was saved mid-epoch by another number of ranks.
        """
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
        self.state = LoopState(
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

    def _batches(self, epoch: int, start_step: int) -> Generator[tuple[Tensor, Tensor], None, None]:
        cfg, r, w = self.cfg, self.dist.rank, self.dist.world_size
        # Same permutation on every rank; rank r takes every w-th index.
        perm = torch.randperm(len(self.train_y), generator=_gen(cfg.seed, "perm", epoch))
        mine = perm[r::w][: self.per_rank].to(self.device)
        b = cfg.batch_size

        def make(step: int) -> tuple[Tensor, Tensor]:
            idx = mine[step * b : (step + 1) * b]  # drop_last: every batch is full
            x = self.train_x[idx]  # uint8 (B, C, H, W)
            if self.crop or self.flip:
                x = augment_batch(
                    x, crop_padding=self.crop, flip=self.flip, generator=_gen(cfg.seed, "aug", epoch, step, r)
                )
            x = normalize(x, self.meta).contiguous(memory_format=self.memory_format)  # float32 (B, C, H, W)
            return x, self.train_y[idx]

        # Each batch is a pure function of (seed, epoch, step): made ahead in threads, same bits.
        # Delegated with yield from, so that closing this generator also stops the prefetch.
        yield from D.prefetch(make, range(start_step, self.steps_per_epoch), cfg.workers)

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

    def run_epoch(self, stop: StopFlag) -> None:
        """Train from ``state.step`` to the end of ``state.epoch``.

        Raises:
            Interrupted: a stop was requested; the sums are flushed at that step.
            LncliError: the loss became non-finite (before that step was applied).
        """
        self.model.train()
        sums = _StepSums(self.device)
        t0 = time.perf_counter()
        batches = self._batches(self.state.epoch, self.state.step)
        try:
            for x, y in batches:
                if self._step(x, y, sums, stop):
                    sums.flush_into(self.state)
                    self._reduce_sums()
                    raise Interrupted
        finally:
            dt = time.perf_counter() - t0
            self.state.epoch_seconds += dt
            self.train_seconds += dt
            batches.close()  # stop a prefetch thread early on errors / interruption
        sums.flush_into(self.state)
        self._reduce_sums()

    def _step(self, x: Tensor, y: Tensor, sums: _StepSums, stop: StopFlag) -> bool:
        """One optimiser step on the batch ``(x, y)``; True when the loop must stop after it."""
        cfg, s = self.cfg, self.state
        factor = lr_factor(cfg.schedule, s.global_step, self.steps_per_epoch, cfg.epochs, cfg.optim.lr)
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
        sums.add(loss, logits, y)
        s.step += 1
        s.global_step += 1
        self.train_samples += y.shape[0] * self.dist.world_size
        if self.progress is not None and self._report(sums, cfg.optim.lr * factor, stop):
            stop_now = True
        return stop_now or (stop.requested and not self.dist.enabled)

    def _report(self, sums: _StepSums, lr: float, stop: StopFlag) -> bool:
        """Send the ``"batch"`` event; True when the callback's Ctrl-C must stop a lone process now."""
        assert self.progress is not None
        s = self.state
        loss, accuracy = sums.running_means(s)
        try:
            self.progress(
                TrainEvent(
                    "batch", s.epoch, self.cfg.epochs, s.step, self.steps_per_epoch, loss=loss, accuracy=accuracy, lr=lr
                )
            )
        except KeyboardInterrupt:
            # Alone: stop right here. Under DDP the other ranks must agree
            # first, so it goes through the flag (next step).
            if not self.dist.enabled:
                return True
            stop.requested = True
        return False

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

    # -- end of an epoch ---------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(mean loss, accuracy) on the test split, sharded over ranks, in eval mode."""
        assert self.test_x is not None and self.test_y is not None
        self.model.eval()
        n = len(self.test_y)
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # (loss sum, correct, seen)
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
        """Close the epoch in ``state``: evaluate, append the record, move to the next epoch.

        Args:
            do_eval: evaluate the test split (when there is one).

        Returns:
            The epoch's record, the same on every rank.
        """
        s, cfg = self.state, self.cfg
        self._sync_buffers()
        test_loss = test_acc = None
        t0 = time.perf_counter()
        if do_eval and self.test_x is not None:
            test_loss, test_acc = self.evaluate()
        s.epoch_seconds += time.perf_counter() - t0
        # All ranks need the same record: broadcast rank 0's sums.
        sums = torch.tensor([s.loss_sum, s.correct, s.seen], dtype=torch.float64, device=self.device)
        D.all_reduce_sum(sums)  # only rank 0 is non-zero after _reduce_sums
        loss_sum, correct, seen = (float(v) for v in sums.tolist())
        seen = max(1.0, seen)
        last_lr = cfg.optim.lr * lr_factor(
            cfg.schedule, max(0, s.global_step - 1), self.steps_per_epoch, cfg.epochs, cfg.optim.lr
        )
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
