"""lncli.nn.groupnorm: GroupNorm's default groups, the layer against a hand-written reference, its
independence from the batch, and every registry arch built with it through the one build route."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lncli.config.train import NormConfig, train_config_from_dict
from lncli.errors import ConfigError, LncliError
from lncli.models import build_model, list_models
from lncli.nn import default_groups, get_norm_layer, group_norm

# (rtol, atol) for float32, as in torchvision's TestFrozenBN.
TOL = {"rtol": 1e-5, "atol": 1e-6}


@pytest.mark.parametrize(
    ("channels", "groups"),
    [(8, 8), (16, 16), (24, 24), (48, 24), (64, 32), (96, 32), (100, 25)],
)
def test_default_groups_table(channels: int, groups: int) -> None:
    """min(32, C), else the largest divisor of C not above 32 (48 -> 24, 100 -> 25)."""
    assert default_groups(channels) == groups
    assert group_norm(channels).num_groups == groups


def test_default_groups_is_the_largest_divisor_up_to_32() -> None:
    # An independent statement of the rule: of the divisors of C that are <= 32, the largest.
    for c in range(1, 513):
        divisors = [g for g in range(1, c + 1) if c % g == 0 and g <= 32]
        assert default_groups(c) == max(divisors), c
        if c % min(32, c) == 0:
            assert default_groups(c) == min(32, c), c


def test_layer_is_torch_groupnorm_affine_with_bn_eps() -> None:
    layer = group_norm(64)
    assert type(layer) is nn.GroupNorm
    assert (layer.num_groups, layer.num_channels, layer.eps, layer.affine) == (32, 64, 1e-5, True)
    assert nn.BatchNorm2d(64).eps == layer.eps  # the three norms differ only in their statistics
    assert torch.equal(layer.weight, torch.ones(64)) and torch.equal(layer.bias, torch.zeros(64))
    assert group_norm(24, groups=4).num_groups == 4


def test_explicit_groups_must_divide_the_width() -> None:
    with pytest.raises(ConfigError) as info:
        group_norm(24, groups=5)
    message = str(info.value)
    assert "norm.groups=5" in message and "width 24" in message and "\n" not in message
    for bad in (0, -2):
        with pytest.raises(ConfigError, match="groups must be a positive integer"):
            get_norm_layer("gn", groups=bad)


def _reference_group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GroupNorm written out (Wu & He 2018, eq. 1-3), in float64."""
    n, c, h, w = x.shape
    xg = x.double().reshape(n, groups, (c // groups) * h * w)  # (N, G, C/G * H * W)
    mean = xg.mean(dim=2, keepdim=True)
    var = xg.var(dim=2, unbiased=False, keepdim=True)
    y = ((xg - mean) / torch.sqrt(var + 1e-5)).reshape(n, c, h, w)
    return y * weight.double().view(1, c, 1, 1) + bias.double().view(1, c, 1, 1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("channels", "groups"), [(16, None), (48, None), (24, 4), (100, None)])
def test_layer_matches_the_reference(seed: int, channels: int, groups: int | None) -> None:
    gen = torch.Generator().manual_seed(seed)
    layer = group_norm(channels, groups=groups)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(channels, generator=gen))
        layer.bias.copy_(torch.randn(channels, generator=gen))
    x = torch.randn(6, channels, 5, 7, generator=gen) * 3 + 1  # (N, C, H, W)
    got = layer(x)
    want = _reference_group_norm(x, layer.num_groups, layer.weight.detach(), layer.bias.detach()).float()
    err = (got - want).abs().max().item()
    torch.testing.assert_close(got, want, **TOL, msg=f"max abs error {err:.3g}")


def _gn_model(seed: int, arch: str = "small_cnn", in_channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, norm=NormConfig("groupnorm"), num_classes=10, in_channels=in_channels)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("train_mode", [False, True])
def test_outputs_do_not_depend_on_the_batch(seed: int, train_mode: bool) -> None:
    """An image's logits alone equal its logits in a batch, in any order, in eval and in train mode."""
    model = _gn_model(seed).train(train_mode)
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(100 + seed))  # (N, 1, 28, 28)
    with torch.no_grad():
        batch = model(x)  # (N, 10)
        alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])  # (N, 10), one image per call
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        shuffled = model(x[perm])[torch.argsort(perm)]  # back in the original order
    for name, other in (("alone", alone), ("shuffled", shuffled)):
        err = (batch - other).abs().max().item()
        assert err <= 1e-6, f"{name}: max abs difference {err:.3g}"


@pytest.mark.parametrize("arch", list_models())
def test_every_arch_builds_with_groupnorm(arch: str) -> None:
    """The one build route: every norm of every registry arch is a GroupNorm with the default groups."""
    model = _gn_model(0, arch, in_channels=3)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms, arch
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()), arch
    assert all(m.num_groups == default_groups(m.num_channels) for m in norms), arch


def test_explicit_groups_reach_every_layer_or_fail_at_build_naming_the_width() -> None:
    cfg = train_config_from_dict({"norm": {"kind": "group_norm", "groups": 4}})
    assert cfg.norm.kind == "groupnorm" and cfg.norm.groups == 4
    model = build_model("small_cnn", norm=cfg.norm, num_classes=10, in_channels=1)
    assert {m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)} == {4}
    # tiny's widths are 8 and 16: 3 divides neither; the error comes when the model is built.
    bad = train_config_from_dict({"norm": {"kind": "gn", "groups": 3}})
    with pytest.raises(LncliError) as info:
        build_model("tiny", norm=bad.norm, num_classes=10, in_channels=3)
    assert "norm.groups=3" in str(info.value) and "width 8" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="'norm.groups'"):
        train_config_from_dict({"norm": {"kind": "gn", "groups": 0}})
