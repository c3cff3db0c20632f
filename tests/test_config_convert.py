"""ConvertConfig (lncli.config.convert): defaults from lncli.config.common, frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lncli.config.common import DEFAULT_GROUP_SIZE
from lncli.config.convert import ConvertConfig
from lncli.nn import LocalNorm2d, get_norm_layer


def test_defaults_are_the_shared_ones() -> None:
    cfg = ConvertConfig(src=Path("in.pt"), dst=Path("out.pt"), to="localnorm")
    assert (cfg.group_size, cfg.num_heads, cfg.grouping) == (DEFAULT_GROUP_SIZE, 1, "consecutive")
    # The layer, the factory and the config agree on G (one home: lncli.config.common).
    assert LocalNorm2d(3).group_size == get_norm_layer("ln")(3).group_size == cfg.group_size == 16


def test_config_is_frozen() -> None:
    cfg = ConvertConfig(src=Path("in.pt"), dst=Path("out.pt"), to="batchnorm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.group_size = 4  # type: ignore[misc]
