"""Helpers for the foreign-model tests: library models built without lncli, and user builder modules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import torch
from torch import Tensor, nn

from lncli.data import DataMeta, load_dataset, normalize

# (rtol, atol) for lncli's model against the library's own: the same modules, the same weights and
# the same kernels, so anything beyond float32 rounding would be a different model.
SAME_MODEL_TOL = (1e-5, 1e-6)


def library_model(arch: str, num_classes: int, in_chans: int = 3) -> nn.Module:
    """The model as a user builds it with the library itself (never through lncli).

    A grayscale torchvision ResNet gets the stem users write by hand: ``conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)``.
    """
    library, name = arch.split(":", 1)
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    import torchvision.models

    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine, so eval mode is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + torch.randn(m.num_features, generator=g) * 0.1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def batch(spec: str, n: int) -> tuple[Tensor, Tensor, DataMeta]:
    """The first ``n`` test images of ``spec``, normalised as lncli feeds them: (x (n, C, H, W), labels, meta)."""
    ds = load_dataset(spec, "test", limit=n)
    return normalize(ds.images, ds.meta), ds.labels, ds.meta


def write_module(folder: Path, name: str, body: str) -> Path:
    """Write ``folder/name.py`` (dedented) and forget any module of that name already imported."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    sys.modules.pop(name, None)
    return path


BUILDERS = """
    import torch
    from torch import nn

    CALLS = []
    NOT_CALLABLE = 3


    class Net(nn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


    def build(num_classes, in_chans):
        CALLS.append({"num_classes": num_classes, "in_chans": in_chans})
        return Net(num_classes, in_chans)


    def build_channels(num_classes=10, in_channels=3, width=None):
        CALLS.append({"num_classes": num_classes, "in_channels": in_channels, "width": width})
        return Net(num_classes, in_channels)


    def build_plain():
        CALLS.append({})
        return Net()


    def returns_list(num_classes):
        return []


    def raises(num_classes):
        raise ValueError("this builder is broken\\nsecond line")


    def no_norm(num_classes, in_chans):
        return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
"""
"""A user's builder module: ``build(num_classes, in_chans)``, ``build_channels(..., in_channels)``, and bad ones."""


def fit_classifier(model: nn.Module, x: Tensor, labels: Tensor, num_classes: int) -> nn.Module:
    """Make ``model`` informative on ``x``: its last Linear becomes a nearest-class-mean classifier.

    A randomly initialised net tends to give every image one class, so a count of correct
    answers could agree by chance with a wrong model; class means of its own features make the
    predictions depend on everything before the classifier.
    """
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach()))
    with torch.no_grad():
        model.eval()(x)
        handle.remove()
        feats = seen[0]  # (N, F)
        means = torch.stack(
            [feats[labels == k].mean(0) if (labels == k).any() else feats.mean(0) for k in range(num_classes)]
        )
        head.weight.copy_(means)  # (K, F): logit_k = <f, mu_k> - |mu_k|^2 / 2
        head.bias.copy_(-0.5 * (means**2).sum(1))
    return model


def predictions_correct(model: nn.Module, x: Tensor, labels: Tensor) -> int:
    """How many of ``x`` the model (eval mode) classifies right."""
    with torch.no_grad():
        return int((model.eval()(x).argmax(1) == labels).sum())
