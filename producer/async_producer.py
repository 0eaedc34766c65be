"""AsyncProducer: the asyncio producer, and the core the sync Producer runs on its own loop.

    async with AsyncProducer("127.0.0.1:9092") as producer:
        future = await producer.send("orders", value=b"...", key=b"k")   # queued
        metadata = await future                                           # acknowledged
        metadata = await producer.send_and_wait("orders", value=b"...")

Layout, as aiokafka's: the accumulator (batches per partition, memory bound), the sender (one
task, broker I/O, retries), the cluster client (connections, metadata). `send()` checks the
record (TypeError, ValueError, RecordTooLargeError at once), waits up to `max_block_ms` for
the topic's metadata (UnknownTopicError) and for room in `buffer_memory` (BufferFullError),
picks the partition (partitioner.py) and queues the record.

Every background task is owned by the sender or the cluster client; `stop()` sends what is
queued and waits for the answers (bounded by `timeout_ms` if given), fails whatever is left
with ProducerClosedError, then cancels and awaits every task. A producer garbage-collected
while started warns with a ResourceWarning and has its tasks cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import random
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from broker.client import ClientClosedError, ClusterClient
from broker.wire.errors import ErrorCode, KafkaError
from producer.accumulator import Accumulator
from producer.batch import ProducerBatch
from producer.config import Acks, ProducerConfig, Serializer
from producer.errors import (
    BufferFullError,
    KafkaTimeoutError,
    ProducerClosedError,
    UnknownPartitionError,
    UnknownTopicError,
)
from producer.futures import RecordMetadata
from producer.memory import MemoryBudget
from producer.partitioner import partition_for_key
from producer.sender import Sender
from producer.validation import PreparedRecord, prepare_record

__all__ = ["AsyncProducer"]


class _State(enum.Enum):
    NEW = "new"
    STARTED = "started"
    CLOSING = "closing"
    CLOSED = "closed"


class AsyncProducer:
    def __init__(self, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092", *,
                 acks: Acks = "all", linger_ms: int = 5, batch_size: int = 65536,
                 compression_type: str = "lz4", enable_idempotence: bool = True,
                 request_timeout_ms: int = 30000, delivery_timeout_ms: int = 120000,
                 key_serializer: Serializer | None = None,
                 value_serializer: Serializer | None = None, buffer_memory: int = 32 << 20,
                 max_block_ms: int = 60000, max_request_size: int = 1 << 20,
                 retry_backoff_ms: int = 100, metadata_max_age_ms: int = 300000,
                 client_id: str = "raftlog-producer") -> None:
        config = ProducerConfig(
            bootstrap_servers=bootstrap_servers, acks=acks,  # type: ignore[arg-type]
            linger_ms=linger_ms, batch_size=batch_size, compression_type=compression_type,
            enable_idempotence=enable_idempotence, request_timeout_ms=request_timeout_ms,
            delivery_timeout_ms=delivery_timeout_ms, key_serializer=key_serializer,
            value_serializer=value_serializer, buffer_memory=buffer_memory,
            max_block_ms=max_block_ms, max_request_size=max_request_size,
            retry_backoff_ms=retry_backoff_ms, metadata_max_age_ms=metadata_max_age_ms,
            client_id=client_id)
        self._init(config)

    @classmethod
    def from_config(cls, config: ProducerConfig) -> AsyncProducer:
        producer = cls.__new__(cls)
        producer._init(config)
        return producer

    def _init(self, config: ProducerConfig) -> None:
        self.config = config
        self._state = _State.NEW
        self._cluster = ClusterClient(
            config.bootstrap_servers, client_id=config.client_id,
            request_timeout_ms=config.request_timeout_ms,
            metadata_max_age_ms=config.metadata_max_age_ms,
            retry_backoff_ms=config.retry_backoff_ms)
        self._budget = MemoryBudget(config.buffer_memory)
        self._random = random.Random()
        self._accumulator = Accumulator(
            budget=self._budget, batch_size=config.batch_size, linger_ms=config.linger_ms,
            delivery_timeout_ms=config.delivery_timeout_ms,
            retry_backoff_ms=config.retry_backoff_ms, max_request_size=config.max_request_size,
            compression=config.compression, idempotent=config.idempotent,
            draw=self._random.randrange)
        self._sender = Sender(self._cluster, self._accumulator, config)
        self._stopped: asyncio.Future[None] | None = None  # set by the first stop()

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bootstrap from `bootstrap_servers` and start sending. Raises
        NoBrokersAvailableError when no bootstrap server answers."""
        if self._state is _State.STARTED:
            return
        if self._state is not _State.NEW:
            raise ProducerClosedError("the producer is closed")
        await self._cluster.start()
        self._sender.start()
        self._state = _State.STARTED

    async def stop(self, timeout_ms: int | None = None) -> None:
        """Send everything queued and wait for the answers (at most `timeout_ms`), fail what is
        left with ProducerClosedError, and release every resource. Idempotent."""
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            was_started = self._state is _State.STARTED
            self._state = _State.CLOSING
            self._accumulator.close()
            if was_started and not await self._sender.drain_and_stop(
                    None if timeout_ms is None else timeout_ms / 1000):
                self._accumulator.abort(ProducerClosedError(
                    f"the producer was closed before this record was acknowledged "
                    f"(close waited {timeout_ms} ms)"))
            await self._close_now()
        finally:
            self._state = _State.CLOSED
            self._stopped.set_result(None)

    async def _close_now(self) -> None:
        self._accumulator.abort(ProducerClosedError("the producer was closed"))
        await self._sender.stop()
        await self._cluster.close()

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_state", None) in (_State.STARTED, _State.CLOSING):
            _warn(f"unclosed producer {self!r}: call stop() (or use 'async with')",
                  ResourceWarning, source=self)
            self._sender.abandon(self._close_now())

    def __repr__(self) -> str:
        return f"<AsyncProducer {self.config.client_id} {self._state.value}>"

    @property
    def idempotent(self) -> bool:
        return self.config.idempotent

    def metrics(self) -> dict[str, int]:
        """A snapshot of the producer's state: batches queued, in flight and waiting for a
        retry, Produce requests in flight, and the memory budget in use. Safe from any
        thread."""
        return {**self._accumulator.stats(),
                "requests_in_flight": self._sender.requests_in_flight,
                "buffer_used_bytes": self._budget.used_bytes,
                "buffer_memory": self.config.buffer_memory}

    # ---- sending --------------------------------------------------------------------------
    async def send(self, topic: str, value: Any = None, key: Any = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Sequence[tuple[str, bytes | None]] | None = None
                   ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; returns, once it is queued, a future of its RecordMetadata."""
        loop = asyncio.get_running_loop()
        prepared = self._prepare(topic, value, key, partition, timestamp_ms, headers)
        deadline_s = loop.time() + self.config.max_block_ms / 1000
        count = self.partition_count(topic)
        if count is None:
            count = await self._wait_topic(topic, self.config.max_block_ms)
        chosen = self._choose_partition(prepared, count)
        size = prepared.size_bytes
        if not self._budget.try_reserve(size):
            self._sender.wakeup()
            if not await self._budget.reserve(size, max(0.0, deadline_s - loop.time())):
                raise self._buffer_full(size)
        waiter: asyncio.Future[RecordMetadata] = loop.create_future()
        _, _, woken = self._append(prepared, chosen, count, waiter, loop.time())
        if woken:
            # A batch was begun or filled: let the sender (and answers arriving) run now.
            # send() rarely has to wait for anything, so a caller sending in a tight loop
            # would otherwise hold the loop until the buffer is full, and batches would
            # leave in bursts.
            await asyncio.sleep(0)
        return waiter

    async def send_and_wait(self, topic: str, value: Any = None, key: Any = None,
                            partition: int | None = None, timestamp_ms: int | None = None,
                            headers: Sequence[tuple[str, bytes | None]] | None = None
                            ) -> RecordMetadata:
        """Send one record and wait for its acknowledgement."""
        future = await self.send(topic, value, key, partition, timestamp_ms, headers)
        return await future

    async def flush(self, timeout_ms: int | None = None) -> None:
        """Send every queued record now and wait until each record sent before this call is
        acknowledged or has failed. Raises KafkaTimeoutError after `timeout_ms`."""
        future = self._accumulator.begin_flush()
        self._sender.wakeup()
        try:
            if future is None:
                return
            if timeout_ms is None:
                await future
                return
            try:
                async with asyncio.timeout(timeout_ms / 1000):
                    await future
            except TimeoutError:
                raise KafkaTimeoutError(
                    f"flush did not complete within {timeout_ms} ms") from None
        finally:
            self._accumulator.end_flush()

    async def partitions_for(self, topic: str) -> frozenset[int]:
        """The topic's partition ids, waiting up to max_block_ms for its metadata."""
        self._check_started()
        partitions = self._cluster.partitions_for(topic)
        if partitions is None:
            await self._wait_topic(topic, self.config.max_block_ms)
            partitions = self._cluster.partitions_for(topic)
        assert partitions is not None
        return partitions

    # ---- the steps of send(), shared with the sync Producer -----------------------------
    def _check_started(self) -> None:
        if self._state is not _State.STARTED:
            if self._state is _State.NEW:
                raise ClientClosedError("the producer is not started: call start() first")
            raise ProducerClosedError("the producer is closed")

    def _prepare(self, topic: Any, value: Any, key: Any, partition: Any, timestamp_ms: Any,
                 headers: Any) -> PreparedRecord:
        self._check_started()
        return prepare_record(self.config, topic, value, key, partition, timestamp_ms, headers)

    def partition_count(self, topic: str) -> int | None:
        """The topic's partitions in the metadata cache (None: not known yet)."""
        t = self._cluster.metadata.topic(topic)
        if t is None or t.error_code != ErrorCode.NONE or not t.partitions:
            return None
        return len(t.partitions)

    async def _wait_topic(self, topic: str, timeout_ms: int) -> int:
        try:
            t = await self._cluster.wait_for_topic(topic, timeout_ms=timeout_ms, leaders=False)
        except KafkaError as e:
            if e.code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.LEADER_NOT_AVAILABLE):
                raise UnknownTopicError(topic, f"topic {topic!r} is not known to the cluster "
                                        f"(waited max_block_ms={timeout_ms} for its "
                                        "metadata)", e.code) from None
            raise UnknownTopicError(topic, f"topic {topic!r}: {e.message}", e.code) from None
        return len(t.partitions)

    def _choose_partition(self, prepared: PreparedRecord, count: int) -> int | None:
        """The caller's partition (checked), the key's, or None: sticky, decided on append."""
        if prepared.partition is not None:
            if prepared.partition >= count:
                raise UnknownPartitionError(prepared.topic, prepared.partition, count)
            return prepared.partition
        key = prepared.record.key
        return None if key is None else partition_for_key(key, count)

    def _buffer_full(self, size: int) -> BufferFullError:
        return BufferFullError(
            f"no room for a record of {size} bytes in buffer_memory={self.config.buffer_memory} "
            f"({self._budget.used_bytes} in use) within max_block_ms={self.config.max_block_ms}")

    def _append(self, prepared: PreparedRecord, partition: int | None, count: int,
                waiter: asyncio.Future[RecordMetadata] | None, now_s: float
                ) -> tuple[ProducerBatch, int, bool]:
        """Queue a record whose memory is reserved (given back if it cannot be queued).
        Returns its batch, its index there, and whether the sender was woken."""
        topic = prepared.topic
        try:
            batch, index, wake = self._accumulator.append(
                topic, partition, prepared.record, prepared.size_bytes, waiter, now_s,
                partitions=count,
                available=lambda: self._cluster.metadata.available_partitions_for(topic))
        except BaseException:
            self._budget.release(prepared.size_bytes)
            raise
        if wake:
            self._sender.wakeup()
        return batch, index, wake
