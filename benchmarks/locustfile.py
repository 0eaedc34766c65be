"""Locust load against raftlog through the project's own clients.

    RAFTLOG_BOOTSTRAP=127.0.0.1:9092 locust -f benchmarks/locustfile.py --headless -u 8 -r 8 -t 60s

`ProducerUser` sends batches of records with `producer.AsyncProducer` (acks=all) and reports
each acknowledged batch as one Locust request ("produce", response length = payload bytes);
`ConsumerUser` reads the topic with Fetch requests through `broker.client.ClusterClient` and
reports each non-empty fetch ("fetch"). Failures are Locust failures.

The asyncio clients run on one native-thread event loop per Locust process (perf_bridge); the
greenlets wait for results by polling, so the gevent hub is never blocked.

Environment: RAFTLOG_BOOTSTRAP (default 127.0.0.1:9092), RAFTLOG_TOPIC (default
"locust", created with RAFTLOG_PARTITIONS partitions, default 6, replication factor 3, when
missing), RAFTLOG_BATCH_RECORDS (default 100), RAFTLOG_RECORD_BYTES (default 1024).
"""

from __future__ import annotations

import os
import time
from typing import Any

from locust import User, constant, events, task

from benchmarks.perf_bridge import AsyncBridge

__all__ = ["ProducerUser", "ConsumerUser"]

BOOTSTRAP = os.environ.get("RAFTLOG_BOOTSTRAP", "127.0.0.1:9092")
TOPIC = os.environ.get("RAFTLOG_TOPIC", "locust")
PARTITIONS = int(os.environ.get("RAFTLOG_PARTITIONS", "6"))
BATCH_RECORDS = int(os.environ.get("RAFTLOG_BATCH_RECORDS", "100"))
RECORD_BYTES = int(os.environ.get("RAFTLOG_RECORD_BYTES", "1024"))
CALL_TIMEOUT_S = 30.0
FETCH_BYTES_MAX = 1 << 20
LEADER_MOVED = frozenset({6, 5, 74})  # NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH


class _Engine:
    """The one bridge of this Locust process, made when the test starts."""

    bridge: AsyncBridge | None = None

    @classmethod
    def get(cls) -> AsyncBridge:
        if cls.bridge is None:
            cls.bridge = AsyncBridge(name="raftlog-locust")
        return cls.bridge


async def _ensure_topic() -> None:
    from broker.client import AsyncAdminClient, ClusterClient, KafkaError
    from broker.wire.errors import ErrorCode

    async with AsyncAdminClient(bootstrap_servers=BOOTSTRAP) as admin:
        try:
            await admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3)
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
    async with ClusterClient(BOOTSTRAP) as cluster:
        await cluster.wait_for_topic(TOPIC, timeout_ms=30_000)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    _Engine.get().call(_ensure_topic, timeout_s=CALL_TIMEOUT_S)


def _fire(request_type: str, started: float, length: int, exception: BaseException | None) -> None:
    events.request.fire(request_type=request_type, name=TOPIC,
                        response_time=(time.perf_counter() - started) * 1000,
                        response_length=length, exception=exception, context={})


class ProducerUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        from producer import AsyncProducer

        self.bridge = _Engine.get()
        self.value = os.urandom(RECORD_BYTES)

        async def start() -> Any:
            p = AsyncProducer(BOOTSTRAP, acks="all", linger_ms=1)
            await p.start()
            return p

        self.producer = self.bridge.call(start, timeout_s=CALL_TIMEOUT_S)

    @task
    def produce_batch(self) -> None:
        producer, value = self.producer, self.value

        async def send_batch() -> None:
            import asyncio

            futures = [await producer.send(TOPIC, value=value) for _ in range(BATCH_RECORDS)]
            await asyncio.gather(*futures)

        started = time.perf_counter()
        try:
            self.bridge.call(send_batch, timeout_s=CALL_TIMEOUT_S)
        except Exception as e:  # reported to Locust as a failure
            _fire("produce", started, 0, e)
        else:
            _fire("produce", started, BATCH_RECORDS * RECORD_BYTES, None)

    def on_stop(self) -> None:
        self.bridge.call(lambda: self.producer.stop(timeout_ms=5000), timeout_s=CALL_TIMEOUT_S)


class ConsumerUser(User):
    wait_time = constant(0)

    def on_start(self) -> None:
        from broker.client import ClusterClient

        self.bridge = _Engine.get()
        self.offsets: dict[int, int] = {}

        async def start() -> Any:
            c = ClusterClient(BOOTSTRAP)
            await c.start()
            topic = await c.wait_for_topic(TOPIC, timeout_ms=30_000)
            self.offsets = {p: 0 for p in sorted(topic.partitions)}
            return c

        self.cluster = self.bridge.call(start, timeout_s=CALL_TIMEOUT_S)

    async def _fetch_once(self) -> int:
        """One Fetch to each partition leader; returns the payload bytes read."""
        import asyncio

        from broker.client import check_error
        from broker.wire.kafka import ApiKey
        from broker.wire.records import decode_batches

        by_leader: dict[int, list[int]] = {}
        for p in self.offsets:
            by_leader.setdefault(self.cluster.leader_for(TOPIC, p) or -1, []).append(p)
        if -1 in by_leader:
            await self.cluster.refresh_metadata([TOPIC])
        requests = [(leader, {"replica_id": -1, "max_wait_ms": 100, "min_bytes": 1,
                              "max_bytes": 8 * FETCH_BYTES_MAX, "isolation_level": 1,
                              "topics": [{"topic": TOPIC, "partitions": [
                                  {"partition": p, "fetch_offset": self.offsets[p],
                                   "partition_max_bytes": FETCH_BYTES_MAX} for p in ps]}]})
                    for leader, ps in by_leader.items() if leader >= 0]
        responses = await asyncio.gather(*(self.cluster.send(leader, body, api_key=ApiKey.FETCH)
                                           for leader, body in requests))
        nbytes = 0
        for response in responses:
            for data in (part for t in response.responses for part in t.partitions):
                if data.error_code in LEADER_MOVED:  # routine: re-route after a refresh
                    self.cluster.request_metadata_update()
                    continue
                check_error(data.error_code)
                for batch in decode_batches(bytes(data.records or b"")):
                    for r in batch.records:
                        if r.offset >= self.offsets[data.partition_index]:
                            nbytes += len(r.value or b"")
                            self.offsets[data.partition_index] = r.offset + 1
        return nbytes

    @task
    def fetch(self) -> None:
        started = time.perf_counter()
        try:
            nbytes = self.bridge.call(self._fetch_once, timeout_s=CALL_TIMEOUT_S)
        except Exception as e:  # reported to Locust as a failure
            _fire("fetch", started, 0, e)
            return
        if nbytes:
            _fire("fetch", started, nbytes, None)

    def on_stop(self) -> None:
        self.bridge.call(self.cluster.close, timeout_s=CALL_TIMEOUT_S)
