"""The producer against real brokers: interop with kafka-python both ways, acks semantics,
keyed placement, flush and close, bad input, the `raftlog produce` command, and exactly-once
in order per partition while partition leaders are SIGKILLed and restarted under load.

Reading back uses independent code: kafka-python's consumer, or a raw Fetch decoded by
broker.wire.records (for what kafka-python wrote)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from broker.client import AdminClient, ClusterClient
from broker.wire.errors import ErrorCode
from broker.wire.kafka.messages import FetchPartition, FetchRequest, FetchTopic
from broker.wire.records import RecordBatch, decode_batches
from producer import (
    AsyncProducer,
    Producer,
    ProducerClosedError,
    RecordFuture,
    RecordMetadata,
    RecordTooLargeError,
    UnknownTopicError,
    partition_for_key,
)
from tests.integration.clients import make_consumer, make_producer, read_all
from tests.integration.cluster import REPO_ROOT, ClusterFactory, LocalCluster, NotYet
from tests.integration.processes import repo_env

pytestmark = pytest.mark.timeout(300)

FAST = {"request_timeout_ms": 10_000, "delivery_timeout_ms": 60_000, "max_block_ms": 20_000}


@pytest.fixture(scope="module")
def producer(cluster: LocalCluster) -> Iterator[Producer]:
    with Producer(cluster.bootstrap, **FAST) as p:
        yield p


def _consume(bootstrap: str, topic: str, partitions: int, count: int,
             timeout_s: float = 30.0) -> list[Any]:
    """`count` records of `topic` as kafka-python's consumer returns them (timestamps and
    headers included), by partition then offset."""
    consumer: KafkaConsumer = make_consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        assert len(out) == count, f"read {len(out)} of {count} records of {topic!r}"
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


# ---- interop ----------------------------------------------------------------------------

def test_kafka_python_reads_exactly_what_we_wrote(cluster: LocalCluster,
                                                  producer: Producer) -> None:
    cluster.create_topic("interop-ours", 3, 3)
    sent: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int, RecordFuture]] = []
    for i in range(300):
        key = None if i % 5 == 0 else b"key-%d" % (i % 17)
        value = None if i == 7 else b"value-%d-" % i + bytes(range(i % 256))
        headers = [("n", b"%d" % i), ("empty", b"")] if i % 3 else []
        ts = 1_700_000_000_000 + i * 1000
        sent.append((key, value, headers, ts, producer.send(
            "interop-ours", value=value, key=key, headers=headers, timestamp_ms=ts)))
    producer.flush(timeout=30)
    expected = {}
    for key, value, headers, ts, future in sent:
        md = future.get(timeout=0)
        assert md.timestamp_ms == ts
        if key is not None:
            assert md.partition == partition_for_key(key, 3)
        expected[(md.partition, md.offset)] = (key, value, headers, ts)
    read = _consume(cluster.bootstrap, "interop-ours", 3, len(sent))
    got = {(r.partition, r.offset): (r.key, r.value, [(k, v) for k, v in r.headers],
                                     r.timestamp) for r in read}
    assert got == expected


async def _fetch_batches(bootstrap: str, topic: str, partition: int) -> list[RecordBatch]:
    """Every batch of a partition, fetched raw from its leader and decoded by our codec."""
    out: list[RecordBatch] = []
    async with ClusterClient(bootstrap) as client:
        await client.wait_for_topic(topic)
        offset, end = 0, 1
        while offset < end:
            leader = client.leader_for(topic, partition)
            assert leader is not None
            response = await client.send(leader, FetchRequest(
                max_wait_ms=100, min_bytes=1, topics=[FetchTopic(topic=topic, partitions=[
                    FetchPartition(partition=partition, fetch_offset=offset,
                                   partition_max_bytes=1 << 20)])]))
            (data,) = response.responses[0].partitions
            assert data.error_code == ErrorCode.NONE, data
            end = data.high_watermark
            batches = list(decode_batches(data.records or b"", allow_partial_tail=True))
            out.extend(batches)
            if batches:
                offset = batches[-1].next_offset
    return out


def test_our_decoder_reads_exactly_what_kafka_python_wrote(cluster: LocalCluster) -> None:
    cluster.create_topic("interop-theirs", 1, 3)
    kp = make_producer(cluster.bootstrap)
    try:
        futures = [kp.send("interop-theirs", value=b"v%d" % i, key=b"k%d" % i,
                           headers=[("h", b"%d" % i)], timestamp_ms=1_600_000_000_000 + i,
                           partition=0) for i in range(200)]
        kp.flush(30)
        acked = [f.get(timeout=10) for f in futures]
    finally:
        kp.close()
    batches = asyncio.run(_fetch_batches(cluster.bootstrap, "interop-theirs", 0))
    records = [r for b in batches for r in b.records]
    assert [r.offset for r in records] == [md.offset for md in acked] == list(range(200))
    for i, r in enumerate(records):
        assert (r.key, r.value, list(r.headers), r.timestamp_ms) == (
            b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)], 1_600_000_000_000 + i)
    assert all(b.producer_id >= 0 for b in batches), "kafka-python's idempotent batches"


# ---- acks, flush, close -------------------------------------------------------------------

def _high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AdminClient(bootstrap)
    try:
        return {p.partition: p.high_watermark for p in admin.describe_topic(topic).partitions}
    finally:
        admin.close()


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(cluster: LocalCluster, acks: int | str) -> None:
    topic = f"acks-{acks}"
    cluster.create_topic(topic, 1, 3)

    async def scenario() -> list[RecordMetadata]:
        async with AsyncProducer(cluster.bootstrap, acks=acks, **FAST) as p:  # type: ignore
            futures = [await p.send(topic, b"r%d" % i) for i in range(50)]
            mds = [await f for f in futures]
            if acks == "all":  # acknowledged = committed: below the high watermark now
                assert _high_watermarks(cluster.bootstrap, topic)[0] >= mds[-1].offset + 1
            return mds

    mds = asyncio.run(scenario())
    if acks == 0:
        assert {md.offset for md in mds} == {-1}, "no answer, no offset"
    else:
        assert [md.offset for md in mds] == list(range(50))
    read = _consume(cluster.bootstrap, topic, 1, 50)
    assert [r.value for r in read] == [b"r%d" % i for i in range(50)]


def test_flush_sends_lingering_records_and_close_sends_the_rest(cluster: LocalCluster) -> None:
    cluster.create_topic("flush", 2, 3)
    p = Producer(cluster.bootstrap, linger_ms=60_000, **{**FAST, "delivery_timeout_ms": 120_000})
    first = [p.send("flush", b"a%d" % i) for i in range(20)]
    assert not any(f.done() for f in first), "lingering"
    p.flush(timeout=30)
    assert all(f.succeeded() for f in first)
    later = [p.send("flush", b"b%d" % i) for i in range(20)]
    p.close(timeout=30)
    assert all(f.succeeded() for f in later)
    with pytest.raises(ProducerClosedError):
        p.send("flush", b"late")
    _consume(cluster.bootstrap, "flush", 2, 40)


def test_bad_input_fails_clearly(cluster: LocalCluster) -> None:
    cluster.create_topic("bad-input", 1, 3)
    with Producer(cluster.bootstrap, max_block_ms=1000, max_request_size=2 << 20) as p:
        with pytest.raises(UnknownTopicError, match="'no-such-topic'"):
            p.send("no-such-topic", b"v")
        with pytest.raises(TypeError):
            p.send("bad-input", {"not": "bytes"})
        with pytest.raises(RecordTooLargeError, match="max_request_size"):
            p.send("bad-input", b"x" * (3 << 20))
        # Within our limit but above the broker's (1 MiB): the broker's MESSAGE_TOO_LARGE
        # fails that record, naming the sizes; the producer goes on.
        big = p.send("bad-input", os.urandom(3 << 19), partition=0)
        with pytest.raises(RecordTooLargeError, match="exceeds") as caught:
            big.get(timeout=30)
        assert caught.value.code == ErrorCode.MESSAGE_TOO_LARGE
        assert p.send("bad-input", b"fine", partition=0).get(timeout=30).offset == 0


# ---- the command line ---------------------------------------------------------------------

def _produce_cli(cluster: LocalCluster, *args: str, stdin: str, timeout_ms: int = 20_000
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "produce", *args, "--bootstrap", cluster.bootstrap],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env=repo_env({"RAFTLOG_TIMEOUT_MS": str(timeout_ms)}))


def test_produce_command(cluster: LocalCluster) -> None:
    cluster.create_topic("cli", 2, 3)
    lines = [f"user{i}:event {i}" for i in range(30)] + ["no separator here", ""]
    r = _produce_cli(cluster, "cli", "--key-separator", ":", stdin="\n".join(lines) + "\n")
    assert (r.returncode, r.stderr) == (0, "")
    read = _consume(cluster.bootstrap, "cli", 2, len(lines))
    got = {(r.key, r.value) for r in read}
    assert got == {(f"user{i}".encode(), f"event {i}".encode()) for i in range(30)} | {
        (None, b"no separator here"), (None, b"")}
    for r in read:
        if r.key is not None:
            assert r.partition == partition_for_key(r.key, 2)
    r = _produce_cli(cluster, "cli", "--partition", "1", "--acks", "1", stdin="x\ny\n")
    assert r.returncode == 0, r.stderr
    assert [r.value for r in _consume(cluster.bootstrap, "cli", 2, len(lines) + 2)
            if r.partition == 1][-2:] == [b"x", b"y"]


def test_produce_command_failures_are_one_line(cluster: LocalCluster) -> None:
    r = _produce_cli(cluster, "no-such-topic", stdin="x\n", timeout_ms=1000)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no-such-topic" in r.stderr, r.stderr
    cluster.create_topic("cli-small", 1, 3)
    r = _produce_cli(cluster, "cli-small", "--partition", "5", stdin="x\n", timeout_ms=5000)
    assert r.returncode == 1 and "no partition 5" in r.stderr, r.stderr


# ---- exactly once through leader failures -------------------------------------------------

COUNT = 50_000  # records per failover run
PACED_RATE_PER_S = 3000  # while leaders are being killed; full speed once that is over


@dataclass
class _Writer:
    """Sends `count` keyed, numbered records from a thread: at a steady pace until
    `unpace()` (so the leader kills land while it writes), then as fast as it can."""

    bootstrap: str
    topic: str
    count: int
    options: dict[str, Any]
    futures: list[RecordFuture] = field(default_factory=list)
    error: BaseException | None = None
    idempotent: bool | None = None
    metrics: dict[str, int] = field(default_factory=dict)  # the producer's, at the end
    _producer: Producer | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="paced-writer", daemon=True)
        self._unpaced = threading.Event()
        self._acked = 0  # futures[:_acked] are known to be acknowledged

    def start(self) -> _Writer:
        self._thread.start()
        return self

    def unpace(self) -> None:
        self._unpaced.set()

    def join(self, timeout_s: float) -> None:
        self._unpaced.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "writer still running"
        if self.error is not None:
            raise AssertionError(f"writer failed: {self.error!r}") from self.error

    def acked(self) -> int:
        """Records acknowledged so far, counted from the front (acks come in order per
        partition, and roughly in order overall)."""
        futures = self.futures
        while self._acked < len(futures) and futures[self._acked].succeeded():
            self._acked += 1
        return self._acked

    def requests_in_flight(self) -> int:
        p = self._producer
        return 0 if p is None else p.metrics()["requests_in_flight"]

    def _run(self) -> None:
        try:
            with Producer(self.bootstrap, **self.options) as p:
                self._producer = p
                self.idempotent = p.idempotent
                start = time.monotonic()
                for i in range(self.count):
                    if i % 10 == 0 and not self._unpaced.is_set():
                        ahead_s = start + i / PACED_RATE_PER_S - time.monotonic()
                        if ahead_s > 0:
                            self._unpaced.wait(ahead_s)
                    self.futures.append(p.send(self.topic, value=b"%09d" % i,
                                               key=b"key-%d" % (i % 101)))
                p.flush()
                self.metrics = p.metrics()
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e


def _leader(cluster: LocalCluster, topic: str, partition: int) -> int:
    """The partition's leader, asked in-process (quicker than the CLI), once it has one:
    leadership may be moving back to a restarted broker."""
    def leader() -> int:
        admin = AdminClient(cluster.bootstrap)
        try:
            (found,) = [p.leader for p in admin.describe_topic(topic).partitions
                        if p.partition == partition]
        finally:
            admin.close()
        if found is None:
            raise NotYet(f"partition {partition} has no leader")
        return found

    return cluster.wait_until(leader, timeout_s=60, what=f"a leader for partition {partition}")


def _read_back(cluster: LocalCluster, topic: str, partitions: int
               ) -> dict[tuple[int, int], Any]:
    """Everything stored, read with kafka-python (retried: its offset lookup can trip over
    a leader that is moving back to a restarted broker)."""
    return cluster.wait_until(lambda: read_all(cluster.bootstrap, topic, range(partitions)),
                              timeout_s=180, what=f"reading back {topic!r}")


def _kill_and_restart_leader(cluster: LocalCluster, writer: _Writer, topic: str,
                             partition: int, partitions: int) -> str:
    """SIGKILL the partition's leader, preferably while Produce requests are in flight (a
    batch written but not yet acknowledged is what a lost answer duplicates), then restart
    it and wait until the cluster is whole again."""
    victim = _leader(cluster, topic, partition)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and writer.requests_in_flight() < 2:
        time.sleep(0.0002)
    progress = f"{len(writer.futures)} sent, {writer.acked()} acknowledged"
    cluster.kill(victim)
    cluster.wait_topic_leaders(topic, partitions, excluded=[victim], timeout_s=60)
    cluster.restart(victim)
    cluster.wait_ready()
    return f"broker {victim} (leader of partition {partition}) at {progress}"


def _run_failover(cluster: LocalCluster, topic: str, options: dict[str, Any]
                  ) -> tuple[_Writer, dict[tuple[int, int], Any], str]:
    partitions = 3
    cluster.create_topic(topic, partitions, 3)
    writer = _Writer(cluster.bootstrap, topic, COUNT,
                     options={**FAST, "delivery_timeout_ms": 120_000, **options}).start()

    def started() -> bool:
        if writer.error is not None or writer.acked() >= 2000:
            return True
        raise NotYet(f"{writer.acked()} acknowledged")

    kills = []
    try:
        for partition in (0, 1):
            cluster.wait_until(started, timeout_s=60, what="the writer to make progress")
            kills.append(_kill_and_restart_leader(cluster, writer, topic, partition,
                                                  partitions))
    finally:
        writer.join(180)
    assert writer.metrics["batch_retries_total"] > 0, "the kills never hit the producer"
    stored = _read_back(cluster, topic, partitions)
    return writer, stored, ("SIGKILLed and restarted: " + "; ".join(kills)
                            + f"; {writer.metrics['batch_retries_total']} batch retries")


def _check_acknowledged(writer: _Writer, stored: dict[tuple[int, int], Any]) -> list[str]:
    """Each acknowledged record is at its acknowledged offset. Returns where a partition
    does not hold the writer's records in send order (by first copy, then by acknowledged
    offset)."""
    failed = [(i, f.exception(0)) for i, f in enumerate(writer.futures) if f.failed()]
    assert not failed, f"{len(failed)} records failed, first: {failed[:3]}"
    by_partition: dict[int, list[int]] = {}
    for i, future in enumerate(writer.futures):
        md = future.get(timeout=0)
        s = stored.get((md.partition, md.offset))
        assert s is not None and s.value == b"%09d" % i, (i, md, s)
        assert s.key == b"key-%d" % (i % 101)
        by_partition.setdefault(md.partition, []).append(md.offset)
    disorder = [f"partition {p}: acknowledged offsets out of send order"
                for p, offsets in by_partition.items() if offsets != sorted(offsets)]
    first_copies: dict[int, list[int]] = {}  # partition -> record numbers, in offset order
    seen: set[bytes] = set()
    for (partition, _), s in sorted(stored.items()):
        if s.value not in seen:
            seen.add(s.value)
            first_copies.setdefault(partition, []).append(int(s.value))
    disorder += [f"partition {p}: stored out of send order"
                 for p, numbers in first_copies.items() if numbers != sorted(numbers)]
    return disorder


def test_idempotent_producer_writes_exactly_once_in_order_through_leader_kills(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    cluster = cluster_factory()
    t0 = time.monotonic()
    count = COUNT
    writer, stored, what = _run_failover(cluster, "exactly-once", {})
    assert writer.idempotent
    assert not _check_acknowledged(writer, stored)
    copies = Counter(s.value for s in stored.values())
    assert len(stored) == count and max(copies.values()) == 1, \
        f"duplicates: {[v for v, n in copies.items() if n > 1][:10]}"
    report_figure(f"idempotent: {count} records, each stored once in order; {what}; "
                  f"{time.monotonic() - t0:.1f} s")


def test_without_idempotence_the_same_check_sees_duplicates(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    """Same run, idempotence off: acknowledged records are still where they were
    acknowledged (acks=all), but a batch written just before its leader died, whose answer was
    lost, is written again by the retry. Whether that happens depends on where the kill
    lands; the count is reported either way, and a run without duplicates says so: no batch
    was committed and then had its answer lost. Order is reported, not asserted: without
    sequence numbers a batch sent to a new leader can overtake an earlier one that failed
    (Kafka's client documents the same with more than one request in flight)."""
    cluster = cluster_factory()
    writer, stored, what = _run_failover(cluster, "at-least-once", {"enable_idempotence": False})
    assert writer.idempotent is False
    disorder = _check_acknowledged(writer, stored)  # allowed: no sequence numbers
    copies = Counter(s.value for s in stored.values())
    duplicated = sum(n - 1 for n in copies.values() if n > 1)
    assert len(stored) == COUNT + duplicated
    report_figure(f"without idempotence: {duplicated} duplicate records stored"
                  + ("" if duplicated else " (no committed batch lost its answer this run)")
                  + f", order broken: {disorder or 'no'}; {what}")
