"""Fused norm+activation layers (timm's BatchNormAct2d contract) keep their activation through conversions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lncli.nn import LocalNorm2d, convert_batchnorm_to_localnorm, convert_localnorm_to_batchnorm, set_test_mode
from lncli.nn.norm_act import BatchNormAct2d, LocalNormAct2d, act_children


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    bn = BatchNormAct2d(6)
    bn.add_module("drop", nn.Identity())
    bn.add_module("act", nn.ReLU())
    net = nn.Sequential(nn.Conv2d(3, 6, 3), bn, nn.Conv2d(6, 4, 1))
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)  # negative shifts: the ReLU clips something
    return net.eval()


def test_act_children_contract() -> None:
    assert act_children(nn.BatchNorm2d(3)) is None
    assert set(act_children(_net(0)[1]) or {}) == {"drop", "act"}
    odd = nn.BatchNorm2d(3)
    odd.add_module("extra", nn.ReLU())
    assert act_children(odd) is None  # not the drop/act contract


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conversion_keeps_the_activation_and_round_trips(seed: int) -> None:
    net = _net(seed)
    x = torch.randn(8, 3, 10, 10, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = net(x)
        ref = net[2](torch.relu(nn.BatchNorm2d.forward(net[1], net[0](x))))  # BN, then ReLU, by hand
        torch.testing.assert_close(want, ref, rtol=0, atol=0)
        ln = convert_batchnorm_to_localnorm(_net(seed), group_size=4, num_heads=2)
        assert isinstance(ln[1], LocalNormAct2d) and isinstance(ln[1].act, nn.ReLU)
        got = set_test_mode(ln, stats="running")(x)  # running statistics: exactly BN's eval
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        back = convert_localnorm_to_batchnorm(ln)
        assert type(back[1]) is BatchNormAct2d and not isinstance(back[1], LocalNorm2d)
        assert all(torch.equal(back.state_dict()[k], v) for k, v in net.state_dict().items())
        torch.testing.assert_close(back(x), want, rtol=0, atol=0)
