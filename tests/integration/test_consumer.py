"""Our consumer against three real brokers: standalone assign/seek/positions/offsets, long
polling, a group shared with kafka-python's consumer, bad input, and `raftlog consume` /
`raftlog group list|describe`. Records are written with kafka-python's producer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.structs import OffsetAndMetadata as KafkaOffsetAndMetadata

from consumer import (
    AsyncConsumer,
    Consumer,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    TopicPartition,
    UnknownTopicError,
)
from tests.integration.clients import create_topic, make_consumer, make_producer
from tests.integration.cluster import LocalCluster, NotYet

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # kafka-python's


def _write(cluster: LocalCluster, topic: str, values: list[bytes], *,
           partition: int | None = None, timestamps_ms: list[int] | None = None
           ) -> list[tuple[int, int]]:
    """Write records (kafka-python, acks=all); their (partition, offset) in order."""
    producer = make_producer(cluster.bootstrap)
    try:
        out = []
        for i, value in enumerate(values):
            future = producer.send(topic, value=value, key=b"k%d" % i, partition=partition,
                                   timestamp_ms=None if timestamps_ms is None
                                   else timestamps_ms[i])
            md = future.get(timeout=30)
            out.append((md.partition, md.offset))
        return out
    finally:
        producer.close(timeout=10)


def _drain(consumer: Consumer, want: int, cluster: LocalCluster, timeout_s: float = 60
           ) -> list:
    got: list = []

    def enough() -> bool:
        for records in consumer.poll(timeout_ms=200).values():
            got.extend(records)
        if len(got) < want:
            raise NotYet(f"{len(got)} of {want} records")
        return True

    cluster.wait_until(enough, timeout_s=timeout_s, what=f"{want} records", interval_s=0)
    return got


def test_assign_seek_positions_and_offsets(cluster: LocalCluster) -> None:
    topic = "c-standalone"
    create_topic(cluster.bootstrap, topic, 2, 3)
    base_ms = int(time.time() * 1000) - 100_000
    stamps = [base_ms + 1000 * i for i in range(20)]
    _write(cluster, topic, [b"v%d" % i for i in range(20)], partition=0, timestamps_ms=stamps)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    with Consumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest") as c:
        c.assign([tp0, tp1])
        assert c.assignment() == {tp0, tp1}
        assert c.end_offsets([tp0, tp1]) == {tp0: 20, tp1: 0}
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.position(tp0) == 0 and c.position(tp1) == 0

        c.seek(tp0, 15)
        records = _drain(c, 5, cluster)
        assert [(r.offset, r.value, r.key, r.timestamp_ms) for r in records] == [
            (i, b"v%d" % i, b"k%d" % i, stamps[i]) for i in range(15, 20)]
        assert c.position(tp0) == 20 and c.highwater(tp0) == 20

        found = c.offsets_for_times({tp0: stamps[7] - 1, tp1: base_ms})
        assert found[tp0] is not None and (found[tp0].offset, found[tp0].timestamp_ms) == (
            7, stamps[7])
        assert found[tp1] is None
        assert c.offsets_for_times({tp0: stamps[-1] + 1})[tp0] is None

        c.seek_to_beginning(tp0)
        assert c.position(tp0) == 0
        c.seek_to_end(tp0)
        assert c.position(tp0) == 20
        c.seek(tp0, 500)  # beyond the log end: auto_offset_reset (earliest) decides
        records = _drain(c, 20, cluster)
        assert [r.offset for r in records] == list(range(20))

        with pytest.raises(IllegalStateError, match="not assigned"):
            c.position(TopicPartition(topic, 5))
        with pytest.raises(IllegalStateError, match="group_id"):
            c.commit()
    c.close()  # closing twice is harmless


def test_reset_none_raises_instead_of_guessing(cluster: LocalCluster) -> None:
    topic = "c-reset-none"
    create_topic(cluster.bootstrap, topic, 1, 3)
    _write(cluster, topic, [b"a", b"b"])
    tp = TopicPartition(topic, 0)
    with Consumer(bootstrap_servers=cluster.bootstrap, group_id="c-reset-none-group",
                  auto_offset_reset="none") as c:
        c.assign([tp])
        with pytest.raises(NoOffsetForPartitionError, match="no committed offset"):
            _poll_until_error(c)
        c.seek(tp, 1)
        assert [r.value for r in _drain(c, 1, cluster)] == [b"b"]
        c.seek(tp, 99)
        with pytest.raises(OffsetOutOfRangeError, match="out of range"):
            _poll_until_error(c)
        c.seek(tp, 0)
        assert [r.value for r in _drain(c, 2, cluster)] == [b"a", b"b"]


def _poll_until_error(c: Consumer, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c.poll(timeout_ms=200)
    raise AssertionError("no error raised")


def test_long_poll_returns_when_data_arrives(cluster: LocalCluster) -> None:
    topic = "c-long-poll"
    create_topic(cluster.bootstrap, topic, 1, 3)
    tp = TopicPartition(topic, 0)
    with Consumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="latest",
                  fetch_max_wait_ms=2000) as c:
        c.assign([tp])
        assert c.position(tp) == 0
        writer = threading.Timer(1.0, lambda: _write(cluster, topic, [b"late"]))
        writer.start()
        started = time.monotonic()
        try:
            batch = c.poll(timeout_ms=60_000)
        finally:
            writer.join()
        elapsed_s = time.monotonic() - started
    assert [r.value for r in batch.get(tp, [])] == [b"late"]
    assert elapsed_s < 50, f"poll waited {elapsed_s:.1f} s of its 60 s: not woken by the data"


def test_async_consumer_iterates_and_commits(cluster: LocalCluster) -> None:
    topic = "c-async"
    create_topic(cluster.bootstrap, topic, 2, 3)
    written = set(_write(cluster, topic, [b"x%d" % i for i in range(30)]))

    async def run() -> tuple[set[tuple[int, int]], dict[int, int | None]]:
        seen: set[tuple[int, int]] = set()
        async with AsyncConsumer(topic, bootstrap_servers=cluster.bootstrap,
                                 group_id="c-async-group", auto_offset_reset="earliest",
                                 enable_auto_commit=False, heartbeat_interval_ms=500,
                                 value_deserializer=bytes.decode,
                                 key_deserializer=lambda k: int(k[1:])) as c:
            async with asyncio.timeout(60):
                async for record in c:
                    assert record.value == "x%d" % record.key
                    seen.add((record.partition, record.offset))
                    if len(seen) == len(written):
                        break
            await c.commit()
            return seen, {p: await c.committed(TopicPartition(topic, p)) for p in (0, 1)}

    seen, committed = asyncio.run(run())
    assert seen == written
    ends = {p: max(o for q, o in written if q == p) + 1 for p, _ in written}
    assert committed == {p: ends.get(p) for p in (0, 1)}


def test_one_group_with_kafka_python_splits_partitions_and_shares_commits(
        cluster: LocalCluster) -> None:
    topic, group, partitions = "c-interop", "c-interop-group", 4
    create_topic(cluster.bootstrap, topic, partitions, 3)
    written = set(_write(cluster, topic, [b"i%d" % i for i in range(200)]))
    ours = Consumer(topic, bootstrap_servers=cluster.bootstrap, group_id=group,
                    auto_offset_reset="earliest", enable_auto_commit=False,
                    session_timeout_ms=10_000, heartbeat_interval_ms=500)
    theirs: KafkaConsumer = make_consumer(cluster.bootstrap, group_id=group,
                                          session_timeout_ms=10_000,
                                          heartbeat_interval_ms=500)
    try:
        theirs.subscribe([topic])
        seen_ours: dict[tuple[int, int], bytes] = {}
        seen_theirs: dict[tuple[int, int], bytes] = {}

        def split_and_drained() -> bool:
            for records in ours.poll(timeout_ms=100).values():
                seen_ours.update({(r.partition, r.offset): r.value for r in records})
            for records in theirs.poll(timeout_ms=100).values():
                seen_theirs.update({(r.partition, r.offset): r.value for r in records})
            mine = {tp.partition for tp in ours.assignment()}
            other = {tp.partition for tp in theirs.assignment()}
            if not mine or not other or mine & other or mine | other != set(range(partitions)):
                raise NotYet(f"assignments ours {sorted(mine)}, kafka-python {sorted(other)}")
            read = set(seen_ours) | set(seen_theirs)
            if not written <= read:
                raise NotYet(f"{len(written - read)} records unread")
            return True

        cluster.wait_until(split_and_drained, timeout_s=90, interval_s=0,
                           what="our consumer and kafka-python's to split the partitions")
        mine = sorted(tp.partition for tp in ours.assignment())
        other = sorted(tp.partition for tp in theirs.assignment())
        described = cluster.cli_json("group", "describe", group)
        assert described["state"] == "Stable" and described["protocol"] == "range"
        assert sorted(sorted(a["partition"] for a in m["assignment"])
                      for m in described["members"]) == sorted([mine, other])
        ours.commit({TopicPartition(topic, p): 3 + p for p in mine})
        theirs.commit({KafkaTopicPartition(topic, p): KafkaOffsetAndMetadata(5 + p, "kp", -1)
                       for p in other})
        for p in mine:  # each reads the other's commits
            assert theirs.committed(KafkaTopicPartition(topic, p)) == 3 + p
        for p in other:
            assert ours.committed(TopicPartition(topic, p)) == 5 + p
        with pytest.raises(IllegalStateError, match="not assigned"):
            ours.commit({TopicPartition(topic, other[0]): 1})
    finally:
        theirs.close()
        ours.close()


def test_unknown_topic_is_reported(cluster: LocalCluster) -> None:
    with pytest.raises(UnknownTopicError, match="c-no-such-topic"):
        Consumer("c-no-such-topic", bootstrap_servers=cluster.bootstrap, group_id="g")
    r = cluster.run_cli("consume", "c-no-such-topic", "--timeout-ms", "1000")
    assert r.returncode == 1 and "unknown topic" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cluster.run_cli("group", "describe", "c-no-such-group")
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr


def test_cli_consume_with_a_group_then_list_and_describe(
        cluster: LocalCluster, report_figure: Callable[[str], None]) -> None:
    topic, group = "c-cli", "c-cli-group"
    create_topic(cluster.bootstrap, topic, 3, 3)
    written = _write(cluster, topic, [b"line-%d" % i for i in range(90)])
    r = cluster.run_cli("consume", topic, "--group", group, "--from-beginning",
                        "--max-messages", "90", "--timeout-ms", "30000", "--format", "json",
                        timeout_s=60)
    assert r.returncode == 0, r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted((p["partition"], p["offset"]) for p in printed) == sorted(written)
    assert all({"partition", "offset", "key", "value", "timestamp_ms"} <= set(p)
               for p in printed)

    listed = cluster.cli_json("group", "list")
    assert {"group": group, "protocol_type": "consumer", "state": "Empty"} in listed
    described = cluster.cli_json("group", "describe", group)
    assert described["state"] == "Empty" and described["members"] == []
    ends = {p: sum(1 for q, _ in written if q == p) for p in range(3)}
    assert {p["partition"]: (p["committed"], p["log_end"], p["lag"])
            for p in described["partitions"]} == {p: (n, n, 0) for p, n in ends.items()}

    # more records: a second run with the group resumes after the committed offsets
    more = _write(cluster, topic, [b"more-%d" % i for i in range(6)])
    r = cluster.run_cli("consume", topic, "--group", group, "--max-messages", "6",
                        "--timeout-ms", "30000", "--format", "json", timeout_s=60)
    assert r.returncode == 0, r.stderr
    assert sorted((p["partition"], p["offset"]) for p in map(json.loads, r.stdout.splitlines())
                  ) == sorted(more)
    text = cluster.run_cli("group", "describe", group)
    assert text.returncode == 0 and "LAG" in text.stdout, text.stderr
