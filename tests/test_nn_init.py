"""lncli.nn's public API, and the old module paths (lncli.norm, lncli.convert) as thin re-exports of it."""

from __future__ import annotations

import importlib

import pytest

import lncli.nn


def test_nn_exports_resolve() -> None:
    for name in lncli.nn.__all__:
        assert getattr(lncli.nn, name) is not None, name


@pytest.mark.parametrize(
    "shim,homes",
    [
        ("lncli.norm", ("lncli.nn",)),
        ("lncli.convert", ("lncli.nn.convert", "lncli.jobs.convert", "lncli.config.convert")),
    ],
)
def test_shims_re_export_the_same_objects(shim: str, homes: tuple[str, ...]) -> None:
    module = importlib.import_module(shim)
    owners = [importlib.import_module(home) for home in homes]
    assert module.__all__, shim
    for name in module.__all__:
        found = [owner for owner in owners if hasattr(owner, name)]
        assert found, f"{shim}.{name} has no home in {homes}"
        assert getattr(module, name) is getattr(found[0], name), f"{shim}.{name} is a copy"
    # Nothing but re-exports: every public name the shim holds is listed in its __all__.
    public = {n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, type(importlib))}
    assert public == set(module.__all__), public ^ set(module.__all__)
