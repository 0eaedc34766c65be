"""`raftlog bench failover --peer nats`: the leader-kill scenario against NATS JetStream R3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.failover import main, window_ratios
from benchmarks.peer_nats import nats_missing


def _faults(kill: float | None, term: float | None) -> dict[str, list[dict[str, object]]]:
    return {"faults": [{"action": "kill", "unavailable_s_max": kill},
                       {"action": "term", "unavailable_s_max": term}]}


def test_window_ratios_compare_the_worst_window_per_fault_kind() -> None:
    ratios = window_ratios(_faults(1.0, 0.5), _faults(4.0, None))
    assert ratios == {"kill_unavailable_s": 0.25, "term_unavailable_s": None}


def test_nats_leader_kill_yields_an_unavailability_window(tmp_path: Path) -> None:
    problem = nats_missing()
    if problem:
        pytest.skip(problem)
    json_path = tmp_path / "nats-failover.json"
    # NATS elects a new stream leader 4 to 9 s after a kill (its election timeout): the run
    # leaves the kill at 15% of 20 s 17 s to be answered.
    code = main(["--seconds", "20", "--partitions", "1", "--rate", "200", "--batch-records", "5",
                 "--peer", "nats", "--peer-only", "--json", str(json_path)])
    result = json.loads(json_path.read_text())
    assert code == 0
    kill = result["faults"][0]
    assert kill["action"] == "kill" and kill["broker"] in ("n1", "n2", "n3")
    assert kill["unavailable_s_max"] is not None and kill["unavailable_s_max"] > 0
    assert result["produce"]["acked_records"] > 0
    assert [e["action"] for e in result["events"]][:2] == ["kill", "restart"]
