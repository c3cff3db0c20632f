"""LocalNorm (arXiv 1902.06550) as PyTorch modules: the layer, its factory, test-time control, conversion.

* :mod:`lncli.nn.localnorm`: :class:`LocalNorm2d` and the names of its settings
  (:data:`GROUPINGS`, :data:`TEST_STATS`, :data:`PER_IMAGE_STATS`, :data:`TEST_HEADS`).
* :mod:`lncli.nn._grouped_cpu`: the copy-free CPU kernel behind its training and ``local`` passes.
* :mod:`lncli.nn.testtime`: :func:`set_test_mode`, :func:`vote_predict`, :func:`majority_predict`.
* :mod:`lncli.nn.tent`: :class:`Tent`, online entropy minimisation over the affine parameters (TENT).
* :mod:`lncli.nn.factory`: :func:`get_norm_layer`, norm names -> layer factories.
* :mod:`lncli.nn.groupnorm`: GroupNorm, the batch-independent control, and :func:`default_groups`.
* :mod:`lncli.nn.convert`: BatchNorm2d <-> LocalNorm2d swaps of models (of checkpoints: :mod:`lncli.jobs.convert`).

The package imports nothing above :mod:`lncli.config` (see the floors in :mod:`lncli`).
"""

from lncli.nn.convert import (
    CONVERT_TARGETS,
    ConversionSummary,
    convert_batchnorm_to_localnorm,
    convert_localnorm_to_batchnorm,
    convert_model,
)
from lncli.nn.factory import NORM_KINDS, get_norm_layer
from lncli.nn.groupnorm import default_groups, group_norm
from lncli.nn.localnorm import GROUPINGS, PER_IMAGE_STATS, TEST_HEADS, TEST_STATS, LocalNorm2d, localnorm_layers
from lncli.nn.tent import Tent, affine_parameters, softmax_entropy
from lncli.nn.testtime import majority_predict, set_test_mode, vote_predict

__all__ = [
    "CONVERT_TARGETS",
    "GROUPINGS",
    "NORM_KINDS",
    "PER_IMAGE_STATS",
    "TEST_HEADS",
    "TEST_STATS",
    "ConversionSummary",
    "LocalNorm2d",
    "Tent",
    "affine_parameters",
    "convert_batchnorm_to_localnorm",
    "convert_localnorm_to_batchnorm",
    "convert_model",
    "default_groups",
    "get_norm_layer",
    "group_norm",
    "localnorm_layers",
    "majority_predict",
    "set_test_mode",
    "softmax_entropy",
    "vote_predict",
]
