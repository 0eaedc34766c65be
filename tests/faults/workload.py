"""The fault-injection workload: idempotent producers and consumers on a real cluster, every
operation recorded in a History (history.py documents the kinds and fields written here).

    with Workload(cluster.bootstrap, history, topic="faults", partitions=6) as w:
        w.start()
        ...                                   # inject faults
        w.stop()                              # every send's outcome is recorded by now
        w.drain_and_read_all(timeout_s=60)    # the final reader, for the checker
    verdict = check(History.iter_ops(path))

Parts, each one thread that owns its client:
- producers: `Producer(acks="all", enable_idempotence=True)` each, sending `rate_per_s /
  producers` records a second. Values are unique (`p{producer}-{seq}`) and are their own keys;
  the partition is the one Kafka's partitioner gives the key, computed here so the send op
  names it. Acknowledgements and failures are recorded by the futures' callbacks (on the
  producer's I/O thread). A failed future is an unknown outcome: the record may have been
  written. Only send() refusing a record (never queued) is a definite failure.
- standalone consumers: no group, `assign()` every partition, read from the beginning.
- group consumers: `subscribe()` with `group_id`, no auto-commit; after each poll they commit
  the next offset of every partition they read, recording the commit and its outcome.
Every client error is recorded as a note and retried; a client that keeps failing is replaced
by a new one (recorded as an "assign" note: its reads start over).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from broker.client import ClientError
from broker.wire.errors import KafkaError
from consumer import CommitFailedError, Consumer, ConsumerRecord, IllegalStateError, TopicPartition
from producer import KafkaTimeoutError, Producer, RecordFuture, partition_for_key
from tests.faults.history import FINAL_READER, History, to_text

__all__ = ["ClientTimeouts", "Workload"]

IN_FLIGHT_MAX = 20_000  # unanswered records per producer; sending pauses at the bound
POLL_MS = 200  # a consumer thread notices stop() within about this long
ERRORS_BEFORE_NEW_CLIENT = 20  # consecutive failures before a client is replaced
ERROR_PAUSE_S = 0.2
ERROR_TEXT_MAX = 200
JOIN_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTimeouts:
    """The clients' bounds: short enough that stop() and the final read end promptly, long
    enough that a fault of many seconds is ridden out by retries."""

    request_timeout_ms: int = 5000
    delivery_timeout_ms: int = 60000  # a record unanswered this long fails (unknown outcome)
    max_block_ms: int = 1000  # send() waits at most this for metadata or buffer room
    close_timeout_s: float = 15.0  # stop(): in-flight records get this long to be answered
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    rebalance_timeout_ms: int = 10000
    consumer_close_timeout_s: float = 35.0  # Consumer.close() bounds itself to 30 s


@dataclass(slots=True)
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("sent", "acked", "failed", "unknown", "read", "commits", "commits_ok",
         "commits_failed", "errors", "clients_replaced"), 0))

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


def _error_fields(e: BaseException) -> dict[str, str]:
    return {"error": type(e).__name__, "message": str(e)[:ERROR_TEXT_MAX]}


class _Worker:
    """One thread owning one client; subclasses implement `_run` (until `stop` is set)."""

    def __init__(self, name: str, history: History, stats: _Stats, stop: threading.Event) -> None:
        self.name = name
        self.history = history
        self.stats = stats
        self.stop = stop
        self.thread = threading.Thread(target=self._main, name=f"faults-{name}", daemon=True)

    def _main(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - recorded: the workload itself never raises
            self.history.record("note", what="worker_crashed", worker=self.name,
                                **_error_fields(e))

    def _run(self) -> None:
        raise NotImplementedError

    def error(self, what: str, e: BaseException) -> None:
        self.stats.add("errors")
        self.history.record("note", what=what, worker=self.name, **_error_fields(e))

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.history.record("note", what="worker_stuck", worker=self.name,
                                waited_s=timeout_s)


class _ProducerWorker(_Worker):
    def __init__(self, index: int, w: Workload) -> None:
        super().__init__(f"p{index}", w.history, w._stats, w._stop_producing)
        self.bootstrap, self.topic, self.partitions = w.bootstrap, w.topic, w.partitions
        self.interval_s = w.producers / w.rate_per_s
        self.timeouts = w.timeouts
        self.seq = 0
        self.in_flight: dict[str, RecordFuture] = {}  # value -> future, until recorded
        self.lock = threading.Lock()

    def _new_producer(self) -> Producer | None:
        t = self.timeouts
        while not self.stop.is_set():
            try:
                return Producer(bootstrap_servers=self.bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=5,
                                request_timeout_ms=t.request_timeout_ms,
                                delivery_timeout_ms=t.delivery_timeout_ms,
                                max_block_ms=t.max_block_ms, client_id=f"faults-{self.name}")
            except Exception as e:  # noqa: BLE001 - recorded and retried
                self.error("producer_start_failed", e)
                self.stop.wait(ERROR_PAUSE_S)
        return None

    def _run(self) -> None:
        producer = self._new_producer()
        next_s = time.monotonic()
        failures = 0
        while producer is not None and not self.stop.wait(max(0.0, next_s - time.monotonic())):
            # Behind schedule (send() blocked): carry on from now rather than burst.
            next_s = max(next_s + self.interval_s, time.monotonic() - self.interval_s)
            if len(self.in_flight) >= IN_FLIGHT_MAX:
                continue
            refused = self._send_one(producer)
            if refused is None:
                failures = 0
            elif not isinstance(refused, KafkaTimeoutError):  # full buffer: the cluster is slow
                failures += 1
            if failures >= ERRORS_BEFORE_NEW_CLIENT:
                self.history.record("note", what="client_replaced", worker=self.name)
                self.stats.add("clients_replaced")
                self._close(producer)
                producer, failures = self._new_producer(), 0
        if producer is not None:
            self._close(producer)
        self._resolve_leftovers()

    def _send_one(self, producer: Producer) -> Exception | None:
        """Send the next value; what send() raised, if it refused the record."""
        self.seq += 1
        value = f"{self.name}-{self.seq}"
        data = value.encode("ascii")
        partition = partition_for_key(data, self.partitions)
        self.history.record("send", producer=self.name, value=value, partition=partition)
        self.stats.add("sent")
        try:
            future = producer.send(self.topic, value=data, key=data, partition=partition)
        except Exception as e:  # noqa: BLE001 - never queued: certainly not written
            self.history.record("fail", producer=self.name, value=value,
                                error=type(e).__name__, definite=True)
            self.stats.add("failed")
            return e
        with self.lock:
            self.in_flight[value] = future
        future.add_done_callback(lambda f: self._outcome(value, f))
        return None

    def _outcome(self, value: str, future: RecordFuture) -> None:
        """Runs once per record on the producer's I/O thread (or here, if already done)."""
        with self.lock:
            if self.in_flight.pop(value, None) is None:
                return  # recorded already (a leftover resolved at close)
        error = future.exception(0)
        if error is None:
            md = future.get(0)
            self.history.record("ack", producer=self.name, value=value,
                                partition=md.partition, offset=md.offset)
            self.stats.add("acked")
        else:
            self.history.record("fail", producer=self.name, value=value,
                                error=type(error).__name__, definite=False)
            self.stats.add("unknown")

    def _close(self, producer: Producer) -> None:
        """Flush and close within close_timeout_s; what is left fails (unknown outcome)."""
        try:
            producer.flush(timeout=self.timeouts.close_timeout_s)
        except Exception as e:  # noqa: BLE001
            self.error("producer_flush_failed", e)
        try:
            producer.close(timeout=self.timeouts.close_timeout_s)
        except Exception as e:  # noqa: BLE001
            self.error("producer_close_failed", e)

    def _resolve_leftovers(self) -> None:
        """Records the closed producer never completed (it should complete them all)."""
        with self.lock:
            leftovers, self.in_flight = list(self.in_flight), {}
        for value in leftovers:
            self.history.record("fail", producer=self.name, value=value, error="Unresolved",
                                definite=False)
            self.stats.add("unknown")


