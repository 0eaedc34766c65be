"""One partition's batches and, for an idempotent producer, its sequence numbers: every
transition of a batch's state (BatchState) happens here.

    append ──> QUEUED ──send──> IN_FLIGHT ──ack──> DONE
                  ^                 │  ^
        new producer id       retriable error
        (after a failure)           v  │ resend, alone, in order
                  └──────────────  RETRY ──expiry / fatal──> DONE

Ordering rules, as Kafka's Java client (RecordAccumulator.drain, TransactionManager):
- `queue` holds unsent batches in creation order; records join only the last one.
- `sent` holds batches given a sequence, in sequence order, each IN_FLIGHT or RETRY. At most
  INFLIGHT_BATCHES_MAX are in flight: the broker remembers its last five batches per
  producer, which is what lets it answer a retried one as a duplicate.
- Once any batch needs a retry, nothing new is sent: the partition waits until every batch in
  flight has been answered, then resends the RETRY batches one at a time, oldest first, each
  with its original sequence; new batches may follow once the last of them is in flight (if
  it fails again, they are refused as out of order and retried behind it). So a retried batch
  never overtakes an earlier one, and the broker sees sequences in order across leader
  changes.
- OUT_OF_ORDER_SEQUENCE_NUMBER is retriable when an earlier batch of this partition is being
  retried or has failed (the broker simply has not seen it yet); for the oldest batch, with
  nothing before it, the broker has lost this producer's state: that batch fails.
- A batch that fails or expires after being given a sequence leaves a gap the broker will
  never see filled: the partition stops, waits for its in-flight batches, then takes a new
  producer id (InitProducerId v0-1 cannot bump an epoch) and renumbers from 0 every batch
  not yet acknowledged. A batch whose outcome was unknown when it expired (its request was
  lost) may thus be written twice; Kafka's client has the same window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from broker.wire.errors import ErrorCode
from producer.batch import BatchState, ProducerBatch
from producer.errors import DeliveryTimeoutError, ProduceError

__all__ = ["PartitionQueue", "ProducerId", "INFLIGHT_BATCHES_MAX", "SEQUENCE_MOD"]

INFLIGHT_BATCHES_MAX = 5  # per partition; Kafka's bound for idempotence
SEQUENCE_MOD = 1 << 31  # sequences wrap at Integer.MAX_VALUE, as Kafka's do


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerId:
    producer_id: int
    epoch: int
    generation: int  # 1, 2, ... in the order this producer obtained its ids


class PartitionQueue:
    __slots__ = ("topic", "partition", "queue", "sent", "in_flight", "retrying",
                 "next_sequence", "producer_id", "needs_reset")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.queue: deque[ProducerBatch] = deque()  # QUEUED, oldest first
        self.sent: deque[ProducerBatch] = deque()  # IN_FLIGHT or RETRY, sequence order
        self.in_flight = 0  # batches of `sent` IN_FLIGHT (expired ones included)
        self.retrying = 0  # batches of `sent` in RETRY
        self.next_sequence = 0
        self.producer_id: ProducerId | None = None  # the id this partition's sequences use
        self.needs_reset = False  # a sequenced batch failed: new producer id before more

    # ---- sending ------------------------------------------------------------------------
    def sendable(self, now_s: float, *, linger_s: float, force: bool,
                 producer_id: ProducerId | None, idempotent: bool) -> ProducerBatch | None:
        """The batch to send next, if one may go now."""
        if self.needs_reset:
            if self.in_flight or not self._fresh(producer_id):
                return None
            assert producer_id is not None
            self._reset(producer_id)
        if self.retrying:
            if self.in_flight:
                return None
            head = self.sent[0]
            assert head.state is BatchState.RETRY, head
            return head if now_s >= head.retry_at_s else None
        if self.in_flight >= INFLIGHT_BATCHES_MAX or not self.queue:
            return None
        head = self.queue[0]
        if head.appendable and not force and now_s < head.created_s + linger_s:
            return None
        if idempotent and self.producer_id is None:
            if producer_id is None:
                return None
            self.producer_id = producer_id
        return head

    def prepare(self, batch: ProducerBatch, idempotent: bool) -> None:
        """Stamp the sequence the batch will carry if sent now (nothing is committed: a
        batch that does not fit this request keeps its place)."""
        if idempotent and batch.state is BatchState.QUEUED:
            pid = self.producer_id
            assert pid is not None
            batch.set_sequence(pid.producer_id, pid.epoch, self.next_sequence)

    def commit_send(self, batch: ProducerBatch, idempotent: bool) -> None:
        """`batch` (from `sendable`, then `prepare`) goes into a request now."""
        if batch.state is BatchState.QUEUED:
            assert self.queue[0] is batch
            self.queue.popleft()
            batch.appendable = False
            if idempotent:
                assert batch.base_sequence == self.next_sequence, (batch, self.next_sequence)
                self.next_sequence = (self.next_sequence + batch.count) % SEQUENCE_MOD
            self.sent.append(batch)
        else:
            assert batch.state is BatchState.RETRY and self.sent[0] is batch, batch
            self.retrying -= 1
        batch.state = BatchState.IN_FLIGHT
        batch.attempts += 1
        self.in_flight += 1

    def wake_at_s(self, now_s: float, *, linger_s: float, backoff_s: float, leader_known: bool,
                  waits_for_id: bool) -> float | None:
        """When this partition may next have a batch to send, if no event (an answer, a
        producer id) comes first; None: only an event can change anything. Delivery deadlines
        are not included: the accumulator tracks the earliest one producer-wide."""
        if self.needs_reset or waits_for_id:
            return None
        if self.retrying:
            if self.in_flight:
                return None
            return self.sent[0].retry_at_s if leader_known else now_s + backoff_s
        if self.queue and self.in_flight < INFLIGHT_BATCHES_MAX:
            head = self.queue[0]
            ready_s = head.created_s + linger_s if head.appendable else now_s
            return ready_s if leader_known else max(ready_s, now_s + backoff_s)
        return None

    @property
    def idle(self) -> bool:
        """Nothing to send, now or later, without a new record: no queued batch, no retry,
        no sequence reset pending (batches in flight may remain)."""
        return not self.queue and not self.retrying and not self.needs_reset

    # ---- answers ------------------------------------------------------------------------
    def succeeded(self, batch: ProducerBatch) -> bool:
        """An answer acknowledged `batch`; whether its futures are still to complete."""
        self._land(batch)
        self.sent.remove(batch)
        report = not batch.expired
        batch.state = BatchState.DONE
        return report

    def failed(self, batch: ProducerBatch, error: BaseException, code: ErrorCode | None,
               now_s: float, *, retriable: bool, backoff_s: float, idempotent: bool,
               ) -> BaseException | None:
        """A send of `batch` failed with `error` (`code` when the broker answered one). Returns
        the error to fail its records with, or None when it will be retried (or had already
        expired)."""
        self._land(batch)
        if code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER and idempotent:
            retriable = self.needs_reset or self.sent[0] is not batch
            if not retriable:
                error = ProduceError(code, f"producing to {self.topic!r} partition "
                                     f"{self.partition}: the broker does not continue this "
                                     f"producer's sequence at {batch.base_sequence} and no "
                                     "earlier batch is being retried",
                                     topic=self.topic, partition=self.partition)
        if retriable and not batch.expired and now_s < batch.deadline_s:
            batch.state = BatchState.RETRY
            batch.retry_at_s = now_s + backoff_s
            batch.last_error = error
            self.retrying += 1
            return None
        self.sent.remove(batch)
        self.needs_reset = self.needs_reset or idempotent
        batch.state = BatchState.DONE
        if batch.expired:
            return None  # its records already failed with a DeliveryTimeoutError
        return self._timeout_error(batch, error) if retriable else error

    def _land(self, batch: ProducerBatch) -> None:
        assert batch.state is BatchState.IN_FLIGHT and self.in_flight > 0, batch
        self.in_flight -= 1

    # ---- expiry, reset, abort -----------------------------------------------------------
    def expire(self, now_s: float, idempotent: bool
               ) -> list[tuple[ProducerBatch, BaseException]]:
        """Fail every batch past its delivery deadline. One in flight is failed now and
        forgotten when its answer comes."""
        out: list[tuple[ProducerBatch, BaseException]] = []
        for batch in [b for b in self.sent if b.deadline_s <= now_s and not b.expired]:
            out.append((batch, self._timeout_error(batch, batch.last_error)))
            if batch.state is BatchState.IN_FLIGHT:
                batch.expired = True
                continue
            self.sent.remove(batch)
            self.retrying -= 1
            batch.state = BatchState.DONE
            self.needs_reset = self.needs_reset or idempotent
        while self.queue and self.queue[0].deadline_s <= now_s:
            batch = self.queue.popleft()
            batch.state = BatchState.DONE
            out.append((batch, self._timeout_error(batch, batch.last_error)))
        return out

    def abort(self) -> list[ProducerBatch]:
        """Every batch whose futures are not yet complete; the queue is emptied."""
        out = [b for b in self.sent if not b.expired] + list(self.queue)
        for b in out:
            b.state = BatchState.DONE
        self.sent.clear()
        self.queue.clear()
        self.in_flight = self.retrying = 0
        return out

    def _fresh(self, producer_id: ProducerId | None) -> bool:
        """Whether `producer_id` was obtained after this partition last took one."""
        return producer_id is not None and (
            self.producer_id is None or producer_id.generation > self.producer_id.generation)

    def _reset(self, producer_id: ProducerId) -> None:
        assert not self.in_flight
        for batch in reversed(self.sent):
            batch.state = BatchState.QUEUED
            batch.set_sequence(-1, -1, -1)
            self.queue.appendleft(batch)
        self.sent.clear()
        self.retrying = 0
        self.next_sequence = 0
        self.producer_id = producer_id
        self.needs_reset = False

    def _timeout_error(self, batch: ProducerBatch, cause: BaseException | None
                       ) -> DeliveryTimeoutError:
        what = f"after {batch.attempts} attempt(s), last error: {cause}" if batch.attempts \
            else "it was never sent" + (f" ({cause})" if cause else "")
        return DeliveryTimeoutError(
            f"{batch.count} record(s) for {self.topic!r} partition {self.partition} not "
            f"acknowledged within delivery_timeout_ms; {what}", last_error=cause)

    @property
    def empty(self) -> bool:
        return not self.queue and not self.sent

    def check_invariants(self) -> None:
        assert self.in_flight == sum(b.state is BatchState.IN_FLIGHT for b in self.sent)
        assert self.retrying == sum(b.state is BatchState.RETRY for b in self.sent)
        assert self.in_flight <= INFLIGHT_BATCHES_MAX, self.in_flight
        assert all(b.state is BatchState.QUEUED for b in self.queue)
        assert not any(b.appendable for b in list(self.queue)[:-1])
        assert not any(b.appendable for b in self.sent)
        ids = [b.batch_id for b in self.sent] + [b.batch_id for b in self.queue]
        assert ids == sorted(ids), ids  # creation order = sequence order
