"""The shape of the code: no import circle anywhere in the project, and plugins use only
devicelab's public API.

Every import that runs counts, also one inside a function: a circle held together by a
function-level import is still a circle a reader has to untangle. Imports under ``if
TYPE_CHECKING:`` never run and are left out (virtual-android's shell and transport name the
device class only in annotations; devicelab's core has none of those either).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where importable packages live: the core, the built-in plugins, the example plugin and the
# standalone libraries under packages/.
SOURCE_ROOTS = [
    ROOT,
    ROOT / "plugins",
    ROOT / "examples" / "devicelab-example",
    *sorted(p / "src" for p in (ROOT / "packages").glob("*") if (p / "src").is_dir()),
]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in SOURCE_ROOTS:
        for init in base.glob("*/__init__.py"):
            pkg = init.parent
            if pkg.name in {"tests", "bench", "docs"} or pkg.name.startswith("."):
                continue
            for file in pkg.rglob("*.py"):
                rel = file.relative_to(base).with_suffix("")
                parts = list(rel.parts)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join(parts)] = file
    return found


def _imports(name: str, file: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int, str]]:
    """(imported module, line, text) for each import in ``file`` that names a project module."""
    is_pkg = file.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(file.read_text(encoding="utf-8"))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    yield sub, node.lineno, f"from {target} import {alias.name}"
                elif target in modules:
                    yield target, node.lineno, f"from {target} import {alias.name}"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, file in modules.items():
        for target, _, _ in _imports(name, file, modules):
            if target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_the_project():
    graph = _graph()
    assert "devicelab._runtime.session" in graph and "devicelab_llamacpp" in graph
    assert "devicelab._record" in graph["devicelab._runtime.session"]
    assert "virtual_android.device" in graph  # the libraries under packages/ too


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere():
    circles = _cycles(_graph())
    assert not circles, "import circles (every import counts, also in functions): " + "; ".join(
        " <-> ".join(c) for c in circles
    )


def test_plugins_use_only_the_public_api():
    """A plugin imports ``devicelab`` and names from it, never a private module."""
    modules = _modules()
    bad = []
    for name, file in modules.items():
        if name.split(".")[0] == "devicelab":
            continue
        for target, line, text in _imports(name, file, modules):
            if target.split(".")[0] == "devicelab" and target not in {
                "devicelab",
                "devicelab.testing",
            }:
                bad.append(f"{file.relative_to(ROOT)}:{line}: {text}")
        # `import devicelab` and then `devicelab._plugins.get_registry()` reaches in too.
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "devicelab"
                and f"devicelab.{node.attr}" in modules
                and node.attr != "testing"
            ):
                bad.append(f"{file.relative_to(ROOT)}:{node.lineno}: devicelab.{node.attr}")
    assert not bad, "plugins must import only devicelab's public API:\n" + "\n".join(bad)
