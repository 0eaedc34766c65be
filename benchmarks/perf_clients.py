"""Producer processes of `raftlog bench` that go through a client library (`--client`).

- `raftlog`: the project's `producer.AsyncProducer` (batching by linger and batch size,
  idempotence with acks=all, its own retries);
- `kafka-python`: kafka-python's `KafkaProducer` with the same settings, for comparing clients.

Unlike perf_load's `raw` producer (pre-built batches through ClusterClient, which measures the
brokers without client cost), these measure what an application would see, client included.
The workload is the same: record k goes to the worker's partitions in turn, is due at
t0 + k / rate (or when a slot frees up, at max rate), carries its due time in its first 8 bytes,
and its publish latency runs from its due time to its acknowledgement. At most
`outstanding_max(spec)` records are unacknowledged at once (the NATS peer's window too).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import os
import threading
import time
from typing import Any, cast

from benchmarks.peer_nats import outstanding_max
from producer.config import Acks
from benchmarks.perf_load import HEADER_BYTES, STAMP, Reporter, WorkerSpec, count_records, guarded

__all__ = ["CLIENTS", "library_producer_main", "kafka_python_producer_main"]

CLIENTS = ("raftlog", "kafka-python", "raw")
REQUEST_TIMEOUT_MS = 30_000
FLUSH_GRACE_S = 30.0  # after the deadline, for the records already sent to be answered
SLOT_POLL_S = 0.1
KAFKA_PYTHON_INFLIGHT_MAX = 5  # kafka-python's limit with idempotence


class _Workload:
    """Record k's partition, due time and value (shared by both clients)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.padding = os.urandom(max(0, spec.record_bytes - HEADER_BYTES))
        self.wall_offset_s = time.time() - time.monotonic()
        self.deadline_mono = time.monotonic() + (spec.deadline_wall_s - time.time())
        self.t0_mono = 0.0

    def start(self) -> None:
        self.t0_mono = time.monotonic()

    def due(self, k: int) -> float:
        rate = self.spec.rate_per_s
        return self.t0_mono + k / rate if rate > 0 else time.monotonic()

    def partition(self, k: int) -> int:
        return self.spec.partitions[k % len(self.spec.partitions)]

    def value(self, due_mono: float) -> bytes:
        return STAMP.pack(int((due_mono + self.wall_offset_s) * 1e9)) + self.padding

    def timestamp_ms(self, due_mono: float) -> int:
        return int((due_mono + self.wall_offset_s) * 1000)


def _acknowledged(reporter: Reporter, nbytes: int, due_mono: float, ack_mono: float,
                  ack_wall: float, ok: bool) -> None:
    bucket = reporter.timeline.bucket(ack_wall)
    if not ok:
        bucket.errors += 1
        reporter.totals["errors"] += 1
        return
    bucket.latency.record(ack_mono - due_mono)
    bucket.records += 1
    bucket.bytes += nbytes
    count_records(reporter, ack_wall, 1, nbytes)


# ---- raftlog's producer library ---------------------------------------------------------------
async def _produce_library(spec: WorkerSpec, out: Any) -> None:
    from producer import AsyncProducer

    reporter = Reporter(spec, "producer", out)
    work = _Workload(spec)
    slots = asyncio.Semaphore(outstanding_max(spec))

    def done(due_mono: float, fut: asyncio.Future[Any]) -> None:
        slots.release()
        ok = not fut.cancelled() and fut.exception() is None
        _acknowledged(reporter, spec.record_bytes, due_mono, time.monotonic(), time.time(), ok)

    producer = AsyncProducer(
        spec.bootstrap, acks=cast(Acks, spec.acks), linger_ms=spec.linger_ms,
        batch_size=spec.batch_bytes_max, compression_type=spec.compression,
        enable_idempotence=spec.acks == -1, request_timeout_ms=REQUEST_TIMEOUT_MS,
        buffer_memory=max(32 << 20, 2 * outstanding_max(spec) * spec.record_bytes))
    async with producer:
        await producer.partitions_for(spec.topic)
        await asyncio.sleep(max(0.0, spec.start_wall_s - time.time()))
        ticker = asyncio.create_task(reporter.run())
        try:
            work.start()
            for k in range(spec.records):
                due = work.due(k)
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                if time.monotonic() >= work.deadline_mono:
                    break
                await slots.acquire()
                due = work.due(k)  # at max rate, a record is due when its slot frees up
                fut = await producer.send(spec.topic, value=work.value(due),
                                          partition=work.partition(k),
                                          timestamp_ms=work.timestamp_ms(due))
                fut.add_done_callback(functools.partial(done, due))
            remaining_s = work.deadline_mono - time.monotonic() + FLUSH_GRACE_S
            await producer.flush(timeout_ms=int(max(1.0, remaining_s) * 1000))
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    reporter.ship("done")


