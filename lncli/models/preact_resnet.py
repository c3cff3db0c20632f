"""The LocalNorm authors' pre-activation ResNet-32 for CIFAR-10 (``byin-cwi/LocalNorm1``, ``cifar10/resnet.py``).

A faithful port of their Keras ``residual_network``:

- a 3x3 conv stem with 16 channels and no norm after it;
- 3 stages of ``n`` = 5 blocks with 16/32/64 channels (6n+2 = 32 layers);
- each block: ``o1 = relu(norm(x))``, ``conv3x3(o1, stride)``, ``relu(norm(.))``, ``conv3x3``;
  the shortcut is ``x``, or on the first block of stages 2 and 3 a strided 1x1
  *projection of o1* (the pre-activated input, not ``x``), as in their code;
- a final norm -> relu -> global average pool -> linear.

Convolutions keep Keras' default ``use_bias=True`` to match the authors' parameter
set, and weights use He-normal initialisation as theirs do. (Their L2 weight decay
belongs to the optimiser config, not the model.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]


class PreActBlock(nn.Module):
    """norm -> relu -> conv -> norm -> relu -> conv, plus identity or a projection of the pre-activation."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.bn1 = norm_layer(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=True)
        self.bn2 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=True)
        self.projection = (
            nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True) if (stride != 1 or in_planes != planes) else None
        )

    def forward(self, x: Tensor) -> Tensor:
        o1 = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(o1))))
        return out + (self.projection(o1) if self.projection is not None else x)


class PreActResNet(nn.Module):
    """The authors' pre-activation ResNet (6n+2 layers).

    Args:
        depth: 6n+2 (32 in the paper).
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
    """

    def __init__(
        self, depth: int, *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"pre-activation ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=True)
        stages: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(PreActBlock(in_planes, planes, stride, norm_layer))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = norm_layer(64)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # Keras he_normal: fan_in scaling (it is a truncated normal there; the
                # difference is immaterial for training from scratch).
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # (N, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64, H/4, W/4)
        x = F.relu(self.bn_final(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 64)
        return self.fc(x)


@register_model("preact_resnet32")
def preact_resnet32(*, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Module:
    """The LocalNorm authors' pre-activation ResNet-32 (CIFAR-10 recipe)."""
    return PreActResNet(32, num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer)