def _rebalances(consumer: Consumer) -> int | None:
    """Completed rebalances of a group consumer. The consumer library has no rebalance
    listener (Kafka's ConsumerRebalanceListener), so this reads the counter its group member
    keeps; None when there is none to read."""
    group = getattr(getattr(consumer, "_core", None), "_group", None)
    count = getattr(group, "rebalances", None)
    return count if isinstance(count, int) else None


class _ConsumerWorker(_Worker):
    def __init__(self, name: str, w: Workload, *, group_id: str | None) -> None:
        super().__init__(name, w.history, w._stats, w._stop_consuming)
        self.bootstrap, self.topic, self.partitions = w.bootstrap, w.topic, w.partitions
        self.group_id = group_id
        self.timeouts = w.timeouts
        self.epoch: tuple[int | None, frozenset[int]] | None = None  # last noted assignment
        self.commit_id = 0

    def _new_consumer(self, reason: str) -> Consumer | None:
        t = self.timeouts
        options: dict[str, Any] = dict(
            bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, request_timeout_ms=t.request_timeout_ms,
            fetch_max_wait_ms=POLL_MS, client_id=f"faults-{self.name}")
        if self.group_id is not None:
            options.update(group_id=self.group_id, session_timeout_ms=t.session_timeout_ms,
                           heartbeat_interval_ms=t.heartbeat_interval_ms,
                           rebalance_timeout_ms=t.rebalance_timeout_ms)
        while not self.stop.is_set():
            try:
                if self.group_id is not None:
                    consumer = Consumer(self.topic, **options)
                else:
                    consumer = Consumer(**options)
                    consumer.assign([TopicPartition(self.topic, p)
                                     for p in range(self.partitions)])
            except Exception as e:  # noqa: BLE001 - recorded and retried
                self.error("consumer_start_failed", e)
                self.stop.wait(ERROR_PAUSE_S)
                continue
            self.epoch = None
            self.history.record("note", what="assign", consumer=self.name, partitions=None,
                                reason=reason)
            return consumer
        return None

    def _run(self) -> None:
        consumer = self._new_consumer("new consumer")
        failures = 0
        while consumer is not None and not self.stop.is_set():
            try:
                self._poll_once(consumer)
                failures = 0
            except Exception as e:  # noqa: BLE001 - recorded and retried
                self.error("consumer_error", e)
                failures += 1
                self.stop.wait(ERROR_PAUSE_S)
            if failures >= ERRORS_BEFORE_NEW_CLIENT:
                self.stats.add("clients_replaced")
                self._close(consumer)
                consumer, failures = self._new_consumer("replaced after errors"), 0
        if consumer is not None:
            self._close(consumer)

    def _assignment_epoch(self, consumer: Consumer) -> tuple[int | None, frozenset[int]]:
        return _rebalances(consumer), frozenset(tp.partition for tp in consumer.assignment())

    def _note_epoch(self, epoch: tuple[int | None, frozenset[int]], reason: str) -> None:
        self.epoch = epoch
        self.history.record("note", what="assign", consumer=self.name, partitions=None,
                            reason=reason, rebalances=epoch[0], assigned=sorted(epoch[1]))

    def _poll_once(self, consumer: Consumer) -> None:
        """One poll, its reads recorded, then (in a group) their commit. A rebalance seen
        between polls is noted before the reads; one that completed during the poll is noted
        both before and after them, since the batch may come from either assignment."""
        grouped = self.group_id is not None
        before = self._assignment_epoch(consumer) if grouped else None
        if before is not None and before != self.epoch:
            self._note_epoch(before, "rebalance")
        batch = consumer.poll(timeout_ms=POLL_MS)
        after = self._assignment_epoch(consumer) if grouped else None
        changed = after is not None and after != before
        if changed and batch:
            self._note_epoch(after, "rebalance during poll")  # type: ignore[arg-type]
        for records in batch.values():
            self._record_reads(records)
        if changed:
            self._note_epoch(after, "rebalance during poll")  # type: ignore[arg-type]
        if grouped and batch:
            self._commit(consumer, {tp: records[-1].offset + 1 for tp, records in batch.items()
                                    if records})

    def _record_reads(self, records: list[ConsumerRecord]) -> None:
        for r in records:
            self.history.record("read", consumer=self.name, partition=r.partition,
                                offset=r.offset, value=to_text(r.value))
        self.stats.add("read", len(records))

    def _commit(self, consumer: Consumer, offsets: Mapping[TopicPartition, int]) -> None:
        self.commit_id += 1
        ids = dict(consumer=self.name, group=self.group_id, id=self.commit_id)
        self.history.record("commit", **ids,
                            offsets=sorted([tp.partition, o] for tp, o in offsets.items()))
        self.stats.add("commits")
        try:
            consumer.commit(offsets)
        except Exception as e:  # noqa: BLE001 - every outcome is recorded
            # Refused (rebalanced, not assigned, an error code): not applied. No answer: unknown.
            definite = isinstance(e, (CommitFailedError, IllegalStateError, KafkaError))
            self.history.record("commit_fail", **ids, error=type(e).__name__,
                                definite=definite)
            self.stats.add("commits_failed")
            return
        self.history.record("commit_ok", **ids)
        self.stats.add("commits_ok")

    def _close(self, consumer: Consumer) -> None:
        try:
            consumer.close()
        except Exception as e:  # noqa: BLE001
            self.error("consumer_close_failed", e)


