"""The LocalNorm authors' VGG-16 for CIFAR-10 (``byin-cwi/LocalNorm1``, ``cifar10/vgg_test.py``).

Thirteen 3x3 convolutions (64,64 / 128,128 / 256x3 / 512x3 / 512x3), each
followed by ReLU and *then* the norm layer (conv -> relu -> norm, the authors'
order, unlike torchvision's conv -> norm -> relu); dropout 0.3 after the first
block only (the other dropouts are commented out in their code); a 2x2 max-pool
after each of the five blocks; flatten, Dense 512, ReLU, Dense ``num_classes``.
Convolutions keep Keras' default bias.

Two documented deviations so that other input sizes work:

- pools use ``ceil_mode=True``: identical on 32x32 (32->16->8->4->2->1) and lets
  28x28 inputs reach 1x1 (28->14->7->4->2->1) instead of failing;
- an adaptive average pool to 1x1 before flattening: the identity on 32x32 and
  28x28 inputs, so the paper's 512-feature flatten holds for any size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]

_CFG: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class PaperVGG16(nn.Module):
    """VGG-16 as trained by the LocalNorm authors, with an injected norm layer.

    Args:
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
        dropout: dropout after the first conv (0.3 in the paper).
    """

    def __init__(
        self, *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, dropout: float = 0.3
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for b, block in enumerate(_CFG):
            for i, width in enumerate(block):
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True), norm_layer(width)]
                if b == 0 and i == 0 and dropout > 0:
                    layers.append(nn.Dropout(dropout))
                c = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # Keras' default glorot_uniform, to stay close to the authors' training.
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 512, 1, 1) for 32x32 or 28x28 inputs
        x = torch.flatten(self.pool(x), 1)  # (N, 512)
        return self.classifier(x)


@register_model("vgg16_paper")
def vgg16_paper(
    *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, dropout: float = 0.3
) -> nn.Module:
    """The LocalNorm authors' CIFAR-10 VGG-16 (conv -> relu -> norm)."""
    return PaperVGG16(num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, dropout=dropout)
