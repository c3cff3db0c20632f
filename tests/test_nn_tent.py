"""Tests for lncli.nn.tent: TENT's entropy, what it adapts, per-stream state, reproducibility."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lncli.models import create_model
from lncli.nn import LocalNorm2d, Tent, affine_parameters, convert_batchnorm_to_localnorm, set_test_mode
from lncli.nn.tent import softmax_entropy


def _model(seed: int, heads: int = 1) -> nn.Module:
    """A tiny LocalNorm net (random init, batch statistics at test time), as the tent runner sets it up."""
    torch.manual_seed(seed)
    bn = create_model("tiny", num_classes=10, in_channels=3)
    model = convert_batchnorm_to_localnorm(bn, group_size=4, num_heads=heads).eval()
    with torch.no_grad():  # non-trivial running statistics and heads, so that a change would show
        for m in model.modules():
            if isinstance(m, LocalNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 1.5)
                m.head_weight.mul_(1 + 0.3 * torch.randn_like(m.head_weight))
    return set_test_mode(model, stats="batch")


def _batches(seed: int, n: int = 3, size: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 3, 32, 32, generator=gen) * 1.5 + 0.3 for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_softmax_entropy_matches_numpy(seed: int) -> None:
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 4
    z = logits.numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want = -(p * np.log(p)).sum(1)
    np.testing.assert_allclose(softmax_entropy(logits).numpy(), want, rtol=1e-12, atol=1e-12)


def test_affine_parameters_are_every_head_and_bn_affine() -> None:
    model = _model(0, heads=3)
    layers = [m for m in model.modules() if isinstance(m, LocalNorm2d)]
    want = [p for m in layers for p in (m.head_weight, m.head_bias)]
    got = affine_parameters(model)
    assert len(got) == len(want) and all(a is b for a, b in zip(got, want))
    assert all(p.shape[0] == 3 for p in got)  # all heads
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4, affine=False))
    assert [id(p) for p in affine_parameters(bn)] == [id(bn[1].weight), id(bn[1].bias)]


@pytest.mark.parametrize("seed", range(3))
def test_only_the_affine_parameters_change(seed: int) -> None:
    model = _model(seed, heads=2)
    before = copy.deepcopy(model.state_dict())
    tent = Tent(model, lr=1e-2, steps=2)
    for x in _batches(seed):
        tent(x)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    heads = {k for k in before if k.endswith(("head_weight", "head_bias"))}
    assert changed and changed <= heads, sorted(changed - heads)
    assert all(torch.equal(before[k], after[k]) for k in before if "running" in k or "num_batches" in k)
    assert not model.training and all(not p.requires_grad for n, p in model.named_parameters() if "head_" not in n)


@pytest.mark.parametrize("seed", range(5))
def test_a_step_lowers_the_entropy_of_its_batch(seed: int) -> None:
    model = _model(seed)
    x = _batches(seed, n=1)[0]
    with torch.no_grad():
        h0 = softmax_entropy(model(x)).mean().item()
    first = Tent(model, lr=1e-3)(x)
    with torch.no_grad():
        h1 = softmax_entropy(model(x)).mean().item()
        assert torch.allclose(first, Tent(_model(seed), lr=1e-3)(x))  # the prediction is the pre-step forward
    assert h1 < h0, (h0, h1)


def test_prediction_comes_before_the_step() -> None:
    model = _model(1)
    x = _batches(1, n=1)[0]
    with torch.no_grad():
        plain = model(x)
    torch.testing.assert_close(Tent(model, lr=1e-2)(x), plain, rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_reproducible_run_to_run(seed: int) -> None:
    outs = []
    for _ in range(2):
        tent = Tent(_model(seed, heads=2), lr=5e-3)
        outs.append(torch.cat([tent(x) for x in _batches(seed, n=4)]))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("seed", range(3))
def test_streams_do_not_leak_into_each_other(seed: int) -> None:
    """Interleaving two streams gives each what it gives alone; a new stream starts from the initial weights."""
    a, b = _batches(seed, n=3), _batches(seed + 100, n=3)
    alone_a = Tent(_model(seed), lr=1e-2)
    want_a = [alone_a(x) for x in a]
    alone_b = Tent(_model(seed), lr=1e-2)
    want_b = [alone_b(x, "b") for x in b]
    both = Tent(_model(seed), lr=1e-2)
    got_a, got_b = [], []
    for xa, xb in zip(a, b):
        got_b.append(both(xb, "b"))
        got_a.append(both(xa))
    for w, g in zip(want_a + want_b, got_a + got_b):
        assert torch.equal(w, g)
    # After reset every stream starts again from the initial weights.
    both.reset()
    assert torch.equal(both(a[0]), want_a[0])


def test_works_inside_inference_mode() -> None:
    model = _model(2)
    x = _batches(2, n=2)
    with torch.inference_mode():
        tent = Tent(model, lr=1e-2)
        y0, y1 = tent(x[0]), tent(x[1])
    ref = Tent(_model(2), lr=1e-2)
    assert torch.equal(y0, ref(x[0])) and torch.equal(y1, ref(x[1]))
    assert not torch.equal(y1, _model(2)(x[1]).detach())  # it did adapt


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="lr > 0"):
        Tent(_model(0), lr=0.0)
    with pytest.raises(ValueError, match="steps >= 1"):
        Tent(_model(0), lr=1e-3, steps=0)
    with pytest.raises(ValueError, match="no"):
        Tent(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)), lr=1e-3)
