"""The dependency arrows of the package: the library core never imports a recipe, and reaches a domain only
through the registry ``sace.domains`` (never ``sace.domains.<name>`` directly)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sace"
ENTRY_POINT = "sace.cli"   # the shell (the package and its command modules) runs recipes as commands (`sace demo`,
                           # `sace train fashion`)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved; ``from a import b`` gives ``a`` and
    ``a.b``), at any depth of the file (function-level imports count too)."""
    mod = _module_name(path)
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
