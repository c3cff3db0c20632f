"""Foreign archs (torchvision:, timm:, package.module:function): parity with the libraries, norms, errors."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from foreign_helpers import BUILDERS, SAME_MODEL_TOL, batch, library_model, trained_like, write_module
from torch import nn

from lncli.checkpoint import load_checkpoint, model_from_checkpoint
from lncli.config.train import NormConfig
from lncli.errors import LncliError
from lncli.models import build_model, check_arch, list_models
from lncli.models.weights import classifier_key, stem_key
from lncli.nn import LocalNorm2d, convert_localnorm_to_batchnorm, set_test_mode
from lncli.nn.norm_act import BatchNormAct2d, LocalNormAct2d

TIMM_BN = "timm:test_efficientnet"  # timm's fused BatchNormAct2d layers, 0.1 M parameters
TIMM_REAL = "timm:mobilenetv3_small_050"  # the same layers in a real model (slower to build)
TIMM_PLAIN_BN = "timm:test_resnet"  # plain nn.BatchNorm2d, a few hundred thousand parameters
TORCHVISION = "torchvision:resnet18"


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- parity with the libraries


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("arch", "spec"),
    [
        (TIMM_BN, "synthetic"),
        (TIMM_PLAIN_BN, "synthetic-gray"),
        (TORCHVISION, "synthetic"),
        (TORCHVISION, "synthetic-gray"),
        pytest.param(TIMM_REAL, "synthetic", marks=pytest.mark.slow),
    ],
)
def test_logits_equal_the_library_models(tmp_path: Path, seed: int, arch: str, spec: str) -> None:
    # A user's torch.save(model.state_dict()) of the library's own model, loaded through lncli.
    x, _, meta = batch(spec, 16)
    torch.manual_seed(seed)
    lib = trained_like(library_model(arch, meta.num_classes, meta.in_channels), seed).eval()
    torch.save(lib.state_dict(), tmp_path / "model.pt")
    model = model_from_checkpoint(load_checkpoint(tmp_path / "model.pt", arch=arch, data=meta))
    with torch.no_grad():
        got, want = model(x), lib(x)  # (16, K)
    rtol, atol = SAME_MODEL_TOL
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=f"max abs error {_max_err(got, want):.3g}")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("arch", [TIMM_BN, TORCHVISION, pytest.param(TIMM_REAL, marks=pytest.mark.slow)])
def test_localnorm_build_matches_batchnorm_references(seed: int, arch: str) -> None:
    """A LocalNorm build of a foreign model, against two independent references on the library model:
    running statistics = BN's eval; one group of the whole batch (G = N) = BN's training-mode forward."""
    x, _, meta = batch("synthetic", 8)
    torch.manual_seed(seed)
    lib = trained_like(library_model(arch, meta.num_classes), seed).eval()
    ln = build_model(arch, norm=NormConfig("localnorm", group_size=8, num_heads=1), num_classes=10, in_channels=3)
    ln.load_state_dict(lib.state_dict())  # a BN state_dict: LocalNorm fills its heads from weight/bias
    ln.eval()
    assert any(isinstance(m, LocalNorm2d) for m in ln.modules())
    assert not any(type(m) in (nn.BatchNorm2d,) or type(m).__name__ == "BatchNormAct2d" for m in ln.modules())
    with torch.no_grad():
        got = set_test_mode(ln, stats="running")(x)
        want = lib(x)
        rtol, atol = SAME_MODEL_TOL
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=f"running: max err {_max_err(got, want):.3g}")
        got = set_test_mode(ln, stats="local", group_size=8)(x)
        want = copy.deepcopy(lib).train()(x)  # batch statistics (the copy's running stats change, not lib's)
        # Another kernel (lncli's grouped CPU path) for the same sums, through ~20 layers.
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"local: max err {_max_err(got, want):.3g}")


def test_timm_norm_act_keeps_its_activation_through_conversions() -> None:
    model = build_model(TIMM_BN, norm=NormConfig("localnorm", group_size=4), num_classes=10, in_channels=3)
    fused = [m for m in model.modules() if isinstance(m, LocalNormAct2d)]
    assert fused and all(isinstance(m.act, nn.Module) for m in fused)
    assert any(not isinstance(m.act, nn.Identity) for m in fused)  # Hardswish / ReLU survive
    back = convert_localnorm_to_batchnorm(copy.deepcopy(model))
    assert sum(isinstance(m, BatchNormAct2d) for m in back.modules()) == len(fused)
    assert not any(isinstance(m, LocalNorm2d) for m in back.modules())


# --------------------------------------------------------------------------- building


def test_torchvision_stem_is_replaced_for_other_channel_counts() -> None:
    model = build_model(TORCHVISION, norm=NormConfig(), num_classes=7, in_channels=1)
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.kernel_size) == (1, 64, (7, 7))
    assert (model.conv1.stride, model.conv1.padding, model.conv1.bias) == ((2, 2), (3, 3), None)
    assert model.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 7)


# Registry models and a spread of library ones: is the last 2-D weight the classifier and the first
# 4-D weight the stem? (None: the model has no such tensor, e.g. SqueezeNet's conv classifier.)
KEY_ARCHS = [
    *list_models(),
    "torchvision:resnet18",
    "torchvision:mobilenet_v3_small",
    "torchvision:squeezenet1_1",
    "torchvision:shufflenet_v2_x0_5",
    "torchvision:efficientnet_b0",
    "torchvision:regnet_x_400mf",
    "timm:test_resnet",
    "timm:test_efficientnet",
    "timm:test_vit",
    "timm:test_convnext",
    TIMM_BN,
    TIMM_REAL,
]


@pytest.mark.parametrize("arch", KEY_ARCHS)
def test_classifier_and_stem_keys_are_found_generically(arch: str) -> None:
    state = build_model(arch, norm=NormConfig(), num_classes=7, in_channels=2).state_dict()
    head, stem = classifier_key(state), stem_key(state)
    assert head is None or state[head].shape[0] == 7, (head, tuple(state[head].shape))
    assert stem is not None and state[stem].shape[1] == 2, (stem, None if stem is None else tuple(state[stem].shape))
    if head is None:
        assert arch == "torchvision:squeezenet1_1"


@pytest.fixture()
def builders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The user's module ``lnclitest_nets`` (tests/foreign_helpers.py BUILDERS), importable for this test."""
    write_module(tmp_path / "src", "lnclitest_nets", BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    import lnclitest_nets

    yield lnclitest_nets
    sys.modules.pop("lnclitest_nets", None)


@pytest.mark.parametrize(
    ("function", "call"),
    [
        ("build", {"num_classes": 7, "in_chans": 2}),
        ("build_channels", {"num_classes": 7, "in_channels": 2, "width": None}),
        ("build_plain", {}),
    ],
)
def test_user_builder_gets_the_keywords_it_names(builders: Any, function: str, call: dict) -> None:
    model = build_model(f"lnclitest_nets:{function}", norm=NormConfig(), num_classes=7, in_channels=2, allow_code=True)
    assert builders.CALLS == [call] and isinstance(model, builders.Net)


def test_user_builder_gets_arch_kwargs_and_can_be_localnorm(builders: Any) -> None:
    norm = NormConfig("localnorm", group_size=2, num_heads=3)
    model = build_model(
        "lnclitest_nets:build_channels",
        norm=norm,
        num_classes=5,
        in_channels=1,
        arch_kwargs={"width": 4},
        allow_code=True,
    )
    assert builders.CALLS == [{"num_classes": 5, "in_channels": 1, "width": 4}]
    assert isinstance(model.bn, LocalNorm2d) and (model.bn.group_size, model.bn.num_heads) == (2, 3)


@pytest.mark.parametrize(
    ("arch", "needle"),
    [
        ("lnclitest_nets:nope", "module lnclitest_nets has no 'nope'"),
        ("lnclitest_nets:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
        ("lnclitest_nets:returns_list", "returned a list, not a torch.nn.Module"),
        ("lnclitest_nets:raises", "building 'lnclitest_nets:raises' failed: ValueError: this builder is broken"),
        ("lnclitest_nonexistent.nets:build", "cannot import module 'lnclitest_nonexistent.nets'"),
    ],
)
def test_user_builder_errors_are_one_line(builders: Any, arch: str, needle: str) -> None:
    with pytest.raises(LncliError) as info:
        build_model(arch, norm=NormConfig(), num_classes=10, in_channels=3, allow_code=True)
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_localnorm_needs_batchnorm_layers(builders: Any) -> None:
    for arch, allow in (("lnclitest_nets:no_norm", True), ("timm:test_vit", False)):
        with pytest.raises(LncliError, match="has no BatchNorm2d layer") as info:
            build_model(arch, norm=NormConfig("localnorm", 4), num_classes=10, in_channels=3, allow_code=allow)
        assert "\n" not in str(info.value)


def test_code_arch_needs_allow_code_and_imports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    write_module(tmp_path / "src", "lnclitest_side_effect", f"open({str(marker)!r}, 'w').close()\ndef build(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    for call in (
        lambda: check_arch("lnclitest_side_effect:build"),
        lambda: build_model("lnclitest_side_effect:build", norm=NormConfig(), num_classes=10, in_channels=3),
    ):
        with pytest.raises(LncliError, match="runs code; lncli builds one only when you name it yourself"):
            call()
    assert not marker.exists() and "lnclitest_side_effect" not in sys.modules


@pytest.mark.parametrize(
    ("arch", "needle"),
    [
        ("timm:resnet19", "unknown timm model 'resnet19'; close matches: resnet18"),
        ("torchvision:resnt18", "unknown torchvision model 'resnt18'; close matches: resnet18"),
        ("torchvision:zzzzzzzz", "no close match"),
        ("torchvision:fasterrcnn_resnet50_fpn", "unknown torchvision model"),  # a detector, not a classifier
        ("timm:hf-hub:someone/model", "bad arch"),  # no hub prefix ever reaches timm
        ("timm:", "bad arch"),
        ("a:b:c", "bad arch"),
        ("resnet21", "unknown arch 'resnet21'"),
    ],
)
def test_unknown_library_names(arch: str, needle: str) -> None:
    with pytest.raises(LncliError) as info:
        check_arch(arch)
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_timm_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(LncliError, match=r"needs timm, which is not installed; pip install 'lncli\[timm\]'"):
        check_arch("timm:resnet18")
    check_arch(TORCHVISION)  # the other forms do not need it


@pytest.mark.parametrize("option", ["pretrained", "weights", "checkpoint_path", "num_classes", "in_chans"])
def test_library_options_that_fetch_weights_are_refused(option: str) -> None:
    arch = "timm:test_resnet" if option != "weights" else TORCHVISION
    with pytest.raises(LncliError, match=f"model option {option} is set by lncli or not allowed"):
        build_model(arch, norm=NormConfig(), num_classes=10, in_channels=3, arch_kwargs={option: True})


def test_library_options_pass_through_and_library_errors_are_one_line() -> None:
    norm = NormConfig()
    model = build_model(
        "torchvision:resnet50", norm=norm, num_classes=10, in_channels=3, arch_kwargs={"width_per_group": 32}
    )
    assert model.layer1[0].conv1.weight.shape[0] == 32  # planes * width_per_group / 64 = 64 * 32 / 64
    with pytest.raises(LncliError, match="building 'torchvision:resnet18' failed: ValueError: BasicBlock") as info:
        build_model(TORCHVISION, norm=norm, num_classes=10, in_channels=3, arch_kwargs={"width_per_group": 32})
    assert "\n" not in str(info.value)