def library_producer_main(spec: WorkerSpec, out: Any) -> None:
    guarded("producer", spec, out, _produce_library(spec, out))


# ---- kafka-python -----------------------------------------------------------------------------
def _kafka_python_producer(spec: WorkerSpec) -> Any:
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    return KafkaProducer(
        bootstrap_servers=spec.bootstrap.split(","), acks="all" if spec.acks == -1 else spec.acks,
        linger_ms=spec.linger_ms, batch_size=spec.batch_bytes_max,
        compression_type=None if spec.compression == "none" else spec.compression,
        enable_idempotence=spec.acks == -1, request_timeout_ms=REQUEST_TIMEOUT_MS,
        max_in_flight_requests_per_connection=min(spec.inflight_max, KAFKA_PYTHON_INFLIGHT_MAX),
        max_block_ms=60_000, metadata_max_age_ms=5_000)


class _KafkaPythonRun:
    """kafka-python answers on its own I/O thread: its callbacks only append to a deque and
    free a slot; this thread moves the answers into the reporter's timeline."""

    def __init__(self, spec: WorkerSpec, out: Any) -> None:
        self.spec, self.reporter, self.work = spec, Reporter(spec, "producer", out), _Workload(spec)
        self.slots = threading.BoundedSemaphore(outstanding_max(spec))
        self.answers: collections.deque[tuple[float, float, float, bool]] = collections.deque()
        self.next_ship_s = 0.0

    def answered(self, due_mono: float, ok: bool, _value: Any) -> None:
        self.answers.append((due_mono, time.monotonic(), time.time(), ok))
        self.slots.release()

    def collect(self) -> None:
        while self.answers:
            due, ack_mono, ack_wall, ok = self.answers.popleft()
            _acknowledged(self.reporter, self.spec.record_bytes, due, ack_mono, ack_wall, ok)
        if time.monotonic() >= self.next_ship_s:
            self.reporter.ship()
            self.next_ship_s = time.monotonic() + 1.0

    def acquire(self) -> bool:
        while not self.slots.acquire(timeout=SLOT_POLL_S):
            self.collect()
            if time.monotonic() >= self.work.deadline_mono:
                return False
        return True

    def run(self, producer: Any) -> None:
        spec, work = self.spec, self.work
        producer.partitions_for(spec.topic)
        time.sleep(max(0.0, spec.start_wall_s - time.time()))
        work.start()
        for k in range(spec.records):
            due = work.due(k)
            while due > time.monotonic():
                self.collect()
                time.sleep(min(SLOT_POLL_S, max(0.0, due - time.monotonic())))
            if time.monotonic() >= work.deadline_mono or not self.acquire():
                break
            due = work.due(k)
            fut = producer.send(spec.topic, value=work.value(due), partition=work.partition(k),
                                timestamp_ms=work.timestamp_ms(due))
            fut.add_callback(self.answered, due, True)
            fut.add_errback(self.answered, due, False)
            if k % 256 == 0:
                self.collect()
        producer.flush(timeout=max(1.0, work.deadline_mono - time.monotonic() + FLUSH_GRACE_S))
        self.collect()


def _kafka_python(spec: WorkerSpec, out: Any) -> None:
    run = _KafkaPythonRun(spec, out)
    producer = _kafka_python_producer(spec)
    try:
        run.run(producer)
    finally:
        producer.close(timeout=5)
    run.collect()
    run.reporter.ship("done")


def kafka_python_producer_main(spec: WorkerSpec, out: Any) -> None:
    try:
        _kafka_python(spec, out)
    except Exception as e:  # reported to the parent, which prints it as one line
        out.put(("error", "producer", spec.worker_id, f"{type(e).__name__}: {e}", None),
                timeout=5.0)
