"""The controller's state machine, records and placement do no I/O (STYLE.md rule 1): they
import neither I/O modules nor any project module outside the pure layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = [
    "broker/controller/__init__.py",
    "broker/controller/records.py",
    "broker/controller/metadata.py",
    "broker/controller/placement.py",
]
ALLOWED_STDLIB = {
    "__future__", "bisect", "collections", "dataclasses", "enum", "hashlib", "json", "re",
    "types", "typing",
}
ALLOWED_PROJECT = (
    "broker.wire.errors", "broker.wire.limits", "broker.controller.records",
    "broker.controller.metadata",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            found.append((node.lineno, node.module or ""))
    return found


@pytest.mark.parametrize("module", PURE_MODULES)
def test_imports_only_pure_modules(module: str) -> None:
    bad = [
        (line, name) for line, name in _imports(ROOT / module)
        if name.split(".")[0] not in ALLOWED_STDLIB and name not in ALLOWED_PROJECT
    ]
    assert not bad, f"{module} imports outside the pure set: {bad}"


# hash() is salted per process, so it would place differently on each node; the others are I/O
BANNED_CALLS = {"hash", "open", "print", "input", "id"}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_no_process_dependent_or_io_builtins(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    bad = [
        (node.lineno, node.func.id) for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in BANNED_CALLS
    ]
    assert not bad, f"{module} calls {bad}"
