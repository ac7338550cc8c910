"""The package's layout: its modules import one another without a circle, and each imports on its own.

A circle makes the import order matter (a module half-initialized when another reads from it) and
tells a reader there is no "below" to start from; docs/internals.rst describes the layers this pins.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import flask_asyncendpoints

PACKAGE_DIR = Path(flask_asyncendpoints.__file__).parent
PACKAGE = "flask_asyncendpoints"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import in ``node``, in functions too (they run, later), but not under ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                found += _imports(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        found += _imports(child)
    return found


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def dependencies(importer: str) -> set[str]:
    """The package's modules that ``importer`` imports (a submodule named by ``from . import x`` too)."""
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(importer, node)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            # ``from . import x`` names the package this module is part of: Python is importing it
            # already, so what this module depends on is the submodule ``x``.
            if not importer.startswith(base + "."):
                targets.append(base)
        found.update(target for target in targets if target in MODULES and target != importer)
    return found


def test_the_import_graph_has_no_circle() -> None:
    graph = {name: dependencies(name) for name in MODULES}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")
    assert set(order) == set(MODULES)


def test_the_graph_sees_the_imports_it_checks() -> None:
    # A reader that found no edges would pass the test above vacuously.
    assert "flask_asyncendpoints.views" in dependencies("flask_asyncendpoints.extension")
    assert "flask_asyncendpoints.stores.base" in dependencies("flask_asyncendpoints.stores.memory.store")
    assert "flask_asyncendpoints.extension" not in dependencies("flask_asyncendpoints.views.submit")


#: Imports each module named on its command line first, with none of the package loaded before it
#: (its dependencies outside the package stay loaded: they cannot depend on the package's order).
_IMPORT_EACH_FIRST = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "flask_asyncendpoints" or m.startswith("flask_asyncendpoints.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\\n" + traceback.format_exc())
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_first() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, *sorted(MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_data_covers_every_file_the_package_reads() -> None:
    # A template, stylesheet or script missing from setup.cfg's package_data is left out of the
    # wheel: the app then fails only once installed, never in a checkout.
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE_DIR.parent / "setup.cfg")
    covered: set[Path] = set()
    for package, patterns in config["options.package_data"].items():
        base = PACKAGE_DIR.parent.joinpath(*package.split("."))
        for pattern in patterns.replace(",", " ").split():
            covered.update(base.glob(pattern))
    data = {
        path
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert data - covered == set()
    assert any(path.suffix == ".html" for path in covered) and any(path.suffix == ".lua" for path in covered)


#: The sizes a reader takes in one pass (non-blank lines; docs/internals.rst): a module longer than
#: this, or a class, holds more than one concern and is split along them.
MODULE_LINES = 450
CLASS_LINES = 400


def _non_blank(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def test_no_module_or_class_is_longer_than_a_reader_takes_in_one_pass() -> None:
    too_long: list[str] = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if _non_blank(lines) > MODULE_LINES:
            too_long.append(f"module {name}: {_non_blank(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                size = _non_blank(lines[node.lineno - 1 : node.end_lineno])
                if size > CLASS_LINES:
                    too_long.append(f"class {name}.{node.name}: {size} lines")
    assert too_long == []
