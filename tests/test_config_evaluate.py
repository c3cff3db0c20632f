"""Tests for lncli.config.evaluate (EvalConfig and the names its options choose from)."""

from __future__ import annotations

import dataclasses

import pytest

from lncli.config.common import DEFAULT_PRIOR_N, MAX_SEVERITY, parse_list, parse_severities
from lncli.config.evaluate import (
    DEFAULT_BN_MODES,
    DEFAULT_GN_MODES,
    DEFAULT_LN_MODES,
    MODES,
    NOISE_FAMILY,
    EvalConfig,
)
from lncli.errors import LncliError


def test_parse_helpers() -> None:
    assert parse_severities("0-5") == (0, 1, 2, 3, 4, 5)
    assert parse_severities("5,1,2-3") == (1, 2, 3, 5)
    for bad in ("", "a", "3-1", "1,,x"):
        with pytest.raises(LncliError, match="--severity"):
            parse_severities(bad)
    assert parse_list("batch,running,batch", ("running", "batch"), "mode") == ("batch", "running")
    assert parse_list("all", ("running", "batch"), "mode") == ("running", "batch")
    with pytest.raises(LncliError, match="unknown mode 'bogus'; valid: running, batch"):
        parse_list("bogus", ("running", "batch"), "mode")


def test_config_is_frozen_and_its_defaults_are_the_named_facts() -> None:
    config = EvalConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 64  # type: ignore[misc]
    assert config.noises == NOISE_FAMILY and config.severities == tuple(range(MAX_SEVERITY + 1))
    assert config.heads is None and config.modes is None  # None: position where images form groups (HEADS)
    assert set(DEFAULT_BN_MODES) | set(DEFAULT_LN_MODES) <= set(MODES)
    assert DEFAULT_GN_MODES == ("groupnorm",) and "groupnorm" in MODES  # GroupNorm's only mode


def test_batch_sizes_and_stream_order() -> None:
    from lncli.config.evaluate import DEFAULT_TENT_LR, ORDERS, parse_batch_sizes

    assert parse_batch_sizes("128") == (128,) and parse_batch_sizes(" 1, 16,128,16 ") == (1, 16, 128)
    assert parse_batch_sizes("0,16") == (0, 16)  # the range is the sweep's check (one place for API and CLI)
    for bad in ("", ",", "a", "1.5", "16,x"):
        with pytest.raises(LncliError, match="--batch-size"):
            parse_batch_sizes(bad)
    assert EvalConfig().all_batch_sizes == (128,) and EvalConfig(batch_sizes=(1, 4)).all_batch_sizes == (1, 4)
    assert EvalConfig().stream_order == "shuffled" and EvalConfig(order_seed=None).stream_order == "dataset"
    assert EvalConfig(order="sorted", order_seed=None).stream_order == "sorted"
    assert EvalConfig().order in ORDERS and "prior" in MODES and "tent" in MODES
    assert (EvalConfig().prior_n, EvalConfig().tent_lr, EvalConfig().tent_steps) == (
        DEFAULT_PRIOR_N,
        DEFAULT_TENT_LR,
        1,
    )
