"""`raftlog dev --demo`: the README's first quick-start command, on free ports."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_base_port() -> int:
    """A base port with base..base+2 and base+100..base+102 free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 102 > 65000:
            continue
        ok = True
        for port in [base + i for i in range(3)] + [base + 100 + i for i in range(3)]:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    pytest.skip("no free port range found")


@pytest.mark.timeout(180)
def test_dev_demo_round_trip(tmp_path: Path) -> None:
    base = _free_base_port()
    r = subprocess.run(
        [sys.executable, "-m", "broker", "dev", "--demo", "--base-port", str(base),
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=170)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*/broker.log"))
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}\nlogs:\n{logs}"
    assert r.stdout.splitlines()[0] == ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    assert "every acknowledged record was read back at its offset" in r.stdout
    assert r.stdout.count("read back from the leader") == 3


def test_dev_rejects_bad_broker_count() -> None:
    r = subprocess.run([sys.executable, "-m", "broker", "dev", "--brokers", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
