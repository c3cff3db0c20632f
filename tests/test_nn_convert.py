"""BatchNorm2d <-> LocalNorm2d conversion (lncli.nn.convert): an exact inverse pair."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lncli.errors import LncliError
from lncli.models import create_model
from lncli.nn import LocalNorm2d, localnorm_layers, set_test_mode
from lncli.nn.convert import (
    ConversionSummary,
    check_conversion,
    convert_batchnorm_to_localnorm,
    convert_localnorm_to_batchnorm,
    convert_model,
)


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Give every BN layer non-trivial affine and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(seed + 3)
    return model


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["resnet20", "tiny"])
@pytest.mark.parametrize("seed", range(5))
def test_round_trip_is_bit_identical(arch: str, seed: int) -> None:
    torch.manual_seed(seed)
    model = trained_like(create_model(arch, num_classes=10, in_channels=3), seed)
    before = snapshot(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    heads = 1 + seed % 4
    model = convert_batchnorm_to_localnorm(
        model, group_size=4, num_heads=heads, grouping=("consecutive", "strided")[seed % 2]
    )
    layers = localnorm_layers(model)
    assert len(layers) == n_bn > 0
    for layer in layers:
        assert torch.equal(layer.head_weight, layer.weight.expand_as(layer.head_weight))
        assert torch.equal(layer.head_bias, layer.bias.expand_as(layer.head_bias))
        assert layer.head_weight.requires_grad and not layer.weight.requires_grad
    model = convert_localnorm_to_batchnorm(model)
    assert not localnorm_layers(model)
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert torch.equal(after[k], before[k]) and after[k].dtype == before[k].dtype, k
    assert all(p.requires_grad for p in model.parameters()), "BN affine trainable again"


@pytest.mark.parametrize("seed", range(10))
def test_converted_model_matches_bn_under_running_stats(seed: int) -> None:
    """With test_stats=running and heads=mean, a fresh conversion changes no eval output."""
    torch.manual_seed(seed)
    bn_model = trained_like(create_model("tiny", num_classes=5, in_channels=3), seed).eval()
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        ref = bn_model(x)
        ln_model = convert_batchnorm_to_localnorm(bn_model, group_size=2, num_heads=3)
        set_test_mode(ln_model, stats="running", heads="mean")
        out = ln_model(x)
    err = (out - ref).abs().max().item()
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-6), f"max abs error {err:.3g}"


def test_localnorm_to_batchnorm_averages_heads() -> None:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), LocalNorm2d(4, num_heads=3), nn.Sequential(LocalNorm2d(4, num_heads=2)))
    with torch.no_grad():
        for layer in localnorm_layers(model):
            layer.head_weight.copy_(torch.randn(layer.head_weight.shape, generator=gen))
            layer.head_bias.copy_(torch.randn(layer.head_bias.shape, generator=gen))
    expected = [(l.head_weight.mean(0).clone(), l.head_bias.mean(0).clone()) for l in localnorm_layers(model)]
    model = convert_localnorm_to_batchnorm(model)
    bns = [model[1], model[2][0]]
    for bn, (w, b) in zip(bns, expected):
        assert type(bn) is nn.BatchNorm2d
        torch.testing.assert_close(bn.weight.detach(), w, rtol=0, atol=0)
        torch.testing.assert_close(bn.bias.detach(), b, rtol=0, atol=0)
        assert bn.weight.requires_grad


def test_root_module_and_settings_are_converted() -> None:
    bn = nn.BatchNorm2d(3, eps=1e-3, momentum=0.2, dtype=torch.float64).eval()
    ln = convert_batchnorm_to_localnorm(bn, group_size=5, num_heads=2, grouping="strided")
    assert isinstance(ln, LocalNorm2d) and ln is not bn
    assert (ln.eps, ln.momentum, ln.group_size, ln.num_heads, ln.grouping) == (1e-3, 0.2, 5, 2, "strided")
    assert ln.head_weight.dtype == torch.float64 and not ln.training
    assert bn.weight.requires_grad, "the source layer is not touched"
    back = convert_localnorm_to_batchnorm(ln)
    assert type(back) is nn.BatchNorm2d and back.eps == 1e-3 and back.momentum == 0.2 and not back.training
    no_affine = convert_batchnorm_to_localnorm(nn.BatchNorm2d(2, affine=False, track_running_stats=False))
    assert no_affine.head_weight is None and no_affine.running_mean is None
    with pytest.raises(LncliError):
        convert_batchnorm_to_localnorm(nn.BatchNorm2d(2), group_size=0)


def test_check_conversion_resolves_aliases_and_checks_settings() -> None:
    for spelling, target in (("LN", "localnorm"), (" bn ", "batchnorm"), ("local_norm", "localnorm")):
        assert check_conversion(spelling) == target
    with pytest.raises(LncliError, match="unknown conversion target 'groupnorm'; valid: localnorm, batchnorm"):
        check_conversion("groupnorm")
    with pytest.raises(LncliError, match="grouping"):  # checked whatever the target
        check_conversion("batchnorm", grouping="diagonal")
    assert check_conversion("batchnorm", group_size=0, num_heads=0) == "batchnorm", "LN settings unused for BN"
    for bad in ({"group_size": 0}, {"num_heads": 0}, {"group_size": True}):
        with pytest.raises(LncliError, match=next(iter(bad))):
            check_conversion("localnorm", **bad)


def test_convert_model_says_what_it_did() -> None:
    torch.manual_seed(0)
    model = trained_like(create_model("tiny", num_classes=10, in_channels=3), 1)
    bn_layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    channels = sum(m.num_features for m in bn_layers)
    ln, summary = convert_model(model, "LN", group_size=4, num_heads=2)
    assert summary == ConversionSummary("batchnorm->localnorm", len(bn_layers), 2 * 2 * channels, 4, 2)
    assert len(localnorm_layers(ln)) == len(bn_layers)
    back, summary = convert_model(ln, "bn")
    assert summary == ConversionSummary("localnorm->batchnorm", len(bn_layers), -2 * 2 * channels, None, None)
    assert not localnorm_layers(back)
    with pytest.raises(LncliError, match="num_heads"):
        convert_model(back, "localnorm", num_heads=0)
