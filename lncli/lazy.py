"""Public names imported on first use (PEP 562), for packages whose light parts must load without torch.

:mod:`lncli.noise` and :mod:`lncli.jobs.evaluate` name their public names in a table (name -> home
module) and take their module ``__getattr__``/``__dir__`` from :func:`attach`: ``import lncli.noise.profiles``
then loads no torch (the command line checks noise names with it before torch is imported), while
``from lncli.noise import corrupt`` works as before. (:mod:`lncli` itself writes the same two functions
out: the package root imports nothing of lncli at import time.)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, public: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names load on first use.

    Args:
        package: the package's ``__name__``.
        public: each public name and the module it comes from.

    Returns:
        ``(__getattr__, __dir__)``: the first imports a name's module, caches the value in the
        package and returns it (an unknown name raises :class:`AttributeError`, as Python expects).
    """

    def __getattr__(name: str) -> Any:
        home = public.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
