"""torchvision's ResNet-18 and ResNet-50, for larger images, with an injected norm layer.

Built with ``weights=None`` (lncli works offline; load pretrained weights as a
foreign checkpoint instead). The key names are torchvision's, so torchvision
state_dicts load unchanged. ``in_channels != 3`` replaces ``conv1`` with a fresh
conv of the same shape otherwise. ``cifar_stem=True`` swaps the 7x7/2 stem and
max-pool for a 3x3/1 conv without pooling, the usual adaptation to 32x32 images.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lncli.models._registry import register_model

NormLayer = Callable[..., nn.Module]


def _build(arch: str, num_classes: int, in_channels: int, norm_layer: NormLayer, cifar_stem: bool) -> nn.Module:
    # Imported here: torchvision.models loads every torchvision architecture, seconds that every lncli command
    # (and every checkpoint load) would otherwise pay for two models.
    from torchvision.models import resnet as tv_resnet

    model = getattr(tv_resnet, arch)(weights=None, num_classes=num_classes, norm_layer=norm_layer)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


@register_model("resnet18")
def resnet18(
    *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, cifar_stem: bool = False
) -> nn.Module:
    """torchvision ResNet-18 (11.7 M parameters for 1000 classes)."""
    return _build("resnet18", num_classes, in_channels, norm_layer, cifar_stem)


@register_model("resnet50")
def resnet50(
    *, num_classes: int, in_channels: int, norm_layer: NormLayer = nn.BatchNorm2d, cifar_stem: bool = False
) -> nn.Module:
    """torchvision ResNet-50 (25.6 M parameters for 1000 classes)."""
    return _build("resnet50", num_classes, in_channels, norm_layer, cifar_stem)
