"""The load processes of `raftlog bench`: producers and consumers, one asyncio loop each.

The `raw` producer (`--client raw`; perf_clients has the library ones) writes Kafka Produce
requests through `broker.client.ClusterClient` (it measures the brokers, not a batching policy):
per partition, up to `inflight` batches outstanding, each batch holding the records that are
due. With a target rate, record k of a partition is due at t0 + k / rate and its publish latency
runs from that due time to its acknowledgement, so a cluster that falls behind shows the
queueing it causes (no coordinated omission). At max rate a record is created when a batch
slot frees up.

Every value starts with its due time (wall clock, ns, 8 bytes big-endian), which consumers
subtract from their receive time for the end-to-end latency (same machine, same clock).

Workers report to the parent through a bounded multiprocessing queue: per-second deltas about
once a second, then one final summary. Every loop is bounded by the run's deadline.
"""

from __future__ import annotations

import asyncio
import os
import queue
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.client import ClientError, ClusterClient
from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey
from broker.wire.records import Record, decode_batches, encode_batch
from benchmarks.perf_stats import Timeline

__all__ = ["WorkerSpec", "Reporter", "count_records", "producer_main", "consumer_main", "HEADER_BYTES",
           "RECORD_OVERHEAD_BYTES", "STAMP", "guarded"]

HEADER_BYTES = 8
RECORD_OVERHEAD_BYTES = 20  # a record's framing inside a batch, roughly (for batch sizing)
REPORT_INTERVAL_S = 1.0
RETRY_BACKOFF_S = 0.05
PUT_TIMEOUT_S = 5.0
FETCH_MAX_WAIT_MS = 100
PARTITION_FETCH_BYTES_MAX = 1 << 20
STAMP = struct.Struct(">q")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    worker_id: int
    bootstrap: str
    topic: str
    partitions: tuple[int, ...]
    records: int  # producer: records to write across its partitions; consumer: unused
    rate_per_s: float  # producer: target records/s across its partitions; 0 = as fast as possible
    record_bytes: int
    batch_bytes_max: int
    acks: int
    inflight_max: int
    compression: str
    start_wall_s: float
    deadline_wall_s: float
    timeline_seconds_max: int
    linger_ms: int = 5  # the client libraries' (perf_clients); the raw producer does not wait


class Reporter:
    """Ships timeline deltas to the parent about once a second."""

    def __init__(self, spec: WorkerSpec, role: str, out: Any) -> None:
        self.spec, self.role, self.out = spec, role, out
        self.timeline = Timeline(start_wall_s=spec.start_wall_s,
                                 seconds_max=spec.timeline_seconds_max)
        self.totals: dict[str, Any] = {"records": 0, "bytes": 0, "errors": 0,
                                       "first_wall_s": None, "last_wall_s": None}

    def ship(self, kind: str = "tick") -> None:
        deltas = {s: b.to_dict() for s, b in self.timeline.drain().items()}
        self.out.put((kind, self.role, self.spec.worker_id, deltas, dict(self.totals)),
                     timeout=PUT_TIMEOUT_S)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self.ship()


def count_records(reporter: Reporter, wall_s: float, records: int, nbytes: int) -> None:
    t = reporter.totals
    t["records"] += records
    t["bytes"] += nbytes
    if t["first_wall_s"] is None:
        t["first_wall_s"] = wall_s
    t["last_wall_s"] = wall_s


