"""The pure layers import no I/O, and the client packages stay off the server side
(DESIGN.md section 1, STYLE.md rule 1). Walks each module's AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {
    "asyncio", "zmq", "socket", "time", "random", "os", "threading", "uvloop", "subprocess",
    "selectors", "signal", "multiprocessing", "io", "shutil", "tempfile", "pathlib",
}
PURE_DIRS = ["broker/wire", "broker/raft"]
PURE_FILES = ["broker/controller/metadata.py"]
SERVER_PACKAGES = {
    "broker.server", "broker.replica", "broker.storage", "broker.transport",
    "broker.controller", "broker.api",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _pure_files() -> list[Path]:
    files = [p for d in PURE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    files += [ROOT / f for f in PURE_FILES if (ROOT / f).exists()]
    return files


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layers_import_no_io(path: Path) -> None:
    bad = [(n, m) for n, m in _imports(path) if m.split(".")[0] in IO_MODULES]
    assert not bad, f"{path.relative_to(ROOT)} imports I/O modules: {bad}"


def _client_files() -> list[Path]:
    return [p for d in ("producer", "consumer") for p in sorted((ROOT / d).rglob("*.py"))]


@pytest.mark.parametrize("path", _client_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_clients_import_no_server_code(path: Path) -> None:
    bad = [
        (n, m) for n, m in _imports(path)
        if any(m == s or m.startswith(s + ".") for s in SERVER_PACKAGES)
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports server code: {bad}"


def test_broker_package_init_is_empty() -> None:
    """Clients import broker.wire without pulling in server code."""
    assert (ROOT / "broker/__init__.py").read_text().strip() == ""
