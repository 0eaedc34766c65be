"""The accumulator and its per-partition state machine, driven step by step with a simulated
clock: batching by size and linger, one batch per partition per request, five in flight,
retries resent alone and in order with their sequences, OUT_OF_ORDER_SEQUENCE_NUMBER as Kafka's
client judges it, new producer ids after a gap, delivery expiry, sticky partitioning, flush
and the memory budget. Invariants are checked after every step."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator

import pytest

from broker.client import KafkaConnectionError
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import BATCH_HEADER_BYTES, Compression, Record, decode_batches
from producer.accumulator import Accumulator, Drained
from producer.batch import BatchState, ProducerBatch, record_bytes_estimate
from producer.errors import DeliveryTimeoutError, ProduceError, ProducerClosedError
from producer.memory import MemoryBudget

VALUE = b"v" * 90
SIZE = record_bytes_estimate(2, len(VALUE), 1)
TEN = BATCH_HEADER_BYTES + 10 * SIZE  # a batch_size that holds ten records


class Harness:
    """An accumulator, its budget, a clock and a cluster map (partition -> leader)."""

    def __init__(self, *, idempotent: bool = True, batch_size: int = TEN,
                 linger_ms: int = 5, delivery_timeout_ms: int = 10_000,
                 max_request_size: int = 1 << 20, buffer_memory: int = 1 << 20,
                 partitions: int = 3) -> None:
        self.budget = MemoryBudget(buffer_memory)
        self.acc = Accumulator(
            budget=self.budget, batch_size=batch_size, linger_ms=linger_ms,
            delivery_timeout_ms=delivery_timeout_ms, retry_backoff_ms=100,
            max_request_size=max_request_size, compression=Compression.NONE,
            idempotent=idempotent, draw=random.Random(3).randrange)
        self.now_s = 1000.0
        self.partitions = partitions
        self.leaders: dict[int, int | None] = {p: 1 + p % 3 for p in range(partitions)}
        # Requests drained and not yet done, as (broker, batches not yet answered): a
        # request is done, as the sender reports it, once each of its batches is answered.
        self.open: list[tuple[int, list[ProducerBatch]]] = []
        if idempotent:
            self.acc.set_producer_id(7, 0)

    def send(self, partition: int | None = 0, n: int = 1, key: bytes | None = b"k0"
             ) -> list[tuple[ProducerBatch, int]]:
        out = []
        for _ in range(n):
            assert self.budget.try_reserve(SIZE)
            try:
                batch, index, _ = self.acc.append(
                    "t", partition, Record(key, VALUE, (), 1), SIZE, None, self.now_s,
                    partitions=self.partitions,
                    available=lambda: {p for p, leader in self.leaders.items() if leader})
            except ProducerClosedError:
                self.budget.release(SIZE)
                raise
            out.append((batch, index))
        self.acc.check_invariants()
        return out

    def drain(self) -> Drained:
        drained = self.acc.drain(self.now_s, lambda t, p: self.leaders.get(p))
        self.acc.check_invariants()
        for node, plans in drained.requests.items():
            self.open.extend((node, list(plan.batches)) for plan in plans)
        return drained

    def _answered(self, batch: ProducerBatch) -> None:
        for i, (node, batches) in enumerate(self.open):
            if batch in batches:
                batches.remove(batch)
                if not batches:
                    del self.open[i]
                    self.acc.request_done(node)
                return

    def sent(self) -> list[list[ProducerBatch]]:
        """The requests (as lists of batches) a drain produces now."""
        return [plan.batches for plans in self.drain().requests.values() for plan in plans]

    def ack(self, batch: ProducerBatch, base_offset: int = 0) -> None:
        self.acc.succeeded(batch, base_offset, -1)
        self._answered(batch)
        self.acc.check_invariants()

    def fail(self, batch: ProducerBatch, code: ErrorCode | None = None,
             retriable: bool = True) -> None:
        error = KafkaConnectionError("lost") if code is None else KafkaError(code, "test")
        self.acc.failed(batch, error, self.now_s, retriable=retriable, code=code)
        self._answered(batch)
        self.acc.check_invariants()


def _one(requests: list[list[ProducerBatch]]) -> ProducerBatch:
    assert len(requests) == 1 and len(requests[0]) == 1, requests
    return requests[0][0]


def _full_batches(h: Harness, count: int, partition: int = 0) -> None:
    h.send(partition, n=10 * count)  # ten records fill a batch


def test_a_batch_waits_for_linger_unless_full() -> None:
    h = Harness()
    h.send(n=3)
    drained = h.drain()
    assert not drained.requests
    assert drained.wake_at_s == pytest.approx(h.now_s + 0.005)
    h.now_s += 0.005
    batch = _one(h.sent())
    assert batch.count == 3 and batch.state is BatchState.IN_FLIGHT


def test_records_fill_batches_up_to_batch_size() -> None:
    h = Harness()
    placed = h.send(n=25)
    batches = list(dict.fromkeys(b for b, _ in placed))
    assert [b.count for b in batches] == [10, 10, 5]
    assert [i for _, i in placed] == [*range(10), *range(10), *range(5)]
    requests = h.sent()  # the two full ones go at once, the third lingers
    assert [r[0] for r in requests] == batches[:2]


def test_one_batch_per_partition_per_request_and_five_in_flight() -> None:
    h = Harness()
    _full_batches(h, 7)
    h.send(partition=1, n=10)
    requests = h.sent()
    by_partition = [[b.partition for b in r] for r in requests]
    assert sorted(len(r) for r in requests) == [1, 1, 1, 1, 1, 1]
    assert sorted(p for r in by_partition for p in r) == [0, 0, 0, 0, 0, 1]
    first = [r[0] for r in requests if r[0].partition == 0]
    assert [b.base_sequence for b in first] == [0, 10, 20, 30, 40]
    assert not h.sent(), "partition 0 has five in flight"
    h.ack(first[0])
    (sixth,) = [r[0] for r in h.sent()]
    assert sixth.base_sequence == 50 and sixth.producer_id == 7


def test_a_request_stays_within_max_request_size() -> None:
    h = Harness(partitions=9, max_request_size=2 * TEN + 200)
    for p in range(0, 9, 3):  # partitions 0, 3, 6: all led by broker 1
        h.send(partition=p, n=10)
    requests = h.drain().requests[1]
    assert [len(r.batches) for r in requests] == [2, 1]
    assert all(r.size_bytes <= 2 * TEN + 200 for r in requests)


def test_a_retry_waits_for_the_flight_then_goes_alone_in_sequence_order() -> None:
    h = Harness()
    _full_batches(h, 4)
    b1, b2, b3, b4 = (r[0] for r in h.sent())
    h.fail(b2, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    h.now_s += 1
    h.send(n=10)  # a fifth batch is ready too
    assert not h.sent(), "nothing goes while batches are in flight"
    h.ack(b1)
    h.fail(b3, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)  # retriable: b2 is being retried
    h.fail(b4)  # connection lost
    assert [b.state for b in (b2, b3, b4)] == [BatchState.RETRY] * 3
    assert b3.result.done is False
    h.now_s += 0.1  # the retry backoff
    for expected in (b2, b3):
        assert _one(h.sent()) is expected, "resent alone, oldest first"
        assert not h.sent()
        h.ack(expected)
    # The last retried batch may have new batches behind it, as in Kafka's client: if it
    # fails again, they get OUT_OF_ORDER_SEQUENCE_NUMBER, which is then retriable.
    last, fifth = (r[0] for r in h.sent())
    assert last is b4
    assert [b.base_sequence for b in (b2, b3, b4, fifth)] == [10, 20, 30, 40]
    h.fail(b4, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    h.fail(fifth, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
    assert fifth.state is BatchState.RETRY


def test_out_of_order_for_the_oldest_batch_fails_it_and_restarts_under_a_new_id() -> None:
    h = Harness()
    _full_batches(h, 3)
    b1, b2, b3 = (r[0] for r in h.sent())
    h.fail(b1, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
    assert isinstance(b1.result.error, ProduceError)
    assert b1.result.error.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    h.fail(b2, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)  # after b1's gap: retriable
    h.ack(b3)  # an answer can still say yes (the broker had it)
    assert b2.state is BatchState.RETRY
    h.now_s += 1
    drained = h.drain()
    assert not drained.requests and drained.wants_producer_id
    h.acc.set_producer_id(8, 0)
    again = _one(h.sent())
    assert again is b2
    assert (again.producer_id, again.base_sequence) == (8, 0)
    (batch,) = decode_batches(again.encoded or b"")
    assert (batch.producer_id, batch.base_sequence) == (8, 0)


def test_a_fatal_error_fails_only_its_batch() -> None:
    h = Harness()
    _full_batches(h, 2)
    b1, b2 = (r[0] for r in h.sent())
    h.fail(b1, ErrorCode.INVALID_RECORD, retriable=False)
    h.fail(b2, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
    assert b1.result.error is not None and b2.result.done is False
    h.acc.set_producer_id(9, 0)
    h.now_s += 1
    assert _one(h.sent()) is b2 and b2.base_sequence == 0 and b2.producer_id == 9


def test_other_partitions_keep_their_producer_id_and_sequences() -> None:
    h = Harness()
    h.send(partition=1, n=10)
    _full_batches(h, 1)
    requests = {r[0].partition: r[0] for r in h.sent()}
    h.fail(requests[0], ErrorCode.INVALID_RECORD, retriable=False)
    h.ack(requests[1])
    h.acc.set_producer_id(9, 0)
    h.send(partition=1, n=10)
    h.send(partition=0, n=10)
    now = {r[0].partition: r[0] for r in h.sent()}
    assert (now[1].producer_id, now[1].base_sequence) == (7, 10)
    assert (now[0].producer_id, now[0].base_sequence) == (9, 0)


def test_batches_expire_queued_retrying_and_in_flight() -> None:
    h = Harness(delivery_timeout_ms=1000)
    _full_batches(h, 2)
    b1, b2 = (r[0] for r in h.sent())
    h.fail(b2)
    h.send(n=2)  # queued, lingering
    h.now_s += 0.5
    h.send(n=1)
    h.now_s += 0.6  # past the first batches' deadline, not the last record's batch
    used = h.budget.used_bytes
    h.acc.expire(h.now_s)
    h.acc.check_invariants()
    for b in (b1, b2):
        assert isinstance(b.result.error, DeliveryTimeoutError), b.result.error
    assert "after 1 attempt(s)" in str(b2.result.error)
    assert b1.state is BatchState.IN_FLIGHT and b1.expired
    assert h.budget.used_bytes < used
    h.ack(b1)  # the late answer is dropped: its records already failed
    assert isinstance(b1.result.error, DeliveryTimeoutError)


def test_a_retriable_error_past_the_deadline_fails_with_a_timeout() -> None:
    h = Harness(delivery_timeout_ms=1000)
    _full_batches(h, 1)
    batch = _one(h.sent())
    h.now_s += 2
    h.fail(batch, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    error = batch.result.error
    assert isinstance(error, DeliveryTimeoutError)
    assert isinstance(error.last_error, KafkaError)


def test_without_idempotence_batches_carry_no_sequence() -> None:
    h = Harness(idempotent=False)
    _full_batches(h, 2)
    b1, b2 = (r[0] for r in h.sent())
    assert (b1.producer_id, b1.base_sequence) == (-1, -1)
    h.fail(b1, ErrorCode.INVALID_RECORD, retriable=False)
    h.ack(b2)
    assert not h.drain().wants_producer_id


def test_no_producer_id_yet_means_nothing_is_sent() -> None:
    h = Harness()
    h.acc = Accumulator(budget=h.budget, batch_size=TEN, linger_ms=0,
                        delivery_timeout_ms=10_000, retry_backoff_ms=100,
                        max_request_size=1 << 20, compression=Compression.NONE,
                        idempotent=True, draw=random.Random(0).randrange)
    h.send(n=1)
    drained = h.drain()
    assert not drained.requests and drained.wants_producer_id
    assert drained.wake_at_s == pytest.approx(h.now_s + 10), "no busy wait: only expiry"
    h.acc.set_producer_id(1, 0)
    assert _one(h.sent()).producer_id == 1


def test_a_partition_without_leader_waits_and_asks_for_metadata() -> None:
    h = Harness()
    h.leaders[0] = None
    _full_batches(h, 1)
    drained = h.drain()
    assert not drained.requests and drained.leaderless
    assert drained.wake_at_s == pytest.approx(h.now_s + 0.1), "polled at the retry backoff"
    h.leaders[0] = 2
    assert _one(h.sent()).partition == 0


def test_keyless_records_stick_to_one_partition_until_its_batch_is_sent() -> None:
    h = Harness(partitions=6)
    first = {b.partition for b, _ in h.send(partition=None, n=3, key=None)}
    assert len(first) == 1
    (p,) = first
    h.now_s += 0.01
    assert _one(h.sent()).partition == p
    second = {b.partition for b, _ in h.send(partition=None, n=3, key=None)}
    assert len(second) == 1 and second != first
    # a full batch also moves it on
    third = [b.partition for b, _ in h.send(partition=None, n=25, key=None)]
    assert len(set(third)) >= 2 and third[:7] == [third[0]] * 7


def test_flush_waits_for_earlier_batches_only() -> None:
    async def scenario() -> None:
        h = Harness()
        h.send(n=3)
        future = h.acc.begin_flush()
        assert future is not None
        batch = _one(h.sent())  # flushing: sent without waiting for linger
        h.send(n=1)  # a later record does not hold the flush back
        h.ack(batch)
        assert future.done()
        h.acc.end_flush()
        assert h.acc.begin_flush() is not None  # the later batch now
        h.acc.end_flush()

    asyncio.run(scenario())


def test_abort_and_close_refuse_and_fail_everything() -> None:
    h = Harness()
    _full_batches(h, 1)
    in_flight = _one(h.sent())
    (queued, _), = h.send(n=1)
    h.acc.close()
    with pytest.raises(ProducerClosedError):
        h.send(n=1)
    h.acc.abort(ProducerClosedError("closing"))
    assert isinstance(in_flight.result.error, ProducerClosedError)
    assert isinstance(queued.result.error, ProducerClosedError)
    assert h.acc.empty and h.budget.used_bytes == 0


# ---- the memory budget -----------------------------------------------------------------

@pytest.fixture
def budget() -> Iterator[MemoryBudget]:
    yield MemoryBudget(1000)


def test_budget_blocks_a_thread_until_release(budget: MemoryBudget) -> None:
    assert budget.try_reserve(900)
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(budget.reserve_blocking(200, 10.0)))
    t.start()
    deadline = time.monotonic() + 10
    while not budget.waiting and time.monotonic() < deadline:
        time.sleep(0.001)
    assert budget.waiting and not got
    budget.release(500)
    t.join(10)
    assert got == [True] and budget.used_bytes == 600


def test_budget_gives_up_after_its_timeout(budget: MemoryBudget) -> None:
    assert budget.try_reserve(1000)
    assert budget.reserve_blocking(1, 0.01) is False
    assert not budget.waiting

    async def scenario() -> None:
        assert await budget.reserve(1, 0.01) is False
        waiter = asyncio.ensure_future(budget.reserve(100, 10.0))
        await asyncio.sleep(0)
        assert budget.waiting
        budget.release(100)
        assert await waiter is True

    asyncio.run(scenario())


# ---- requests per broker -----------------------------------------------------------------

def test_a_broker_has_at_most_five_requests_in_flight_then_batches_fill_up() -> None:
    h = Harness(partitions=9)
    partitions = [0, 3, 6]  # all led by broker 1
    for p in partitions:
        _full_batches(h, 2, partition=p)
    requests = h.sent()
    assert len(requests) == 2 and all(len(r) == 3 for r in requests)
    for _ in range(3):  # three more turns, one request each
        for p in partitions:
            _full_batches(h, 1, partition=p)
        h.now_s += 0.005
        requests += h.sent()
    assert len(requests) == 5
    h.send(partition=0, n=3)
    h.now_s += 0.005
    assert not h.sent(), "broker 1 has five requests in flight: partition 0 waits"
    h.send(partition=0, n=4)  # and its lingering batch keeps filling
    for batch in requests[0]:
        h.ack(batch)  # the first request is done
    batch = _one(h.sent())
    assert batch.partition == 0 and batch.count == 7


def test_a_batch_held_back_and_then_filled_is_sent_with_all_its_records() -> None:
    h = Harness(partitions=9)
    _full_batches(h, 5, partition=3)  # five requests to broker 1
    busy = [r[0] for r in h.sent()]
    assert len(busy) == 5
    h.send(partition=0, n=2)  # also led by broker 1
    h.now_s += 0.005
    assert not h.sent()  # ready (stamped and encoded), but held back by broker 1
    h.send(partition=0, n=2)  # the held-back batch takes more records
    h.ack(busy[0])
    batch = _one(h.sent())
    (decoded,) = decode_batches(batch.encoded or b"")
    assert batch.count == len(decoded.records) == 4
    assert (decoded.base_sequence, batch.partition) == (0, 0)
