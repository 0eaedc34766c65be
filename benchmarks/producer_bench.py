"""Producer throughput with acks=all, through the project's own producer library.

For each record size (default 1 KiB and 100 B) and each facade (AsyncProducer awaited in a
loop, and the blocking Producer called from the main thread), it sends keyless records (sticky
partitioning) for `--seconds`, flushes, and prints records/s, MB/s of record values, the
producer's own CPU time per record (process CPU time, which excludes the brokers: they are
other processes) and the send-to-acknowledgement latency of every 100th record. Values are
random capital letters, as Kafka's kafka-producer-perf-test makes them, so lz4 has something
to do. It starts its own local 3-broker cluster unless `--bootstrap` is given.

    python -m benchmarks.producer_bench [--bootstrap H:P] [--sizes 1024,100] [--seconds 8]
        [--partitions 3] [--modes async,sync] [--compression lz4] [--linger-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.client import AdminClient
from producer import AsyncProducer, Producer, RecordMetadata

SAMPLE_EVERY = 100  # records between latency samples
VALUES = 64  # distinct values per run, so making them costs nothing while sending


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    mode: str
    record_bytes: int
    records: int
    failed: int
    elapsed_s: float
    cpu_s: float
    latencies_ms: list[float]
    records_per_batch: float

    def line(self) -> str:
        rate = self.records / self.elapsed_s
        mb = rate * self.record_bytes / 1e6
        cpu_us = self.cpu_s / max(1, self.records) * 1e6
        lat = sorted(self.latencies_ms)
        p50 = lat[len(lat) // 2] if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        return (f"{self.mode:5} {self.record_bytes:5} B: {rate:9,.0f} records/s "
                f"{mb:7.1f} MB/s  client CPU {cpu_us:5.1f} us/record "
                f"({self.cpu_s / self.elapsed_s * 100:3.0f}% of a core)  "
                f"latency p50 {p50:.1f} ms p99 {p99:.1f} ms  "
                f"{self.records_per_batch:.0f} records/batch  failed {self.failed}")


def _values(record_bytes: int) -> list[bytes]:
    rng = random.Random(record_bytes)
    return [bytes(rng.choices(range(65, 91), k=record_bytes)) for _ in range(VALUES)]


def _per_batch(metrics: dict[str, int]) -> float:
    return metrics["records_sent_total"] / max(1, metrics["batches_sent_total"])


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"acks": "all", "linger_ms": args.linger_ms, "batch_size": args.batch_size,
            "compression_type": args.compression, "client_id": "producer-bench"}


async def _run_async(bootstrap: str, topic: str, record_bytes: int,
                     args: argparse.Namespace) -> Result:
    values = _values(record_bytes)
    latencies: list[float] = []
    failed = [0]
    async with AsyncProducer(bootstrap, **_options(args)) as producer:
        loop = asyncio.get_running_loop()

        def sampled(sent_s: float) -> Any:
            def done(f: asyncio.Future[RecordMetadata]) -> None:
                if f.cancelled() or f.exception() is not None:
                    failed[0] += 1
                else:
                    latencies.append((loop.time() - sent_s) * 1000)
            return done

        count = 0
        cpu0, t0 = time.process_time(), time.monotonic()
        deadline = t0 + args.seconds
        last: asyncio.Future[RecordMetadata] | None = None
        while time.monotonic() < deadline:
            for _ in range(SAMPLE_EVERY):
                last = await producer.send(topic, values[count % VALUES])
                count += 1
            assert last is not None
            last.add_done_callback(sampled(loop.time()))
        await producer.flush()
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        per_batch = _per_batch(producer.metrics())
    return Result(mode="async", record_bytes=record_bytes, records=count, failed=failed[0],
                  elapsed_s=elapsed, cpu_s=cpu, latencies_ms=latencies,
                  records_per_batch=per_batch)


def _run_sync(bootstrap: str, topic: str, record_bytes: int, args: argparse.Namespace) -> Result:
    values = _values(record_bytes)
    latencies: list[float] = []
    failed = [0]
    with Producer(bootstrap, **_options(args)) as producer:
        def sampled(sent_s: float) -> Any:
            def done(f: Any) -> None:
                if f.failed():
                    failed[0] += 1
                else:
                    latencies.append((time.monotonic() - sent_s) * 1000)
            return done

        count = 0
        cpu0, t0 = time.process_time(), time.monotonic()
        deadline = t0 + args.seconds
        while time.monotonic() < deadline:
            for _ in range(SAMPLE_EVERY):
                future = producer.send(topic, values[count % VALUES])
                count += 1
            future.add_done_callback(sampled(time.monotonic()))
        producer.flush()
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        per_batch = _per_batch(producer.metrics())
    return Result(mode="sync", record_bytes=record_bytes, records=count, failed=failed[0],
                  elapsed_s=elapsed, cpu_s=cpu, latencies_ms=latencies,
                  records_per_batch=per_batch)


def run(bootstrap: str, args: argparse.Namespace) -> list[Result]:
    results = []
    with AdminClient(bootstrap_servers=bootstrap) as admin:
        for size in args.sizes:
            for mode in args.modes:
                topic = f"producer-bench-{mode}-{size}-{int(time.time() * 1000)}"
                admin.create_topic(topic, partitions=args.partitions, replication_factor=3)
                if mode == "async":
                    result = asyncio.run(_run_async(bootstrap, topic, size, args))
                else:
                    result = _run_sync(bootstrap, topic, size, args)
                print(result.line(), flush=True)
                results.append(result)
    return results


def _free_base_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1]) % 20000 + 30000


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--sizes", type=_csv_ints, default=[1024, 100])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--modes", type=lambda t: t.split(","), default=["async", "sync"])
    parser.add_argument("--compression", default="lz4")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=65536)
    args = parser.parse_args()
    print(f"acks=all, {args.partitions} partitions (R3), keyless (sticky), "
          f"{args.compression}, linger {args.linger_ms} ms, batch {args.batch_size} B, "
          f"{args.seconds:g} s per run", flush=True)
    if args.bootstrap:
        run(args.bootstrap, args)
        return
    from broker.dev import DevCluster

    with tempfile.TemporaryDirectory(prefix="raftlog-producer-bench-") as root:
        for attempt in range(1, 4):  # a picked port may be taken meanwhile: pick again
            cluster = DevCluster(brokers=3, data_dir=Path(root) / str(attempt),
                                 base_port=_free_base_port())
            try:
                cluster.start()
                break
            except RuntimeError:
                cluster.stop()
                if attempt == 3:
                    raise
        try:
            cluster.wait_ready()
            run(cluster.bootstrap, args)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
