"""librdkafka (confluent-kafka) against three brokers, used as any Kafka user would: its admin
client creates a topic, its idempotent acks=all producer writes keyed records with headers,
empty and null values and ~100 KiB values under every codec librdkafka offers, and its
consumers read every record back at exactly the (partition, offset) of its delivery report.
A consumer group of two shares the partitions, commits, and a later member resumes at the
committed offsets. Last, a partition leader is SIGKILLed under continuous idempotent writes:
every delivered record must be stored exactly once, in order.

librdkafka is strict where other clients are lenient (sequence numbers, epochs, ApiVersions),
so a fatal error it raises is a broker bug, never something to retry around here.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration import kafka_wire
from tests.integration.clients import Delivered, Headers
from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet

pytestmark = pytest.mark.timeout(240)

TOPIC = "ck-orders"
PARTITIONS = 6
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_CODEC = 120
LARGE_VALUE_BYTES = 100 << 10
TIMESTAMP_BASE_MS = 1_700_000_000_000

GROUP_TOPIC = "ck-group"
GROUP = "ck-billing"
GROUP_RECORDS_PER_PARTITION = 60
GROUP_MORE_PER_PARTITION = 10

FAILOVER_TOPIC = "ck-failover"
FAILOVER_PARTITIONS = 3

# Quick reconnects: tests kill brokers. Everything else is librdkafka's default.
CLIENT_DEFAULTS: dict[str, Any] = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 1_000,
    "retry.backoff.ms": 100,
    "topic.metadata.refresh.interval.ms": 5_000,
}
# Errors librdkafka reports through error_cb while brokers come and go; they are not failures.
TRANSIENT_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                    KafkaError._RESOLVE, KafkaError._TIMED_OUT}
UNSUPPORTED_ERRORS = {KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION,
                      KafkaError._NOT_IMPLEMENTED}

@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    partition: int | None  # None: librdkafka's partitioner picks
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Read:
    """A record as a librdkafka consumer returned it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_type: int
    timestamp_ms: int


# ---- librdkafka plumbing ---------------------------------------------------------------------
def _config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **CLIENT_DEFAULTS, **overrides}


def _producer(bootstrap: str, errors: list[KafkaError], **overrides: Any) -> Producer:
    """acks=all and idempotent; every error librdkafka reports is kept in `errors`."""
    return Producer(_config(bootstrap, **{
        "acks": "all", "enable.idempotence": True, "linger.ms": 5,
        "message.timeout.ms": 60_000, "error_cb": errors.append, **overrides}))


def _consumer(bootstrap: str, group: str, **overrides: Any) -> Consumer:
    return Consumer(_config(bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 200, "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 500, **overrides}))


def _fatal(errors: Iterable[KafkaError]) -> list[str]:
    return [f"{e.name()}: {e.str()}" for e in errors if e.fatal()]


def _wait_leaders(cluster: LocalCluster, admin: AdminClient, topic: str,
                  partitions: int) -> Any:
    """Poll Metadata through librdkafka until every partition has a leader; the topic's
    metadata."""
    def led() -> Any:
        md = admin.list_topics(topic=topic, timeout=10).topics[topic]
        leaders = {p: pm.leader for p, pm in md.partitions.items()}
        if md.error is not None or len(leaders) != partitions or min(leaders.values()) < 0:
            raise NotYet(f"error {md.error}, leaders {leaders}")
        return md

    return cluster.wait_until(led, timeout_s=60, what=f"librdkafka to see leaders of {topic!r}")


def _create_topic(cluster: LocalCluster, topic: str, partitions: int) -> Any:
    admin = AdminClient(_config(cluster.bootstrap))
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=3)], operation_timeout=30)
    futures[topic].result(timeout=60)
    return _wait_leaders(cluster, admin, topic, partitions)


