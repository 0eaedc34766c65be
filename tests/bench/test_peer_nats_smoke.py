"""`raftlog bench --peer nats`: the same tiny workload against NATS JetStream, with ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.peer_nats import nats_missing
from benchmarks.perf import main


def test_peer_run_reports_both_sides_and_ratios(bench_cluster: Any, tmp_path: Path) -> None:
    problem = nats_missing()
    if problem:
        pytest.skip(problem)
    json_path = tmp_path / "result.json"
    code = main(["1-topic-1-partition-1kb", "--bootstrap", bench_cluster.bootstrap,
                 "--records", "200", "--rate", "200", "--seconds", "20", "--peer", "nats",
                 "--json", str(json_path), "--quiet"])
    result = json.loads(json_path.read_text())
    assert code == 0, result["worker_errors"]
    peer = result["peer"]["nats"]
    assert peer["worker_errors"] == []
    assert peer["produce"]["records"] == 200 and peer["consume"]["records"] == 200
    assert peer["produce"]["latency_ms"]["p50"] > 0 and peer["end_to_end_latency_ms"]["p99"] > 0
    assert result["ratios"]["produce_records_per_s"] > 0
    assert result["ratios"]["consume_records_per_s"] > 0
