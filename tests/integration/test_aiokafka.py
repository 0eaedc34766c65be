"""aiokafka against three brokers, as an asyncio Kafka user would use it: its admin client
creates and describes a topic; its idempotent acks=all producer writes keyed records with
headers, empty and null values and ~100 KiB values under every codec it offers; an assigned
consumer reads each record back where the producer was told it is; two consumers of one group
share the partitions and commit, and a later member resumes at the committed offsets.

Each test runs its own event loop (asyncio.run); the module-scoped fixtures hand plain data
between them. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from tests.integration.clients import Delivered, Headers
from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.timeout(240)

TOPIC = "ak-orders"
PARTITIONS = 4
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")  # aiokafka's names; None means none
RECORDS_PER_CODEC = 40
LARGE_VALUE_BYTES = 100 << 10
TIMESTAMP_BASE_MS = 1_700_000_000_000

GROUP_TOPIC = "ak-group"
GROUP = "ak-billing"
GROUP_RECORDS_PER_PARTITION = 40
GROUP_MORE_PER_PARTITION = 8

WAIT_S = 60.0  # deadline of every wait for the cluster or a client
# Quick reconnects and short metadata age, as in the kafka-python tests.
CLIENT_DEFAULTS: dict[str, Any] = {
    "request_timeout_ms": 15_000,
    "retry_backoff_ms": 100,
    "metadata_max_age_ms": 5_000,
}

T = TypeVar("T")


async def _until(probe: Callable[[], Awaitable[T | None]], what: str,
                 timeout_s: float = WAIT_S) -> T:
    """Await `probe` until it returns something other than None; bounded by `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except KafkaError as e:  # retriable while the cluster settles; reported on timeout
            last = e
        else:
            if result is not None:
                return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}")


def _servers(cluster: LocalCluster) -> list[str]:
    return cluster.bootstrap.split(",")


def _consumer(cluster: LocalCluster, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    config = {**CLIENT_DEFAULTS, "enable_auto_commit": False, "auto_offset_reset": "earliest",
              "fetch_max_wait_ms": 200, "session_timeout_ms": 10_000,
              "heartbeat_interval_ms": 500, **overrides}
    return AIOKafkaConsumer(*topics, bootstrap_servers=_servers(cluster), **config)


async def _create_topic(cluster: LocalCluster, topic: str, partitions: int) -> dict[str, Any]:
    """Create a topic with aiokafka's admin client; its description once every partition has
    a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=_servers(cluster), **CLIENT_DEFAULTS)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 3)], timeout_ms=30_000)

        async def described() -> dict[str, Any] | None:
            (info,) = await admin.describe_topics([topic])
            leaders = [p["leader"] for p in info["partitions"]]
            ok = info["error_code"] == 0 and len(leaders) == partitions and min(leaders) >= 0
            return info if ok else None

        return await _until(described, f"aiokafka to see a leader for every partition of "
                                       f"{topic!r}")
    finally:
        await admin.close()


# ---- round trip ------------------------------------------------------------------------------
def _records(codec_index: int) -> list[tuple[bytes | None, bytes | None, Headers, int]]:
    """(key, value, headers, timestamp_ms): some values empty, some null, some ~100 KiB; one
    keyless record per codec. Timestamps rise with the send order."""
    rng = random.Random(codec_index)
    out: list[tuple[bytes | None, bytes | None, Headers, int]] = []
    for i in range(RECORDS_PER_CODEC):
        n = codec_index * RECORDS_PER_CODEC + i
        value: bytes | None = b"order-%06d:" % n + rng.randbytes(rng.randrange(0, 300))
        if i % 13 == 3:
            value = None
        elif i % 13 == 7:
            value = b""
        elif i % 20 == 9:
            value = rng.randbytes(LARGE_VALUE_BYTES)
        key = None if i == 0 else b"customer-%d" % (n % 31)
        out.append((key, value, (("seq", b"%d" % n), ("empty", b"")), TIMESTAMP_BASE_MS + n))
    return out


async def _produce(cluster: LocalCluster, topic: str, codec: str,
                   records: Sequence[tuple[bytes | None, bytes | None, Headers, int]],
                   partition_of: Callable[[int], int | None] = lambda i: None
                   ) -> list[Delivered]:
    producer = AIOKafkaProducer(bootstrap_servers=_servers(cluster), acks="all",
                                enable_idempotence=True, linger_ms=5,
                                compression_type=None if codec == "none" else codec,
                                max_request_size=1 << 20, **CLIENT_DEFAULTS)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v, headers=list(h), timestamp_ms=t,
                                       partition=partition_of(i))
                   for i, (k, v, h, t) in enumerate(records)]
        metadata = await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    finally:
        await producer.stop()
    return [Delivered(codec=codec, partition=md.partition, offset=md.offset, key=k, value=v,
                      headers=h, timestamp_ms=t)
            for md, (k, v, h, t) in zip(metadata, records)]


async def _read_assigned(cluster: LocalCluster, topic: str, partitions: Iterable[int]
                         ) -> dict[tuple[int, int], Any]:
    """Every record from each partition's start to its end offset as found when reading
    starts, through an assigned (group-less) consumer."""
    consumer = _consumer(cluster)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[tuple[int, int], Any] = {}

        async def drained() -> bool | None:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.update({(tp.partition, r.offset): r for r in records
                            if r.offset < ends[tp]})
            return all([await consumer.position(tp) >= ends[tp] for tp in tps]) or None

        await _until(drained, f"an assigned consumer to read {topic!r} to {ends}")
        return out
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def described(cluster: LocalCluster) -> dict[str, Any]:
    return asyncio.run(_create_topic(cluster, TOPIC, PARTITIONS))


@pytest.fixture(scope="module")
def written(cluster: LocalCluster, described: dict[str, Any]) -> list[Delivered]:
    async def produce_all() -> list[Delivered]:
        out: list[Delivered] = []
        for index, codec in enumerate(CODECS):
            out += await _produce(cluster, TOPIC, codec, _records(index))
        return out

    return asyncio.run(produce_all())


def test_admin_creates_and_describes_topic(described: dict[str, Any]) -> None:
    parts = sorted(described["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == list(range(PARTITIONS))
    for p in parts:
        assert len(set(p["replicas"])) == 3, p
        assert p["leader"] in p["replicas"] and p["leader"] in p["isr"], p


def test_every_send_acknowledged_with_dense_offsets(written: list[Delivered]) -> None:
    assert len(written) == len(CODECS) * RECORDS_PER_CODEC
    by_partition: dict[int, list[int]] = defaultdict(list)
    for d in written:
        by_partition[d.partition].append(d.offset)
    for partition, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), (
            f"partition {partition}: a fresh topic's offsets in send order must be 0..n-1, "
            f"got {offsets[:20]}...")


def test_assigned_consumer_reads_every_record_where_acknowledged(
        cluster: LocalCluster, written: list[Delivered]) -> None:
    stored = asyncio.run(_read_assigned(cluster, TOPIC, range(PARTITIONS)))
    problems = []
    for d in written:
        r = stored.get((d.partition, d.offset))
        want = (d.key, d.value, d.headers, d.timestamp_ms)
        got = None if r is None else (r.key, r.value, tuple(r.headers), r.timestamp)
        if got != want:
            problems.append(f"{d.codec} p{d.partition}@{d.offset}: acknowledged "
                            f"{_short(want)}, read {_short(got)}")
    assert not problems, "\n".join(problems[:10]) + f"\n({len(problems)} in all)"
    assert len(stored) == len(written), f"{len(stored) - len(written)} unacknowledged records"


def _short(t: tuple[Any, ...] | None) -> str:
    return "None" if t is None else repr(tuple(v[:40] if isinstance(v, bytes) else v for v in t))


async def _offsets_for_times(cluster: LocalCluster, written: list[Delivered],
                             codecs: Sequence[str]) -> None:
    """Per partition, a timestamp inside one codec's records: the answer is the first offset
    whose timestamp is at least that, with that record's timestamp."""
    targets: dict[TopicPartition, int] = {}
    expected: dict[TopicPartition, tuple[int, int]] = {}
    for p in range(PARTITIONS):
        mine = [d for d in written if d.partition == p]
        of_codec = [d for d in mine if d.codec == codecs[p % len(codecs)]]
        tp = TopicPartition(TOPIC, p)
        targets[tp] = of_codec[len(of_codec) // 2].timestamp_ms - 1
        first = min((d for d in mine if d.timestamp_ms >= targets[tp]), key=lambda d: d.offset)
        expected[tp] = (first.offset, first.timestamp_ms)
    consumer = _consumer(cluster)
    await consumer.start()
    try:
        answer = await asyncio.wait_for(consumer.offsets_for_times(targets), 10)
        got = {tp: (o.offset, o.timestamp) for tp, o in answer.items() if o is not None}
        assert got == expected, f"codecs {codecs}: {got}, expected {expected}"
        past = await consumer.offsets_for_times({tp: TIMESTAMP_BASE_MS + 10**9 for tp in targets})
        assert past == {tp: None for tp in targets}, past
    finally:
        await consumer.stop()


def test_offsets_for_times_uncompressed_and_lz4(
        cluster: LocalCluster, written: list[Delivered]) -> None:
    asyncio.run(_offsets_for_times(cluster, written, ("none", "lz4")))


def test_offsets_for_times_gzip_snappy_zstd(
        cluster: LocalCluster, written: list[Delivered]) -> None:
    asyncio.run(_offsets_for_times(cluster, written, ("gzip", "snappy", "zstd")))


# ---- consumer group --------------------------------------------------------------------------
@dataclass(slots=True)
class GroupRun:
    """What the group scenario saw; each test below checks one part of it."""

    ends: dict[int, int]  # partition -> end offset before the resuming member joined
    assignments: list[set[int]] = field(default_factory=list)  # of the two first members
    committed: dict[int, int] = field(default_factory=dict)  # what the members committed
    committed_seen: list[dict[int, int]] = field(default_factory=list)  # committed(), per member
    end_offsets: dict[int, int] = field(default_factory=dict)
    listing: list[tuple[Any, ...]] = field(default_factory=list)  # list_consumer_groups
    description: dict[str, Any] = field(default_factory=dict)  # with both members in the group
    resumed: dict[int, list[int]] = field(default_factory=dict)  # partition -> offsets read


async def _drain_pair(members: Sequence[AIOKafkaConsumer], ends: dict[int, int]
                      ) -> list[set[int]]:
    """Poll both members until the group is stable (both hold partitions, together all, none
    twice) and each has read to the end of what it holds; their assignments."""
    async def stable() -> list[set[int]] | None:
        await asyncio.gather(*(c.getmany(timeout_ms=200) for c in members))
        held = [{tp.partition for tp in c.assignment()} for c in members]
        if not all(held) or set.union(*held) != set(ends) or sum(map(len, held)) != len(ends):
            return None
        for c in members:
            for tp in c.assignment():
                if await c.position(tp) != ends[tp.partition]:
                    return None
        return held

    return await _until(stable, "two group members to share the partitions and read them",
                        timeout_s=90)


async def _commit_pair(members: Sequence[AIOKafkaConsumer], held: list[set[int]],
                       ends: dict[int, int]) -> dict[int, int]:
    """The first member commits its positions (the ends), the second explicit offsets half
    way; what was committed per partition."""
    first, second = members
    await first.commit()
    await second.commit({TopicPartition(GROUP_TOPIC, p): ends[p] // 2 for p in held[1]})
    return {p: ends[p] if p in held[0] else ends[p] // 2 for p in ends}


async def _describe_group(cluster: LocalCluster, run: GroupRun) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=_servers(cluster), **CLIENT_DEFAULTS)
    await admin.start()
    try:
        run.listing = await admin.list_consumer_groups()
        (response,) = await admin.describe_consumer_groups([GROUP])
        run.description = response.to_object()
    finally:
        await admin.close()


async def _resume(cluster: LocalCluster, run: GroupRun, ends_now: dict[int, int]) -> None:
    """A new member, alone in the group, reads from the committed offsets to the end."""
    consumer = _consumer(cluster, GROUP_TOPIC, group_id=GROUP)
    await consumer.start()
    try:
        async def caught_up() -> bool | None:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                run.resumed.setdefault(tp.partition, []).extend(r.offset for r in records)
            tps = consumer.assignment()
            at = {tp.partition: await consumer.position(tp) for tp in tps}
            return at == ends_now or None

        await _until(caught_up, "a new group member to read from the committed offsets",
                     timeout_s=90)
    finally:
        await consumer.stop()


async def _group_scenario(cluster: LocalCluster) -> GroupRun:
    await _create_topic(cluster, GROUP_TOPIC, PARTITIONS)
    records = [(b"g%d" % i, b"group-%d" % i, (), TIMESTAMP_BASE_MS + i)
               for i in range(GROUP_RECORDS_PER_PARTITION * PARTITIONS)]
    await _produce(cluster, GROUP_TOPIC, "gzip", records, lambda i: i % PARTITIONS)
    run = GroupRun(ends={p: GROUP_RECORDS_PER_PARTITION for p in range(PARTITIONS)})
    members = [_consumer(cluster, GROUP_TOPIC, group_id=GROUP, client_id=f"member-{i}")
               for i in range(2)]
    for c in members:
        await c.start()
    try:
        run.assignments = await _drain_pair(members, run.ends)
        run.committed = await _commit_pair(members, run.assignments, run.ends)
        tps = [TopicPartition(GROUP_TOPIC, p) for p in range(PARTITIONS)]
        run.committed_seen = [{tp.partition: await c.committed(tp) for tp in tps}
                              for c in members]
        run.end_offsets = {tp.partition: o
                           for tp, o in (await members[0].end_offsets(tps)).items()}
        await _describe_group(cluster, run)
    finally:
        for c in members:
            await c.stop()
    more = [(None, b"more-%d" % i, (), TIMESTAMP_BASE_MS + 10_000 + i)
            for i in range(GROUP_MORE_PER_PARTITION * PARTITIONS)]
    await _produce(cluster, GROUP_TOPIC, "gzip", more, lambda i: i % PARTITIONS)
    await _resume(cluster, run, {p: e + GROUP_MORE_PER_PARTITION for p, e in run.ends.items()})
    return run


@pytest.fixture(scope="module")
def group_run(cluster: LocalCluster) -> GroupRun:
    return asyncio.run(_group_scenario(cluster))


def test_two_members_share_the_partitions(group_run: GroupRun) -> None:
    first, second = group_run.assignments
    assert first and second and not first & second, group_run.assignments
    assert first | second == set(range(PARTITIONS))


def test_committed_and_end_offsets(group_run: GroupRun) -> None:
    for seen in group_run.committed_seen:  # any member sees every partition's commit
        assert seen == group_run.committed, (seen, group_run.committed)
    assert group_run.end_offsets == group_run.ends


def test_new_member_resumes_exactly_at_committed_offsets(group_run: GroupRun) -> None:
    assert sorted(group_run.resumed) == list(range(PARTITIONS)), sorted(group_run.resumed)
    for p, offsets in group_run.resumed.items():
        want = list(range(group_run.committed[p], group_run.ends[p] + GROUP_MORE_PER_PARTITION))
        assert offsets == want, f"partition {p}: read {offsets[:10]}..., expected {want[:10]}..."


def test_admin_lists_and_describes_the_group(group_run: GroupRun) -> None:
    assert (GROUP, "consumer") in group_run.listing, group_run.listing
    (group,) = group_run.description["groups"]
    assert (group["error_code"], group["group"], group["state"]) == (0, GROUP, "Stable"), group
    assert sorted(m["client_id"] for m in group["members"]) == ["member-0", "member-1"], group
    held = sorted(
        sorted(p for _, ps in ConsumerProtocolMemberAssignment.decode(
            m["member_assignment"]).assignment for p in ps)
        for m in group["members"])
    assert held == sorted(sorted(a) for a in group_run.assignments), held
