"""The training recipe's pure pieces: the learning-rate schedule, batched augmentation, optimiser groups.

Everything here is a function of its arguments (augmentation draws from the
generator it is given), so a run's rates and augmented batches are a function of
``(seed, epoch, step)`` and ``--resume`` reproduces them exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.config.train import ScheduleConfig, TrainConfig
from lncli.data import DataMeta
from lncli.errors import ConfigError

__all__ = ["augment_batch", "augment_plan", "lr_factor", "make_optimizer", "norm_parameters"]


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
    warm = round(sched.warmup_epochs * steps_per_epoch)
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
        mask = (torch.rand(n, generator=generator) < 0.5).to(dev)[:, None, None, None]  # (N, 1, 1, 1)
        out = torch.where(mask, out.flip(3), out)
    return out if out is not images else images.clone()


def augment_plan(cfg: TrainConfig, meta: DataMeta) -> tuple[int, bool]:
    """(crop_padding, flip) for ``data.augment``.

    ``auto`` = crop+flip for natural RGB images (CIFAR-10, ImageFolder), none
    otherwise: Fashion-MNIST (flips change some classes, crops barely help at
    28x28) and the synthetic sets, whose classes include stripe orientations
    that a flip would swap.

    Args:
        cfg: the run's config (``data.augment``, ``data.crop_padding``).
        meta: the training data's metadata.

    Returns:
        The crop padding in pixels (0 = no crop) and whether to flip.
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
    # _NormBase covers BatchNorm and LocalNorm2d (a BatchNorm2d subclass) of every dimension.
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of normalisation layers: BN/LN gamma, beta and LocalNorm heads.

    Args:
        model: the model.

    Returns:
        The norm layers' own parameters, in module order.
    """
    out: list[nn.Parameter] = []
    for m in model.modules():
        if _is_norm(m):
            out.extend(p for p in m.parameters(recurse=False))
    return out


def _param_groups(
    model: nn.Module, weight_decay: float, decay_norm_and_bias: bool, params: list[nn.Parameter]
) -> list[dict[str, Any]]:
    """Split trainable ``params`` into decayed and non-decayed groups (norm affine/heads and biases)."""
    wanted = {id(p) for p in params}
    no_decay: set[int] = set()
    if not decay_norm_and_bias:
        no_decay.update(id(p) for p in norm_parameters(model))
        no_decay.update(id(p) for p in model.parameters() if p.ndim <= 1)
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
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


def make_optimizer(cfg: TrainConfig, model: nn.Module, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim`` over ``params``, with norm and bias parameters undecayed unless asked.

    Args:
        cfg: the run's config (``optim`` section).
        model: the model ``params`` belong to (to find its norm layers).
        params: the parameters to train.

    Returns:
        SGD or AdamW over one or two parameter groups.

    Raises:
        ConfigError: there is nothing to train.
    """
    o = cfg.optim
    groups = _param_groups(model, o.weight_decay, o.decay_norm_and_bias, params)
    if not groups:
        raise ConfigError("nothing to train: the model has no trainable parameters")
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)
