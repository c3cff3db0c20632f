"""Model registry and builders: every model builds with BatchNorm and LocalNorm, any channel count."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from lncli.errors import LncliError
from lncli.models import UnknownModelError, create_model, list_models, model_kwargs, register_model
from lncli.nn import LocalNorm2d, get_norm_layer, set_test_mode

ALL = (
    "resnet20", "resnet32", "resnet44", "resnet56", "preact_resnet32", "vgg16_paper",
    "wrn28_10", "small_cnn", "resnet18", "resnet50", "tiny",
)  # fmt: skip
HEAVY = {"wrn28_10", "resnet50"}  # forward passes too slow for the default suite: parameter counts only
FAST = [n for n in ALL if n not in HEAVY]


def _localnorm(group_size: int = 2) -> object:
    return get_norm_layer("localnorm", group_size=group_size)


def _norm_layers(kind: str) -> object:
    if kind == "batchnorm":
        return nn.BatchNorm2d
    if kind == "groupnorm":  # any f(num_features) -> module must work
        return functools.partial(nn.GroupNorm, 1)
    return _localnorm()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_contract_name() -> None:
    assert set(ALL) <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20.*tiny"):
        create_model("resnet21", num_classes=10, in_channels=3)
    # It is also a user error, so the CLI prints one line and exits 2.
    with pytest.raises(LncliError):
        create_model("nope", num_classes=10, in_channels=3)


def test_unknown_kwarg_names_the_valid_ones() -> None:
    with pytest.raises(UnknownModelError, match="takes no option depth.*shortcut"):
        create_model("resnet20", num_classes=10, in_channels=3, depth=3)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model("tiny")
        def tiny_again(*, num_classes: int, in_channels: int, norm_layer: object = nn.BatchNorm2d) -> nn.Module:
            return nn.Identity()


def test_builder_must_take_core_kwargs() -> None:
    with pytest.raises(TypeError, match="norm_layer"):

        @register_model("__bad_builder_for_test__")
        def bad(*, num_classes: int, in_channels: int) -> nn.Module:
            return nn.Identity()

    assert "__bad_builder_for_test__" not in list_models()


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("norm", ["batchnorm", "localnorm"])
def test_forward_shape(name: str, in_channels: int, norm: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=in_channels, norm_layer=_norm_layers(norm))
    size = 28 if in_channels == 1 else 32  # Fashion-MNIST and CIFAR sizes
    x = torch.randn(4, in_channels, size, size)
    model.train()
    assert model(x).shape == (4, 7)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["tiny", "small_cnn", "resnet20"])
def test_any_norm_factory_is_injected(name: str) -> None:
    model = create_model(name, num_classes=3, in_channels=3, norm_layer=_norm_layers("groupnorm"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", ALL)
def test_localnorm_replaces_every_batchnorm(name: str) -> None:
    bn = create_model(name, num_classes=10, in_channels=3)
    ln = create_model(name, num_classes=10, in_channels=3, norm_layer=get_norm_layer("localnorm", group_size=2))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert n_bn > 0
    assert sum(isinstance(m, LocalNorm2d) for m in ln.modules()) == n_bn
    # LocalNorm keeps BN's keys, so a BN state_dict's keys are a subset of the LN model's.
    assert set(bn.state_dict()) <= set(ln.state_dict())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet20", 269_722),  # He et al.: 0.27 M
        ("resnet32", 464_154),  # 0.46 M
        ("resnet44", 658_586),  # 0.66 M
        ("resnet56", 853_018),  # 0.85 M
        ("wrn28_10", 36_479_194),  # RobustBench WRN-28-10: 36.5 M
        ("resnet18", 11_181_642),  # torchvision, 10 classes
        ("resnet50", 23_528_522),
    ],
)
def test_parameter_counts(name: str, expected: int) -> None:
    assert _n_params(create_model(name, num_classes=10, in_channels=3)) == expected


def test_heavy_models_forward_on_tiny_input() -> None:
    # One small forward each, in eval mode, to check the wiring without a slow test.
    with torch.no_grad():
        wrn = create_model("wrn28_10", num_classes=5, in_channels=1).eval()
        assert wrn(torch.randn(1, 1, 8, 8)).shape == (1, 5)
        r50 = create_model("resnet50", num_classes=5, in_channels=1).eval()
        assert r50(torch.randn(1, 1, 32, 32)).shape == (1, 5)


def test_resnet_shortcut_options() -> None:
    a = create_model("resnet20", num_classes=10, in_channels=3, shortcut="A")
    b = create_model("resnet20", num_classes=10, in_channels=3, shortcut="B")
    assert _n_params(b) > _n_params(a)  # B adds 1x1 projections
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20", num_classes=10, in_channels=3, shortcut="C")


def test_small_cnn_is_small_and_flattens() -> None:
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    assert _n_params(model) * 4 < 2 * 1024 * 1024  # < 2 MB of float32: checkpoints get shipped
    # No global average pool: single-image statistics would collapse it (lncli/models/small_cnn.py says why).
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)) for m in model.modules())


def test_vgg16_paper_order_is_conv_relu_norm() -> None:
    model = create_model("vgg16_paper", num_classes=10, in_channels=3)
    layers = list(model.features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    for i in convs:
        assert isinstance(layers[i + 1], nn.ReLU) and isinstance(layers[i + 2], nn.BatchNorm2d)


def test_torchvision_resnet_keeps_torchvision_keys() -> None:
    from torchvision.models import resnet18

    ours = create_model("resnet18", num_classes=10, in_channels=3)
    ref = resnet18(weights=None, num_classes=10)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())  # loads with strict=True


def test_model_kwargs_reports_options() -> None:
    assert model_kwargs("resnet20") == {"shortcut": "A"}
    assert "width" in model_kwargs("small_cnn")


def test_small_cnn_single_image_stats_do_not_collapse() -> None:
    torch.manual_seed(0)
    model = create_model(
        "small_cnn", num_classes=10, in_channels=1, norm_layer=get_norm_layer("localnorm", group_size=1)
    )
    set_test_mode(model, stats="single")
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(6, 1, 28, 28))
    # Different images must give different logits under per-image statistics.
    spread = (out - out.mean(0)).abs().max().item()
    assert spread > 1e-3, f"outputs collapsed: max spread {spread}"


def test_wrn28_10_uses_robustbench_key_names() -> None:
    keys = set(create_model("wrn28_10", num_classes=10, in_channels=3).state_dict())
    for k in (
        "conv1.weight",
        "block1.layer.0.bn1.running_mean",
        "block1.layer.0.convShortcut.weight",  # 16 -> 160 channels
        "block2.layer.3.conv2.weight",
        "block3.layer.0.convShortcut.weight",
        "bn1.weight",
        "fc.bias",
    ):
        assert k in keys, k
    assert "block1.layer.1.convShortcut.weight" not in keys


def test_preact_resnet32_matches_the_authors_layout() -> None:
    model = create_model("preact_resnet32", num_classes=10, in_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 31  # stem + 3 stages x 5 blocks x 2 convs; + fc = 32 weighted layers
    projections = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projections] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    # No norm right after the stem; a final norm before the pooling head.
    assert [n for n, _ in model.named_children()] == ["conv1", "layer1", "layer2", "layer3", "bn_final", "fc"]
