"""The layering of docs/architecture.md, checked on the source: who may import whom, no import
circle, and modules small enough to read in one sitting.

Imports are read with ``ast`` (nothing is executed), function-level imports included: an import
made lazily to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("asgi_conformance", "reference_layers")
LAYERS = ("inmemory", "ipc", "redis", "rabbitmq")
LONGEST_MODULE = 400  # lines; the C hot path is not Python and is left out


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def imported_names(name: str, path: Path, modules: set[str]) -> set[str]:
    """Every module name ``path`` imports, relative imports resolved. ``from x import y`` is an
    import of the submodule ``x.y`` where there is one, else of ``x`` (y is a name in it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {other for other in imported_names(name, path, set(modules)) if other in modules and other != name}
            for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_importers(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each module's imports, without the package-to-its-own-submodule edges that an
    ``__init__`` re-exporting its submodules makes (those are not circles a reader trips on)."""
    return {name: {other for other in imported if not other.startswith(name + ".")} for name, imported in graph.items()}


def test_the_project_has_no_import_circle():
    assert circles(package_importers(import_graph())) == []


def test_the_circle_finder_finds_a_circle():
    """The check above can fail: a made-up graph with a circle is caught."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_never_import_the_plugin():
    graph = import_graph()
    offenders = {name: sorted(other for other in imported if other.startswith("asgi_conformance"))
                 for name, imported in graph.items() if name.startswith("reference_layers")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_suite_knows_layers_only_by_their_dotted_path():
    graph = import_graph()
    offenders = {name: sorted(other for other in imported if other.startswith("reference_layers"))
                 for name, imported in graph.items() if name.startswith("asgi_conformance")}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_no_other_layer(layer):
    graph = import_graph()
    own = f"reference_layers.{layer}"
    others = tuple(f"reference_layers.{other}" for other in LAYERS if other != layer)
    offenders = {name: sorted(other for other in imported if other.startswith(others))
                 for name, imported in graph.items() if name == own or name.startswith(own + ".")}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_in_the_two_packages_is_too_long_to_read():
    lengths = {name: len(path.read_text().splitlines()) for name, path in project_modules().items()}
    assert {name: lines for name, lines in lengths.items() if lines > LONGEST_MODULE} == {}
