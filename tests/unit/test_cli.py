"""The CLI skeleton: version, help listing API.md's commands, usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys

from broker.version import __version__


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    r = _run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"raftlog {__version__}"


def test_help_lists_commands() -> None:
    r = _run("--help")
    assert r.returncode == 0
    for command in ("serve", "dev", "topic", "produce", "consume", "cluster"):
        assert command in r.stdout


def test_bad_usage_exits_2_with_one_line() -> None:
    r = _run("topic", "create", "orders")  # --partitions missing
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
