"""The package's own shape: no import circle between its modules, and no module that reaches
into another module's private (underscore) names. Read from the source, without importing it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "virtual_android"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: ``if TYPE_CHECKING:`` bodies are only read by type checkers."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(module: str, path: Path) -> list[tuple[str, str]]:
    """(imported module, name) pairs; name is "" for ``import x``."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[str, str]] = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - (node.level - 1)] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            found += [(target, alias.name) for alias in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, name in _imports(module, path):
            if f"{target}.{name}" in MODULES:  # from package import submodule
                graph[module].add(f"{target}.{name}")
            elif target in MODULES:
                graph[module].add(target)
        graph[module].discard(module)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.AST) -> set[str]:
    """Names a module defines itself: its functions, classes, variables and attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _private_reaches(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    own = _defined_names(tree)
    problems = [
        f"{module} imports {name} from {target}"
        for target, name in _imports(module, path)
        if _private(name) or any(_private(part) for part in target.split(".")[1:])
    ]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and node.attr not in own
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
        ):
            problems.append(f"{module}:{node.lineno} reads .{node.attr}, defined elsewhere")
    return problems


def test_the_package_has_its_subpackages() -> None:
    for sub in ("transport", "shell", "fs", "apps", "inference", "model", "system"):
        assert f"{PACKAGE}.{sub}" in MODULES


def test_no_import_circle_between_the_modules() -> None:
    graph = _graph()
    assert graph[f"{PACKAGE}.phone"] >= {f"{PACKAGE}.device", f"{PACKAGE}.apps.apps"}
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reaches_into_another_modules_private_names(module: str) -> None:
    assert _private_reaches(module, MODULES[module]) == []


def test_the_private_name_check_sees_a_reach(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from .device import _helper\n\ndef f(dev):\n    return dev._secret\n")
    assert _private_reaches(f"{PACKAGE}.bad", bad) == [
        f"{PACKAGE}.bad imports _helper from {PACKAGE}.device",
        f"{PACKAGE}.bad:4 reads ._secret, defined elsewhere",
    ]


def test_the_library_does_not_import_devicelab() -> None:
    for module, path in MODULES.items():
        for target, _name in _imports(module, path):
            assert not target.split(".")[0].startswith("devicelab"), (module, target)
