"""WRN-28-10, the Wide ResNet of Zagoruyko & Komodakis (BMVC 2016) in RobustBench's layout.

The module and parameter names follow RobustBench's ``WideResNet``
(``conv1``, ``block1.layer.0.bn1``, ..., ``bn1``, ``fc``), so RobustBench's
"Standard" CIFAR-10 state_dicts load as foreign checkpoints. Note that RobustBench
models expect inputs in [0, 1] without mean/std normalisation: give such a
checkpoint a data meta with mean 0 and std 1.

Blocks are pre-activation (norm -> relu -> conv); a 1x1 shortcut conv is used
where the width changes. 36.5 M parameters for 10 classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]


class WideBasicBlock(nn.Module):
    """RobustBench's ``BasicBlock``: pre-activation, optional 1x1 ``convShortcut``."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, norm_layer: NormLayer, drop_rate: float) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm_layer(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (
            None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        o = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(o)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # As in RobustBench: when the width changes the shortcut sees the
        # pre-activated input, otherwise the raw input.
        return out + (x if self.convShortcut is None else self.convShortcut(o))


class NetworkBlock(nn.Module):
    """A stage of ``n`` wide blocks (kept as a module so the ``blockK.layer.i`` names match)."""

    def __init__(
        self, n: int, in_planes: int, out_planes: int, stride: int, norm_layer: NormLayer, drop_rate: float
    ) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasicBlock(
                    in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, norm_layer, drop_rate
                )
                for i in range(n)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """Wide ResNet-depth-k with an injected norm layer.

    Args:
        depth: 6n+4 (28 for WRN-28-10).
        widen_factor: width multiplier k (10).
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
        drop_rate: dropout between the two convs of each block (0 in RobustBench's Standard model).
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        *,
        num_classes: int,
        in_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, norm_layer, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, norm_layer, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, norm_layer, drop_rate)
        self.bn1 = norm_layer(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # (N, 16, H, W)
        x = self.block3(self.block2(self.block1(x)))  # (N, 64k, H/4, W/4)
        x = self.relu(self.bn1(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 64k)
        return self.fc(x)


@register_model("wrn28_10")
def wrn28_10(
    *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, drop_rate: float = 0.0
) -> nn.Module:
    """WRN-28-10 in RobustBench's layout (36.5 M parameters)."""
    return WideResNet(
        28, 10, num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, drop_rate=drop_rate
    )
