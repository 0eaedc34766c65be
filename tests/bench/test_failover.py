"""The failover benchmark: its checker on doctored histories, and a real short run."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.failover import main
from benchmarks.perf_history import Ack, check_history

HISTORY = [Ack(partition=0, offset=i, value=f"0:{i}".encode()) for i in range(5)] + [
    Ack(partition=1, offset=i, value=f"1:{i}".encode()) for i in range(3)]


def _read_back() -> dict[int, list[tuple[int, bytes]]]:
    return {0: [(i, f"0:{i}".encode()) for i in range(5)],
            1: [(i, f"1:{i}".encode()) for i in range(3)]}


def test_faithful_read_back_passes() -> None:
    result = check_history(HISTORY, _read_back(), sent=[a.value for a in HISTORY])
    assert result.ok and (result.acked, result.read, result.lost) == (8, 8, 0)


def test_unacknowledged_records_may_appear() -> None:
    read = _read_back()
    read[1].append((3, b"1:3"))  # its request timed out, yet it was committed: allowed
    result = check_history(HISTORY, read, sent=[a.value for a in HISTORY] + [b"1:3"])
    assert result.ok and result.read == 9


def test_lost_record_is_found() -> None:
    read = _read_back()
    del read[0][2]
    result = check_history(HISTORY, read)
    assert not result.ok and result.lost == 1 and result.duplicates == 0
    assert "offset 2" in result.examples[0]


def test_overwritten_record_counts_as_lost() -> None:
    read = _read_back()
    read[1][1] = (1, b"1:other")
    result = check_history(HISTORY, read, sent=[a.value for a in HISTORY] + [b"1:other"])
    assert result.lost == 1 and result.unexpected == 0


def test_duplicate_is_found() -> None:
    read = _read_back()
    read[0].append((5, b"0:3"))
    result = check_history(HISTORY, read)
    assert not result.ok and result.duplicates == 1 and result.lost == 0


def test_value_never_sent_is_found() -> None:
    read = _read_back()
    read[1].append((3, b"forged"))
    result = check_history(HISTORY, read, sent=[a.value for a in HISTORY])
    assert not result.ok and result.unexpected == 1


def test_real_run_with_leader_kills_loses_nothing(tmp_path: Path) -> None:
    json_path = tmp_path / "failover.json"
    code = main(["--seconds", "10", "--partitions", "2", "--rate", "500",
                 "--json", str(json_path)])
    result = json.loads(json_path.read_text())
    check = result["check"]
    assert code == 0, check["examples"]
    assert check["ok"] and check["lost"] == 0 and check["duplicates"] == 0
    assert check["acked"] > 0 and check["read"] >= check["acked"]
    actions = [e["action"] for e in result["events"] if e.get("broker") is not None]
    assert actions == ["kill", "restart", "term", "restart"]
    assert all(f["unavailable_s_max"] is not None for f in result["faults"])
