"""CIFAR ResNet-20/32/44/56 of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016, §4.2).

Three stages of ``n`` basic blocks with 16/32/64 channels on 32x32 inputs
(6n+2 weighted layers: n = 3, 5, 7, 9 for depth 20, 32, 44, 56), global average
pooling and one linear layer. ResNet-20 has 0.27 M parameters.

Shortcuts where the shape changes:

- ``shortcut="A"`` (default, the paper's CIFAR choice): identity with stride-2
  subsampling and zero-padded extra channels. It has no parameters, so the model
  has exactly the paper's parameter count and a norm swap touches only the blocks.
- ``shortcut="B"``: a 1x1 strided convolution followed by a norm layer (the
  ImageNet ResNets' projection), as in many PyTorch CIFAR re-implementations.

Norm placement is the post-activation original: conv -> norm -> relu, with the
add before the last relu.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (N, C_in, H/s, W/s)
        # Pad the channel dimension evenly on both sides, as in the common reference
        # implementation; where the zeros go does not matter to the network.
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))  # (N, C_out, H/s, W/s)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels={self.pad}"


class BasicBlock(nn.Module):
    """Two 3x3 convs with norm and relu, plus a shortcut (post-activation)."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer: NormLayer, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = ShortcutA(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), norm_layer(planes)
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (6n+2 layers), with an injected norm layer.

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, ...).
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
        shortcut: ``"A"`` (zero-pad identity, the paper's CIFAR choice) or ``"B"`` (1x1 conv + norm).
    """

    def __init__(
        self,
        depth: int,
        *,
        num_classes: int,
        in_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(16)
        layers: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            blocks = []
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride, norm_layer, shortcut))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(
                    m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in", nonlinearity="relu"
                )

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (N, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (N, 64, H/4, W/4)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (N, 64)
        return self.fc(x)


def _make(depth: int) -> Callable[..., nn.Module]:
    def builder(
        *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, shortcut: str = "A"
    ) -> nn.Module:
        return CifarResNet(
            depth, num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, shortcut=shortcut
        )

    builder.__name__ = builder.__qualname__ = f"resnet{depth}"
    builder.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016); ``shortcut`` 'A' (default) or 'B'."
    return builder


resnet20 = register_model("resnet20")(_make(20))
resnet32 = register_model("resnet32")(_make(32))
resnet44 = register_model("resnet44")(_make(44))
resnet56 = register_model("resnet56")(_make(56))
