"""The record accumulator: batches per partition, waiting to be sent (Kafka's RecordAccumulator).

Records are appended by `send()`, from the producer's event loop (AsyncProducer) or from any
user thread (Producer), so every method takes one lock; the sender task (broker I/O) drains
batches and reports answers from the loop. Futures are completed outside the lock because
completing them runs user callbacks.

A batch is ready to send when it is full or another batch follows it, when it has waited
`linger_ms`, or at once while a flush or close is in progress or a `send()` is blocked on the
memory budget. `drain` hands the sender, per broker, a list of requests each holding at most
one batch per partition (Produce v3+) and at most `max_request_size` bytes; the per-partition
rules (in-flight bound, retry order, sequences) are PartitionQueue's. A broker has at most
REQUESTS_PER_BROKER_MAX requests in flight (Kafka's max.in.flight.requests.per.connection):
while it has, its partitions' batches keep filling, so a slow broker (or a busy producer)
gets fewer, larger requests instead of a stream of small ones.

A turn costs what there is to send, not the partitions written to: a drain looks only at
the partitions something happened to or whose timer ran out (schedule.py), and delivery
expiry scans the partitions only once the oldest incomplete batch is past its deadline
(batches are made, and given deadlines, in order).

Bounds: bytes of records by the MemoryBudget; partition queues by the partitions written to
(they keep the partition's sequence state, so they live as long as the producer).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from broker.wire.errors import ErrorCode
from broker.wire.records import Compression, Record
from producer.batch import BatchState, ProducerBatch, batch_bytes_max_for
from producer.errors import ProducerClosedError
from producer.futures import RecordMetadata
from producer.memory import MemoryBudget
from producer.partition_queue import INFLIGHT_BATCHES_MAX, PartitionQueue, ProducerId
from producer.partitioner import next_sticky_partition
from producer.schedule import Schedule

__all__ = ["Accumulator", "Drained", "ProduceRequestPlan"]

# Produce requests in flight to one broker, as Kafka's max.in.flight.requests.per.connection.
# While a broker has this many, its partitions' batches wait and fill up: the producer sends
# fewer, larger requests exactly when the broker (or this process) is the bottleneck. Each
# request holds at most one batch per partition, so this also keeps every partition within
# INFLIGHT_BATCHES_MAX.
REQUESTS_PER_BROKER_MAX = 5
assert REQUESTS_PER_BROKER_MAX <= INFLIGHT_BATCHES_MAX

LeaderOf = Callable[[str, int], "int | None"]


@dataclass(slots=True)
class ProduceRequestPlan:
    """The batches of one Produce request to one broker (at most one per partition)."""

    batches: list[ProducerBatch] = field(default_factory=list)
    size_bytes: int = 0


@dataclass(slots=True, kw_only=True)
class Drained:
    requests: dict[int, list[ProduceRequestPlan]]  # by broker id
    wake_at_s: float | None  # when to look again if nothing else happens first
    leaderless: bool  # some partition with work has no known leader: refresh metadata
    wants_producer_id: bool  # some partition waits for a (new) producer id


Completion = tuple[ProducerBatch, int, int, "BaseException | None"]


class Accumulator:
    def __init__(self, *, budget: MemoryBudget, batch_size: int, linger_ms: int,
                 delivery_timeout_ms: int, retry_backoff_ms: int, max_request_size: int,
                 compression: Compression, idempotent: bool,
                 draw: Callable[[int], int]) -> None:
        self._budget = budget
        # Records join a batch while it stays within batch_size and, encoded, one request.
        self._batch_bytes_limit = max(1, min(batch_size, max_request_size - (
            batch_bytes_max_for(max_request_size, compression) - max_request_size)))
        self._linger_s = linger_ms / 1000
        self._delivery_s = delivery_timeout_ms / 1000
        self._backoff_s = retry_backoff_ms / 1000
        self._request_bytes_max = max_request_size
        self._compression = compression
        self._idempotent = idempotent
        self._draw = draw
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, int], PartitionQueue] = {}
        self._order: list[PartitionQueue] = []  # every partition queue, creation order
        # Every partition that is not idle (PartitionQueue.idle) is in the schedule.
        self._schedule: Schedule[PartitionQueue] = Schedule()
        # Partitions with work whose leader was unknown at the last look: looked at in every
        # drain, so they go as soon as the metadata names a leader (few, and rarely any).
        self._leaderless: dict[PartitionQueue, None] = {}
        self._requests_in_flight: dict[int, int] = {}  # by broker id: drained, not yet done
        # Partitions with a batch that could go but for their broker's request bound, by
        # broker id: looked at again when one of its requests is done.
        self._blocked: dict[int, dict[PartitionQueue, None]] = {}
        self._sticky: dict[str, int] = {}  # topic -> partition for keyless records
        self._producer_id: ProducerId | None = None
        self._closing = False
        self._flushes = 0  # flush() calls in progress
        self._next_batch_id = 1
        # Batches in creation order (so in deadline order), pruned of completed ones from
        # the front: the front is the oldest incomplete batch.
        self._incomplete: deque[ProducerBatch] = deque()
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []  # (last id, future)
        self._retries_total = 0  # failed sends that were retried (a metric)
        self._batches_sent_total = 0  # first sends (a metric), and their records
        self._records_sent_total = 0

    # ---- appending (any thread) ---------------------------------------------------------
    def append(self, topic: str, partition: int | None, record: Record, size_bytes: int,
               waiter: asyncio.Future[RecordMetadata] | None, now_s: float, *,
               partitions: int, available: Callable[[], Collection[int]]
               ) -> tuple[ProducerBatch, int, bool]:
        """Queue a record whose memory is reserved; `partition` None: sticky. Returns its
        batch, its index there, and whether the sender must look (a batch became ready or a
        linger timer starts). Raises ProducerClosedError once closing."""
        with self._lock:
            if self._closing:
                raise ProducerClosedError("the producer is closed")
            if partition is None:
                partition = self._sticky_partition(topic, size_bytes, partitions, available)
            pq = self._queues.get((topic, partition))
            if pq is None:
                pq = self._queues[(topic, partition)] = PartitionQueue(topic, partition)
                self._order.append(pq)
            last = pq.queue[-1] if pq.queue else None
            created = last is None or not self._fits(last, size_bytes)
            if last is None or created:
                if last is not None:
                    last.appendable = False
                batch = self._new_batch(topic, partition, now_s)
                pq.queue.append(batch)
            else:
                batch = last
            index = batch.add(record, size_bytes, waiter)
            if batch.size_bytes >= self._batch_bytes_limit:
                batch.appendable = False
            if created or not batch.appendable:
                self._schedule.touch(pq)
            return batch, index, created or not batch.appendable

    def _fits(self, batch: ProducerBatch, size_bytes: int) -> bool:
        return batch.appendable and (
            batch.count == 0 or batch.size_bytes + size_bytes <= self._batch_bytes_limit)

    def _new_batch(self, topic: str, partition: int, now_s: float) -> ProducerBatch:
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        batch = ProducerBatch(topic, partition, batch_id=batch_id, created_s=now_s,
                              deadline_s=now_s + self._delivery_s)
        self._incomplete.append(batch)
        return batch

    def _sticky_partition(self, topic: str, size_bytes: int, partitions: int,
                          available: Callable[[], Collection[int]]) -> int:
        """Keep the topic's sticky partition while its open batch takes the record; else
        draw another (KIP-480: switch when a new batch would be made)."""
        current = self._sticky.get(topic)
        if current is not None and current < partitions:
            pq = self._queues.get((topic, current))
            if pq is not None and pq.queue and self._fits(pq.queue[-1], size_bytes):
                return current
        chosen = next_sticky_partition(partitions=partitions, available=available(),
                                       previous=current, draw=self._draw)
        self._sticky[topic] = chosen
        return chosen

    # ---- draining (the loop) ------------------------------------------------------------
    def drain(self, now_s: float, leader_of: LeaderOf) -> Drained:
        """Take every batch that may be sent now, grouped into requests per broker. Each
        request returned must be reported with request_done() once answered or failed."""
        requests: dict[int, list[ProduceRequestPlan]] = {}
        with self._lock:
            force = self._closing or self._flushes > 0 or self._budget.waiting
            due = self._schedule.everything() if force else self._schedule.due(now_s)
            if self._leaderless:
                due = list(dict.fromkeys(due + list(self._leaderless)))
            looked: list[tuple[PartitionQueue, int | None]] = []
            for pq in due:
                leader = leader_of(pq.topic, pq.partition)
                if leader is not None:
                    blocked = self._blocked.setdefault(leader, {})
                    blocked.pop(pq, None)
                    self._drain_partition(pq, leader, now_s, force, requests)
                    if pq in blocked:
                        continue  # looked at again when the broker answers
                looked.append((pq, leader))
            for node, plans in requests.items():
                self._requests_in_flight[node] = self._requests_in_flight.get(node, 0) + \
                    len(plans)
            drained = self._after_drain(now_s, looked)
            drained.requests = requests
            return drained

    def request_done(self, node: int) -> None:
        """A request from drain() to `node` was answered or failed (after its batches were
        reported): partitions waiting for the broker may go."""
        with self._lock:
            count = self._requests_in_flight.get(node, 0)
            assert count > 0, node
            self._requests_in_flight[node] = count - 1
            for pq in self._blocked.pop(node, ()):
                self._schedule.touch(pq)

    def _after_drain(self, now_s: float, looked: list[tuple[PartitionQueue, int | None]]
                     ) -> Drained:
        """Schedule the next look at each partition looked at; say when the sender must
        look again and what it must ask for."""
        leaderless = wants_id = False
        schedule = self._schedule
        for pq, leader in looked:
            if pq.idle or leader is not None:
                self._leaderless.pop(pq, None)
            if pq.idle:
                schedule.forget(pq)
                continue
            if leader is None:
                leaderless = True
                self._leaderless[pq] = None
            waits = self._idempotent and self._waits_for_id(pq)
            wants_id = wants_id or waits
            schedule.schedule(pq, pq.wake_at_s(
                now_s, linger_s=self._linger_s, backoff_s=self._backoff_s,
                leader_known=leader is not None, waits_for_id=waits))
        wake_s = self._oldest_deadline_s()
        timer_s = schedule.next_s()
        if timer_s is not None and (wake_s is None or timer_s < wake_s):
            wake_s = timer_s
        return Drained(requests={}, wake_at_s=wake_s, leaderless=leaderless,
                       wants_producer_id=wants_id)

    def _drain_partition(self, pq: PartitionQueue, leader: int, now_s: float, force: bool,
                         requests: dict[int, list[ProduceRequestPlan]]) -> int:
        """Take the partition's sendable batches, the i-th into the broker's i-th request
        (one batch per partition per request, at most REQUESTS_PER_BROKER_MAX requests in
        flight); how many were taken. A partition held back by that bound is noted in
        `_blocked` and looked at again when the broker answers."""
        slot = 0
        room = REQUESTS_PER_BROKER_MAX - self._requests_in_flight.get(leader, 0)
        while True:
            batch = pq.sendable(now_s, linger_s=self._linger_s, force=force,
                                producer_id=self._producer_id, idempotent=self._idempotent)
            if batch is None:
                return slot
            plans = requests.setdefault(leader, [])
            pq.prepare(batch, self._idempotent)
            size = len(batch.encode(self._compression))
            while slot < len(plans) and plans[slot].batches and \
                    plans[slot].size_bytes + size > self._request_bytes_max:
                slot += 1
            if slot >= room:
                self._blocked[leader][pq] = None
                return slot
            if slot == len(plans):
                plans.append(ProduceRequestPlan())
            self._take(pq, batch, size, plans[slot])
            slot += 1

    def _take(self, pq: PartitionQueue, batch: ProducerBatch, size: int,
              plan: ProduceRequestPlan) -> None:
        plan.batches.append(batch)
        plan.size_bytes += size
        if batch.attempts == 0:
            self._batches_sent_total += 1
            self._records_sent_total += batch.count
        pq.commit_send(batch, self._idempotent)

    def _waits_for_id(self, pq: PartitionQueue) -> bool:
        if pq.needs_reset:
            return not pq.in_flight and (
                self._producer_id is None or pq.producer_id is None
                or self._producer_id.generation <= pq.producer_id.generation)
        return pq.producer_id is None and self._producer_id is None and bool(pq.queue)

    def set_producer_id(self, producer_id: int, epoch: int) -> ProducerId:
        with self._lock:
            generation = 1 if self._producer_id is None else self._producer_id.generation + 1
            self._producer_id = ProducerId(producer_id=producer_id, epoch=epoch,
                                           generation=generation)
            self._schedule.touch_all()  # partitions waiting for an id may go now
            return self._producer_id

    # ---- answers (the loop) -------------------------------------------------------------
    def succeeded(self, batch: ProducerBatch, base_offset: int, log_append_time_ms: int) -> None:
        with self._lock:
            pq = self._queue_of(batch)
            report = pq.succeeded(batch)
            self._schedule.touch(pq)
        if report:
            self._complete([(batch, base_offset, log_append_time_ms, None)])

    def failed(self, batch: ProducerBatch, error: BaseException, now_s: float, *,
               retriable: bool, code: ErrorCode | None = None) -> None:
        """A send of `batch` failed; it is retried or its records fail (PartitionQueue)."""
        with self._lock:
            pq = self._queue_of(batch)
            report = pq.failed(
                batch, error, code, now_s, retriable=retriable, backoff_s=self._backoff_s,
                idempotent=self._idempotent)
            self._schedule.touch(pq)
            if batch.state is BatchState.RETRY:
                self._retries_total += 1
        if report is not None:
            self._complete([(batch, -1, -1, report)])

    def fail_waiting_for_id(self, error: BaseException) -> None:
        """Getting a producer id failed for good: fail the batches that cannot go without
        one (never sent, so no sequence is lost)."""
        done: list[Completion] = []
        with self._lock:
            for pq in self._order:
                if pq.producer_id is None:
                    while pq.queue:
                        batch = pq.queue.popleft()
                        done.append((batch, -1, -1, error))
        self._complete(done)

    def expire(self, now_s: float) -> None:
        """Fail the batches past their delivery deadline (a scan only once some is)."""
        done: list[Completion] = []
        with self._lock:
            deadline_s = self._oldest_deadline_s()
            if deadline_s is None or deadline_s > now_s:
                return
            for pq in self._order:
                for batch, error in pq.expire(now_s, self._idempotent):
                    done.append((batch, -1, -1, error))
                if not pq.idle:
                    self._schedule.touch(pq)  # a reset may be needed
        self._complete(done)

    def _oldest_deadline_s(self) -> float | None:
        """The delivery deadline of the oldest incomplete batch, the earliest one (made
        first); called with the lock held."""
        incomplete = self._incomplete
        while incomplete and incomplete[0].result.done:
            incomplete.popleft()
        return incomplete[0].deadline_s if incomplete else None

    def _queue_of(self, batch: ProducerBatch) -> PartitionQueue:
        return self._queues[(batch.topic, batch.partition)]

    def _complete(self, done: list[Completion]) -> None:
        """Complete futures, give memory back, and wake flushes that are satisfied."""
        for batch, base_offset, log_append_time_ms, error in done:
            batch.complete(base_offset=base_offset, log_append_time_ms=log_append_time_ms,
                           error=error)
            self._budget.release(batch.reserved_bytes)
        if not done:
            return
        with self._lock:
            self._oldest_deadline_s()  # prunes completed batches from the front
            oldest = self._incomplete[0].batch_id if self._incomplete \
                else self._next_batch_id
            ready = [f for last, f in self._flush_waiters if last < oldest]
            self._flush_waiters = [(last, f) for last, f in self._flush_waiters
                                   if last >= oldest]
        for f in ready:
            if not f.done():
                f.set_result(None)

    # ---- flush, close (the loop) --------------------------------------------------------
    def begin_flush(self) -> asyncio.Future[None] | None:
        """Make every batch ready; a future done once all batches made before this call are
        complete (None: they are). Pair with end_flush()."""
        with self._lock:
            self._flushes += 1
            last = self._next_batch_id - 1
            self._oldest_deadline_s()
            if not self._incomplete or self._incomplete[0].batch_id > last:
                return None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flush_waiters.append((last, future))
            return future

    def end_flush(self) -> None:
        with self._lock:
            self._flushes -= 1
            assert self._flushes >= 0

    def close(self) -> None:
        """Refuse new records; everything queued becomes ready."""
        with self._lock:
            self._closing = True

    def abort(self, error: BaseException) -> None:
        """Fail every record not yet acknowledged (at the end of a bounded close)."""
        with self._lock:
            self._closing = True
            done: list[Completion] = [(b, -1, -1, error) for pq in self._order
                                      for b in pq.abort()]
        self._complete(done)

    def stats(self) -> dict[str, int]:
        """Batches by state, summed over partitions (for metrics)."""
        with self._lock:
            return {
                "batches_queued": sum(len(pq.queue) for pq in self._order),
                "batches_in_flight": sum(pq.in_flight for pq in self._order),
                "batches_retrying": sum(pq.retrying for pq in self._order),
                "partitions": len(self._order),
                "batches_sent_total": self._batches_sent_total,
                "records_sent_total": self._records_sent_total,
                "batch_retries_total": self._retries_total,
                "producer_ids_total": 0 if self._producer_id is None
                else self._producer_id.generation,
            }

    @property
    def empty(self) -> bool:
        """No batch is queued, waiting for a retry or in flight."""
        with self._lock:
            return all(pq.empty for pq in self._order)

    def check_invariants(self) -> None:
        with self._lock:
            for pq in self._order:
                pq.check_invariants()
            assert len(self._order) == len(self._queues)
            assert all(pq in self._schedule for pq in self._order if not pq.idle)
            self._schedule.check_invariants()
            assert self._flushes >= 0
