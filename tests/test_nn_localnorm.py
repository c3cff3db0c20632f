"""Reference-equivalence tests for LocalNorm2d (lncli.nn.localnorm), after torchvision's TestFrozenBNT.

Training (per-group BatchNorm, ragged batches, gradients), every test-time mode, parameters and
state, and CUDA parity; both the copy-free CPU kernels and the native path (``kernel_path``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from localnorm_reference import SEEDS, assert_close, groups_of, random_bn, random_heads
from torch import nn

from lncli.nn import GROUPINGS, PER_IMAGE_STATS, TEST_STATS, LocalNorm2d, set_test_mode, vote_predict

# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("seed", SEEDS)
def test_group_of_whole_batch_equals_batchnorm(seed: int, kernel_path: str) -> None:
    """G = N in train mode is BatchNorm2d: outputs, input/param grads, running stats."""
    gen = torch.Generator().manual_seed(seed)
    n, c = 4 + seed % 5, 3
    momentum = None if seed % 3 == 0 else 0.1  # also the cumulative-average rule
    x = torch.randn(n, c, 5, 4, generator=gen)
    grad_out = torch.randn(n, c, 5, 4, generator=gen)
    bn = random_bn(c, gen)
    bn.momentum = momentum
    ln = LocalNorm2d(c, momentum=momentum, group_size=n, grouping=GROUPINGS[seed % 2])
    ln.load_state_dict(bn.state_dict())  # heads filled from weight/bias by the load hook
    xb, xl = x.clone().requires_grad_(), x.clone().requires_grad_()
    yb, yl = bn(xb), ln(xl)
    yb.backward(grad_out)
    yl.backward(grad_out)
    assert_close(yl, yb, "output")
    assert_close(xl.grad, xb.grad, "input grad")
    assert_close(ln.head_weight.grad[0], bn.weight.grad, "weight grad")
    assert_close(ln.head_bias.grad[0], bn.bias.grad, "bias grad")
    assert_close(ln.running_mean, bn.running_mean, "running_mean")
    assert_close(ln.running_var, bn.running_var, "running_var")
    assert int(ln.num_batches_tracked) == int(bn.num_batches_tracked)
    assert ln.weight.grad is None and ln.bias.grad is None  # BN's own affine is unused


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_each_group_equals_batchnorm_on_that_group(grouping: str, seed: int, kernel_path: str) -> None:
    """Each group is BN of that group alone, with head k mod num_heads; running stats average."""
    gen = torch.Generator().manual_seed(seed)
    g, m, c = 2 + seed % 3, 4, 3
    heads = (1, 2, 4)[seed % 3]
    size = 3 if seed % 2 else 8  # both ways of taking the CPU statistics (< and >= 64 pixels)
    x = torch.randn(g * m, c, size, size, generator=gen) * 2 + 1
    ln = random_heads(LocalNorm2d(c, group_size=g, num_heads=heads, grouping=grouping), gen)
    old_mean, old_var = ln.running_mean.clone(), ln.running_var.clone()
    grad_out = torch.randn(x.shape, generator=gen)
    xl = x.clone().requires_grad_()
    y = ln(xl)
    y.backward(grad_out)
    hw = ln.head_weight.detach().clone().requires_grad_()
    hb = ln.head_bias.detach().clone().requires_grad_()
    xr = x.clone().requires_grad_()
    means, vars_ = [], []
    for k, idx in enumerate(groups_of(len(x), g, grouping)):
        h = k % heads
        ref = F.batch_norm(xr[idx], None, None, hw[h], hb[h], True, 0.0, ln.eps)
        ref.backward(grad_out[idx])
        assert_close(y[idx], ref, f"group {k}")
        means.append(x[idx].mean((0, 2, 3)))
        vars_.append(x[idx].var((0, 2, 3), unbiased=True))
    assert_close(xl.grad, xr.grad, "input grad")
    assert_close(ln.head_weight.grad, hw.grad, "head_weight grad")
    assert_close(ln.head_bias.grad, hb.grad, "head_bias grad")
    exp_mean = 0.9 * old_mean + 0.1 * torch.stack(means).mean(0)
    exp_var = 0.9 * old_var + 0.1 * torch.stack(vars_).mean(0)
    assert_close(ln.running_mean, exp_mean, "running_mean")
    assert_close(ln.running_var, exp_var, "running_var")


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_ragged_batch_rule(grouping: str, seed: int, kernel_path: str) -> None:
    """N % G = r: first N-r grouped as usual, last r one group with the next head; nothing dropped."""
    gen = torch.Generator().manual_seed(seed)
    g, c, heads = 4, 2, 4
    n = (5, 6, 7, 9, 10, 11, 13, 3, 2, 15)[seed]  # includes N < G
    x = torch.randn(n, c, 3, 3, generator=gen)
    ln = random_heads(LocalNorm2d(c, group_size=g, num_heads=heads, grouping=grouping), gen)
    old_mean, old_var = ln.running_mean.clone(), ln.running_var.clone()
    y = ln(x)
    assert y.shape == x.shape
    groups = groups_of(n, g, grouping)
    assert sorted(i for grp in groups for i in grp) == list(range(n))
    means, vars_, sizes = [], [], []
    for k, idx in enumerate(groups):
        h = k % heads
        ref = F.batch_norm(x[idx], None, None, ln.head_weight[h], ln.head_bias[h], True, 0.0, ln.eps)
        assert_close(y[idx], ref, f"group {k} of {groups}")
        means.append(x[idx].mean((0, 2, 3)))
        vars_.append(x[idx].var((0, 2, 3), unbiased=True))
        sizes.append(len(idx))
    # Running stats: groups weighted by their size.
    wts = torch.tensor(sizes, dtype=x.dtype)[:, None] / n
    assert_close(ln.running_mean, 0.9 * old_mean + 0.1 * (torch.stack(means) * wts).sum(0), "running_mean")
    assert_close(ln.running_var, 0.9 * old_var + 0.1 * (torch.stack(vars_) * wts).sum(0), "running_var")
    # The same rule holds at test time with local statistics.
    ln.eval()
    with torch.no_grad():
        assert_close(ln(x), y, "eval local == train output")


# Uneven batches, (N, G, heads): tails of 1..G-1 samples, one full group plus a tail (the
# G = N code path), several full groups, and N < G.
UNEVEN = [(5, 3, 2), (7, 3, 3), (10, 4, 3), (9, 2, 4), (5, 4, 2), (11, 8, 2), (13, 5, 1), (3, 4, 2)]


@pytest.mark.parametrize("n,g,heads", UNEVEN)
@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("seed", range(3))
def test_uneven_batch_trains_like_per_group_batchnorm(
    n: int, g: int, heads: int, grouping: str, seed: int, kernel_path: str
) -> None:
    """N % G != 0 with running statistics on: outputs, input/head gradients and the running
    statistics equal BN applied to each group alone. backward() raised "modified by an
    inplace operation" (the running buffers were saved by autograd, then updated)."""
    gen = torch.Generator().manual_seed(seed)
    c, size = 3, ((5, 7), (9, 8))[seed % 2]  # both ways of taking the CPU statistics (< and >= 64 pixels)
    momentum = None if seed == 2 else 0.1  # also the cumulative-average rule
    ln = random_heads(LocalNorm2d(c, momentum=momentum, group_size=g, num_heads=heads, grouping=grouping), gen)
    with torch.no_grad():
        ln.running_mean.copy_(torch.randn(c, generator=gen))
        ln.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        ln.num_batches_tracked.fill_(3)
    old_mean, old_var = ln.running_mean.clone(), ln.running_var.clone()
    x = torch.randn(n, c, *size, generator=gen) * 2 + 1
    grad_out = torch.randn(x.shape, generator=gen)
    xl = x.clone().requires_grad_()
    y = ln(xl)
    y.backward(grad_out)
    # Reference: F.batch_norm on each group alone, group k with head k mod heads.
    hw = ln.head_weight.detach().clone().requires_grad_()
    hb = ln.head_bias.detach().clone().requires_grad_()
    xr = x.clone().requires_grad_()
    means, vars_, sizes = [], [], []
    for k, idx in enumerate(groups_of(n, g, grouping)):
        ref = F.batch_norm(xr[idx], None, None, hw[k % heads], hb[k % heads], True, 0.0, ln.eps)
        ref.backward(grad_out[idx])
        assert_close(y[idx], ref, f"output of group {k}")
        means.append(x[idx].mean((0, 2, 3)))
        vars_.append(x[idx].var((0, 2, 3), unbiased=True))
        sizes.append(len(idx))
    assert_close(xl.grad, xr.grad, "input grad")
    assert_close(ln.head_weight.grad, hw.grad, "head_weight grad")
    assert_close(ln.head_bias.grad, hb.grad, "head_bias grad")
    # Running statistics: BN's update per group, groups weighted by their size.
    f = 1 / 4 if momentum is None else momentum  # cumulative average: 1 / num_batches_tracked
    wts = torch.tensor(sizes, dtype=x.dtype)[:, None] / n
    assert_close(ln.running_mean, (1 - f) * old_mean + f * (torch.stack(means) * wts).sum(0), "running_mean")
    assert_close(ln.running_var, (1 - f) * old_var + f * (torch.stack(vars_) * wts).sum(0), "running_var")
    assert int(ln.num_batches_tracked) == 4


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("n", [6, 7])
def test_gradcheck_float64(grouping: str, n: int, kernel_path: str) -> None:
    """Analytic gradients of the grouped forward (input and heads) in float64."""
    gen = torch.Generator().manual_seed(n)
    ln = LocalNorm2d(2, track_running_stats=False, group_size=2, num_heads=3, grouping=grouping, dtype=torch.float64)
    random_heads(ln, gen)
    x = torch.randn(n, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    hw = ln.head_weight.detach().clone().requires_grad_()
    hb = ln.head_bias.detach().clone().requires_grad_()

    def f(x: torch.Tensor, hw: torch.Tensor, hb: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(ln, {"head_weight": hw, "head_bias": hb}, (x,))

    assert torch.autograd.gradcheck(f, (x, hw, hb))
    ln.eval()  # eval modes with gradients enabled use the native kernels
    for stats in TEST_STATS:
        ln.test_stats = stats
        assert torch.autograd.gradcheck(f, (x, hw, hb)), stats


# --------------------------------------------------------------------------- test time


@pytest.mark.parametrize("seed", SEEDS)
def test_single_equals_instance_norm(seed: int, kernel_path: str) -> None:
    """test_stats="single": per image over (H, W), i.e. F.instance_norm followed by the affine."""
    gen = torch.Generator().manual_seed(seed)
    n, c = 5, 3
    x = torch.randn(n, c, 4, 6, generator=gen) * 3 - 1
    ln = LocalNorm2d(c, group_size=2, num_heads=1, grouping=GROUPINGS[seed % 2], test_stats="single")
    random_heads(ln, gen).eval()
    ref = F.instance_norm(x, eps=ln.eps) * ln.head_weight[0][:, None, None] + ln.head_bias[0][:, None, None]
    with torch.no_grad():
        assert_close(ln(x), ref, "single (no grad)")
    assert_close(ln(x.clone().requires_grad_()), ref, "single (with grad)")


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_test_modes_match_reference(grouping: str, seed: int, kernel_path: str) -> None:
    """All stats x heads combinations against a per-sample reference, fast and native paths."""
    gen = torch.Generator().manual_seed(seed)
    g, c, heads = 3, 2, 3
    n = (9, 10, 6, 7, 3, 12, 11, 2, 9, 8)[seed]
    size = 4 if seed % 2 else 8  # both ways of taking the CPU statistics (< and >= 64 pixels)
    x = torch.randn(n, c, size, size, generator=gen) * 2 + 0.5
    ln = random_heads(LocalNorm2d(c, group_size=g, num_heads=heads, grouping=grouping), gen)
    with torch.no_grad():
        ln.running_mean.copy_(torch.randn(c, generator=gen))
        ln.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    ln.eval()
    groups = groups_of(n, g, grouping)
    head_of = torch.empty(n, dtype=torch.long)
    for k, idx in enumerate(groups):
        head_of[idx] = k % heads
    ln.prior_n = (0.0, 1.0, 5.0, 40.0, 1e12)[seed % 5]
    for stats in TEST_STATS:
        if stats == "running":
            normed = (x - ln.running_mean[:, None, None]) / torch.sqrt(ln.running_var[:, None, None] + ln.eps)
        elif stats == "prior":  # Schneider et al. 2020: (N * running + n * batch) / (N + n), n = N_x
            a = ln.prior_n / (ln.prior_n + n)
            mean = a * ln.running_mean + (1 - a) * x.mean((0, 2, 3), dtype=torch.float64).float()
            var = a * ln.running_var + (1 - a) * x.var((0, 2, 3), unbiased=False)
            normed = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + ln.eps)
        elif stats == "batch":
            normed = F.batch_norm(x, None, None, None, None, True, 0.0, ln.eps)
        elif stats == "single":
            normed = F.instance_norm(x, eps=ln.eps)
        else:
            normed = torch.empty_like(x)
            for idx in groups:
                normed[idx] = F.batch_norm(x[idx], None, None, None, None, True, 0.0, ln.eps)
        for mode in ("position", "mean", "vote"):
            if mode == "position" and stats not in PER_IMAGE_STATS:
                w, b = ln.head_weight[head_of], ln.head_bias[head_of]  # (N, C)
            else:  # per-image stats have no groups; a plain forward in vote mode uses the head mean too
                w, b = ln.head_weight.mean(0).expand(n, c), ln.head_bias.mean(0).expand(n, c)
            ref = normed * w[:, :, None, None] + b[:, :, None, None]
            set_test_mode(ln, stats=stats, heads=mode)
            with torch.no_grad():
                assert_close(ln(x), ref, f"{stats}/{mode} fast path")
            assert_close(ln(x.clone().requires_grad_()), ref, f"{stats}/{mode} native path")
        # force_head: every sample uses that head.
        ln.force_head = 1
        set_test_mode(ln, heads="position")
        ref = normed * ln.head_weight[1][:, None, None] + ln.head_bias[1][:, None, None]
        with torch.no_grad():
            assert_close(ln(x), ref, f"{stats}/force_head")
        ln.force_head = None


def test_running_without_buffers_uses_batch_stats() -> None:
    x = torch.randn(6, 2, 3, 3)
    ln = LocalNorm2d(2, track_running_stats=False, group_size=3, test_stats="running").eval()
    bn = nn.BatchNorm2d(2, track_running_stats=False).eval()
    with torch.no_grad():
        assert_close(ln(x), bn(x), "running without buffers")


@pytest.mark.parametrize("stats", TEST_STATS)
@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("seed", range(3))
def test_eval_on_1x1_maps_does_not_crash(stats: str, n: int, seed: int, kernel_path: str) -> None:
    """1x1 maps (e.g. resnet18's last stage on 32x32 input): a group of one sample has one value
    per channel, variance 0, so it normalises to its head's bias; eval must not raise like BN's train mode."""
    gen = torch.Generator().manual_seed(seed)
    ln = random_heads(LocalNorm2d(3, group_size=4, num_heads=2), gen).eval()
    ln.test_stats = stats
    x = torch.randn(n, 3, 1, 1, generator=gen)
    y = ln(x)  # raised ValueError ("Expected more than 1 value per channel when training")
    assert y.shape == x.shape and torch.isfinite(y).all()
    one_sample_groups = {"single": range(n), "local": [n - 1] if n % 4 == 1 else [], "batch": [0] if n == 1 else []}
    for i in one_sample_groups.get(stats, []):
        # position heads where images form groups; per-image stats take the heads' mean
        position = ln.head_bias[int(ln._sample_group(n, x.device)[i]) % ln.num_heads]
        expected = ln.head_bias.mean(0) if stats in PER_IMAGE_STATS else position
        err = (y[i, :, 0, 0] - expected).abs().max().item()
        # (x - mean) is ~1 ulp, amplified by 1/sqrt(eps) ~ 316: hence atol 1e-4.
        assert err < 1e-4, f"{stats}: one-sample group {i} should give the bias; max abs error {err:.3g}"


@pytest.mark.parametrize("stats", TEST_STATS)
@pytest.mark.parametrize("heads", ["position", "mean"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_eval_keeps_low_precision_input_dtype(stats: str, heads: str, dtype: torch.dtype) -> None:
    """Half/bf16 activations with fp32 heads (autocast): the output keeps the input dtype, as
    BatchNorm2d's does. ``batch``/``running`` with position heads returned float32."""
    gen = torch.Generator().manual_seed(0)
    ln = random_heads(LocalNorm2d(3, group_size=2, num_heads=3), gen).eval()
    set_test_mode(ln, stats=stats, heads=heads)
    x = torch.randn(6, 3, 4, 4, generator=gen)
    y = ln(x.to(dtype))
    assert y.dtype == dtype
    ref = ln(x.to(dtype).float())  # the same maths in fp32
    err = (y.float() - ref).abs().max().item()
    assert err < 0.05, f"{stats}/{heads}: max abs error {err:.3g} against fp32"


@pytest.mark.parametrize("stats", TEST_STATS)
@pytest.mark.parametrize("train", [True, False])
def test_empty_batch_like_batchnorm(stats: str, train: bool) -> None:
    """N = 0 (e.g. an uneven last shard) returns an empty output, as BatchNorm2d does; it raised
    ValueError / IndexError / ZeroDivisionError depending on the mode."""
    ln = LocalNorm2d(3, group_size=2, num_heads=2, test_stats=stats).train(train)
    bn = nn.BatchNorm2d(3).train(train)
    x = torch.randn(0, 3, 4, 4, requires_grad=True)
    y = ln(x)
    y.sum().backward()
    bn(x.detach())
    assert y.shape == x.shape and x.grad is not None and x.grad.shape == x.shape
    assert int(ln.num_batches_tracked) == int(bn.num_batches_tracked)
    assert_close(ln.running_mean, bn.running_mean, "running_mean")
    assert_close(ln.running_var, bn.running_var, "running_var")


@pytest.mark.parametrize("seed", range(3))
def test_train_ragged_one_value_tail_on_1x1_maps(seed: int) -> None:
    """N % G == 1 on 1x1 maps in training: the tail is normalised, the running stats come
    from the full groups only (the tail has no variance), and nothing is NaN."""
    gen = torch.Generator().manual_seed(seed)
    ln, ref = LocalNorm2d(3, group_size=2), LocalNorm2d(3, group_size=2)
    x = torch.randn(5, 3, 1, 1, generator=gen)
    y = ln(x)  # raised ValueError before
    ref(x[:4])
    assert torch.isfinite(y).all()
    assert_close(ln.running_mean, ref.running_mean, "running_mean")
    assert_close(ln.running_var, ref.running_var, "running_var")


# --------------------------------------------------------------------------- parameters and state


@pytest.mark.parametrize("seed", SEEDS)
def test_heads_start_from_batchnorm_affine(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    bn = random_bn(3, gen)
    heads = 1 + seed % 4
    ln = LocalNorm2d(3, num_heads=heads)
    assert ln.head_weight.shape == (heads, 3) and ln.head_bias.shape == (heads, 3)
    assert torch.equal(ln.head_weight, torch.ones(heads, 3)) and torch.equal(ln.head_bias, torch.zeros(heads, 3))
    missing, unexpected = ln.load_state_dict(bn.state_dict(), strict=True)  # a BN checkpoint loads strictly
    assert not missing and not unexpected
    assert torch.equal(ln.head_weight, bn.weight.detach().expand(heads, 3))
    assert torch.equal(ln.head_bias, bn.bias.detach().expand(heads, 3))
    ln.reset_parameters()
    assert torch.equal(ln.head_weight, torch.ones(heads, 3)), "reset_parameters resets the heads"


@pytest.mark.parametrize("seed", SEEDS)
def test_state_dict_round_trip(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    ln = random_heads(LocalNorm2d(4, group_size=2, num_heads=3, grouping=GROUPINGS[seed % 2]), gen)
    ln(torch.randn(6, 4, 3, 3, generator=gen))  # move the running stats
    sd = ln.state_dict()
    bn_keys = set(nn.BatchNorm2d(4).state_dict())
    assert set(sd) == bn_keys | {"head_weight", "head_bias"}, "BN keys kept, heads added"
    other = LocalNorm2d(4, group_size=2, num_heads=3, grouping=GROUPINGS[seed % 2])
    other.load_state_dict(sd, strict=True)
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = torch.randn(6, 4, 3, 3, generator=gen)
    ln.eval(), other.eval()
    with torch.no_grad():
        assert torch.equal(ln(x), other(x))


@pytest.mark.parametrize("grouping", GROUPINGS)
def test_output_allows_inplace_ops(grouping: str, kernel_path: str) -> None:
    """ReLU(inplace=True) after the layer must work and keep the right gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 8, 8, generator=gen)
    ln = LocalNorm2d(3, group_size=2, num_heads=4, grouping=grouping)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.relu_(ln(xa)).sum().backward()
    torch.relu(ln(xb)).sum().backward()
    assert_close(xa.grad, xb.grad, "grad through in-place relu")
    ln.eval()
    torch.relu_(ln(x))  # eval, with gradients enabled for the heads
    with torch.no_grad():
        torch.relu_(ln(x))


def test_source_affine_is_frozen_and_unused() -> None:
    ln = LocalNorm2d(3, num_heads=2)
    assert not ln.weight.requires_grad and not ln.bias.requires_grad
    trainable = {n for n, p in ln.named_parameters() if p.requires_grad}
    assert trainable == {"head_weight", "head_bias"}
    with torch.no_grad():
        ln.weight.fill_(123.0)  # must not change the output
    x = torch.randn(4, 3, 3, 3)
    ref = LocalNorm2d(3, num_heads=2)
    assert_close(ln(x), ref(x), "weight is not used")


def test_no_affine_layer() -> None:
    ln = LocalNorm2d(3, affine=False, group_size=2, num_heads=4)
    assert ln.head_weight is None and ln.head_bias is None
    x = torch.randn(4, 3, 3, 3)
    ref = torch.cat([F.batch_norm(x[i : i + 2], None, None, training=True) for i in (0, 2)])
    assert_close(ln(x), ref, "no affine")
    ln.eval()
    for stats in TEST_STATS:
        set_test_mode(ln, stats=stats)
        assert ln(x).shape == x.shape
    assert torch.equal(vote_predict(nn.Sequential(ln, nn.Flatten()), x), torch.softmax(ln(x).flatten(1), -1))


def test_extra_repr_shows_group_size_and_mode() -> None:
    r = repr(LocalNorm2d(8, group_size=4, num_heads=2, grouping="strided", test_stats="single"))
    for part in ("group_size=4", "num_heads=2", "grouping=strided", "test_stats=single", "test_heads=position"):
        assert part in r, r


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("seed", range(3))
def test_cuda_parity(grouping: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(22, 4, 6, 6, generator=gen)
    cpu = random_heads(LocalNorm2d(4, group_size=4, num_heads=3, grouping=grouping), gen)
    gpu = LocalNorm2d(4, group_size=4, num_heads=3, grouping=grouping).cuda()
    gpu.load_state_dict(cpu.state_dict())
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    yc, yg = cpu(xc), gpu(xg)
    yc.sum().backward()
    yg.sum().backward()
    tol = {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close(yg.cpu(), yc, **tol)
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, **tol)
    torch.testing.assert_close(gpu.head_weight.grad.cpu(), cpu.head_weight.grad, **tol)
    torch.testing.assert_close(gpu.running_var.cpu(), cpu.running_var, **tol)
    cpu.eval(), gpu.eval()
    for stats in TEST_STATS:
        for heads in ("position", "mean"):
            set_test_mode(cpu, stats=stats, heads=heads)
            set_test_mode(gpu, stats=stats, heads=heads)
            with torch.no_grad():
                torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), **tol, msg=f"{stats}/{heads}")


@pytest.mark.cuda
@pytest.mark.parametrize("n", [0, 1, 5])
def test_cuda_parity_degenerate_batches(n: int) -> None:
    """1x1 maps (one value per channel per group) and empty batches on CUDA match the CPU."""
    gen = torch.Generator().manual_seed(0)
    cpu = random_heads(LocalNorm2d(4, group_size=4, num_heads=2), gen).eval()
    gpu = LocalNorm2d(4, group_size=4, num_heads=2).cuda().eval()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(n, 4, 1, 1, generator=gen)
    for stats in TEST_STATS:
        set_test_mode(cpu, stats=stats)
        set_test_mode(gpu, stats=stats)
        with torch.no_grad():
            torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-4, msg=stats)
