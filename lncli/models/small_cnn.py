"""Small, fast CNNs: ``small_cnn`` for Fashion-MNIST on a CPU, and ``tiny`` for tests.

Both end in a *flatten* of a small spatial map, not in global average pooling.
Why: with single-image statistics (LocalNorm ``single`` mode, G = 1) every
channel of the last norm's output has a fixed mean over (H, W) for every image,
so a global average pool after it yields (almost) the same vector for all inputs
and accuracy collapses to chance (measured on 28x28 Fashion-MNIST while lncli was
prototyped). Flattening keeps *where* activations are, which survives per-image
normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]


def _conv_norm_relu(c_in: int, c_out: int, norm_layer: NormLayer, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), norm_layer(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """conv-norm-relu x2, max-pool, conv-norm-relu x2, max-pool, flatten, linear-relu, linear.

    With the default ``width=16`` and ``hidden=128`` on 28x28 inputs it has 0.22 M
    parameters (0.9 MB of float32), about 4.6 M multiply-adds per image. An
    adaptive average pool to 7x7 before flattening is the identity on 28x28
    inputs and lets other sizes (e.g. 32x32) through with the same weights.

    Args:
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
        width: channels of the first two convs (the last two have 2 * width).
        hidden: units of the hidden linear layer (0: none, flatten straight into the classifier).
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        width: int = 16,
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_norm_relu(in_channels, w, norm_layer),
            *_conv_norm_relu(w, w, norm_layer),
            nn.MaxPool2d(2),
            *_conv_norm_relu(w, 2 * w, norm_layer),
            *_conv_norm_relu(2 * w, 2 * w, norm_layer),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(7)
        flat = 2 * w * 7 * 7
        head: list[nn.Module] = [nn.Flatten()]
        if hidden > 0:
            head += [nn.Linear(flat, hidden), nn.ReLU(inplace=True)]
            flat = hidden
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*head)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 2w, H/4, W/4)
        return self.classifier(self.pool(x))  # (N, 2w, 7, 7) -> (N, num_classes)


class TinyNet(nn.Module):
    """Two strided conv-norm-relu layers, a 2x2 adaptive pool, flatten, linear: for tests only.

    Args:
        num_classes: number of logits.
        in_channels: image channels.
        norm_layer: ``f(num_features) -> nn.Module``.
        width: channels of the first conv (the second has 2 * width).
    """

    def __init__(
        self, *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, width: int = 8
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_norm_relu(in_channels, width, norm_layer, stride=2),
            *_conv_norm_relu(width, 2 * width, norm_layer, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(2 * width * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x))  # (N, 2w, 2, 2)
        return self.fc(torch.flatten(x, 1))  # (N, num_classes)


@register_model("small_cnn")
def small_cnn(
    *,
    num_classes: int,
    in_channels: int,
    norm_layer: NormLayer = nn.BatchNorm2d,
    width: int = 16,
    hidden: int = 128,
    dropout: float = 0.0,
) -> nn.Module:
    """The fast Fashion-MNIST CPU model (4 conv-norm-relu, 2 pools, flatten, MLP head)."""
    return SmallCNN(
        num_classes=num_classes,
        in_channels=in_channels,
        norm_layer=norm_layer,
        width=width,
        hidden=hidden,
        dropout=dropout,
    )


@register_model("tiny")
def tiny(*, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, width: int = 8) -> nn.Module:
    """A 2-conv test model (a few thousand parameters)."""
    return TinyNet(num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer, width=width)