def _produce(bootstrap: str, topic: str, codec: str, items: Sequence[Outgoing]
             ) -> tuple[list[Delivered], list[str]]:
    """Produce every item, flush, and return the delivery reports: (delivered, failures)."""
    delivered: list[Delivered] = []
    failures: list[str] = []
    errors: list[KafkaError] = []
    producer = _producer(bootstrap, errors, **{"compression.type": codec})

    def report(item: Outgoing) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                failures.append(f"{codec} {item.key!r}: {err}")
                return
            delivered.append(Delivered(codec=codec, partition=msg.partition(),
                                       offset=msg.offset(), key=item.key, value=item.value,
                                       headers=item.headers, timestamp_ms=item.timestamp_ms))
        return on_delivery

    try:
        for item in items:
            kwargs: dict[str, Any] = {} if item.partition is None else {
                "partition": item.partition}
            producer.produce(topic, key=item.key, value=item.value, headers=list(item.headers),
                             timestamp=item.timestamp_ms, on_delivery=report(item), **kwargs)
            producer.poll(0)
        left = producer.flush(60)
    finally:
        producer.close()  # after flush: nothing left to wait for unless flush timed out
    failures += [f"{left} records undelivered after flush(60)"] if left else []
    failures += [f"fatal error: {f}" for f in _fatal(errors)]
    return delivered, failures


def _watermarks(cluster: LocalCluster, consumer: Consumer, topic: str,
                partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """partition -> (low, high). librdkafka fails the query at once, not at its timeout, when
    the broker it asks names no leader (a just-restarted broker does for about a second), so
    ask again until every partition answers."""
    def answered() -> dict[int, tuple[int, int]]:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions}

    return cluster.wait_until(answered, timeout_s=60,
                              what=f"librdkafka to get the watermarks of {topic!r}")


def _read_assigned(cluster: LocalCluster, topic: str, partitions: Iterable[int],
                   timeout_s: float = 60.0) -> dict[tuple[int, int], Read]:
    """Every record from the start of each partition to its high watermark as found when
    reading starts, through an assigned (group-less) librdkafka consumer."""
    # librdkafka requires a group.id; an assigned consumer never joins the group
    consumer = _consumer(cluster.bootstrap, "ck-unused")
    try:
        marks = _watermarks(cluster, consumer, topic, sorted(partitions))
        ends = {p: high for p, (_, high) in marks.items()}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(ends)])
        out: dict[tuple[int, int], Read] = {}
        deadline = time.monotonic() + timeout_s
        while len(out) < sum(high - low for low, high in marks.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(out)} records of {topic!r} in {timeout_s:g} s; "
                                     f"ends {ends}")
            for r in _consume(consumer, 0.5):
                if r.offset < ends[r.partition]:
                    out[(r.partition, r.offset)] = r
        return out
    finally:
        consumer.close()


def _consume(consumer: Consumer, timeout_s: float) -> list[Read]:
    """One consume() call's records; a consumer error fails the test."""
    out = []
    for msg in consumer.consume(num_messages=500, timeout=timeout_s):
        if msg.error() is not None:
            raise AssertionError(f"consumer error: {msg.error()}")
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None, msg  # set on every record
        headers = msg.headers() or []
        assert isinstance(headers, list), headers  # a consumed record's headers: (name, value)
        ts_type, ts = msg.timestamp()
        out.append(Read(partition=partition, offset=offset, key=msg.key(), value=msg.value(),
                        headers=tuple((k, _bytes(v)) for k, v in headers),
                        timestamp_type=ts_type, timestamp_ms=ts))
    return out


def _bytes(value: str | bytes | None) -> bytes | None:
    """A consumed header value: librdkafka returns bytes (str only for what was sent as str)."""
    return value.encode() if isinstance(value, str) else value


# ---- round trip ------------------------------------------------------------------------------
def _outgoing(codec_index: int, count: int) -> list[Outgoing]:
    """Keyed records with headers; some values empty, some null, some large. Timestamps rise
    with the send order, so within a partition they rise with the offset."""
    rng = random.Random(codec_index)
    out = []
    for i in range(count):
        n = codec_index * count + i
        value: bytes | None = b"order-%06d:" % n + rng.randbytes(rng.randrange(0, 300))
        if i % 23 == 5:
            value = None
        elif i % 23 == 11:
            value = b""
        elif i % 40 == 17:
            value = rng.randbytes(LARGE_VALUE_BYTES)
        out.append(Outgoing(partition=None, key=b"customer-%d" % (n % 97), value=value,
                            headers=(("seq", b"%d" % n), ("codec", CODECS[codec_index].encode()),
                                     ("empty", None if i % 2 else b"")),
                            timestamp_ms=TIMESTAMP_BASE_MS + n))
    return out


