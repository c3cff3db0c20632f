"""lncli's import floors (the docstring of lncli/__init__.py): no cycle, and nothing imported from a higher floor.

Every ``import`` of every module is read from its source (module level, inside functions, under
``TYPE_CHECKING``), so an import moved into a function to dodge a cycle is still seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lncli"

# Top floor first. A module may import from its own floor and the floors below it.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("jobs", "compare"),
    ("checkpoint",),
    ("nn", "noise", "models", "data", "images", "report"),
    ("config", "records", "stats", "errors", "io", "distributed", "lazy"),
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}

# The command configs: the layers below the jobs must not depend on one command's settings.
COMMAND_CONFIGS = ("lncli.config.train", "lncli.config.evaluate", "lncli.config.convert", "lncli.config.corrupt")
COMMAND_FREE = ("nn", "data", "noise")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _unit(module: str) -> str:
    """``lncli.jobs.evaluate.grid`` -> ``jobs``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str) -> Iterator[tuple[str, str, int]]:
    """(imported lncli module, imported name or "", line) for every import in ``module``'s source."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lncli":
                    yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}:{node.lineno}: relative import"
            if node.module is None or node.module.split(".")[0] != "lncli":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # `from pkg import submodule` imports the submodule; any other name comes from pkg itself.
                yield (sub, "", node.lineno) if sub in MODULES else (node.module, alias.name, node.lineno)


# Every import but the root's own: the lazy top-level names of lncli/__init__.py (its __getattr__ and
# TYPE_CHECKING block) are the public surface, above every floor; at import time it imports nothing
# (test_the_package_root_is_only_read_for_its_version).
EDGES: list[tuple[str, str, str, int]] = [
    (module, target, name, line) for module in MODULES if module != "lncli" for target, name, line in _imports(module)
]


def test_every_unit_has_a_floor() -> None:
    units = {_unit(m) for m in MODULES} - {""}
    assert units == set(FLOOR), f"floorless: {sorted(units - set(FLOOR))}; gone: {sorted(set(FLOOR) - units)}"


def test_no_import_from_a_higher_floor() -> None:
    bad = [
        f"{module}:{line} imports {target} ({_unit(module)} is below {_unit(target)})"
        for module, target, _, line in EDGES
        if _unit(target) and FLOOR[_unit(target)] < FLOOR[_unit(module)]
    ]
    assert not bad, "\n".join(bad)


def test_the_package_root_is_only_read_for_its_version() -> None:
    """``from lncli import __version__`` is the one import of the root: it imports nothing of lncli itself."""
    bad = [f"{m}:{line} imports lncli.{name}" for m, t, name, line in EDGES if t == "lncli" and name != "__version__"]
    assert not bad, "\n".join(bad)
    root = ast.parse(MODULES["lncli"].read_text())
    eager = [n.lineno for n in root.body if isinstance(n, (ast.Import, ast.ImportFrom)) and "lncli" in ast.unparse(n)]
    assert not eager, f"lncli/__init__.py imports lncli modules at import time (lines {eager})"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("level", ["module", "unit"])
def test_no_import_cycle(level: str) -> None:
    """No cycle among modules, nor among the units (``nn``, ``models``, ``checkpoint``...) they make up."""
    graph: dict[str, set[str]] = {}
    for module, target, _, _ in EDGES:
        if target == "lncli":
            continue  # __version__ only (test above)
        a, b = (module, target) if level == "module" else (_unit(module), _unit(target))
        if a != b:
            graph.setdefault(a, set()).add(b)
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_the_lower_layers_import_no_command_config() -> None:
    bad = [
        f"{module}:{line} imports {target}"
        for module, target, _, line in EDGES
        if _unit(module) in COMMAND_FREE and target in COMMAND_CONFIGS
    ]
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_unit() -> None:
    """A ``_private`` module or name is its own unit's business (tests may look inside; lncli may not)."""
    bad = [
        f"{module}:{line} imports {target}{'.' + name if name else ''}"
        for module, target, name, line in EDGES
        if _unit(module) != _unit(target)
        and (any(p.startswith("_") for p in target.split(".")[1:]) or (name.startswith("_") and name != "__version__"))
    ]
    assert not bad, "\n".join(bad)


def test_the_scan_sees_what_it_must() -> None:
    """The scan itself: it finds a call-time import and a TYPE_CHECKING import where they are."""
    cli_evaluate = {(t, n) for m, t, n, _ in EDGES if m == "lncli.cli.evaluate"}
    assert ("lncli.jobs.evaluate.result", "EvalResult") in cli_evaluate  # under TYPE_CHECKING
    cli_train = {t for m, t, _, _ in EDGES if m == "lncli.cli.train"}
    assert "lncli.jobs.train" in cli_train  # inside the command function
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None
