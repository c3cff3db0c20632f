"""get_norm_layer (lncli.nn.factory): norm names and aliases -> layer factories."""

from __future__ import annotations

import pytest
from torch import nn

from lncli.config.common import DEFAULT_GROUP_SIZE, NORM_ALIASES
from lncli.errors import LncliError
from lncli.nn import NORM_KINDS, TEST_HEADS, TEST_STATS, LocalNorm2d, get_norm_layer


def test_get_norm_layer() -> None:
    assert NORM_KINDS == ("batchnorm", "localnorm", "groupnorm")
    assert get_norm_layer("bn") is nn.BatchNorm2d and get_norm_layer("batchnorm") is nn.BatchNorm2d
    layer = get_norm_layer("ln", group_size=8, num_heads=2, grouping="strided")(5)
    assert isinstance(layer, LocalNorm2d)
    assert (layer.num_features, layer.group_size, layer.num_heads, layer.grouping) == (5, 8, 2, "strided")
    assert isinstance(get_norm_layer("localnorm")(3), LocalNorm2d)
    with pytest.raises(LncliError, match="batchnorm, localnorm, groupnorm"):
        get_norm_layer("weightnorm")
    with pytest.raises(LncliError):
        get_norm_layer("localnorm", group_size=0)
    assert TEST_HEADS == ("position", "mean", "vote") and TEST_STATS == ("running", "batch", "local", "single", "prior")


def test_get_norm_layer_accepts_every_shared_alias() -> None:
    """One alias map (lncli.config.common): every spelling the train config accepts builds the same layer."""
    for spelling, kind in NORM_ALIASES.items():
        for text in (spelling, spelling.upper(), f" {spelling} "):
            factory = get_norm_layer(text, group_size=4)
            if kind == "batchnorm":
                assert factory is nn.BatchNorm2d, text
            elif kind == "groupnorm":
                assert type(factory(48)) is nn.GroupNorm and factory(48).num_groups == 24, text
            else:
                layer = factory(3)
                assert type(layer) is LocalNorm2d and layer.group_size == 4, text
    assert get_norm_layer("ln")(3).group_size == DEFAULT_GROUP_SIZE
