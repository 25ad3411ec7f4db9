"""The dependency arrows of the package: the library core never imports a recipe, and reaches a domain only
through the registry ``sace.domains`` (never ``sace.domains.<name>`` directly); ``sace.concepts`` is a floor
below domains, erasure, evaluation and attacks; the module import graph has no cycle but the listed ones;
imports inside functions are few and say why."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sace"
ENTRY_POINT = "sace.cli"   # the shell (the package and its command modules) runs recipes as commands (`sace demo`,
                           # `sace train fashion`)


def _module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, src: Path = SRC) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from a import b`` gives ``a`` and
    ``a.b``), at any depth of the file (function-level imports count too)."""
    mod = _module_name(path, src)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _core_modules() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py"))
            if not _module_name(p).startswith(("sace.recipes", "sace.domains"))]


def test_the_scan_sees_the_known_arrows():
    # guards the scanner itself: the CLI imports a recipe and the domain registry, the runner the registry
    assert "sace.recipes.demo" in _imports(SRC / "cli" / "demo.py")
    assert "sace.domains" in _imports(SRC / "evaluation" / "runner.py")
    assert "sace.domains.fashion.classifier" in _imports(SRC / "recipes" / "fashion_card.py")
    assert len(_core_modules()) > 30


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: _module_name(p))
def test_core_never_imports_recipes_or_domain_modules(path):
    mods = _imports(path)
    name = _module_name(path)
    recipes = sorted(m for m in mods if m == "sace.recipes" or m.startswith("sace.recipes."))
    if name != ENTRY_POINT and not name.startswith(f"{ENTRY_POINT}."):
        assert not recipes, f"{name} imports recipes {recipes}; the library must not depend on recipes"
    direct = sorted(m for m in mods if m.startswith("sace.domains."))
    assert not direct, f"{name} imports {direct}; ask the registry (sace.domains.get / for_model) instead"


# -- the concepts floor -------------------------------------------------------------------------------------

ABOVE_CONCEPTS = ("sace.domains", "sace.erasure", "sace.evaluation", "sace.attacks", "sace.recipes", "sace.cli")


@pytest.mark.parametrize("path", sorted((SRC / "concepts").rglob("*.py")), ids=lambda p: _module_name(p))
def test_concepts_is_a_floor_below_domains_erasure_evaluation_and_attacks(path):
    up = sorted(m for m in _imports(path) if m.startswith(ABOVE_CONCEPTS))
    assert not up, f"{_module_name(path)} imports {up}; sace.concepts must not depend on the floors above it"


# -- the module import graph --------------------------------------------------------------------------------

#: import cycles that are known and allowed, each with its reason (at most two)
ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"sace.models.registry", "sace.models.infinity.builder"}):
        "the registry's FAMILIES table holds the Infinity family's load function, which asks the registry for "
        "its named specs (to say which model fits a checkpoint) and for the text encoder a spec describes",
}


def _graph(src: Path = SRC) -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line}: every import statement at any depth of the file
    (top level, inside functions, under ``if TYPE_CHECKING``); ``from a import b`` counts as ``a.b`` when
    that is a module of the package, else as ``a``."""
    files = {_module_name(p, src): p for p in src.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        out: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, mod, path):
                    name = target if target in files or isinstance(node, ast.Import) else target.rpartition(".")[0]
                    if name in files and name != mod:
                        out.setdefault(name, node.lineno)
        graph[mod] = out
    return graph


def _targets(node, mod: str, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{a.name}" for a in node.names]


def _cycles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_the_graph_scan_finds_a_cycle(tmp_path):
    # guards the scanner: a function-level import and a TYPE_CHECKING import close a circle
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    graph = _graph(pkg)
    assert graph["pkg.a"] == {"pkg.b": 2} and graph["pkg.c"] == {"pkg.a": 1}
    assert _cycles(graph) == [frozenset({"pkg.a", "pkg.b"})]


def test_no_import_cycle_but_the_listed_ones():
    assert len(ALLOWED_CYCLES) <= 2 and all(reason.strip() for reason in ALLOWED_CYCLES.values())
    graph = _graph()
    assert len(graph) > 100 and "sace.concepts.judge" in graph["sace.domains"]
    found = _cycles(graph)
    unexpected = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles {unexpected}; cut them (or list one with its reason)"
    assert not [sorted(c) for c in ALLOWED_CYCLES if c not in found], "a listed cycle is gone: unlist it"


def test_the_generation_triangle_stays_cut():
    graph = _graph()
    assert "sace.distributed" not in graph["sace.folders"]     # folders opens; distributed shards
    assert "sace.outputs" not in graph["sace.distributed"]     # index.json is written by sace.generate
    assert "sace.evaluation.metrics" not in graph["sace.issa"]


# -- imports inside functions -------------------------------------------------------------------------------

MAX_LOCAL_IMPORTS = 20


def _local_imports() -> list[tuple[str, int, str]]:
    """``(module, line, source line)`` of every import of a sace module inside a function."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        seen: set[int] = set()
        for fn in ast.walk(ast.parse(text, str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in seen:
                    continue
                ours = (node.level > 0 or (node.module or "").startswith("sace")) if isinstance(node, ast.ImportFrom) \
                    else any(a.name.startswith("sace") for a in node.names)
                if ours:
                    seen.add(node.lineno)
                    out.append((_module_name(path), node.lineno, lines[node.end_lineno - 1]))
    return out


def test_function_level_imports_of_sace_modules_are_few_and_say_why():
    found = _local_imports()
    assert len(found) <= MAX_LOCAL_IMPORTS, [f"{m}:{n}" for m, n, _ in found]
    silent = [f"{m}:{n}" for m, n, line in found if "#" not in line]
    assert not silent, f"imports inside functions without a one-line reason: {silent}"
