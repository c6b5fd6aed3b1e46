"""The rules of the house, read from the code's own imports (docs/plugins.md, README "Development"):

- the core's import graph has no circle (every import counts: module level, ``TYPE_CHECKING`` and
  inside functions, since a deferred import is still a dependency);
- the core never imports a plugin or the test doubles;
- the plugins' shipped code imports nothing of kaito_core but the SDK face, ``kaito_core.plugins``,
  and only names the face exports;
- no product module grows past the size a reader can hold without a docstring saying why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import kaito_core.plugins

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "kaito_core"
PLUGIN_PACKAGES = sorted([*ROOT.glob("plugins/*/kaito_*"), *ROOT.glob("examples/plugins/*/kaito_*")], key=str)
MAX_LINES = 450


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: str) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(module, names taken from it, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield base, tuple(alias.name for alias in node.names), node.lineno


def core_modules() -> dict[str, Path]:
    return {module_name(p, ROOT): p for p in CORE.rglob("*.py")}


def core_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports. ``from pkg import name`` counts as an import of
    ``pkg.name`` when that is a module, else of ``pkg``."""
    modules = core_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for module, names, _ in imports(path, package):
            if not module.startswith("kaito_core"):
                continue
            submodules = {f"{module}.{n}" for n in names} & modules.keys()
            targets |= submodules or {module}
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def test_the_core_import_graph_has_no_circle() -> None:
    assert cycles(core_graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_no_plugin_and_no_test_double() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in CORE.rglob("*.py")
        for module, _, line in imports(path, module_name(path, ROOT))
        if module.startswith(("kaito_presets", "kaito_runtime", "kaito_provisioner", "kaito_testing"))
    ]
    assert offenders == []


def test_plugins_import_only_the_sdk_face() -> None:
    assert len(PLUGIN_PACKAGES) >= 6
    face = set(kaito_core.plugins.__all__)
    offenders = []
    for package in PLUGIN_PACKAGES:
        for path in package.rglob("*.py"):
            for module, names, line in imports(path, package.name):
                if not module.startswith("kaito_core"):
                    continue
                where = f"{path.relative_to(ROOT)}:{line}"
                if module != "kaito_core.plugins":
                    offenders.append(f"{where} imports {module}")
                elif unknown := sorted(set(names) - face):
                    offenders.append(
                        f"{where} imports {', '.join(unknown)}, not in kaito_core.plugins.__all__"
                    )
    assert offenders == []


def test_every_name_the_face_exports_exists() -> None:
    missing = [name for name in kaito_core.plugins.__all__ if not hasattr(kaito_core.plugins, name)]
    assert missing == []


def test_no_product_module_is_too_long_without_saying_why() -> None:
    long_ones = []
    for path in [*CORE.rglob("*.py"), *(p for pkg in PLUGIN_PACKAGES for p in pkg.rglob("*.py"))]:
        lines = len(path.read_text().splitlines())
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "Why this module is long" not in docstring:
            long_ones.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert long_ones == []
