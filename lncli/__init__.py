"""lncli: measure image-classifier robustness to noise, and improve it with LocalNorm.

LocalNorm is the BatchNorm variant of Yin et al., "LocalNorm: Robust Image
Classification through Dynamically Regularized Normalization" (arXiv 1902.06550,
ICANN 2021).

Layout (arrows point down: each layer imports only from the ones below it):

* :mod:`lncli.cli`: the Typer commands, which only translate options into configs;
* :mod:`lncli.jobs`: ``train``, ``convert``, ``corrupt`` and ``evaluate``, each returning records;
* :mod:`lncli.report`: renders records (tables, CSV/JSON, plots, threshold checks);
* :mod:`lncli.nn` (LocalNorm and BN <-> LN conversion), :mod:`lncli.noise` (seeded noise),
  :mod:`lncli.models`, :mod:`lncli.data`, :mod:`lncli.images`, :mod:`lncli.checkpoint`;
* :mod:`lncli.config`, :mod:`lncli.records`, :mod:`lncli.stats`, :mod:`lncli.errors`,
  :mod:`lncli.io`, :mod:`lncli.distributed`.

The earlier module names (:mod:`lncli.norm`, :mod:`lncli.convert`, :mod:`lncli.corruptions`,
:mod:`lncli.evaluate`, :mod:`lncli.train`, :mod:`lncli.imageio`) remain as re-exports.
"""

__version__ = "0.1.0"
