"""A stock Kafka client (kafka-python) against three brokers: its admin client creates a topic,
its idempotent acks=all lz4 producer writes keyed records with headers, and its consumer reads
every record back at exactly the (partition, offset) the producer was told. Then the same round
trip through `raftlog produce` / `raftlog consume`."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from tests.integration.clients import (
    Acked,
    Outgoing,
    create_topic,
    make_consumer,
    make_producer,
    mismatches,
    read_all,
    send_all,
)
from tests.integration.cluster import CLI_UNAVAILABLE, LocalCluster, NotYet

pytestmark = pytest.mark.timeout(240)

TOPIC = "kp-orders"
PARTITIONS = 6
RECORDS = 3000


def _outgoing(count: int, seed: int = 7) -> list[Outgoing]:
    rng = random.Random(seed)
    return [
        Outgoing(partition=None, key=b"customer-%d" % (i % 97),
                 value=b"order-%06d:" % i + rng.randbytes(rng.randrange(0, 200)),
                 headers=(("seq", b"%d" % i), ("source", b"kafka-python")))
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def written(cluster: LocalCluster) -> list[Acked]:
    """The topic, created by kafka-python's admin client and filled by its producer."""
    leaders = create_topic(cluster.bootstrap, TOPIC, PARTITIONS, 3)
    assert sorted(leaders) == list(range(PARTITIONS))
    producer = make_producer(cluster.bootstrap)
    try:
        assert producer.config["enable_idempotence"], "kafka-python disabled idempotence"
        return send_all(producer, TOPIC, _outgoing(RECORDS))
    finally:
        producer.close(timeout=10)


def test_offsets_are_dense_per_partition(written: list[Acked]) -> None:
    assert len(written) == RECORDS
    offsets: dict[int, list[int]] = defaultdict(list)
    for a in written:
        offsets[a.partition].append(a.offset)
    assert sorted(offsets) == list(range(PARTITIONS)), f"partitions used: {sorted(offsets)}"
    for partition, got in offsets.items():
        assert sorted(got) == list(range(len(got))), (
            f"partition {partition}: offsets of a fresh topic must be 0..n-1, got "
            f"{sorted(got)[:20]}...")
        # one producer, one partition: Kafka keeps send order within a partition
        in_send_order = [a.offset for a in written if a.partition == partition]
        assert in_send_order == sorted(in_send_order), f"partition {partition} reordered"


def test_assigned_consumer_reads_every_record_where_acknowledged(
        cluster: LocalCluster, written: list[Acked]) -> None:
    stored = read_all(cluster.bootstrap, TOPIC, range(PARTITIONS))
    problems = mismatches(written, stored)
    assert not problems, "\n".join(problems)
    assert len(stored) == RECORDS, f"{len(stored) - RECORDS} records nobody acknowledged"


def test_group_consumer_reads_everything_and_commits(
        cluster: LocalCluster, written: list[Acked]) -> None:
    consumer: KafkaConsumer = make_consumer(cluster.bootstrap, group_id="kp-billing",
                                            session_timeout_ms=10_000,
                                            heartbeat_interval_ms=1_000)
    seen: dict[tuple[int, int], bytes] = {}
    try:
        consumer.subscribe([TOPIC])

        def drained() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    seen[(r.partition, r.offset)] = r.value
            if len(seen) < RECORDS:
                raise NotYet(f"{len(seen)} of {RECORDS} records, assignment "
                             f"{sorted(tp.partition for tp in consumer.assignment())}")
            return True

        cluster.wait_until(drained, timeout_s=90, what="the group consumer to read every record",
                           interval_s=0)
        consumer.commit(timeout_ms=30_000)
        ends = Counter(a.partition for a in written)
        for partition, end in ends.items():
            assert consumer.committed(TopicPartition(TOPIC, partition), timeout_ms=30_000) == end
    finally:
        consumer.close()
    assert seen == {(a.partition, a.offset): a.value for a in written}


def test_cli_produce_and_consume_round_trip(cluster: LocalCluster) -> None:
    topic = "cli-roundtrip"
    r = cluster.run_cli("topic", "create", topic, "--partitions", "3",
                        "--replication-factor", "3")
    if CLI_UNAVAILABLE in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    cluster.wait_topic_leaders(topic, 3)
    lines = [f"key-{i % 7}:value-{i}" for i in range(200)]
    r = cluster.run_cli("produce", topic, "--key-separator", ":", "--acks", "all",
                        input="\n".join(lines) + "\n", timeout_s=60)
    if CLI_UNAVAILABLE in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr

    r = cluster.run_cli("consume", topic, "--from-beginning", "--max-messages", str(len(lines)),
                        "--timeout-ms", "30000", "--format", "json", timeout_s=60)
    if CLI_UNAVAILABLE in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(printed) == len(lines), r.stdout[-2000:]
    for p in printed:
        assert {"partition", "offset", "key", "value", "timestamp_ms"} <= set(p), p
    assert sorted((p["key"], p["value"]) for p in printed) == sorted(
        tuple(line.split(":", 1)) for line in lines)
    # where the consumer says each record is, a Kafka client finds it
    stored = read_all(cluster.bootstrap, topic, range(3))
    for p in printed:
        s = stored[(p["partition"], p["offset"])]
        assert (s.key, s.value) == (p["key"].encode(), p["value"].encode()), (p, s)
    for p in printed:  # Kafka's partitioner, as API.md promises, so keys land where Kafka's would
        expected = (murmur2(p["key"].encode()) & 0x7FFFFFFF) % 3
        assert p["partition"] == expected, f"key {p['key']!r} in partition {p['partition']}"
