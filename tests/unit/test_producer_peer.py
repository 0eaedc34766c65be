"""AsyncProducer and Producer against scripted brokers over real sockets (the FakeCluster of
test_client_peer, with a Produce log per partition that checks idempotent sequences as a
broker does): leader moves, lost answers, answers in a scripted order, acks=0, buffer
bounds, delivery timeouts, closing, and the checks `send()` makes before queueing."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import io
import random
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.client import ClientConfigError, NoBrokersAvailableError
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.kafka import ApiKey, RequestHeader
from broker.wire.records import decode_batches
from producer import (
    AsyncProducer,
    BufferFullError,
    DeliveryTimeoutError,
    KafkaTimeoutError,
    ProduceError,
    Producer,
    ProducerClosedError,
    RecordMetadata,
    RecordTooLargeError,
    UnknownPartitionError,
    UnknownTopicError,
    partition_for_key,
)
from tests.unit.test_client_peer import (
    CLOSE,
    NO_ANSWER,
    FakeCluster,
    ScriptedBroker,
    cluster_in_thread,
    on_loop,
    run,
)

SEEDS = [int(s) for s in os.environ.get("PRODUCER_CHAOS_SEEDS", "1,2,3,4").split(",")]
FAST = {"request_timeout_ms": 2000, "delivery_timeout_ms": 5000, "retry_backoff_ms": 20,
        "linger_ms": 2}


@dataclass
class _Producer:
    epoch: int
    batches: list[tuple[int, int, int]] = field(default_factory=list)  # (first, last, offset)


class ProduceLog:
    """Produce as a broker answers it: the partition's leader appends, checks sequences per
    producer id (duplicates answered with their first offset, gaps refused), others answer
    NOT_LEADER_OR_FOLLOWER. `hook(broker, topic, partition, batch)` may return an error
    code, CLOSE, NO_ANSWER or an awaitable of one to script a failure (before anything is
    appended), or ("after", CLOSE) to append and then lose the answer."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.producers: dict[tuple[str, int, int], _Producer] = {}
        self.hook: Callable[[ScriptedBroker, str, int, Any], Any] | None = None
        self.requests = 0
        for b in cluster.brokers.values():
            b.script[ApiKey.PRODUCE] = self.produce
            b.script[ApiKey.INIT_PRODUCER_ID] = self.init_producer_id
        self.next_producer_id = 1000

    def init_producer_id(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> Any:
        self.next_producer_id += 1
        return {"throttle_time_ms": 0, "error_code": 0,
                "producer_id": self.next_producer_id, "producer_epoch": 0}

    def produce(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> Any:
        self.requests += 1
        after = None
        responses = []
        for t in body.topic_data:
            parts = []
            for pd in t.partition_data:
                (batch,) = decode_batches(bytes(pd.records))
                verdict = self.hook(b, t.name, pd.index, batch) if self.hook else None
                if verdict is CLOSE or verdict is NO_ANSWER or inspect.isawaitable(verdict):
                    return verdict
                if isinstance(verdict, tuple):
                    after = verdict[1]
                    verdict = None
                parts.append(self._append(b, t.name, pd.index, batch, verdict))
            responses.append({"name": t.name, "partition_responses": parts})
        if after is not None or body.acks == 0:
            return after if after is not None else NO_ANSWER
        return {"responses": responses, "throttle_time_ms": 0}

    def _append(self, b: ScriptedBroker, topic: str, index: int, batch: Any,
                code: ErrorCode | None) -> dict[str, Any]:
        def answer(error: ErrorCode, offset: int = -1) -> dict[str, Any]:
            return {"index": index, "error_code": error, "base_offset": offset}

        part = self.cluster.topics.get(topic, {}).get(index)
        if part is None:
            return answer(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if part.leader != b.node_id:
            return answer(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if code is not None:
            return answer(code)
        log = self.records.setdefault((topic, index), [])
        if batch.producer_id >= 0:
            state = self.producers.setdefault((topic, index, batch.producer_id),
                                              _Producer(batch.producer_epoch))
            first, last = batch.base_sequence, batch.base_sequence + len(batch.records) - 1
            for f, la, offset in state.batches:
                if (f, la) == (first, last):
                    return answer(ErrorCode.NONE, offset)
            expected = state.batches[-1][1] + 1 if state.batches else 0
            if first != expected:
                return answer(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
            state.batches = [*state.batches[-4:], (first, last, len(log))]
        base = len(log)
        log.extend((r.key, r.value) for r in batch.records)
        return answer(ErrorCode.NONE, base)


async def _cluster(partitions: int = 3) -> tuple[FakeCluster, ProduceLog]:
    cluster = await FakeCluster().start(3)
    cluster.add_topic("t", partitions, 3)
    return cluster, ProduceLog(cluster)


def _check_exactly_once(log: ProduceLog, sent: list[tuple[bytes, RecordMetadata]],
                        streams: list[list[bytes]] | None = None) -> None:
    """Every acknowledged record is stored once, at its offset, nothing else is stored, and
    each stream (default: all of `sent`) is stored in send order per partition."""
    where = dict(sent)
    for value, md in sent:
        assert log.records[("t", md.partition)][md.offset][1] == value, (value, md)
    stored = [v for records in log.records.values() for _, v in records]
    assert len(stored) == len(set(stored)) == len(sent), "duplicates or strays"
    for stream in streams or [[v for v, _ in sent]]:
        for partition in {where[v].partition for v in stream}:
            offsets = [where[v].offset for v in stream if where[v].partition == partition]
            assert offsets == sorted(offsets), f"partition {partition} out of order"


def test_keyed_records_land_on_kafkas_partition_once_each_in_order() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster(partitions=4)
        async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
            futures = [(b"v%d" % i, await producer.send("t", b"v%d" % i, key=b"k%d" % (i % 7)))
                       for i in range(500)]
            sent = [(v, await f) for v, f in futures]
        for i, (_, md) in enumerate(sent):
            assert md.partition == partition_for_key(b"k%d" % (i % 7), 4)
            assert md.topic == "t" and md.timestamp_ms > 0
        _check_exactly_once(log, sent)
        assert log.next_producer_id == 1001, "one producer id"
        await cluster.stop()

    run(scenario())


def test_a_moved_leader_gets_the_retries_in_order_without_duplicates() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        moved = False

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            nonlocal moved
            if index == 0 and log.requests == 5 and not moved:
                moved = True  # the leader of partition 0 changes under the producer
                cluster.topics["t"][0].leader = 1 + cluster.topics["t"][0].leader % 3
            return None

        log.hook = hook
        async with AsyncProducer(cluster.bootstrap, **FAST, batch_size=200) as producer:
            futures = [(b"%d" % i, await producer.send("t", b"%d" % i, partition=0))
                       for i in range(300)]
            sent = [(v, await f) for v, f in futures]
        assert moved
        _check_exactly_once(log, sent)
        await cluster.stop()

    run(scenario())


def test_a_lost_answer_is_retried_and_answered_with_the_original_offset() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        seen: list[int] = []
        lost: list[int] = []

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            seen.append(batch.base_sequence)
            if len(seen) in (1, 3, 5):
                lost.append(batch.base_sequence)
                return ("after", CLOSE)  # written, then the connection drops
            return None

        log.hook = hook
        async with AsyncProducer(cluster.bootstrap, **FAST, batch_size=600) as producer:
            futures = [(b"%d" % i, await producer.send("t", b"%d" % i, partition=1))
                       for i in range(200)]
            sent = [(v, await f) for v, f in futures]
        assert len(lost) == 3
        assert all(seen.count(seq) >= 2 for seq in lost), "each lost batch was sent again"
        _check_exactly_once(log, sent)
        await cluster.stop()

    run(scenario())


@pytest.mark.parametrize("seed", SEEDS)
def test_random_faults_never_duplicate_or_reorder(seed: int) -> None:
    """Seeded chaos on every Produce request: lost answers after the append, dropped
    connections before it, unanswered requests (the client's timeout closes the
    connection), retriable error codes and leader moves. Every record must end up stored
    once, in order, at its acknowledged offset."""
    rng = random.Random(seed)

    async def scenario() -> None:
        cluster, log = await _cluster()

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            roll = rng.random()
            if roll < 0.05:
                part = cluster.topics["t"][index]
                part.leader = 1 + (part.leader or 1) % 3
            elif roll < 0.12:
                return ("after", CLOSE)
            elif roll < 0.17:
                return CLOSE
            elif roll < 0.19:  # stall the connection past the client's request timeout
                return asyncio.sleep(1.0, result=CLOSE)
            elif roll < 0.25:
                return rng.choice([ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.REQUEST_TIMED_OUT,
                                   ErrorCode.NOT_LEADER_OR_FOLLOWER])
            return None

        log.hook = hook
        options = {**FAST, "request_timeout_ms": 300, "delivery_timeout_ms": 60_000,
                   "batch_size": 300, "linger_ms": 1}
        async with AsyncProducer(cluster.bootstrap, **options) as producer:
            futures = []
            for i in range(400):
                futures.append((b"%d" % i, await producer.send("t", b"%d" % i,
                                                               key=b"%d" % (i % 5))))
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            sent = [(v, await f) for v, f in futures]
        _check_exactly_once(log, sent)
        await cluster.stop()

    try:
        run(scenario(), timeout_s=60)
    except BaseException:
        print(f"replay with seed={seed}")
        raise


def test_without_idempotence_a_lost_answer_duplicates() -> None:
    """The same scenario shows what idempotence prevents."""
    async def scenario() -> None:
        cluster, log = await _cluster()
        lost = False

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            nonlocal lost
            if not lost:
                lost = True
                return ("after", CLOSE)
            return None

        log.hook = hook
        async with AsyncProducer(cluster.bootstrap, **FAST, acks=1) as producer:
            assert not producer.idempotent
            md = await producer.send_and_wait("t", b"once", partition=2)
        assert [v for _, v in log.records[("t", 2)]] == [b"once", b"once"]
        assert md.offset == 1, "the acknowledged copy"
        await cluster.stop()

    run(scenario())


def test_out_of_order_with_nothing_earlier_retried_fails_that_batch_only() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        refused = False

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            nonlocal refused
            if batch.records[0].value == b"bad" and not refused:
                refused = True  # as if the broker had lost this producer's state
                return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
            return None

        log.hook = hook
        async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
            first = await producer.send_and_wait("t", b"good", partition=0)
            with pytest.raises(ProduceError) as caught:
                await producer.send_and_wait("t", b"bad", partition=0)
            after = await producer.send_and_wait("t", b"after", partition=0)
        assert caught.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert "partition 0" in str(caught.value)
        assert (first.offset, after.offset) == (0, 1)
        assert log.next_producer_id == 1002, "a new producer id restarts the sequence"
        await cluster.stop()

    run(scenario())


def test_a_refused_batch_fails_with_the_brokers_code_and_others_go_on() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()

        def hook(b: ScriptedBroker, topic: str, index: int, batch: Any) -> Any:
            return ErrorCode.INVALID_RECORD if batch.records[0].value == b"x" else None

        log.hook = hook
        async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
            bad = await producer.send("t", b"x", partition=0)
            await producer.flush()
            good = await producer.send_and_wait("t", b"y", partition=0)
            with pytest.raises(ProduceError) as caught:
                await bad
        assert caught.value.code == ErrorCode.INVALID_RECORD
        assert (caught.value.topic, caught.value.partition) == ("t", 0)
        assert good.offset == 0
        await cluster.stop()

    run(scenario())


def test_a_refused_producer_id_fails_the_waiting_records() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        for b in cluster.brokers.values():
            b.script[ApiKey.INIT_PRODUCER_ID] = lambda b, h, body: {
                "throttle_time_ms": 0, "error_code": ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
                "producer_id": -1, "producer_epoch": -1}
        async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
            with pytest.raises(KafkaError) as caught:
                await producer.send_and_wait("t", b"v", partition=0)
        assert caught.value.code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert not log.records
        await cluster.stop()

    run(scenario())


def test_a_tight_send_loop_lets_full_batches_go() -> None:
    """`await send()` rarely waits for anything; the producer yields to the loop when a
    batch is ready, so a caller that never awaits anything else still has batches sent
    while it is sending, not only once the buffer is full."""
    async def scenario() -> None:
        cluster, log = await _cluster()
        async with AsyncProducer(cluster.bootstrap, **FAST, batch_size=16384) as producer:
            for _ in range(2000):
                await producer.send("t", b"x" * 1000, partition=0)
            sent = producer.metrics()["batches_sent_total"]
            await producer.flush()
        assert sent >= 50, "full batches were sent during the loop"
        assert len(log.records[("t", 0)]) == 2000
        await cluster.stop()

    run(scenario())


def test_acks_0_expects_no_answer() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        async with AsyncProducer(cluster.bootstrap, **FAST, acks=0) as producer:
            md = await producer.send_and_wait("t", b"fire", partition=1)
        assert md.offset == -1 and md.partition == 1
        (header,) = cluster.brokers[cluster.topics["t"][1].leader or 0].headers(ApiKey.PRODUCE)
        assert log.records[("t", 1)] == [(None, b"fire")]
        await cluster.stop()

    run(scenario())


def test_delivery_timeout_bounds_a_record_the_cluster_never_takes() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        log.hook = lambda *_: ErrorCode.NOT_ENOUGH_REPLICAS
        options = {**FAST, "request_timeout_ms": 200, "delivery_timeout_ms": 600}
        async with AsyncProducer(cluster.bootstrap, **options) as producer:
            with pytest.raises(DeliveryTimeoutError) as caught:
                await producer.send_and_wait("t", b"v", partition=0)
        assert "NOT_ENOUGH_REPLICAS" in str(caught.value)
        assert caught.value.last_error is not None
        await cluster.stop()

    run(scenario())


def test_a_full_buffer_blocks_send_then_raises() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        log.hook = lambda *_: NO_ANSWER  # nothing is ever acknowledged
        options = {**FAST, "buffer_memory": 4096, "max_block_ms": 100}
        producer = AsyncProducer(cluster.bootstrap, **options)
        await producer.start()
        with pytest.raises(BufferFullError) as caught:
            for _ in range(100):
                await producer.send("t", b"x" * 500, partition=0)
        assert "buffer_memory=4096" in str(caught.value)
        await producer.stop(timeout_ms=100)
        await cluster.stop()

    run(scenario())


def test_stop_with_a_timeout_fails_what_is_left() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        log.hook = lambda *_: NO_ANSWER
        producer = AsyncProducer(cluster.bootstrap, **FAST)
        await producer.start()
        future = await producer.send("t", b"v", partition=0)
        await producer.stop(timeout_ms=50)
        with pytest.raises(ProducerClosedError):
            await future
        with pytest.raises(ProducerClosedError):
            await producer.send("t", b"v")
        await producer.stop()  # again: nothing to do
        await cluster.stop()

    run(scenario())


def test_send_rejects_bad_input_at_once() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        options = {**FAST, "max_block_ms": 200, "max_request_size": 10_000}
        async with AsyncProducer(cluster.bootstrap, **options) as producer:
            with pytest.raises(TypeError, match="value must be bytes"):
                await producer.send("t", "text")
            with pytest.raises(TypeError, match="key must be bytes"):
                await producer.send("t", b"v", key=12)
            with pytest.raises(TypeError, match="header"):
                await producer.send("t", b"v", headers=[("h", "text")])
            with pytest.raises(TypeError):
                await producer.send("t", b"v", partition="0")  # type: ignore[arg-type]
            with pytest.raises(RecordTooLargeError, match="max_request_size=10000") as big:
                await producer.send("t", b"x" * 10_000)
            assert big.value.code == ErrorCode.MESSAGE_TOO_LARGE
            with pytest.raises(UnknownTopicError, match="'nope'") as unknown:
                await producer.send("nope", b"v")
            assert unknown.value.topic == "nope"
            with pytest.raises(UnknownPartitionError, match="no partition 3"):
                await producer.send("t", b"v", partition=3)
            assert await producer.partitions_for("t") == frozenset({0, 1, 2})
        assert not log.records
        await cluster.stop()

    run(scenario())


def test_serializers_turn_values_into_bytes() -> None:
    async def scenario() -> None:
        cluster, log = await _cluster()
        async with AsyncProducer(cluster.bootstrap, **FAST, key_serializer=str.encode,
                                 value_serializer=lambda v: repr(v).encode()) as producer:
            await producer.send_and_wait("t", {"a": 1}, key="k", partition=0)
            with pytest.raises(TypeError, match="value_serializer returned int"):
                bad = AsyncProducer(cluster.bootstrap, value_serializer=len)
                await bad.start()
                try:
                    await bad.send("t", b"abc")
                finally:
                    await bad.stop()
        assert log.records[("t", 0)] == [(b"k", b"{'a': 1}")]
        await cluster.stop()

    run(scenario())


def test_options_are_checked() -> None:
    with pytest.raises(ClientConfigError, match="acks"):
        AsyncProducer(acks=2)  # type: ignore[arg-type]
    with pytest.raises(ClientConfigError, match="compression_type"):
        AsyncProducer(compression_type="brotli")
    with pytest.raises(ClientConfigError, match="delivery_timeout_ms"):
        AsyncProducer(delivery_timeout_ms=1000, request_timeout_ms=2000)
    with pytest.raises(ClientConfigError, match="linger_ms"):
        AsyncProducer(linger_ms=-1)
    assert AsyncProducer(acks="all").idempotent
    assert not AsyncProducer(acks=1).idempotent
    assert not AsyncProducer(enable_idempotence=False).idempotent


def test_an_unstarted_producer_refuses_to_send() -> None:
    async def scenario() -> None:
        producer = AsyncProducer("127.0.0.1:1")
        with pytest.raises(Exception, match="start"):
            await producer.send("t", b"v")
        await producer.stop()

    run(scenario())


# ---- the sync Producer ---------------------------------------------------------------------

def test_sync_producer_from_many_threads() -> None:
    with cluster_in_thread(3) as (cluster, engine):
        holder: list[ProduceLog] = []

        def setup() -> None:
            cluster.add_topic("t", 3, 3)
            holder.append(ProduceLog(cluster))

        on_loop(engine, setup)
        log = holder[0]
        sent: list[tuple[bytes, Any]] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            mine = [(b"%d-%d" % (n, i), None) for i in range(300)]
            for i, (value, _) in enumerate(mine):
                mine[i] = (value, producer.send("t", value, key=b"%d" % n))
            with lock:
                sent.extend(mine)

        with Producer(cluster.bootstrap, **FAST) as producer:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            producer.flush(timeout=20)
            acked = [(v, f.get(timeout=0)) for v, f in sent]
            assert producer.partitions_for("t") == frozenset({0, 1, 2})
        assert len(acked) == 1200
        streams = [[b"%d-%d" % (n, i) for i in range(300)] for n in range(4)]
        _check_exactly_once(log, acked, streams)
        callbacks: list[Any] = []
        acked_future = sent[0][1]
        acked_future.add_callback(callbacks.append)
        acked_future.add_errback(callbacks.append)
        assert callbacks == [acked[0][1]] and acked_future.succeeded()


def test_sync_producer_blocks_on_a_full_buffer_then_raises() -> None:
    with cluster_in_thread(3) as (cluster, engine):
        holder: list[ProduceLog] = []

        def setup() -> None:
            cluster.add_topic("t", 3, 3)
            log = ProduceLog(cluster)
            log.hook = lambda *_: NO_ANSWER
            holder.append(log)

        on_loop(engine, setup)
        producer = Producer(cluster.bootstrap, **{**FAST, "buffer_memory": 4096,
                                                  "max_block_ms": 100})
        futures = []
        with pytest.raises(BufferFullError):
            for _ in range(100):
                futures.append(producer.send("t", b"x" * 500, partition=0))
        assert 2 <= len(futures) < 10
        producer.close(timeout=0.1)
        with pytest.raises(ProducerClosedError):
            futures[0].get(timeout=1)
        with pytest.raises(ProducerClosedError):
            producer.send("t", b"v")


def test_sync_flush_is_bounded_by_its_timeout() -> None:
    with cluster_in_thread(3) as (cluster, engine):
        def setup() -> None:
            cluster.add_topic("t", 1, 3)
            ProduceLog(cluster).hook = lambda *_: NO_ANSWER

        on_loop(engine, setup)
        with Producer(cluster.bootstrap, **FAST) as producer:
            future = producer.send("t", b"v")
            with pytest.raises(KafkaTimeoutError, match="flush"):
                producer.flush(timeout=0.2)
            with pytest.raises(TimeoutError):
                future.get(timeout=0.01)
            assert not future.done()
            producer.close(timeout=0)
        with pytest.raises(ProducerClosedError):
            future.get(timeout=1)


def test_sync_producer_without_brokers_fails_to_start() -> None:
    with pytest.raises(NoBrokersAvailableError):
        Producer("127.0.0.1:1", request_timeout_ms=500, delivery_timeout_ms=1000)


def test_an_unclosed_producer_warns_when_collected() -> None:
    with cluster_in_thread(3) as (cluster, engine):
        on_loop(engine, lambda: cluster.add_topic("t", 1, 3))
        producer = Producer(cluster.bootstrap, **FAST)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del producer
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught), caught


def test_an_unstopped_async_producer_warns_when_collected() -> None:
    async def scenario() -> None:
        cluster, _ = await _cluster()
        producer = AsyncProducer(cluster.bootstrap, **FAST)
        await producer.start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del producer
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
        await asyncio.sleep(0.05)  # the leaked producer's cleanup runs on the loop
        await cluster.stop()

    run(scenario())


# ---- raftlog produce -----------------------------------------------------------------------

def test_produce_command_sends_each_line_and_reports_failures(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from broker.cli import main

    with cluster_in_thread(3) as (cluster, engine):
        holder: list[ProduceLog] = []

        def setup() -> None:
            cluster.add_topic("t", 1, 3)
            holder.append(ProduceLog(cluster))

        on_loop(engine, setup)

        def run_cli(stdin: bytes, *args: str) -> int:
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
            return main(["produce", *args, "--bootstrap", cluster.bootstrap])

        monkeypatch.setenv("RAFTLOG_TIMEOUT_MS", "2000")
        assert run_cli(b"a=1\r\nb=2\nplain\n\nlast", "t", "--key-separator", "=") == 0
        assert holder[0].records[("t", 0)] == [
            (b"a", b"1"), (b"b", b"2"), (None, b"plain"), (None, b""), (None, b"last")]
        assert capsys.readouterr() == ("", "")
        assert run_cli(b"x\n", "missing") == 1
        err = capsys.readouterr().err
        assert err.startswith("raftlog produce: ") and err.count("\n") == 1 and "'missing'" in err
        on_loop(engine, lambda: setattr(holder[0], "hook",
                                        lambda *_: ErrorCode.INVALID_RECORD))
        assert run_cli(b"x\ny\n", "t") == 1
        err = capsys.readouterr().err
        assert "2 of 2 records failed" in err and "INVALID_RECORD" in err and err.count("\n") == 1
