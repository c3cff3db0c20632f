"""lncli.models.build: the one route from an arch name and a norm spec to a model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lncli.config.train import MODEL_CORE_KWARGS, NormConfig
from lncli.errors import LncliError
from lncli.models import UnknownModelError, build_model, check_arch, create_model, list_models, norm_layer_for
from lncli.models._registry import CORE_KWARGS
from lncli.nn import LocalNorm2d, get_norm_layer


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("norm", "layer_kwargs"),
    [
        (NormConfig(), {"kind": "batchnorm"}),
        (
            NormConfig("localnorm", 4, 2, "strided"),
            {"kind": "localnorm", "group_size": 4, "num_heads": 2, "grouping": "strided"},
        ),
        (NormConfig("localnorm", 2), {"kind": "localnorm", "group_size": 2}),
    ],
    ids=["batchnorm", "localnorm-4x2-strided", "localnorm-default-heads"],
)
def test_build_model_equals_create_model_with_the_layer(
    seed: int, norm: NormConfig, layer_kwargs: dict[str, Any]
) -> None:
    # The same modules and, under the same seed, the same initial weights as the registry route.
    torch.manual_seed(seed)
    ref = create_model("tiny", num_classes=7, in_channels=1, norm_layer=get_norm_layer(**layer_kwargs), width=4)
    torch.manual_seed(seed)
    got = build_model("tiny", norm=norm, num_classes=7, in_channels=1, arch_kwargs={"width": 4})
    assert [type(m) for m in got.modules()] == [type(m) for m in ref.modules()]
    a, b = ref.state_dict(), got.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lns = [m for m in got.modules() if isinstance(m, LocalNorm2d)]
    if norm.kind == "localnorm":
        assert lns and all(m.group_size == norm.group_size and m.grouping == norm.grouping for m in lns)
        assert all(m.num_heads == (norm.num_heads or 1) for m in lns)
    else:
        assert not lns


def test_batchnorm_ignores_localnorm_settings() -> None:
    # A config's norm section keeps G and grouping for batchnorm; they change nothing.
    assert norm_layer_for(NormConfig("batchnorm", 5, 3, "strided")) is nn.BatchNorm2d


def test_check_arch() -> None:
    for name in list_models():
        check_arch(name)
    with pytest.raises(UnknownModelError, match="unknown arch 'resnet21'; valid: .*resnet20.*tiny"):
        check_arch("resnet21")
    with pytest.raises(UnknownModelError):
        build_model("resnet21", norm=NormConfig(), num_classes=10, in_channels=3)


@pytest.mark.parametrize(
    ("arch", "norm", "kwargs", "match"),
    [
        ("tiny", NormConfig("weightnorm"), {}, "bad norm spec .*weightnorm"),  # type: ignore[arg-type]
        ("tiny", NormConfig("groupnorm", groups=0), {}, "bad norm spec .*groups must be a positive integer"),
        ("tiny", NormConfig("groupnorm", groups=3), {}, "norm.groups=3 does not divide a layer of width 8"),
        ("tiny", NormConfig("localnorm", 0), {}, "bad norm spec .*group_size"),
        ("tiny", NormConfig(), {"depth": 3}, "takes no option depth"),
        ("resnet20", NormConfig(), {"shortcut": "C"}, "shortcut must be .A. or .B."),  # a builder ValueError
        ("tiny", NormConfig(), {"num_classes": 3}, "num_classes is set by lncli"),
        ("tiny", NormConfig(), {"norm_layer": None, "in_channels": 1}, "in_channels, norm_layer is set by lncli"),
    ],
)
def test_build_errors_are_one_line_lncli_errors(arch: str, norm: NormConfig, kwargs: dict, match: str) -> None:
    with pytest.raises(LncliError, match=match) as info:
        build_model(arch, norm=norm, num_classes=10, in_channels=3, arch_kwargs=kwargs)
    assert "\n" not in str(info.value)


def test_core_kwargs_are_one_fact() -> None:
    # What builders must take (registry) is what a train config's model.kwargs may not set.
    assert CORE_KWARGS is MODEL_CORE_KWARGS
