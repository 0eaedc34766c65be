"""`raftlog bench` end to end: a tiny run against a real local cluster writes sound results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.perf import main
from benchmarks.perf_stats import Histogram
from broker.cli import main as cli_main


def _run(bootstrap: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any], Path]:
    json_path, png_path = tmp_path / "result.json", tmp_path / "timeline.png"
    code = main(["1-topic-1-partition-1kb", "--bootstrap", bootstrap, "--records", "300",
                 "--seconds", "20", "--json", str(json_path), "--plot", str(png_path),
                 "--quiet", *extra])
    return code, json.loads(json_path.read_text()), png_path


@pytest.mark.parametrize("client", ["raftlog", "kafka-python", "raw"])
def test_tiny_run_reports_positive_figures(bench_cluster: Any, tmp_path: Path,
                                           client: str) -> None:
    code, result, png_path = _run(bench_cluster.bootstrap, tmp_path, "--rate", "200",
                                  "--client", client)
    assert code == 0, result["worker_errors"]
    assert result["client"] == result["config"]["client"] == client
    assert result["durability"] == "always"
    produce, consume = result["produce"], result["consume"]
    assert produce["records"] == 300 and produce["errors"] == 0
    assert consume["records"] == 300
    for figure in (produce["records_per_s"], produce["mb_per_s"], consume["records_per_s"],
                   consume["mb_per_s"]):
        assert figure > 0
    latency = produce["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99_9"] <= latency["max"]
    e2e = result["end_to_end_latency_ms"]
    assert 0 < e2e["p50"] <= e2e["p99"] <= e2e["p99_9"]
    assert e2e["samples"] == 300
    timeline = result["timeline"]
    assert sum(row["produce_records"] for row in timeline) == 300
    assert sum(row["consume_records"] for row in timeline) == 300
    assert result["config"]["partitions"] == 1 and result["config"]["record_bytes"] == 1024
    pytest.importorskip("matplotlib")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_forwards_to_bench_and_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--records", "0"]) == 2
    assert "--records" in capsys.readouterr().err


def test_histogram_percentiles_are_close_and_mergeable() -> None:
    a, b = Histogram(), Histogram()
    for i in range(1, 501):
        a.record(i / 1000)  # 1..500 ms
        b.record((500 + i) / 1000)  # 501..1000 ms
    a.merge(b)
    assert a.count == 1000
    assert abs(a.percentile_ms(0.5) - 500) / 500 < 0.04
    assert abs(a.percentile_ms(0.99) - 990) / 990 < 0.04
    assert a.percentile_ms(1.0) == pytest.approx(1000, rel=0.04)
    assert Histogram.from_dict(a.to_dict()) == a
