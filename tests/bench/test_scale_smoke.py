"""`raftlog bench scale` end to end at a tiny size: a real 3-broker cluster, every field of the
JSON present and sound."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.perf import main as bench_main

BROKERS = ("1", "2", "3")
PARTITIONS = 12
IDLE_S = 0.5  # each of the two idle windows: their figures, not their length, are checked


def test_tiny_scale_run_reports_every_field(tmp_path: Path) -> None:
    json_path = tmp_path / "scale.json"
    code = bench_main(["scale", "--partitions", str(PARTITIONS), "--idle-seconds", str(IDLE_S),
                       "--wait-seconds", "60", "--json", str(json_path),
                       "--data-dir", str(tmp_path / "data"), "--quiet"])
    result = json.loads(json_path.read_text())
    print(json.dumps(result, indent=1))  # shown by pytest when an assertion below fails
    (run,) = result["runs"]
    assert code == 0 and run["ok"], (run["errors"], run.get("log_tail"))
    assert result["config"]["partitions"] == [PARTITIONS]
    assert len(result["host"]["loadavg_start"]) == 3 and result["host"]["cpus"] >= 1
    assert run["partitions"] == PARTITIONS and run["replication_factor"] == 3
    assert len(run["topics"]) == 1 and run["errors"] == []

    create = run["create"]
    assert 0 < create["request_s"] <= create["all_led_s"] <= create["balanced_s"]
    assert sum(create["leaders"].values()) == PARTITIONS
    assert set(create["cpu_seconds"]) == set(BROKERS)
    assert all(v >= 0 for v in create["cpu_seconds"].values())

    for window in (run["baseline"], run["idle"]):
        assert set(window["cpu_percent"]) == set(BROKERS)
        assert all(v >= 0 for v in window["cpu_percent"].values())
    assert run["idle"]["seconds"] >= IDLE_S and run["idle"]["cpu_percent_total"] >= 0
    assert sum(run["idle"]["leaders"].values()) == PARTITIONS

    for node in BROKERS:
        m = run["memory"][node]
        assert m["baseline_rss_bytes"] > 0 and m["rss_bytes"] > 0
        assert m["replicas"] == PARTITIONS  # RF 3 on 3 brokers: every broker hosts all
        assert m["memory_per_partition_bytes"] == round(
            (m["rss_bytes"] - m["baseline_rss_bytes"]) / PARTITIONS)
    assert isinstance(run["memory_per_partition_bytes_mean"], int)

    assert [r["signal"] for r in run["restarts"]] == ["SIGKILL", "SIGTERM"]
    for r in run["restarts"]:
        assert r["broker"] in (1, 2, 3) and r["partitions_led"] >= 1
        assert r["all_led_s"] >= 0 and r["exit_s"] >= 0 and r["forced"] is False
        assert 0 <= r["leaderless_max"] <= r["partitions_led"]
        assert 0 <= r["ready_s"] <= r["balanced_s"] <= r["balanced_from_signal_s"]
        assert r["rss_bytes_after"] > 0
    assert run["restarts"][0]["leaderless_max"] >= 1  # a SIGKILLed leader hands nothing off


def test_bad_flags_are_usage_errors() -> None:
    assert bench_main(["scale", "--replication-factor", "4"]) == 2
    assert bench_main(["scale", "--idle-seconds", "0"]) == 2
