"""Stop every broker (SIGTERM) and start them again on the same data: topics, records and their
offsets are all still there and new records continue the offsets instead of reusing them; a
consumer group's committed offsets (records of `__consumer_offsets`) survive too."""

from __future__ import annotations

import pytest
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.integration.clients import (
    Outgoing,
    make_consumer,
    make_producer,
    mismatches,
    read_all,
    send_all,
)
from tests.integration.cluster import ClusterFactory, LocalCluster

pytestmark = pytest.mark.timeout(300)

TOPICS = {"keep-a": 4, "keep-b": 1}  # name -> partitions
GROUP = "keeper"
SHUTDOWN_DEADLINE = "not handed off before the shutdown deadline"  # broker log warning


def _records(topic: str, count: int, start: int = 0) -> list[Outgoing]:
    return [Outgoing(partition=None, key=b"%s-%d" % (topic.encode(), i % 13),
                     value=b"%s:%06d" % (topic.encode(), i), headers=(("n", b"%d" % i),))
            for i in range(start, start + count)]


def _commit(cluster: LocalCluster, offsets: dict[TopicPartition, int]) -> None:
    consumer = make_consumer(cluster.bootstrap, group_id=GROUP)
    try:
        consumer.commit({tp: OffsetAndMetadata(o, "before-restart", -1)
                         for tp, o in offsets.items()}, timeout_ms=30_000)
    except Exception as e:  # noqa: BLE001 - kafka-python's timeout error says only "None"
        raise AssertionError(f"kafka-python could not commit offsets for group {GROUP!r} "
                             f"within 30 s: {e!r}") from e
    finally:
        consumer.close()


def _committed(cluster: LocalCluster, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = make_consumer(cluster.bootstrap, group_id=GROUP)
    try:
        return {tp: consumer.committed(tp, timeout_ms=30_000) for tp in tps}
    finally:
        consumer.close()


def _high_watermarks(cluster: LocalCluster) -> dict[tuple[str, int], int]:
    return {(t, p["partition"]): p["high_watermark"]
            for t in TOPICS for p in cluster.describe(t)["partitions"]}


def _restart_all(cluster: LocalCluster) -> None:
    codes = cluster.stop_all()
    # All three stop at once, so leadership has nowhere to go: each must still exit by itself
    # (within its shutdown timeout), not need SIGKILL or die of the signal. Each also knows
    # its peers are stopping (they say so), so none waits out its deadline for a handoff.
    assert all(code is not None and code >= 0 for code in codes.values()), (
        f"exit codes after SIGTERM {codes}\n{cluster.diagnostics()}")
    waited = [i for i, b in cluster.brokers.items() if SHUTDOWN_DEADLINE in b.log_since_start()]
    assert not waited, (f"brokers {waited} waited out their shutdown deadline\n"
                        f"{cluster.diagnostics()}")
    cluster.start()
    cluster.wait_ready()


def test_full_restart_keeps_topics_records_and_offsets(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    for topic, partitions in TOPICS.items():
        cluster.create_topic(topic, partitions, 3)
    producer = make_producer(cluster.bootstrap)
    try:
        acked = {t: send_all(producer, t, _records(t, 1500 if t == "keep-a" else 300))
                 for t in TOPICS}
    finally:
        producer.close(timeout=10)
    listed = sorted((t["name"], t["partitions"], t["replication_factor"])
                    for t in cluster.topic_list() if t["name"] in TOPICS)
    watermarks = _high_watermarks(cluster)

    _restart_all(cluster)
    for topic, partitions in TOPICS.items():
        cluster.wait_topic_leaders(topic, partitions)
    assert sorted((t["name"], t["partitions"], t["replication_factor"])
                  for t in cluster.topic_list() if t["name"] in TOPICS) == listed
    assert _high_watermarks(cluster) == watermarks
    for topic, partitions in TOPICS.items():
        stored = read_all(cluster.bootstrap, topic, range(partitions))
        problems = mismatches(acked[topic], stored)
        assert not problems, f"{topic} after restart:\n" + "\n".join(problems)
        assert len(stored) == len(acked[topic])

    producer = make_producer(cluster.bootstrap)
    try:
        more = send_all(producer, "keep-b", _records("keep-b", 50, start=300))
    finally:
        producer.close(timeout=10)
    assert [a.offset for a in more] == list(range(300, 350)), "offsets reused or skipped"


def test_full_restart_keeps_committed_group_offsets(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    cluster.create_topic("keep-a", TOPICS["keep-a"], 3)
    committed = {TopicPartition("keep-a", p): 10 * (p + 1) for p in range(TOPICS["keep-a"])}
    _commit(cluster, committed)
    assert _committed(cluster, list(committed)) == committed
    _restart_all(cluster)
    cluster.wait_topic_leaders("keep-a", TOPICS["keep-a"])
    assert _committed(cluster, list(committed)) == committed
