"""Moved to :mod:`lncli.nn` (layer, factory, test-time control); this module re-exports its public names."""

from lncli.nn import (
    GROUPINGS,
    NORM_KINDS,
    TEST_HEADS,
    TEST_STATS,
    LocalNorm2d,
    get_norm_layer,
    localnorm_layers,
    majority_predict,
    set_test_mode,
    vote_predict,
)

__all__ = [
    "GROUPINGS",
    "NORM_KINDS",
    "TEST_HEADS",
    "TEST_STATS",
    "LocalNorm2d",
    "get_norm_layer",
    "localnorm_layers",
    "majority_predict",
    "set_test_mode",
    "vote_predict",
]
