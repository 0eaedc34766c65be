"""The consumer's answer to OFFSET_OUT_OF_RANGE, against a scripted broker over real sockets
(tests.unit.test_client_peer): a replica behind the partition (a deposed leader that has not
yet heard of its successor, as a paused broker just resumed) must not send the consumer back
to the start of the log; a position really outside the log still resets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey, RequestHeader
from broker.wire.records import Record, encode_batch
from consumer import AsyncConsumer, TopicPartition
from tests.unit.test_client_peer import FakeCluster, ScriptedBroker, run

TOPIC = "t"
TP = TopicPartition(TOPIC, 0)
EARLIEST_TIMESTAMP = -2
DEADLINE_S = 10.0


@dataclass
class ScriptedLog:
    """Partition 0 of TOPIC as its leader serves it: `end` records, all committed. While
    `behind_answers` > 0 the leader answers like a replica whose high watermark is
    `behind_high_watermark`, one fetch per count (-1: forever)."""

    end: int
    behind_answers: int = 0
    behind_high_watermark: int = 0
    fetched_at: list[int] = field(default_factory=list)  # fetch offsets asked, in order
    leader_epoch: int = -1  # >= 0: fence fetches naming another epoch, as a leader does
    epochs_asked: list[int] = field(default_factory=list)  # current_leader_epoch, in order

    def fetch(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        (topic,) = body.topics
        (p,) = topic.partitions
        self.fetched_at.append(p.fetch_offset)
        self.epochs_asked.append(p.current_leader_epoch)
        base = {"partition_index": p.partition, "last_stable_offset": -1,
                "aborted_transactions": None, "preferred_read_replica": -1}
        fenced = 0 <= p.current_leader_epoch != self.leader_epoch >= 0
        if fenced:
            code = (ErrorCode.FENCED_LEADER_EPOCH if p.current_leader_epoch < self.leader_epoch
                    else ErrorCode.UNKNOWN_LEADER_EPOCH)
            part = {**base, "error_code": code, "high_watermark": -1, "log_start_offset": -1,
                    "records": None}
        elif self.behind_answers != 0:
            self.behind_answers -= 1 if self.behind_answers > 0 else 0
            hw = self.behind_high_watermark
            part = {**base, "error_code": ErrorCode.OFFSET_OUT_OF_RANGE, "high_watermark": hw,
                    "log_start_offset": 0, "records": None}
        elif not 0 <= p.fetch_offset <= self.end:
            part = {**base, "error_code": ErrorCode.OFFSET_OUT_OF_RANGE,
                    "high_watermark": self.end, "log_start_offset": 0, "records": None}
        else:
            part = {**base, "error_code": 0, "high_watermark": self.end, "log_start_offset": 0,
                    "records": self._records_from(p.fetch_offset)}
        return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0,
                "responses": [{"topic": topic.topic, "partitions": [part]}]}

    def _records_from(self, offset: int) -> bytes:
        if offset >= self.end:
            return b""
        records = [Record(None, b"v%d" % o, [], 1_000) for o in range(offset, self.end)]
        return encode_batch(records, base_offset=offset)

    def list_offsets(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        (topic,) = body.topics
        (p,) = topic.partitions
        offset = 0 if p.timestamp == EARLIEST_TIMESTAMP else self.end
        return {"topics": [{"name": topic.name, "partitions": [{
            "partition_index": p.partition_index, "error_code": 0, "old_style_offsets": [offset],
            "offset": offset, "leader_epoch": 1, "timestamp": -1}]}]}


async def _cluster(log: ScriptedLog) -> FakeCluster:
    cluster = await FakeCluster().start(1)
    cluster.add_topic(TOPIC, 1, 1)
    broker = cluster.brokers[1]
    broker.script[ApiKey.FETCH] = log.fetch
    broker.script[ApiKey.LIST_OFFSETS] = log.list_offsets
    return cluster


async def _read(consumer: AsyncConsumer, count: int) -> list[int]:
    """Offsets of the next `count` records handed out (fails after DEADLINE_S)."""
    offsets: list[int] = []
    async with asyncio.timeout(DEADLINE_S):
        while len(offsets) < count:
            batch = await consumer.getmany(timeout_ms=100, max_records=count - len(offsets))
            offsets += [r.offset for r in batch.get(TP, [])]
    return offsets


async def _consumer(cluster: FakeCluster, **options: Any) -> AsyncConsumer:
    consumer = AsyncConsumer(bootstrap_servers=cluster.bootstrap, auto_offset_reset="earliest",
                             fetch_max_wait_ms=10, retry_backoff_ms=10, **options)
    await consumer.start()
    consumer.assign([TP])
    return consumer


def _scenario(log: ScriptedLog, then: Any, *, leader_epoch: int = -1, **options: Any) -> None:
    """Read the log's first `log.end` records, then `await then(consumer, cluster)`. With
    `leader_epoch`, metadata reports it and the leader fences fetches naming another."""
    async def body() -> None:
        cluster = await _cluster(log)
        if leader_epoch >= 0:
            cluster.topics[TOPIC][0].epoch = log.leader_epoch = leader_epoch
        consumer = await _consumer(cluster, **options)
        try:
            assert await _read(consumer, log.end) == list(range(log.end))
            await then(consumer, cluster)
        finally:
            await consumer.stop()
            await cluster.stop()
    run(body())


def test_a_replica_behind_our_position_does_not_reset_it() -> None:
    """The fault run's g1 on partition 4: read to 10671, then a leader answered the fetch at
    10672 out of range and the consumer read the partition again from offset 0."""
    log = ScriptedLog(end=20)

    async def then(consumer: AsyncConsumer, cluster: FakeCluster) -> None:
        log.behind_answers, log.behind_high_watermark = 3, 15
        log.end = 25
        assert await _read(consumer, 5) == [20, 21, 22, 23, 24]
        assert log.behind_answers == 0  # every behind answer was met, and retried
        assert 0 not in log.fetched_at[1:]  # never sent back to the start
        assert await consumer.position(TP) == 25

    _scenario(log, then)


def test_a_seek_past_the_end_still_resets() -> None:
    log = ScriptedLog(end=20)

    async def then(consumer: AsyncConsumer, cluster: FakeCluster) -> None:
        consumer.seek(TP, 100)  # never reported by any leader: really outside the log
        assert await _read(consumer, 3) == [0, 1, 2]

    _scenario(log, then)


def test_an_answer_without_a_high_watermark_resets() -> None:
    """Kafka's brokers answer errors with high watermark -1: nothing shows the replica is
    behind, so the reset goes ahead as before."""
    log = ScriptedLog(end=20)

    async def then(consumer: AsyncConsumer, cluster: FakeCluster) -> None:
        log.behind_answers, log.behind_high_watermark = 1, -1
        assert await _read(consumer, 3) == [0, 1, 2]

    _scenario(log, then)


def test_a_log_that_stays_shorter_resets_after_request_timeout() -> None:
    """A replica behind is retried for request_timeout_ms at most: a log that really shrank
    (a topic deleted and made again) is then read from where auto_offset_reset says."""
    log = ScriptedLog(end=20)

    def stop_behind_on_reset(b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        log.behind_answers = 0  # the new, shorter log: served normally from its start
        return log.list_offsets(b, h, body)

    async def then(consumer: AsyncConsumer, cluster: FakeCluster) -> None:
        cluster.brokers[1].script[ApiKey.LIST_OFFSETS] = stop_behind_on_reset
        log.behind_answers, log.behind_high_watermark = -1, 5
        first = await _read(consumer, 1)
        assert first == [0]
        assert log.fetched_at.count(20) >= 2  # retried before giving up

    _scenario(log, then, request_timeout_ms=300)


def test_fetches_name_the_leader_epoch_and_a_fenced_one_refreshes_and_retries() -> None:
    """Fetches carry the leader epoch from metadata (KIP-320); a leader of a newer term answers
    FENCED_LEADER_EPOCH, the consumer refreshes metadata and goes on from the same position,
    with no error raised and no reset."""
    log = ScriptedLog(end=20)

    async def then(consumer: AsyncConsumer, cluster: FakeCluster) -> None:
        assert set(log.epochs_asked) == {3}
        log.leader_epoch, log.end = 4, 25  # re-elected: a new term
        fenced_from = len(log.epochs_asked)
        cluster.topics[TOPIC][0].epoch = 4  # what the next metadata refresh reports
        assert await _read(consumer, 5) == [20, 21, 22, 23, 24]
        asked = log.epochs_asked[fenced_from:]
        assert asked[0] == 3 and asked[-1] == 4, asked  # fenced once, then the new epoch
        assert 0 not in log.fetched_at[1:]  # no reset on the way

    _scenario(log, then, leader_epoch=3)
