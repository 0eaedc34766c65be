"""The Locust file, headless for a few seconds against a real local cluster."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

LOCUSTFILE = Path(__file__).resolve().parents[2] / "benchmarks" / "locustfile.py"


def test_producer_and_consumer_users_report_requests(bench_cluster: Any, tmp_path: Path) -> None:
    # Only look for it: importing locust monkey-patches this whole process for gevent, and
    # every later test (threads, sockets, subprocesses) would then run on gevent's hub.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (pip install -e '.[bench]')")
    env = {**os.environ, "RAFTLOG_BOOTSTRAP": bench_cluster.bootstrap,
           "RAFTLOG_TOPIC": "locust-smoke", "RAFTLOG_PARTITIONS": "2",
           "RAFTLOG_BATCH_RECORDS": "20"}
    prefix = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2",
         "-r", "2", "-t", "5s", "--stop-timeout", "5", "--only-summary", "--csv", str(prefix)],
        env=env, cwd=LOCUSTFILE.parents[1], capture_output=True, text=True, timeout=120)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Type"]: row for row in csv.DictReader(f)}
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in ("produce", "fetch"):
        assert int(rows[kind]["Request Count"]) > 0, done.stderr[-2000:]
        assert int(rows[kind]["Failure Count"]) == 0
        assert float(rows[kind]["Average Content Size"]) > 0