# ---- producer --------------------------------------------------------------------------------
class _PartitionProducer:
    def __init__(self, spec: WorkerSpec, cluster: ClusterClient, reporter: Reporter,
                 partition: int, count: int, rate_per_s: float, t0_mono: float) -> None:
        self.spec, self.cluster, self.reporter = spec, cluster, reporter
        self.partition, self.count, self.rate_per_s, self.t0_mono = partition, count, rate_per_s, t0_mono
        self.padding = os.urandom(max(0, spec.record_bytes - HEADER_BYTES))
        self.per_batch = max(1, spec.batch_bytes_max // (spec.record_bytes + RECORD_OVERHEAD_BYTES))
        self.deadline_mono = time.monotonic() + (spec.deadline_wall_s - time.time())
        self.wall_offset_s = time.time() - time.monotonic()

    def _due_times(self, next_k: int) -> list[float]:
        now = time.monotonic()
        if self.rate_per_s <= 0:
            return [now] * min(self.per_batch, self.count - next_k)
        due_k = min(self.count, int((now - self.t0_mono) * self.rate_per_s) + 1)
        n = min(self.per_batch, due_k - next_k)
        return [self.t0_mono + k / self.rate_per_s for k in range(next_k, next_k + n)]

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.spec.inflight_max)
        pending: set[asyncio.Task[None]] = set()
        next_k = 0
        while next_k < self.count and time.monotonic() < self.deadline_mono:
            await slots.acquire()
            due = self._due_times(next_k)
            if not due:
                slots.release()
                wait_s = self.t0_mono + next_k / self.rate_per_s - time.monotonic()
                await asyncio.sleep(min(max(wait_s, 0.0005), 0.1))
                continue
            next_k += len(due)
            task = asyncio.create_task(self._send(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            task.add_done_callback(lambda _t: slots.release())
        if pending:
            await asyncio.wait(pending)

    def _encode(self, due: list[float]) -> bytes:
        records = []
        for d in due:
            wall_s = d + self.wall_offset_s
            records.append(Record(key=None, value=STAMP.pack(int(wall_s * 1e9)) + self.padding,
                                  headers=[], timestamp_ms=int(wall_s * 1000)))
        return encode_batch(records, compression=self.spec.compression)

    async def _send(self, due: list[float]) -> None:
        batch = self._encode(due)
        request = {"transactional_id": None, "acks": self.spec.acks, "timeout_ms": 30_000,
                   "topic_data": [{"name": self.spec.topic, "partition_data": [
                       {"index": self.partition, "records": batch}]}]}
        while time.monotonic() < self.deadline_mono:
            if await self._attempt(request):
                self._acknowledged(due)
                return
            self.reporter.timeline.bucket(time.time()).errors += 1
            self.reporter.totals["errors"] += 1
            await asyncio.sleep(RETRY_BACKOFF_S)

    async def _attempt(self, request: dict[str, Any]) -> bool:
        leader = self.cluster.leader_for(self.spec.topic, self.partition)
        if leader is None or leader < 0:
            self.cluster.request_metadata_update()
            return False
        try:
            response = await self.cluster.send(leader, request, api_key=ApiKey.PRODUCE,
                                               expect_response=self.spec.acks != 0)
        except ClientError:
            return False
        if self.spec.acks == 0:
            return True
        code = response.responses[0].partition_responses[0].error_code
        if code != ErrorCode.NONE:
            self.cluster.request_metadata_update()
            return False
        return True

    def _acknowledged(self, due: list[float]) -> None:
        now_mono, now_wall = time.monotonic(), time.time()
        bucket = self.reporter.timeline.bucket(now_wall)
        if due[0] == due[-1]:
            bucket.latency.record(now_mono - due[0], times=len(due))
        else:
            for d in due:
                bucket.latency.record(now_mono - d)
        nbytes = len(due) * self.spec.record_bytes
        bucket.records += len(due)
        bucket.bytes += nbytes
        count_records(self.reporter, now_wall, len(due), nbytes)


async def _produce(spec: WorkerSpec, out: Any) -> None:
    reporter = Reporter(spec, "producer", out)
    async with ClusterClient(spec.bootstrap) as cluster:
        await cluster.wait_for_topic(spec.topic, timeout_ms=30_000)
        await asyncio.sleep(max(0.0, spec.start_wall_s - time.time()))
        t0 = time.monotonic()
        n = len(spec.partitions)
        shares = [spec.records // n + (1 if i < spec.records % n else 0) for i in range(n)]
        senders = [_PartitionProducer(spec, cluster, reporter, p, shares[i],
                                      spec.rate_per_s / n, t0)
                   for i, p in enumerate(spec.partitions)]
        ticker = asyncio.create_task(reporter.run())
        try:
            await asyncio.gather(*(s.run() for s in senders))
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    reporter.ship("done")


# ---- consumer --------------------------------------------------------------------------------
class _Consumer:
    def __init__(self, spec: WorkerSpec, cluster: ClusterClient, reporter: Reporter,
                 draining: Callable[[], bool]) -> None:
        self.spec, self.cluster, self.reporter, self.draining = spec, cluster, reporter, draining
        self.offsets = {p: 0 for p in spec.partitions}
        self.high_watermarks = {p: -1 for p in spec.partitions}

    def caught_up(self) -> bool:
        return all(self.offsets[p] >= self.high_watermarks[p] >= 0 for p in self.offsets)

    async def run(self) -> None:
        # High watermarks seen before the producers finished may be stale: only a fetch round
        # begun after the drain signal can tell that everything has been read.
        drain_seen = False
        while time.time() < self.spec.deadline_wall_s:
            if drain_seen and self.caught_up():
                return
            drain_seen = self.draining()
            by_leader: dict[int, list[int]] = {}
            for p in self.offsets:
                leader = self.cluster.leader_for(self.spec.topic, p)
                if leader is not None and leader >= 0:
                    by_leader.setdefault(leader, []).append(p)
            if not by_leader:
                self.cluster.request_metadata_update()
                await asyncio.sleep(RETRY_BACKOFF_S)
                continue
            await asyncio.gather(*(self._fetch(leader, ps) for leader, ps in by_leader.items()))

    async def _fetch(self, leader: int, partitions: list[int]) -> None:
        request = {"replica_id": -1, "max_wait_ms": FETCH_MAX_WAIT_MS, "min_bytes": 1,
                   "max_bytes": 8 << 20, "isolation_level": 1,
                   "topics": [{"topic": self.spec.topic, "partitions": [
                       {"partition": p, "fetch_offset": self.offsets[p],
                        "partition_max_bytes": PARTITION_FETCH_BYTES_MAX} for p in partitions]}]}
        try:
            response = await self.cluster.send(leader, request, api_key=ApiKey.FETCH,
                                               timeout_ms=10_000)
        except ClientError:
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        for topic in response.responses:
            for data in topic.partitions:
                self._take(data)

    def _take(self, data: Any) -> None:
        p = data.partition_index
        if data.error_code != ErrorCode.NONE:
            self.cluster.request_metadata_update()
            return
        self.high_watermarks[p] = data.high_watermark
        now_wall = time.time()
        bucket = self.reporter.timeline.bucket(now_wall)
        count = nbytes = 0
        for batch in decode_batches(bytes(data.records or b"")):
            for r in batch.records:
                if r.offset < self.offsets[p]:
                    continue
                value = r.value or b""
                if len(value) >= HEADER_BYTES:
                    sent_wall_s = STAMP.unpack_from(value)[0] / 1e9
                    bucket.latency.record(max(0.0, now_wall - sent_wall_s))
                count += 1
                nbytes += len(value)
                self.offsets[p] = r.offset + 1
        if count:
            bucket.records += count
            bucket.bytes += nbytes
            count_records(self.reporter, now_wall, count, nbytes)


async def _consume(spec: WorkerSpec, out: Any, control: Any) -> None:
    reporter = Reporter(spec, "consumer", out)
    state = {"draining": False}

    def draining() -> bool:
        if not state["draining"]:
            try:
                state["draining"] = control.get_nowait() == "drain"
            except queue.Empty:
                pass
        return state["draining"]

    async with ClusterClient(spec.bootstrap) as cluster:
        await cluster.wait_for_topic(spec.topic, timeout_ms=30_000)
        ticker = asyncio.create_task(reporter.run())
        try:
            await _Consumer(spec, cluster, reporter, draining).run()
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
    reporter.ship("done")


def guarded(role: str, spec: WorkerSpec, out: Any, body: Any) -> None:
    try:
        asyncio.run(body)
    except Exception as e:  # reported to the parent, which prints it as one line
        out.put(("error", role, spec.worker_id, f"{type(e).__name__}: {e}", None),
                timeout=PUT_TIMEOUT_S)


def producer_main(spec: WorkerSpec, out: Any) -> None:
    guarded("producer", spec, out, _produce(spec, out))


def consumer_main(spec: WorkerSpec, out: Any, control: Any) -> None:
    guarded("consumer", spec, out, _consume(spec, out, control))
