"""Packages import downward only: the command line (``watchkeeper_cli``) above the
components (``serving``, ``monitoring``, ``retrain``) above the shared core
(``watchkeeper``). An upward import, even one inside a function, makes an import cycle
between the core and a component; the check reads the source, so lazy imports count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = "watchkeeper"
COMPONENTS = ("serving", "monitoring", "retrain")
CLI = "watchkeeper_cli"
# What each layer must never import.
FORBIDDEN = {CORE: {*COMPONENTS, CLI}, **{component: {CLI} for component in COMPONENTS}}


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``, wherever it
    stands, including ``importlib.import_module("...")`` and ``__import__("...")`` of a
    literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return [(line, name.split(".")[0]) for line, name in found]


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def upward_imports(package: str) -> list[str]:
    forbidden = FORBIDDEN[package]
    return [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for line, name in imported_packages(path.read_text())
        if name in forbidden
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    assert upward_imports(package) == []


@pytest.mark.parametrize(
    "source",
    [
        "def run():\n    from monitoring.service import run\n",
        "import retrain.worker as worker\n",
        "import importlib\nimportlib.import_module('serving.app')\n",
        "from watchkeeper_cli.main import main\n",
    ],
)
def test_upward_imports_are_seen_wherever_they_stand(source: str) -> None:
    names = {name for _, name in imported_packages(source)}
    assert names & FORBIDDEN[CORE]


def test_relative_and_same_layer_imports_are_allowed() -> None:
    source = "from . import settings\nfrom watchkeeper.db import engine\nimport sqlalchemy\n"
    names = {name for _, name in imported_packages(source)}
    assert not names & FORBIDDEN[CORE]
