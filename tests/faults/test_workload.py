"""The workload on a real 3-broker cluster: a partition leader is SIGKILLed and restarted while
producers and consumers run; the recorded history then passes every check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.checker import check
from tests.faults.history import History
from tests.faults.workload import ClientTimeouts, Workload
from tests.integration.cluster import ClusterFactory, NotYet, pick_free_ports, wait_until

TOPIC = "faults-workload"
PARTITIONS = 3
PROGRESS_TIMEOUT_S = 60.0  # generous bounds: the test waits for events, never for speed
FINAL_READ_TIMEOUT_S = 60.0


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    factory = ClusterFactory(tmp_path / "clusters")
    try:
        yield factory
    finally:
        factory.close()


def wait_for_progress(workload: Workload, **at_least: int) -> dict[str, int]:
    """Wait until every named count of workload.stats() reaches its value."""
    def reached() -> dict[str, int]:
        stats = workload.stats()
        short = {k: (stats[k], v) for k, v in at_least.items() if stats[k] < v}
        if short:
            raise NotYet(f"(count, wanted): {short}")
        return stats

    return wait_until(reached, timeout_s=PROGRESS_TIMEOUT_S, what=f"workload counts {at_least}")


def test_leader_kill_and_restart_keeps_the_history_clean(
        cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    cluster = cluster_factory(3)
    cluster.create_topic(TOPIC, PARTITIONS)
    path = tmp_path / "history.jsonl"
    with History(path) as history:
        with Workload(cluster.bootstrap, history, topic=TOPIC, partitions=PARTITIONS,
                      rate_per_s=200.0) as workload:
            workload.start()
            stats = wait_for_progress(workload, acked=200, read=200, commits_ok=1)
            victim = cluster.leader_of(TOPIC, 0)
            assert victim is not None
            history.record("fault", name="kill-leader", targets=[victim])
            cluster.kill(victim)
            cluster.wait_topic_leaders(TOPIC, PARTITIONS, excluded=[victim],
                                       bootstrap=cluster.live_bootstrap)
            stats = wait_for_progress(workload, acked=stats["acked"] + 200)
            history.record("heal", name="kill-leader", targets=[victim])
            cluster.restart(victim)
            cluster.wait_ready()
            wait_for_progress(workload, acked=stats["acked"] + 400, read=stats["read"] + 400)
            workload.stop()
            stats = workload.stats()
            workload.drain_and_read_all(FINAL_READ_TIMEOUT_S)
    ops = History.load(path)
    assert not [op for op in ops if op.get("what") in ("worker_crashed", "worker_stuck")]
    verdict = check(ops)
    counts = verdict.counts
    assert verdict.ok, (verdict.problems, dict(counts))
    assert counts["acked"] > 0 and counts["reads"] > 0 and counts["final_reads"] > 0
    assert counts["acked"] == stats["acked"]
    assert counts["unresolved"] == 0  # every send's outcome was recorded before stop() returned
    assert counts["commits_ok"] > 0


def test_an_unreachable_cluster_is_recorded_not_raised(tmp_path: Path) -> None:
    """Nothing listens at the bootstrap address: every client keeps failing to start, each
    failure is a note, and stop() still returns (its waits are bounded)."""
    (port,) = pick_free_ports(1)
    path = tmp_path / "history.jsonl"
    timeouts = ClientTimeouts(request_timeout_ms=500, close_timeout_s=1.0,
                              consumer_close_timeout_s=2.0)
    with History(path) as history:
        workload = Workload(f"127.0.0.1:{port}", history, topic=TOPIC, partitions=2,
                            timeouts=timeouts)
        with workload:
            workload.start()
            wait_until(lambda: workload.stats()["errors"] >= 3, timeout_s=PROGRESS_TIMEOUT_S,
                       what="clients to fail to start")
        workload.drain_and_read_all(timeout_s=1.0)
    ops = History.load(path)
    failed_starts = {op["worker"] for op in ops if op.get("what") in (
        "producer_start_failed", "consumer_start_failed")}
    assert failed_starts <= {"p0", "p1", "g0", "g1", "s0"} and failed_starts
    assert any(op.get("what") == "workload_stop" for op in ops)
    final_ends = [op for op in ops if op.get("what") == "final_end"]
    assert [(op["partition"], op["end"]) for op in final_ends] == [(0, -1), (1, -1)]
    verdict = check(ops)
    assert verdict.counts["sent"] == 0 and verdict.ok
