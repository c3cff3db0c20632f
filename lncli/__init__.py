"""lncli: measure image-classifier robustness to noise, and improve it with LocalNorm.

LocalNorm is the BatchNorm variant of Yin et al., "LocalNorm: Robust Image
Classification through Dynamically Regularized Normalization" (arXiv 1902.06550,
ICANN 2021).

The names a user needs are here, at the top level::

    import lncli
    model = lncli.convert_batchnorm_to_localnorm(model, group_size=16)
    lncli.set_test_mode(model, stats="local")
    noisy = lncli.corrupt(images, "gaussian", 3, seed=0)
    result = lncli.evaluate({"bn": "bn.pt", "mine": model}, "fashion-mnist", noise="gaussian", severity=(0, 3, 5))
    model = lncli.load_model("bn.pt")

The subpackages hold the rest: :mod:`lncli.nn`, :mod:`lncli.noise`, :mod:`lncli.data`,
:mod:`lncli.models`, :mod:`lncli.checkpoint`, :mod:`lncli.jobs`, :mod:`lncli.report`,
:mod:`lncli.config`. The top-level names are imported on first use, so ``import lncli``
(and ``lncli --help``) does not import torch.

Floors (arrows point down: a module imports only from its own floor and the floors below,
and never in a cycle; ``tests/test_layers.py`` checks every import, module-level and call-time):

* :mod:`lncli.cli`: the Typer commands, which only translate options into configs;
* :mod:`lncli.jobs` (``train``, ``convert``, ``corrupt``, ``evaluate``, each returning records)
  and :mod:`lncli.compare` (baseline comparisons of records);
* :mod:`lncli.checkpoint`: the checkpoint file format; it builds the model a file records,
  so it sits above the models, layers and data it puts together;
* :mod:`lncli.nn` (LocalNorm and BN <-> LN swaps of models), :mod:`lncli.noise` (seeded noise),
  :mod:`lncli.models`, :mod:`lncli.data`, :mod:`lncli.images`, :mod:`lncli.report` (renders records);
* :mod:`lncli.config`, :mod:`lncli.records`, :mod:`lncli.stats`, :mod:`lncli.errors`,
  :mod:`lncli.io`, :mod:`lncli.distributed`.

:mod:`lncli.nn` and :mod:`lncli.data` import no command's config (``lncli.config.evaluate``,
``.train``, ...): the vocabulary they share is :mod:`lncli.config.common`. This module itself
imports nothing from lncli until a name is asked for, so any module may read ``__version__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names and the module each comes from, loaded on first use (module __getattr__,
# PEP 562) because every one of them imports torch.
_PUBLIC: dict[str, str] = {
    "evaluate": "lncli.jobs.evaluate.api",
    "load_model": "lncli.jobs.evaluate.api",
    "LocalNorm2d": "lncli.nn",
    "convert_batchnorm_to_localnorm": "lncli.nn",
    "convert_localnorm_to_batchnorm": "lncli.nn",
    "get_norm_layer": "lncli.nn",
    "set_test_mode": "lncli.nn",
    "corrupt": "lncli.noise",
    "load_checkpoint": "lncli.checkpoint",
}

if TYPE_CHECKING:  # the same names, for type checkers (`X as X`: a re-export); a test holds the three lists equal
    from lncli.checkpoint import load_checkpoint as load_checkpoint
    from lncli.jobs.evaluate.api import evaluate as evaluate
    from lncli.jobs.evaluate.api import load_model as load_model
    from lncli.nn import LocalNorm2d as LocalNorm2d
    from lncli.nn import convert_batchnorm_to_localnorm as convert_batchnorm_to_localnorm
    from lncli.nn import convert_localnorm_to_batchnorm as convert_localnorm_to_batchnorm
    from lncli.nn import get_norm_layer as get_norm_layer
    from lncli.nn import set_test_mode as set_test_mode
    from lncli.noise import corrupt as corrupt

__all__ = [
    "LocalNorm2d",
    "__version__",
    "convert_batchnorm_to_localnorm",
    "convert_localnorm_to_batchnorm",
    "corrupt",
    "evaluate",
    "get_norm_layer",
    "load_checkpoint",
    "load_model",
    "set_test_mode",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562); other names are not attributes."""
    home = _PUBLIC.get(name)
    if home is None:
        raise AttributeError(f"module 'lncli' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
