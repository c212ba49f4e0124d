"""The package's layering: no import cycles, and dependencies that point one way (docs/design.md).

Every ``import`` of a glmtune module counts, module level or inside a function: a deferred import still ties
the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "glmtune"

# component -> components it must never import (cli and recipes sit above every component)
FORBIDDEN = {
    "config": {"data", "layout", "train", "infer", "eval", "serve", "report", "export", "cli", "demo", "tiny"},
    "layout": {"serve", "train", "infer", "eval", "report", "export", "cli", "demo", "tiny", "world"},
    "data": {"layout", "train", "infer", "eval", "serve", "report", "export", "cli", "demo", "tiny", "world"},
    "infer": {"train", "eval", "serve", "report", "export", "cli", "demo", "tiny", "world"},
    "eval": {"train", "serve", "report", "export", "cli", "demo", "tiny", "world"},
    "serve": {"train", "eval", "report", "export", "cli", "demo", "tiny", "world"},
    "export": {"train", "eval", "serve", "report", "cli", "demo", "tiny", "world"},
    "report": {"train", "serve", "infer", "cli", "demo", "tiny", "world"},
    "train": {"serve", "cli", "demo", "tiny", "world"},
    # tiny models take their tokenizer corpus as an argument (make_tiny(..., corpus=world.tokenizer_corpus(seed)))
    "tiny": {"data", "layout", "train", "infer", "eval", "serve", "report", "export", "cli", "demo", "world"},
    "world": {"data", "layout", "train", "infer", "eval", "serve", "report", "export", "cli", "demo", "tiny"},
    # the web UI sits beside cli: it may import every component below it, never the CLI
    "ui": {"cli"},
}
for _below in set(FORBIDDEN) - {"ui"}:  # and nothing below the UI imports it
    FORBIDDEN[_below].add("ui")
FORBIDDEN["demo"] = {"ui"}
# Known edges still to be removed: none (data check measures tokens through a TokenMeasure it is handed).
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """``glmtune.a.b`` for ``glmtune/a/b.py`` (``glmtune.a`` for ``glmtune/a/__init__.py``)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The glmtune modules ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & modules


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the glmtune modules it imports."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(paths)) for name, path in paths.items()}


def component(module: str) -> str:
    """``glmtune.train.recipe`` -> ``train``; top-level modules (``glmtune.errors``) are their own."""
    return module.split(".")[1] if module.count(".") else ""


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            part = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(part) > 1:
                cycles.append(sorted(part))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_dependencies_point_one_way(graph: dict[str, set[str]]) -> None:
    wrong = sorted(
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if component(dep) in FORBIDDEN.get(component(module), set())
        and (component(module), component(dep)) not in KNOWN
    )
    assert not wrong, "imports against the layering (docs/design.md):\n" + "\n".join(f"{a} -> {b}" for a, b in wrong)


def test_the_known_exceptions_still_exist(graph: dict[str, set[str]]) -> None:
    """Once an exception is gone, drop it from KNOWN so that it cannot come back unnoticed."""
    edges = {(component(m), component(d)) for m, deps in graph.items() for d in deps}
    assert KNOWN <= edges, f"no longer needed in KNOWN: {KNOWN - edges}"
