"""The integer laws and the alias reference tables (lncli.noise._tables)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lncli.noise._tables import (
    _K,
    _V,
    _gaussian_table,
    _impulse_table,
    _level_cdf_from_z,
    _pmf_from_cdf,
    _shot_table,
    _speckle_table,
)


@pytest.mark.parametrize(
    ("builder", "param"),
    [("gaussian", 0.38), ("speckle", 0.15), ("shot", 3.0), ("shot", 500.0), ("impulse", 0.27)],
)
def test_alias_tables_reproduce_the_pmf_exactly(builder, param):
    """The alias tables' implied law equals the float64 pmf up to the 2**-32 grid."""
    builders = {"gaussian": _gaussian_table, "speckle": _speckle_table, "shot": _shot_table, "impulse": _impulse_table}
    table = builders[builder](param)
    q = table.q.view(256, 256).long().numpy()
    a = table.alias.view(256, 256).long().numpy()
    implied = np.zeros((256, 256))
    rows = np.repeat(np.arange(256), 256).reshape(256, 256)
    np.add.at(implied, (rows, np.tile(np.arange(256), (256, 1))), q)
    np.add.at(implied, (rows, a), (1 << 24) - q)
    implied /= 2.0**32
    if builder == "gaussian":
        pmf = _pmf_from_cdf(_level_cdf_from_z(((_K + 1) / 255.0 - _V / 255.0) / param))
    elif builder == "impulse":
        pmf = np.eye(256) * (1 - param)
        pmf[:, 0] += param / 2
        pmf[:, 255] += param / 2
    else:
        pmf = None  # shot / speckle: check normalisation and support only
    assert np.allclose(implied.sum(1), 1.0, rtol=0, atol=1e-12)
    assert (q >= 0).all() and (q <= 1 << 24).all()
    if pmf is not None:
        err = np.abs(implied - pmf / pmf.sum(1, keepdims=True)).max()
        assert err <= 2.0**-31, f"max |implied - pmf| = {err:.3g}"


def test_packed_table_matches_two_table_alias():
    table = _shot_table(12.0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200_000,), dtype=torch.uint8, generator=g)
    m = torch.randint(-(1 << 31), 1 << 31, (200_000,), dtype=torch.int64, generator=g).to(torch.int32)
    got = table.sample(x, m.clone())  # sample() uses its words as scratch
    cell = (m & 255).long()
    row = x.long() * 256 + cell
    t = (m.long() >> 8) & 0xFFFFFF
    want = torch.where(t < table.q.long()[row], cell, table.alias.long()[row]).to(torch.uint8)
    assert torch.equal(got, want), f"{int((got != want).sum())} mismatches"
