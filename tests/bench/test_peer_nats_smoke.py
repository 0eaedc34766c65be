"""`raftlog bench --peer nats`: the same tiny workload against NATS JetStream, with ratios, at
one or both durabilities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.peer_nats import nats_missing
from benchmarks.perf import main


@pytest.fixture(autouse=True)
def _needs_nats() -> None:
    problem = nats_missing()
    if problem:
        pytest.skip(problem)


def _sound(run: dict[str, Any], records: int) -> None:
    assert run["worker_errors"] == []
    assert run["produce"]["records"] == records and run["consume"]["records"] == records
    assert run["produce"]["latency_ms"]["p50"] > 0 and run["end_to_end_latency_ms"]["p99"] > 0


def test_peer_run_on_an_existing_cluster_reports_one_pair(bench_cluster: Any,
                                                          tmp_path: Path) -> None:
    json_path = tmp_path / "result.json"
    code = main(["1-topic-1-partition-1kb", "--bootstrap", bench_cluster.bootstrap,
                 "--records", "200", "--rate", "200", "--seconds", "20", "--peer", "nats",
                 "--json", str(json_path), "--quiet"])
    result = json.loads(json_path.read_text())
    assert code == 0, result["worker_errors"]
    assert sorted(result["runs"]) == ["nats-always", "raftlog-always"]
    _sound(result["runs"]["nats-always"], 200)
    assert result["runs"]["nats-always"]["sync_interval"] == "always"
    [pair] = result["pairs"]
    assert (pair["raftlog_fsync_policy"], pair["nats_sync_interval"]) == ("always", "always")
    assert pair["ratios"]["produce_records_per_s"] > 0
    assert pair["ratios"]["consume_records_per_s"] > 0
    assert pair["ratios"]["publish_p99_ms"] > 0


def test_both_durabilities_run_four_systems_in_one_invocation(tmp_path: Path) -> None:
    json_path = tmp_path / "result.json"
    code = main(["1-topic-1-partition-1kb", "--records", "300", "--seconds", "20",
                 "--peer", "nats", "--json", str(json_path), "--quiet"])
    result = json.loads(json_path.read_text())
    runs = result["runs"]
    assert code == 0, {name: run["worker_errors"] for name, run in runs.items()}
    assert sorted(runs) == ["nats-always", "nats-default", "raftlog-always", "raftlog-interval"]
    for run in runs.values():
        _sound(run, 300)
    assert runs["raftlog-interval"]["fsync_policy"] == "interval"
    assert runs["nats-default"]["sync_interval"] == "default"
    assert runs["raftlog-always"]["client"] == "raftlog"
    assert runs["nats-always"]["client"] == "nats-py"
    policies = [(p["raftlog_fsync_policy"], p["nats_sync_interval"]) for p in result["pairs"]]
    assert policies == [("always", "always"), ("interval", "default")]
    for pair in result["pairs"]:
        assert pair["raftlog"]["produce_records_per_s"] > 0 and pair["nats"]["publish_p99_ms"] > 0
        assert all(pair["ratios"][k] > 0 for k in ("produce_records_per_s",
                                                     "consume_records_per_s", "publish_p99_ms"))


def test_existing_cluster_has_one_durability(bench_cluster: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--bootstrap", bench_cluster.bootstrap, "--peer", "nats",
                 "--durability", "both"])
    assert code == 2 and "--durability" in capsys.readouterr().err
