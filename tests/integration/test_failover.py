"""SIGKILL a partition leader under continuous acks=all writes: a new leader takes over, writes
continue, and no acknowledged record is lost or moved, before and after the killed broker
rejoins; then a second leader kill proves the rejoined replica holds the data too.

The time from the kill to the next acknowledged write on the partition is printed (a figure,
not a pass/fail criterion)."""

from __future__ import annotations

import time
from pathlib import Path
from collections import Counter
from collections.abc import Callable

import pytest

from tests.integration.clients import (
    ContinuousWriter,
    admin_client,
    mismatches,
    read_all,
)
from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet

pytestmark = pytest.mark.timeout(420)

TOPIC = "failover"
PARTITIONS = 3


def _wait_acks(cluster: LocalCluster, writer: ContinuousWriter, partition: int,
               count: int, sent_after_s: float, what: str) -> None:
    def enough() -> bool:
        if writer.error is not None:
            raise AssertionError(f"writer stopped: {writer.error!r}")
        got = writer.acked_count(partition, sent_after_s)
        if got < count:
            raise NotYet(f"{got} acknowledged on partition {partition}, "
                         f"{len(writer.failed)} failed, last failure "
                         f"{writer.failed[-1:]}")
        return True

    cluster.wait_until(enough, timeout_s=60, what=what)


def _verify_log(bootstrap: str, writer: ContinuousWriter, stage: str) -> None:
    stored = read_all(bootstrap, TOPIC, range(PARTITIONS))
    problems = mismatches(writer.acked, stored)
    assert not problems, f"{stage}:\n" + "\n".join(problems)
    if writer.idempotent:
        copies = Counter(s.value for s in stored.values())
        duplicated = [(v or b"")[:12] for v, n in copies.items() if n > 1]
        assert not duplicated, f"{stage}: idempotent producer, yet duplicates {duplicated[:10]}"


def _wait_caught_up(cluster: LocalCluster, node_id: int) -> None:
    """The rejoined broker is back in every partition's replicas and ISR, nothing is
    under-replicated, and it reports the same high watermarks as the others."""
    others = [i for i in cluster.node_ids if i != node_id]
    admin = admin_client(cluster.bootstrap_of(others))

    def caught_up() -> bool:
        status = cluster.cluster_status()
        if status["under_replicated"] != 0:
            raise NotYet(f"under_replicated {status['under_replicated']}")
        (info,) = admin.describe_topics([TOPIC])
        outside = [p["partition_index"] for p in info["partitions"]
                   if node_id not in p["isr_nodes"]]
        if outside:
            raise NotYet(f"broker {node_id} not in the ISR of partitions {outside}")
        mine = cluster.describe(TOPIC, bootstrap=cluster.address(node_id))
        theirs = cluster.describe(TOPIC, bootstrap=cluster.bootstrap_of(others))
        for d in (mine, theirs):
            if any(node_id not in p["replicas"] for p in d["partitions"]):
                raise NotYet(f"broker {node_id} missing from replicas: {d}")
        hw = {p["partition"]: p["high_watermark"] for p in theirs["partitions"]}
        if {p["partition"]: p["high_watermark"] for p in mine["partitions"]} != hw:
            raise NotYet(f"high watermarks differ: {mine} vs {theirs}")
        return True

    try:
        cluster.wait_until(caught_up, timeout_s=90,
                           what=f"broker {node_id} to catch up on every partition")
    finally:
        admin.close()


def test_leader_kill_loses_no_acknowledged_write(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    cluster: LocalCluster = cluster_factory()
    cluster.create_topic(TOPIC, PARTITIONS, 3)
    writer = ContinuousWriter(cluster.bootstrap, TOPIC, PARTITIONS, count_max=60_000,
                              duration_s_max=150).start()
    try:
        _wait_acks(cluster, writer, 0, 300, 0.0, "writes to flow before the kill")
        victim = cluster.leader_of(TOPIC, 0)
        assert victim is not None
        kill_s = time.monotonic()
        cluster.kill(victim)
        cluster.wait_topic_leaders(TOPIC, PARTITIONS, timeout_s=60, excluded=[victim])
        leader_s = time.monotonic()
        _wait_acks(cluster, writer, 0, 300, kill_s,
                   f"writes to partition 0 to continue after killing broker {victim}")
    finally:
        writer.stop()
    assert writer.error is None, f"writer failed: {writer.error!r}"
    first = writer.first_ack_after(0, kill_s)
    assert first is not None
    report_figure(f"SIGKILL of broker {victim}, leader of partition 0: new leaders visible "
                  f"after {leader_s - kill_s:.2f} s; next acknowledged write on partition 0 "
                  f"after {first.acked_s - kill_s:.3f} s ({len(writer.acked)} acknowledged, "
                  f"{len(writer.failed)} failed, idempotent={writer.idempotent})")

    _verify_log(cluster.live_bootstrap, writer, "after the leader kill")

    cluster.restart(victim)
    cluster.wait_ready()
    _wait_caught_up(cluster, victim)
    _verify_log(cluster.bootstrap, writer, "after the killed broker rejoined")

    # Kill a broker that was up all along: partitions fail over to replicas that include the
    # rejoined one, which must hold every acknowledged record.
    led = Counter(cluster.leaders(TOPIC).values())
    second = max((i for i in cluster.node_ids if i != victim), key=lambda i: led[i])
    cluster.kill(second)
    cluster.wait_topic_leaders(TOPIC, PARTITIONS, timeout_s=60, excluded=[second])
    _verify_log(cluster.live_bootstrap, writer, f"after also killing broker {second}")

    # Finally the logs themselves: stop everything, open every replica's partition log on disk
    # and compare entry by entry (index, term, kind, payload) up to the shortest durable commit.
    cluster.restart(second)
    cluster.wait_ready()
    _wait_caught_up(cluster, second)
    cluster.stop_all()
    _compare_replica_logs(cluster)


def _compare_replica_logs(cluster: LocalCluster) -> None:
    from broker.storage import PartitionLog

    by_partition: dict[str, list[Path]] = {}
    for node_id in cluster.node_ids:
        root = cluster.data_root / f"broker-{node_id}" / "partitions"
        for d in sorted(root.iterdir()):
            by_partition.setdefault(d.name, []).append(d)
    assert by_partition, "no partition directories found"
    for name, dirs in by_partition.items():
        assert len(dirs) == 3, f"{name}: replicas on {len(dirs)} brokers"
        logs = [PartitionLog(d) for d in dirs]
        try:
            states = [lg.initial_state() for lg in logs]
            commit = min(s.commit for s in states if s is not None)
            first = max(lg.first_index() for lg in logs)
            reference = None
            for lg, d in zip(logs, dirs):
                entries = [(e.index, e.term, e.kind, e.data)
                           for e in lg.entries(first, commit + 1, 1 << 40)] if commit >= first else []
                if reference is None:
                    reference = entries
                assert entries == reference, f"{d}: committed entries differ from another replica's"
            assert reference, f"{name}: no committed entries to compare"
        finally:
            for lg in logs:
                lg.close()