@pytest.fixture(scope="module")
def topic_metadata(cluster: LocalCluster) -> Any:
    return _create_topic(cluster, TOPIC, PARTITIONS)


@pytest.fixture(scope="module")
def written(cluster: LocalCluster, topic_metadata: Any
            ) -> tuple[list[Delivered], list[str]]:
    """Every codec's records, one idempotent producer per codec, one after the other."""
    delivered: list[Delivered] = []
    failures: list[str] = []
    for index, codec in enumerate(CODECS):
        d, f = _produce(cluster.bootstrap, TOPIC, codec, _outgoing(index, RECORDS_PER_CODEC))
        delivered += d
        failures += f
    return delivered, failures


def test_admin_creates_topic_that_metadata_shows(topic_metadata: Any) -> None:
    assert sorted(topic_metadata.partitions) == list(range(PARTITIONS))
    for p, pm in topic_metadata.partitions.items():
        assert len(set(pm.replicas)) == 3, f"partition {p} replicas {pm.replicas}"
        assert pm.leader in pm.replicas and pm.leader in pm.isrs, (p, pm.leader, pm.isrs)


def test_every_delivery_report_ok_and_offsets_dense(
        written: tuple[list[Delivered], list[str]]) -> None:
    delivered, failures = written
    assert not failures, "\n".join(failures[:20])
    assert len(delivered) == len(CODECS) * RECORDS_PER_CODEC
    by_partition: dict[int, list[Delivered]] = defaultdict(list)
    for d in delivered:  # callbacks fire in send order per partition
        by_partition[d.partition].append(d)
    assert sorted(by_partition) == list(range(PARTITIONS)), sorted(by_partition)
    for partition, ds in by_partition.items():
        offsets = [d.offset for d in ds]
        assert offsets == list(range(len(ds))), (
            f"partition {partition}: a fresh topic's offsets in send order must be 0..n-1, "
            f"got {offsets[:20]}...")


def test_assigned_consumer_reads_every_record_where_reported(
        cluster: LocalCluster, written: tuple[list[Delivered], list[str]]) -> None:
    delivered, _ = written
    stored = _read_assigned(cluster, TOPIC, range(PARTITIONS))
    problems = []
    for d in delivered:
        r = stored.get((d.partition, d.offset))
        want = (d.key, d.value, d.headers, TIMESTAMP_CREATE_TIME, d.timestamp_ms)
        got = None if r is None else (r.key, r.value, r.headers, r.timestamp_type,
                                      r.timestamp_ms)
        if got != want:
            problems.append(f"{d.codec} p{d.partition}@{d.offset}: reported {_short(want)}, "
                            f"read {_short(got)}")
    assert not problems, "\n".join(problems[:10]) + f"\n({len(problems)} in all)"
    assert len(stored) == len(delivered), f"{len(stored) - len(delivered)} unreported records"


def _short(t: tuple[Any, ...] | None) -> str:
    return "None" if t is None else repr(tuple(v[:40] if isinstance(v, bytes) else v for v in t))


