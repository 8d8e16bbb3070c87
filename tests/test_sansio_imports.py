"""The sans-IO parsers import nothing that does I/O: a walk over their syntax trees."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spoolup

SANS_IO_MODULES = ["headers.py", "multipart.py", "urlencoded.py"]
FORBIDDEN = {"os", "io", "tempfile", "asyncio", "socket"}
PACKAGE = Path(spoolup.__file__).parent


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, anywhere in the tree."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.add("__import__")  # a dynamic import would hide what it loads
    return names


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_no_io_imports(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    imported = imported_modules(tree)
    roots = {name.split(".")[0] for name in imported}
    assert not roots & (FORBIDDEN | {"__import__", "importlib"}), sorted(imported)


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_spoolup_imports_stay_sans_io(module: str) -> None:
    # What the parsers import from spoolup must be sans-IO too.
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    allowed = {"spoolup.errors", "spoolup.limits"} | {
        f"spoolup.{name.removesuffix('.py')}" for name in SANS_IO_MODULES
    }
    ours = {name for name in imported_modules(tree) if name.split(".")[0] == "spoolup"}
    assert ours <= allowed, sorted(ours - allowed)


def test_the_walk_finds_forbidden_imports() -> None:
    tree = ast.parse("import os.path\nfrom io import BytesIO\ndef f():\n    import socket\n")
    assert {"os.path", "io", "socket"} <= imported_modules(tree)