class Workload:
    """A context manager: exit stops everything it started (stop())."""

    def __init__(self, bootstrap: str, history: History, *, topic: str, partitions: int,
                 producers: int = 2, rate_per_s: float = 300.0, group_consumers: int = 2,
                 standalone_consumers: int = 1, group_id: str = "faults",
                 timeouts: ClientTimeouts | None = None) -> None:
        if partitions < 1 or producers < 0 or group_consumers < 0 or standalone_consumers < 0:
            raise ValueError("partitions must be positive and client counts non-negative")
        if producers and not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        self.bootstrap, self.history, self.topic = bootstrap, history, topic
        self.partitions, self.producers, self.rate_per_s = partitions, producers, rate_per_s
        self.group_id = group_id
        self.timeouts = timeouts or ClientTimeouts()
        self._stats = _Stats()
        self._stop_producing = threading.Event()
        self._stop_consuming = threading.Event()
        self._producers = [_ProducerWorker(i, self) for i in range(producers)]
        self._consumers: list[_ConsumerWorker] = [
            _ConsumerWorker(f"g{i}", self, group_id=group_id) for i in range(group_consumers)]
        self._consumers += [_ConsumerWorker(f"s{i}", self, group_id=None)
                            for i in range(standalone_consumers)]
        self._started = self._stopped = False

    def start(self) -> None:
        """Start every producer and consumer thread (they connect in the background)."""
        if self._started:
            return
        self._started = True
        self.history.record("note", what="workload_start", topic=self.topic,
                            partitions=self.partitions, producers=self.producers,
                            rate_per_s=self.rate_per_s, group_id=self.group_id)
        for worker in (*self._consumers, *self._producers):
            worker.thread.start()

    def stop(self) -> None:
        """Stop producing, wait (bounded) for every record's outcome, then stop the
        consumers. Idempotent. When it returns, every send has an ack or fail recorded,
        unless a thread was stuck past its bound (recorded as a "worker_stuck" note)."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        t = self.timeouts
        self._stop_producing.set()
        _join_all(self._producers, t.max_block_ms / 1000 + 2 * t.close_timeout_s + JOIN_MARGIN_S)
        self._stop_consuming.set()
        _join_all(self._consumers, POLL_MS / 1000 + t.request_timeout_ms / 1000
                  + t.consumer_close_timeout_s + JOIN_MARGIN_S)
        self.history.record("note", what="workload_stop", **self.stats())

    def drain_and_read_all(self, timeout_s: float) -> None:
        """The final reader: a fresh consumer reads every partition from its start to the end
        offset it had when this began, within `timeout_s`; records each read and, per
        partition, a "final_end" note of the end offset and how far it got."""
        _FinalReader(self, timeout_s).run()

    def stats(self) -> dict[str, int]:
        """Counts so far: sent, acked, failed (refused by send()), unknown (failed futures),
        read, commits (commits_ok, commits_failed), errors, clients_replaced."""
        return self._stats.snapshot()

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _join_all(workers: Sequence[_Worker], timeout_s: float) -> None:
    """Join workers that stop in parallel: one deadline for all of them."""
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))


class _FinalReader:
    def __init__(self, w: Workload, timeout_s: float) -> None:
        self.w = w
        self.deadline_s = time.monotonic() + timeout_s
        self.tps = [TopicPartition(w.topic, p) for p in range(w.partitions)]
        self.ends: dict[int, int] = {}
        self.reached: dict[int, int] = {p: 0 for p in range(w.partitions)}
        self.errors = 0

    def remaining_s(self) -> float:
        return self.deadline_s - time.monotonic()

    def run(self) -> None:
        consumer = self._consumer()
        try:
            if consumer is not None:
                self.ends = self._end_offsets(consumer)
            while consumer is not None and self.ends and self._unfinished() \
                    and self.remaining_s() > 0:
                consumer = self._read_some(consumer)
        finally:
            for p in range(self.w.partitions):
                self.w.history.record("note", what="final_end", partition=p,
                                      end=self.ends.get(p, -1), reached=self.reached[p])
            if consumer is not None:
                _close_quietly(consumer, self.w.history)

    def _end_offsets(self, consumer: Consumer) -> dict[int, int]:
        """Each partition's end offset now (retried across leader changes; {} at the
        deadline)."""
        def ask() -> dict[int, int]:
            return {tp.partition: o for tp, o in consumer.end_offsets(self.tps).items()}

        return self._retry(ask) or {}

    def _unfinished(self) -> list[int]:
        return [p for p, end in self.ends.items() if self.reached[p] < end]

    def _consumer(self) -> Consumer | None:
        """A fresh consumer reading every partition from where the final read got to."""
        while self.remaining_s() > 0:
            try:
                consumer = Consumer(bootstrap_servers=self.w.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    request_timeout_ms=self.w.timeouts.request_timeout_ms,
                                    fetch_max_wait_ms=POLL_MS, client_id="faults-final")
                consumer.assign(self.tps)
                for tp in self.tps:
                    consumer.seek(tp, self.reached[tp.partition])
            except (ClientError, KafkaError, IllegalStateError) as e:
                self._error(e)
                continue
            self.w.history.record("note", what="assign", consumer=FINAL_READER,
                                  partitions=None, reason="final read",
                                  start={str(p): o for p, o in self.reached.items()})
            return consumer
        return None

    def _retry(self, fn: Callable[[], Any]) -> Any:
        while self.remaining_s() > 0:
            try:
                return fn()
            except (ClientError, KafkaError) as e:
                self._error(e)
        return None

    def _error(self, e: BaseException) -> None:
        self.errors += 1
        self.w.history.record("note", what="final_read_error", **_error_fields(e))
        time.sleep(min(ERROR_PAUSE_S, max(0.0, self.remaining_s())))

    def _read_some(self, consumer: Consumer) -> Consumer | None:
        """One poll; positions too, since control batches may end a partition's log."""
        try:
            batch = consumer.poll(timeout_ms=int(min(POLL_MS, self.remaining_s() * 1000)))
            for tp, records in batch.items():
                for r in records:
                    self.w.history.record("read", consumer=FINAL_READER, partition=r.partition,
                                          offset=r.offset, value=to_text(r.value))
                if records:
                    self.reached[tp.partition] = max(self.reached[tp.partition],
                                                     records[-1].offset + 1)
            for p in self._unfinished():
                self.reached[p] = max(self.reached[p],
                                      consumer.position(TopicPartition(self.w.topic, p)))
            self.errors = 0
            return consumer
        except Exception as e:  # noqa: BLE001 - recorded and retried
            self._error(e)
        if self.errors < ERRORS_BEFORE_NEW_CLIENT:
            return consumer
        _close_quietly(consumer, self.w.history)
        self.errors = 0
        return self._consumer()


def _close_quietly(consumer: Consumer, history: History) -> None:
    try:
        consumer.close()
    except Exception as e:  # noqa: BLE001
        history.record("note", what="consumer_close_failed", **_error_fields(e))