def _offsets_for_times_case(cluster: LocalCluster, written: tuple[list[Delivered], list[str]],
                            codecs: Sequence[str]) -> None:
    """Ask, per partition, for a timestamp inside one codec's records (and one past the end):
    the answer is the first offset whose timestamp is at least that."""
    delivered, _ = written
    targets: list[TopicPartition] = []
    expected: dict[int, int] = {}
    for p in range(PARTITIONS):
        mine = [d for d in delivered if d.partition == p]
        of_codec = [d for d in mine if d.codec == codecs[p % len(codecs)]]
        target_ms = of_codec[len(of_codec) // 2].timestamp_ms - 1
        targets.append(TopicPartition(TOPIC, p, target_ms))
        expected[p] = min(d.offset for d in mine if d.timestamp_ms >= target_ms)
    consumer = _consumer(cluster.bootstrap, "ck-unused")
    try:
        got = {tp.partition: tp.offset for tp in consumer.offsets_for_times(targets, timeout=15)}
        assert got == expected, f"codecs {codecs}: offsets_for_times {got}, expected {expected}"
        past = [TopicPartition(TOPIC, p, TIMESTAMP_BASE_MS + 10**9) for p in range(PARTITIONS)]
        after_end = {tp.partition: tp.offset for tp in consumer.offsets_for_times(past, timeout=15)}
        assert after_end == {p: -1 for p in range(PARTITIONS)}, after_end
    finally:
        consumer.close()


def test_offsets_for_times_uncompressed_and_lz4(
        cluster: LocalCluster, written: tuple[list[Delivered], list[str]]) -> None:
    _offsets_for_times_case(cluster, written, ("none", "lz4"))


def test_offsets_for_times_gzip_snappy_zstd(
        cluster: LocalCluster, written: tuple[list[Delivered], list[str]]) -> None:
    _offsets_for_times_case(cluster, written, ("gzip", "snappy", "zstd"))


# ---- consumer group --------------------------------------------------------------------------
@dataclass(slots=True)
class GroupRun:
    """What the group scenario saw; each test below checks one part of it."""

    ends: dict[int, int]  # partition -> high watermark before the resuming member joined
    assignments: list[set[int]] = field(default_factory=list)  # of the two first members
    committed: dict[int, int] = field(default_factory=dict)  # what the members committed
    committed_seen: list[dict[int, int]] = field(default_factory=list)  # committed(), per member
    watermarks: dict[int, tuple[int, int]] = field(default_factory=dict)
    description: Any = None  # describe_consumer_groups while both members were in the group
    listing: Any = None  # list_consumer_groups at the same time
    admin_unsupported: str | None = None  # the admin call the broker refused, if any
    resumed_first: dict[int, int] = field(default_factory=dict)  # partition -> first offset read
    resumed: dict[int, list[int]] = field(default_factory=dict)  # partition -> offsets read


def _drain_pair(cluster: LocalCluster, members: Sequence[Consumer], ends: dict[int, int]
                ) -> list[set[int]]:
    """Poll both members until the group is stable (both hold partitions, together all, none
    twice) and each has read to the end of what it holds; their assignments."""
    def stable() -> list[set[int]]:
        for c in members:
            _consume(c, 0.2)
        held = [{tp.partition for tp in c.assignment()} for c in members]
        if not all(held) or set.union(*held) != set(ends) or sum(map(len, held)) != len(ends):
            raise NotYet(f"assignments {held}")
        for c in members:
            behind = {tp.partition: tp.offset for tp in c.position(c.assignment())
                      if tp.offset != ends[tp.partition]}
            if behind:
                raise NotYet(f"assignments {held}; positions behind the end: {behind}")
        return held

    return cluster.wait_until(stable, timeout_s=90, interval_s=0,
                              what="two group members to share the partitions and read them")


def _commit_pair(members: Sequence[Consumer], held: list[set[int]], ends: dict[int, int]
                 ) -> dict[int, int]:
    """The first member commits its positions (the ends), the second explicit offsets half
    way, both synchronously; what was committed per partition."""
    first, second = members
    committed = {tp.partition: tp.offset for tp in first.commit(asynchronous=False)}
    assert committed == {p: ends[p] for p in held[0]}, committed
    halves = [TopicPartition(GROUP_TOPIC, p, ends[p] // 2) for p in sorted(held[1])]
    committed.update({tp.partition: tp.offset
                      for tp in second.commit(offsets=halves, asynchronous=False)})
    return committed


def _describe_group(cluster: LocalCluster, run: GroupRun) -> None:
    admin = AdminClient(_config(cluster.bootstrap))
    try:
        run.listing = admin.list_consumer_groups(request_timeout=15).result(timeout=30)
        run.description = admin.describe_consumer_groups(
            [GROUP], request_timeout=15)[GROUP].result(timeout=30)
    except KafkaException as e:
        if e.args[0].code() not in UNSUPPORTED_ERRORS:
            raise
        run.admin_unsupported = f"{e.args[0].name()}: {e.args[0].str()}"


def _resume(cluster: LocalCluster, run: GroupRun, ends_now: dict[int, int]) -> None:
    """A new member, alone in the group, reads from the committed offsets to the end."""
    consumer = _consumer(cluster.bootstrap, GROUP)
    consumer.subscribe([GROUP_TOPIC])
    try:
        def caught_up() -> bool:
            for r in _consume(consumer, 0.2):
                run.resumed_first.setdefault(r.partition, r.offset)
                run.resumed.setdefault(r.partition, []).append(r.offset)
            positions = {tp.partition: tp.offset for tp in consumer.position(consumer.assignment())}
            if positions != ends_now:
                raise NotYet(f"positions {positions}, ends {ends_now}")
            return True

        cluster.wait_until(caught_up, timeout_s=90, interval_s=0,
                           what="a new group member to read from the committed offsets")
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def group_run(cluster: LocalCluster) -> GroupRun:
    _create_topic(cluster, GROUP_TOPIC, PARTITIONS)
    items = [Outgoing(partition=i % PARTITIONS, key=b"g%d" % i, value=b"group-%d" % i,
                      headers=(), timestamp_ms=TIMESTAMP_BASE_MS + i)
             for i in range(GROUP_RECORDS_PER_PARTITION * PARTITIONS)]
    _, failures = _produce(cluster.bootstrap, GROUP_TOPIC, "lz4", items)
    assert not failures, failures
    run = GroupRun(ends={p: GROUP_RECORDS_PER_PARTITION for p in range(PARTITIONS)})
    members = [_consumer(cluster.bootstrap, GROUP, **{"client.id": f"member-{i}"})
               for i in range(2)]
    try:
        for c in members:
            c.subscribe([GROUP_TOPIC])
        run.assignments = _drain_pair(cluster, members, run.ends)
        run.committed = _commit_pair(members, run.assignments, run.ends)
        all_tps = [TopicPartition(GROUP_TOPIC, p) for p in range(PARTITIONS)]
        run.committed_seen = [{tp.partition: tp.offset for tp in c.committed(all_tps, timeout=15)}
                              for c in members]
        run.watermarks = _watermarks(cluster, members[0], GROUP_TOPIC, range(PARTITIONS))
        _describe_group(cluster, run)
    finally:
        for c in members:
            c.close()
    more = [Outgoing(partition=i % PARTITIONS, key=None, value=b"more-%d" % i, headers=(),
                     timestamp_ms=TIMESTAMP_BASE_MS + 10_000 + i)
            for i in range(GROUP_MORE_PER_PARTITION * PARTITIONS)]
    _, failures = _produce(cluster.bootstrap, GROUP_TOPIC, "lz4", more)
    assert not failures, failures
    _resume(cluster, run, {p: e + GROUP_MORE_PER_PARTITION for p, e in run.ends.items()})
    return run


def test_two_members_share_the_partitions(group_run: GroupRun) -> None:
    first, second = group_run.assignments
    assert first and second and not first & second, group_run.assignments
    assert first | second == set(range(PARTITIONS))


def test_committed_offsets_and_watermarks(group_run: GroupRun) -> None:
    assert sorted(group_run.committed) == list(range(PARTITIONS)), group_run.committed
    for seen in group_run.committed_seen:  # any member sees every partition's commit
        assert seen == group_run.committed, (seen, group_run.committed)
    assert group_run.watermarks == {p: (0, end) for p, end in group_run.ends.items()}


def test_new_member_resumes_exactly_at_committed_offsets(group_run: GroupRun) -> None:
    assert group_run.resumed_first == group_run.committed
    for p, offsets in group_run.resumed.items():
        want = list(range(group_run.committed[p],
                          group_run.ends[p] + GROUP_MORE_PER_PARTITION))
        assert offsets == want, f"partition {p}: read {offsets[:10]}..., expected {want[:10]}..."


def test_admin_lists_and_describes_the_group(group_run: GroupRun) -> None:
    if group_run.admin_unsupported is not None:
        pytest.skip(f"broker refused an admin group API: {group_run.admin_unsupported}")
    listing = group_run.listing
    assert not listing.errors, listing.errors
    assert GROUP in {g.group_id for g in listing.valid}, [g.group_id for g in listing.valid]
    d = group_run.description
    assert d.group_id == GROUP and not d.is_simple_consumer_group
    assert d.state == ConsumerGroupState.STABLE, d.state
    held = sorted(sorted(tp.partition for tp in m.assignment.topic_partitions)
                  for m in d.members)
    assert held == sorted(sorted(a) for a in group_run.assignments), held
    assert {m.client_id for m in d.members} == {"member-0", "member-1"}


# ---- failover --------------------------------------------------------------------------------
class RdkafkaWriter:
    """An idempotent librdkafka producer writing numbered records round-robin over partitions
    from a thread, bounded by a record count, a duration and a window of undelivered records;
    keeps every delivery report and every error librdkafka raised."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, count_max: int,
                 duration_s_max: float, rate_per_s_max: float = 1_500.0,
                 inflight_max: int = 500) -> None:
        self.topic = topic
        self.partitions = partitions
        self.count_max = count_max
        self.duration_s_max = duration_s_max
        self.inflight_max = inflight_max
        self.rate_per_s_max = rate_per_s_max  # leaves the brokers CPU on two shared cores
        self.errors: list[KafkaError] = []  # from error_cb
        # seq -> (partition, offset, sent_s, delivered_s), times from time.monotonic()
        self.delivered: dict[int, tuple[int, int, float, float]] = {}
        self.failed: dict[int, str] = {}  # seq -> delivery error
        self.sent = 0
        self.undelivered_after_flush = 0
        self.error: BaseException | None = None  # what stopped the thread, if not the bounds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer = _producer(bootstrap, self.errors, **{"compression.type": "lz4"})
        self._thread = threading.Thread(target=self._run, name=f"rdkafka-{topic}", daemon=True)

    def start(self) -> RdkafkaWriter:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 90.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"writer thread still running {timeout_s:g} s after stop()")

    def delivered_count(self, partition: int, sent_after_s: float = 0.0) -> int:
        with self._lock:
            return len([1 for p, _, sent_s, _ in self.delivered.values()
                        if p == partition and sent_s > sent_after_s])

    def first_delivery_after(self, partition: int, t_s: float) -> float | None:
        """When the first record sent to `partition` after `t_s` was reported delivered."""
        with self._lock:
            return min((at_s for p, _, sent_s, at_s in self.delivered.values()
                        if p == partition and sent_s > t_s), default=None)

    def _run(self) -> None:
        try:
            self._send_loop()
        except BaseException as e:  # noqa: BLE001 - reported to the test through self.error
            self.error = e
        finally:  # message.timeout.ms bounds the flush
            self.undelivered_after_flush = self._producer.flush(90)
            self._producer.close()

    def _send_loop(self) -> None:
        start_s = time.monotonic()
        while self.sent < self.count_max and not self._stop.is_set() \
                and time.monotonic() < start_s + self.duration_s_max:
            with self._lock:
                outstanding = self.sent - len(self.delivered) - len(self.failed)
            ahead = self.sent >= (time.monotonic() - start_s) * self.rate_per_s_max
            if outstanding >= self.inflight_max or ahead:
                self._producer.poll(0.01)
                continue
            seq = self.sent
            self._producer.produce(self.topic, value=b"w-%010d" % seq, key=b"k%d" % seq,
                                   partition=seq % self.partitions,
                                   on_delivery=self._on_delivery(seq, time.monotonic()))
            self.sent += 1
            self._producer.poll(0)

    def _on_delivery(self, seq: int, sent_s: float) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.failed[seq] = f"{err.name()}: {err.str()}"
                else:
                    self.delivered[seq] = (msg.partition(), msg.offset(), sent_s,
                                           time.monotonic())
        return on_delivery

    def errors_seen(self) -> list[str]:
        return [f"{e.name()}{' (fatal)' if e.fatal() else ''}: {e.str()}" for e in self.errors
                if e.code() not in TRANSIENT_ERRORS]


def _wait_deliveries(cluster: LocalCluster, writer: RdkafkaWriter, partition: int, count: int,
                     sent_after_s: float, what: str) -> None:
    def enough() -> bool:
        if writer.error is not None or _fatal(writer.errors):
            raise AssertionError(f"writer stopped: {writer.error!r}; errors "
                                 f"{writer.errors_seen()}")
        got = writer.delivered_count(partition, sent_after_s)
        if got < count:
            raise NotYet(f"{got} delivered on partition {partition}, {len(writer.failed)} "
                         f"failed, errors {writer.errors_seen()[-3:]}")
        return True

    cluster.wait_until(enough, timeout_s=60, what=what)


def _check_exactly_once_in_order(writer: RdkafkaWriter,
                                 stored: dict[tuple[int, int], Read]) -> None:
    """Every delivered record at its reported offset; nothing stored twice; per partition the
    stored sequence numbers rise with the offset (the producer wrote them in that order)."""
    seqs: dict[int, list[int]] = defaultdict(list)
    for (p, _), r in sorted(stored.items()):
        assert r.value is not None and r.value.startswith(b"w-"), (p, r)
        seqs[p].append(int(r.value[2:]))
    for p, got in seqs.items():
        twice = sorted(s for s, n in Counter(got).items() if n > 1)
        assert not twice, f"partition {p}: stored twice: {twice[:10]}"
        assert got == sorted(got), f"partition {p}: out of order near {_disorder(got)}"
    missing = [(seq, p, o) for seq, (p, o, _, _) in writer.delivered.items()
               if (at := stored.get((p, o))) is None or at.value != b"w-%010d" % seq]
    assert not missing, f"{len(missing)} delivered records not where reported: {missing[:10]}"


def _disorder(seqs: list[int]) -> list[int]:
    i = next(i for i, (a, b) in enumerate(zip(seqs, seqs[1:])) if a > b)
    return seqs[max(0, i - 3):i + 4]


def _wait_leaders_named(cluster: LocalCluster, node_id: int, topic: str) -> float:
    """Poll one broker's Metadata until it names a leader for every partition of `topic`;
    when it first did (time.monotonic())."""
    def named() -> float:
        with kafka_wire.KafkaSocket(cluster.address(node_id)) as sock:
            sock.send(kafka_wire.metadata_request(1, [topic]))
            answer = kafka_wire.parse_metadata_v1(sock.expect_response())
        leaders = {k: v.leader_id for k, v in answer.partitions.items()}
        if not leaders or min(leaders.values()) < 0:
            raise NotYet(f"broker {node_id} names leaders {leaders}")
        return time.monotonic()

    return cluster.wait_until(named, timeout_s=60, interval_s=0.02,
                              what=f"broker {node_id} to name every leader of {topic!r}")


def test_leader_kill_under_idempotent_writes(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    cluster: LocalCluster = cluster_factory()
    _create_topic(cluster, FAILOVER_TOPIC, FAILOVER_PARTITIONS)
    writer = RdkafkaWriter(cluster.bootstrap, FAILOVER_TOPIC, FAILOVER_PARTITIONS,
                           count_max=100_000, duration_s_max=90).start()
    try:
        _wait_deliveries(cluster, writer, 0, 300, 0.0, "writes to flow before the kill")
        victim = cluster.leader_of(FAILOVER_TOPIC, 0)
        assert victim is not None
        kill_s = time.monotonic()
        cluster.kill(victim)
        cluster.wait_topic_leaders(FAILOVER_TOPIC, FAILOVER_PARTITIONS, excluded=[victim])
        _wait_deliveries(cluster, writer, 0, 300, kill_s,
                         f"writes to partition 0 to continue after killing broker {victim}")
        cluster.restart(victim)
        cluster.wait_ready()
        back_s = time.monotonic()
        knows_s = _wait_leaders_named(cluster, victim, FAILOVER_TOPIC) - back_s
        for p in range(FAILOVER_PARTITIONS):
            _wait_deliveries(cluster, writer, p, 100, back_s,
                             f"writes to partition {p} after broker {victim} rejoined")
    finally:
        writer.stop()
    first_s = writer.first_delivery_after(0, kill_s)
    report_figure(f"SIGKILL of broker {victim}, leader of partition 0: a record sent to "
                  f"partition 0 after the kill was first delivered "
                  f"{(first_s or kill_s) - kill_s:.3f} s after it; {writer.sent} sent, "
                  f"{len(writer.delivered)} delivered, {len(writer.failed)} failed; "
                  f"errors reported: {dict(Counter(e.name() for e in writer.errors))}; the "
                  f"restarted broker named every leader {knows_s:.2f} s after it was ready")
    assert writer.error is None, f"writer failed: {writer.error!r}"
    assert not _fatal(writer.errors), f"librdkafka fatal error: {writer.errors_seen()}"
    assert not writer.failed, f"delivery failures: {sorted(writer.failed.items())[:10]}"
    assert writer.undelivered_after_flush == 0 and len(writer.delivered) == writer.sent
    stored = _read_assigned(cluster, FAILOVER_TOPIC, range(FAILOVER_PARTITIONS))
    _check_exactly_once_in_order(writer, stored)
