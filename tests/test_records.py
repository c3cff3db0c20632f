"""lncli.records: field lists and the per-image hits packing."""

from __future__ import annotations

import numpy as np
import pytest

from lncli.records import JSON_FIELDS, RECORD_FIELDS, EvalRecord, pack_hits, unpack_hits


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, 10007])
@pytest.mark.parametrize("seed", range(3))
def test_hits_round_trip(n: int, seed: int) -> None:
    hits = np.random.default_rng(seed).random(n) < 0.7
    text = pack_hits(hits)
    assert text.isascii() and len(text) <= 4 * ((n + 7) // 8 + 2) // 3
    np.testing.assert_array_equal(unpack_hits(text, n), hits)


def test_hits_bit_order_is_documented() -> None:
    # Image 0 is the lowest bit of the first byte: images 0 and 3 right -> 0b1001 = 9.
    assert pack_hits(np.array([1, 0, 0, 1], dtype=bool)) == "CQ=="


def test_unpack_refuses_too_few_bits_and_bad_text() -> None:
    with pytest.raises(ValueError, match="8 bits packed, 9 images expected"):
        unpack_hits(pack_hits(np.ones(8, dtype=bool)), 9)
    with pytest.raises(ValueError):
        unpack_hits("not base64!", 3)


def test_csv_fields_leave_out_only_the_hits() -> None:
    assert JSON_FIELDS == tuple(EvalRecord.__dataclass_fields__)
    assert RECORD_FIELDS == tuple(f for f in JSON_FIELDS if f != "hits") and "hits" in JSON_FIELDS
