"""Broker produce throughput with acks=all: pre-built RecordBatches, many in flight.

This measures the brokers, not a client library: batches are encoded once, then sent as Kafka
Produce requests (acks=-1: committed by a Raft quorum and fsynced) to each partition's leader,
`--inflight` requests outstanding per partition, for `--seconds`. It starts its own local
3-broker cluster unless `--bootstrap` is given.

    python -m benchmarks.broker_bench [--partitions 6] [--record-bytes 1024]
                                      [--batch-bytes 65536] [--seconds 10] [--inflight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from broker.client import AsyncAdminClient, ClusterClient, KafkaError
from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey
from broker.wire.records import Record, encode_batch


def _batch(record_bytes: int, batch_bytes: int) -> tuple[bytes, int]:
    count = max(1, batch_bytes // (record_bytes + 20))
    value = os.urandom(record_bytes)
    now_ms = int(time.time() * 1000)
    records = [Record(key=None, value=value, headers=[], timestamp_ms=now_ms)] * count
    return encode_batch(records, compression="none"), count


async def _partition_load(cluster: ClusterClient, topic: str, partition: int, batch: bytes,
                          inflight: int, deadline: float, latencies: list[float],
                          counts: list[int]) -> None:
    request = {"transactional_id": None, "acks": -1, "timeout_ms": 30_000,
               "topic_data": [{"name": topic, "partition_data": [{"index": partition,
                                                                  "records": batch}]}]}

    async def worker() -> None:
        while time.monotonic() < deadline:
            leader = cluster.leader_for(topic, partition)
            if leader is None or leader < 0:
                await cluster.refresh_metadata([topic])
                await asyncio.sleep(0.05)
                continue
            started = time.monotonic()
            response = await cluster.send(leader, request, api_key=ApiKey.PRODUCE)
            code = response.responses[0].partition_responses[0].error_code
            if code == ErrorCode.NONE:
                latencies.append(time.monotonic() - started)
                counts[0] += 1
            else:
                counts[1] += 1
                cluster.request_metadata_update()
                await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(inflight)))


async def run(bootstrap: str, args: argparse.Namespace) -> None:
    topic = f"bench-{int(time.time())}"
    async with AsyncAdminClient(bootstrap_servers=bootstrap) as admin:
        await admin.create_topic(topic, partitions=args.partitions, replication_factor=3)
    batch, per_batch = _batch(args.record_bytes, args.batch_bytes)
    async with ClusterClient(bootstrap) as cluster:
        await cluster.wait_for_topic(topic, timeout_ms=30_000)
        latencies: list[float] = []
        counts = [0, 0]
        started = time.monotonic()
        deadline = started + args.seconds
        await asyncio.gather(*(
            _partition_load(cluster, topic, p, batch, args.inflight, deadline, latencies, counts)
            for p in range(args.partitions)))
        elapsed = time.monotonic() - started
    batches = counts[0]
    latencies.sort()
    mb = batches * len(batch) / elapsed / 1e6
    print(f"partitions {args.partitions}, record {args.record_bytes} B, batch {len(batch)} B "
          f"({per_batch} records), {args.inflight} in flight per partition, acks=all")
    print(f"  {batches / elapsed:,.0f} batches/s  {batches * per_batch / elapsed:,.0f} records/s  "
          f"{mb:,.1f} MB/s  errors {counts[1]}")
    if latencies:
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"  batch latency p50 {p50:.1f} ms  p99 {p99:.1f} ms")


def _free_base_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1]) % 20000 + 30000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--batch-bytes", type=int, default=65536)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inflight", type=int, default=8)
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(run(args.bootstrap, args))
        return
    from broker.dev import DevCluster

    with tempfile.TemporaryDirectory(prefix="raftlog-bench-") as root:
        cluster = DevCluster(brokers=3, data_dir=Path(root), base_port=_free_base_port())
        cluster.start()
        try:
            cluster.wait_ready()
            asyncio.run(run(cluster.bootstrap, args))
        except KafkaError as e:
            raise SystemExit(f"broker_bench: {e}") from None
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
