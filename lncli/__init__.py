"""lncli: measure image-classifier robustness to noise, and improve it with LocalNorm.

LocalNorm is the BatchNorm variant of Yin et al., "LocalNorm: Robust Image
Classification through Dynamically Regularized Normalization" (arXiv 1902.06550,
ICANN 2021). The public API lives in the submodules: :mod:`lncli.norm`,
:mod:`lncli.convert`, :mod:`lncli.corruptions`, :mod:`lncli.models`,
:mod:`lncli.data`, :mod:`lncli.checkpoint`, :mod:`lncli.train`,
:mod:`lncli.evaluate` and :mod:`lncli.report`.
"""

__version__ = "0.1.0"
