"""`raftlog dev --demo`: a short produce/consume round trip against a running cluster.

Creates topic `demo` (3 partitions, replication factor 3), writes one batch of records to each
partition with acks=all (committed by a Raft quorum and fsynced), reads everything back from
the partition leaders, checks it, and prints what happened.
"""

from __future__ import annotations

import asyncio
import sys
import time

from broker.client import AsyncAdminClient, ClusterClient, KafkaError, check_error
from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey
from broker.wire.records import Record, decode_batches, encode_batch

__all__ = ["run_demo"]

TOPIC = "demo"
PARTITIONS = 3
RECORDS_PER_PARTITION = 100


def run_demo(bootstrap: str) -> int:
    try:
        return asyncio.run(_demo(bootstrap))
    except (KafkaError, OSError, RuntimeError) as e:
        print(f"raftlog demo: {e}", file=sys.stderr)
        return 1


async def _demo(bootstrap: str) -> int:
    async with AsyncAdminClient(bootstrap_servers=bootstrap) as admin:
        try:
            await admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3)
            print(f"created topic {TOPIC!r}: {PARTITIONS} partitions, replication factor 3")
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
            print(f"topic {TOPIC!r} exists already; appending to it")
        description = await admin.describe_topic(TOPIC)
        for p in description.partitions:
            print(f"  partition {p.partition}: leader {p.leader}, replicas {list(p.replicas)}")
    async with ClusterClient(bootstrap) as cluster:
        await cluster.wait_for_topic(TOPIC, timeout_ms=30_000)
        started = time.monotonic()
        written = {}
        for partition in range(PARTITIONS):
            written[partition] = await _produce(cluster, partition)
        elapsed_ms = (time.monotonic() - started) * 1000
        print(f"wrote {PARTITIONS * RECORDS_PER_PARTITION} records with acks=all in "
              f"{elapsed_ms:.0f} ms")
        for partition in range(PARTITIONS):
            base = written[partition]
            records = await _fetch(cluster, partition, base)
            values = [r.value for r in records[:RECORDS_PER_PARTITION]]
            expected = [f"record {partition}-{i}".encode() for i in range(RECORDS_PER_PARTITION)]
            if values != expected:
                print(f"partition {partition}: read back something else than was written",
                      file=sys.stderr)
                return 1
            print(f"  partition {partition}: offsets {base}..{base + len(values) - 1} read back "
                  f"from the leader, first value {values[0].decode()!r}")
    print("demo finished: every acknowledged record was read back at its offset")
    return 0


async def _produce(cluster: ClusterClient, partition: int) -> int:
    now_ms = int(time.time() * 1000)
    batch = encode_batch([Record(key=None, value=f"record {partition}-{i}".encode(), headers=[],
                                 timestamp_ms=now_ms) for i in range(RECORDS_PER_PARTITION)],
                         compression="lz4")
    request = {"transactional_id": None, "acks": -1, "timeout_ms": 10_000,
               "topic_data": [{"name": TOPIC, "partition_data": [{"index": partition,
                                                                  "records": batch}]}]}
    for _attempt in range(50):
        leader = cluster.leader_for(TOPIC, partition)
        if leader is not None and leader >= 0:
            response = await cluster.send(leader, request, api_key=ApiKey.PRODUCE)
            part = response.responses[0].partition_responses[0]
            if part.error_code == ErrorCode.NONE:
                return int(part.base_offset)
            if part.error_code not in (ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                       ErrorCode.LEADER_NOT_AVAILABLE):
                check_error(part.error_code, part.error_message)
        await cluster.refresh_metadata([TOPIC])
        await asyncio.sleep(0.1)
    raise RuntimeError(f"partition {partition} has no leader")


async def _fetch(cluster: ClusterClient, partition: int, offset: int) -> list[Record]:
    leader = cluster.leader_for(TOPIC, partition)
    request = {"replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "max_bytes": 1 << 20,
               "isolation_level": 1,
               "topics": [{"topic": TOPIC, "partitions": [{"partition": partition,
                                                           "fetch_offset": offset,
                                                           "partition_max_bytes": 1 << 20}]}]}
    response = await cluster.send(leader, request, api_key=ApiKey.FETCH, timeout_ms=10_000)
    data = response.responses[0].partitions[0]
    check_error(data.error_code)
    records: list[Record] = []
    for batch in decode_batches(bytes(data.records or b"")):
        records.extend(r for r in batch.records if r.offset >= offset)
    return records
