"""lncli.jobs.train.recipe: LR schedules (against torch's schedulers), batched augmentation,
the augmentation plan and the optimiser's parameter groups."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lncli.config import ScheduleConfig, train_config_from_dict
from lncli.data import DATASETS
from lncli.errors import ConfigError
from lncli.jobs.train.recipe import augment_batch, augment_plan, lr_factor, make_optimizer, norm_parameters
from lncli.models import create_model
from lncli.nn import get_norm_layer


def test_lr_schedules() -> None:
    spe, epochs = 10, 250
    paper = ScheduleConfig(name="step", step_every=30, gamma=0.75)
    for epoch, want in [(0, 1.0), (29, 1.0), (30, 0.75), (60, 0.75**2), (249, 0.75**8)]:
        assert lr_factor(paper, epoch * spe, spe, epochs) == pytest.approx(want, rel=1e-12)
    milestones = ScheduleConfig(name="step", milestones=(2, 4), gamma=0.1)
    assert [lr_factor(milestones, e * spe, spe, 6) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr=0.01)
    f = [lr_factor(cos, s, spe, 5, base_lr=0.1) for s in range(50)]
    assert f[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear warm-up
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1, abs=0.01)  # ends near min_lr / lr
    assert all(a >= b for a, b in pairwise(f[10:]))
    one = ScheduleConfig(name="onecycle", pct_start=0.3)
    g = [lr_factor(one, s, 10, 10) for s in range(100)]
    assert max(g) == pytest.approx(1.0, abs=1e-3) and abs(g.index(max(g)) - 30) <= 1
    assert g[0] == pytest.approx(1 / 25) and g[-1] < 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augment_batch_is_seeded_and_exact(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=g)
    a = augment_batch(x, crop_padding=2, flip=True, generator=torch.Generator().manual_seed(seed))
    b = augment_batch(x, crop_padding=2, flip=True, generator=torch.Generator().manual_seed(seed))
    assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    # Flip only: every image is either itself or its mirror.
    f = augment_batch(x, crop_padding=0, flip=True, generator=torch.Generator().manual_seed(seed))
    same = (f == x).flatten(1).all(1)
    mirrored = (f == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 32
    # Crop only: each output is a shifted window of the zero-padded input.
    c = augment_batch(x, crop_padding=2, flip=False, generator=torch.Generator().manual_seed(seed))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(32):
        assert any(torch.equal(c[i], padded[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(5) for dx in range(5))
    # Nothing to do: an equal copy, not the same storage.
    n = augment_batch(x, crop_padding=0, flip=False, generator=g)
    assert torch.equal(n, x) and n.data_ptr() != x.data_ptr()


def _torch_lrs(make_sched, steps: int, lr: float = 0.1) -> list[float]:
    """The rate torch's scheduler gives each of ``steps`` optimiser steps."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_sched(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(("spe", "epochs", "min_lr"), [(10, 5, 0.0), (7, 3, 0.01), (1, 12, 0.002)])
def test_cosine_matches_torch_cosine_annealing(spe: int, epochs: int, min_lr: float) -> None:
    # Without warm-up our cosine is CosineAnnealingLR over every step, down to min_lr.
    total, lr = spe * epochs, 0.1
    want = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=min_lr), total, lr)
    sched = ScheduleConfig(name="cosine", min_lr=min_lr)
    got = [lr * lr_factor(sched, s, spe, epochs, base_lr=lr) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("milestones", "gamma"), [((2, 4), 0.1), ((1,), 0.5), ((3, 4, 5), 0.75)])
def test_step_matches_torch_multistep(milestones: tuple[int, ...], gamma: float) -> None:
    spe, epochs = 4, 6
    want = _torch_lrs(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [m * spe for m in milestones], gamma), spe * epochs
    )
    sched = ScheduleConfig(name="step", milestones=milestones, gamma=gamma)
    got = [0.1 * lr_factor(sched, s, spe, epochs) for s in range(spe * epochs)]
    assert got == pytest.approx(want, rel=1e-12)


def test_augment_plan_follows_the_data() -> None:
    def plan(augment: str, dataset: str) -> tuple[int, bool]:
        cfg = train_config_from_dict({"data": {"augment": augment, "crop_padding": 3}})
        return augment_plan(cfg, DATASETS[dataset])

    assert plan("auto", "cifar10") == (3, True)  # natural RGB: crop + flip
    assert plan("auto", "fashion-mnist") == (0, False)  # flips change some classes
    assert plan("auto", "synthetic") == (0, False)  # a flip swaps stripe-orientation classes
    assert plan("flip", "fashion-mnist") == (0, True)
    assert plan("crop_flip", "synthetic") == (3, True)
    assert plan("none", "cifar10") == (0, False)


@pytest.mark.parametrize("decay_norm_and_bias", [False, True])
def test_optimizer_groups_keep_norms_and_biases_undecayed(decay_norm_and_bias: bool) -> None:
    model = create_model(
        "tiny", num_classes=10, in_channels=3, norm_layer=get_norm_layer("localnorm", group_size=2, num_heads=2)
    )
    norms = {id(p) for p in norm_parameters(model)}
    assert norms and any(n.endswith("head_weight") for n, p in model.named_parameters() if id(p) in norms)
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = train_config_from_dict({}, {"optim.weight_decay": 1e-3, "optim.decay_norm_and_bias": decay_norm_and_bias})
    groups = make_optimizer(cfg, model, params).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed | plain == {id(p) for p in params} and not decayed & plain  # each trainable parameter once
    if decay_norm_and_bias:
        assert plain == set()
    else:
        assert plain == {id(p) for p in params if id(p) in norms or p.ndim <= 1}
        assert all(p.ndim > 1 for g in groups if g["weight_decay"] > 0 for p in g["params"])
    with pytest.raises(ConfigError, match="nothing to train"):
        make_optimizer(cfg, model, [])
