"""The layer order the README's architecture paragraph states, checked on every import.

Each package may import only the packages below it, so data flows one way and a newcomer can
read the code bottom-up. Imports inside functions and under ``TYPE_CHECKING`` count too: a
lazy import against the order is the same dependency, hidden.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Lowest first. A module may import its own layer and those listed before it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("obsloop.core",)),
    ("pipelines", ("obsloop.pipelines",)),
    ("collectors", ("obsloop.collectors",)),
    ("detectors", ("obsloop.detectors",)),
    ("feedback", ("obsloop.feedback",)),
    ("dashboards", ("obsloop.dashboards",)),
    ("application", ("obsloop.workers", "obsloop")),
    ("demo", ("obsloop.demo",)),
    ("cli", ("obsloop.cli", "obsloop.__main__", "obsloop.commands")),
)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    runtime: bool
    """False under ``if TYPE_CHECKING:``."""


def _package_dirs() -> dict[str, Path]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {package: ROOT / folder for package, folder in setuptools["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Every module of the ``obsloop`` distribution, by dotted name (a folder mapped to a
    package is that package; its sub-folders are sub-packages)."""
    modules: dict[str, Path] = {}
    for package, folder in _package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join([package, *(p for p in parts if p != "__init__")])
            modules.setdefault(name, path)
    return modules


def _layer(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    typing_only = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the project imports absolutely)"
            base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            if not target.startswith("obsloop"):
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            found.append(Import(module, target, node.lineno, node.lineno not in typing_only))
    return found


def _all_imports() -> list[Import]:
    modules = _modules()
    return [imp for name, path in sorted(modules.items()) for imp in _imports(name, path, modules)]


def test_every_import_points_down_the_layers() -> None:
    upward = sorted({
        f"{imp.importer}:{imp.line} imports {imp.imported} "
        f"({LAYERS[_layer(imp.importer)][0]} may not import {LAYERS[_layer(imp.imported)][0]})"
        for imp in _all_imports()
        if _layer(imp.imported) > _layer(imp.importer)
    })
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_two_modules_import_each_other_at_run_time() -> None:
    graph: dict[str, set[str]] = {}
    for imp in _all_imports():
        if imp.runtime and imp.imported != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.imported)
    cycles = []
    for start in sorted(graph):  # depth-first search for a path back to start
        seen, stack = set(), [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_instrument_library_imports_nothing_of_obsloop() -> None:
    """``obsloop-instrument`` ships into users' functions on its own: an import of the
    service would pull the service's dependencies into every cold start."""
    offending = []
    for path in (ROOT / "instrument" / "obsloop_instrument").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offending += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                          if n == "obsloop" or n.startswith("obsloop.")]
    assert not offending, "\n".join(offending)


def test_every_package_folder_is_in_the_distribution() -> None:
    """A package the editable install finds but ``pip install .`` (the Docker image) leaves out
    would fail only in production."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert packages <= listed, f"not in [tool.setuptools] packages: {sorted(packages - listed)}"


def test_the_checker_sees_an_upward_import() -> None:
    """The checks above would pass on a parser that found nothing."""
    imports = _all_imports()
    assert len(imports) > 300
    assert _layer("obsloop.feedback.responder") > _layer("obsloop.detectors.detection") > _layer("obsloop.core.secret")
    assert any(imp.importer.startswith("obsloop.feedback") and imp.imported.startswith("obsloop.detectors")
               for imp in imports)
