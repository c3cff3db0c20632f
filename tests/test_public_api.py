"""lncli's public surface: the top-level names, lncli.nn's exports, and no old module paths."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import lncli
import lncli.nn

ROOT = Path(__file__).resolve().parents[1]

# What the docs' Python lines use at the top level; more may join, none may leave unnoticed.
NEEDED = {
    "LocalNorm2d",
    "convert_batchnorm_to_localnorm",
    "convert_localnorm_to_batchnorm",
    "set_test_mode",
    "corrupt",
    "load_checkpoint",
    "__version__",
}


def test_nn_exports_resolve() -> None:
    for name in lncli.nn.__all__:
        assert getattr(lncli.nn, name) is not None, name


def test_top_level_names_are_their_homes_objects() -> None:
    assert NEEDED <= set(lncli.__all__), NEEDED - set(lncli.__all__)
    for name, home in lncli._PUBLIC.items():
        assert getattr(lncli, name) is getattr(importlib.import_module(home), name), name
        assert name in dir(lncli), name
    from lncli.checkpoint import load_checkpoint
    from lncli.noise import corrupt

    assert lncli.corrupt is corrupt and lncli.load_checkpoint is load_checkpoint


@pytest.mark.parametrize("package", ["lncli", "lncli.noise", "lncli.jobs.evaluate"])
def test_type_checkers_see_the_same_names(package: str) -> None:
    """The TYPE_CHECKING imports and __all__ of a lazily loaded package name exactly its lazy table, each from
    its home, and every name resolves to its home's object."""
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    guarded = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    assert len(guarded) == 1
    seen = {
        alias.name: node.module for node in guarded[0].body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    table = module._PUBLIC
    assert seen == table
    extra = {"__version__"} if package == "lncli" else set()
    assert set(module.__all__) == {*extra, *table} and len(module.__all__) == len(set(module.__all__))
    for name, home in table.items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name


def test_import_lncli_is_light_and_names_load_on_use() -> None:
    code = (
        "import sys, lncli; assert 'torch' not in sys.modules, 'import lncli loaded torch'; "
        "from lncli import __version__, distributed; "
        "layer = lncli.LocalNorm2d(4, group_size=2); print(type(layer).__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lncli.nn.localnorm"


def test_unknown_names_and_old_module_paths_are_gone() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lncli.nope  # noqa: B018
    # The re-export modules of the earlier layout are gone: one path per name. (Checked on the files,
    # not by importing: an editable install of another checkout could still answer the import.)
    package = Path(lncli.__file__).parent
    for old in ("norm", "convert", "evaluate", "train", "imageio", "corruptions"):
        assert not (package / f"{old}.py").exists(), old


def _resolve(dotted: str) -> object:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        # From this checkout only (an editable install of another one could answer an old path).
        if not Path(getattr(obj, "__file__", "")).resolve().is_relative_to(ROOT / "lncli"):
            raise ModuleNotFoundError(f"{dotted}: {obj!r} is not this checkout's")
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_python_name_in_the_docs_resolves() -> None:
    """The README's and docs/' Python names use paths that exist (no old module path survives in the docs)."""
    import re

    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    names = set(re.findall(r"(?<![\w/.])lncli(?:\.\w+)+", text))
    for module, imported in re.findall(r"from (lncli(?:\.\w+)*) import ([\w, ]+)", text):
        names |= {f"{module}.{n.strip()}" for n in imported.split(",") if n.strip()}
    assert len(names) > 10, names  # the scan found the README's names
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (AttributeError, ModuleNotFoundError):
            missing.append(name)
    assert not missing, missing
