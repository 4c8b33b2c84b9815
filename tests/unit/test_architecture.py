"""The shape of the house, checked: the arrows point inward, nothing imports in a circle (imports
inside functions included), the domain stays pure, and no module of the product grows past two
concerns' worth of lines."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PIPELINE.rglob("*.py")) if "migrations" not in p.parts}


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every module of ours that ``path`` imports, anywhere in it (functions included): for
    ``from package import module`` the module, for ``from module import name`` the module."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ``pipeline`` it imports (a name imported from a package counts as
    the package when it is no module of its own)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in imports(path, name, known):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def test_no_import_cycle_in_pipeline() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_domain_imports_nothing_of_ours_but_the_model() -> None:
    edges = graph()
    for name, targets in edges.items():
        if name == "pipeline.domain" or name.startswith("pipeline.domain."):
            ours = {t for t in targets if not t.startswith(("pipeline.domain", "pipeline.model"))}
            assert ours == set(), f"{name} imports {sorted(ours)}"
        if name == "pipeline.model" or name.startswith("pipeline.model."):
            ours = {t for t in targets if not t.startswith("pipeline.model")}
            assert ours == set(), f"{name} imports {sorted(ours)}"


def test_the_product_never_imports_the_sandbox_but_through_bootstrap_and_the_demo() -> None:
    allowed = {"pipeline.bootstrap", "pipeline.demo"}
    for name, path in modules().items():
        if name in allowed or name.startswith("pipeline.cli"):
            continue  # the `sandbox` commands reach it through bootstrap
        touched = {i for i in imports(path, name, {}) if i == "sandbox" or i.startswith("sandbox.")}
        assert touched == set(), f"{name} imports {sorted(touched)}"


def test_no_module_of_the_product_is_over_the_limit() -> None:
    long = {
        name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines (two concerns: split them): {long}"
