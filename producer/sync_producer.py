"""Producer: the blocking producer, for code without an event loop (kafka-python's shape).

    with Producer(bootstrap_servers="127.0.0.1:9092") as producer:
        future = producer.send("orders", value=b"...", key=b"k")
        metadata = future.get(timeout=10)        # seconds, as kafka-python
        producer.flush()

An AsyncProducer runs on a private event loop in a daemon thread (broker.client.LoopThread).
`send()` does its work in the caller's thread (checks, partitioning, the memory reservation,
the append under the accumulator's lock) and crosses to the loop only to wake the sender when
a batch is ready, so a record costs no thread hop. It blocks only to learn a topic's metadata
or to wait for buffer room, each bounded by `max_block_ms`. Several threads may send at once.
Futures are RecordFuture (broker acknowledgements complete a whole batch at once); their
callbacks run on the producer's I/O thread.

Timeouts of `flush`, `close` and `RecordFuture.get` are in seconds (None: no bound), as in
kafka-python and concurrent.futures; options are milliseconds.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from broker.client import LoopThread
from producer.async_producer import AsyncProducer
from producer.config import Acks, ProducerConfig, Serializer
from producer.futures import RecordFuture

__all__ = ["Producer"]

_ABANDON_MS = 5000  # a leaked producer's cleanup gets this long


def _ms(timeout_s: float | None) -> int | None:
    return None if timeout_s is None else max(0, int(timeout_s * 1000))


class Producer:
    def __init__(self, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092", *,
                 acks: Acks = "all", linger_ms: int = 5, batch_size: int = 65536,
                 compression_type: str = "lz4", enable_idempotence: bool = True,
                 request_timeout_ms: int = 30000, delivery_timeout_ms: int = 120000,
                 key_serializer: Serializer | None = None,
                 value_serializer: Serializer | None = None, buffer_memory: int = 32 << 20,
                 max_block_ms: int = 60000, max_request_size: int = 1 << 20,
                 retry_backoff_ms: int = 100, metadata_max_age_ms: int = 300000,
                 client_id: str = "raftlog-producer") -> None:
        """Bootstrap at once: raises NoBrokersAvailableError when no server answers, and
        ClientConfigError for a bad option."""
        config = ProducerConfig(
            bootstrap_servers=bootstrap_servers, acks=acks,  # type: ignore[arg-type]
            linger_ms=linger_ms, batch_size=batch_size, compression_type=compression_type,
            enable_idempotence=enable_idempotence, request_timeout_ms=request_timeout_ms,
            delivery_timeout_ms=delivery_timeout_ms, key_serializer=key_serializer,
            value_serializer=value_serializer, buffer_memory=buffer_memory,
            max_block_ms=max_block_ms, max_request_size=max_request_size,
            retry_backoff_ms=retry_backoff_ms, metadata_max_age_ms=metadata_max_age_ms,
            client_id=client_id)
        self.config = config
        self._closed = False
        self._close_lock = threading.Lock()
        self._core = AsyncProducer.from_config(config)
        self._engine = LoopThread(name=f"{config.client_id}-io")
        try:
            self._engine.run(self._core.start())
        except BaseException:
            self._closed = True
            try:
                self._engine.run(self._core.stop())
            finally:
                self._engine.close()
            raise

    # ---- sending --------------------------------------------------------------------------
    def send(self, topic: str, value: Any = None, key: Any = None,
             partition: int | None = None, timestamp_ms: int | None = None,
             headers: Sequence[tuple[str, bytes | None]] | None = None) -> RecordFuture:
        """Queue one record; returns its future (`.get(timeout=seconds)`). Raises at once for
        a bad record, an unknown topic or partition, a full buffer (after max_block_ms), or a
        closed producer."""
        core = self._core
        prepared = core._prepare(topic, value, key, partition, timestamp_ms, headers)
        deadline_s = time.monotonic() + self.config.max_block_ms / 1000
        count = core.partition_count(topic)
        if count is None:
            count = self._engine.run(core._wait_topic(topic, self.config.max_block_ms))
        chosen = core._choose_partition(prepared, count)
        size = prepared.size_bytes
        if not core._budget.try_reserve(size):
            core._sender.wakeup()
            remaining_s = max(0.0, deadline_s - time.monotonic())
            if core._sender.on_loop_thread() or not core._budget.reserve_blocking(size, remaining_s):
                raise core._buffer_full(size)
        batch, index, _ = core._append(prepared, chosen, count, None,
                                       self._engine.loop.time())
        return RecordFuture(batch.result, index, prepared.record.timestamp_ms)

    def flush(self, timeout: float | None = None) -> None:
        """Send every queued record now and wait (at most `timeout` seconds) until each record
        sent before this call is acknowledged or has failed."""
        self._engine.run(self._core.flush(_ms(timeout)))

    def partitions_for(self, topic: str) -> frozenset[int]:
        """The topic's partition ids (waits up to max_block_ms for unknown topics)."""
        return self._engine.run(self._core.partitions_for(topic))

    @property
    def idempotent(self) -> bool:
        return self.config.idempotent

    def metrics(self) -> dict[str, int]:
        """A snapshot of the producer's state (AsyncProducer.metrics)."""
        return self._core.metrics()

    # ---- closing --------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Send what is queued and wait for the answers (at most `timeout` seconds), fail
        what is left with ProducerClosedError, stop the I/O thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._engine.run(self._core.stop(_ms(timeout)))
        finally:
            self._engine.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _warn(f"unclosed producer {self!r}: call close() (or use 'with')", ResourceWarning,
              source=self)
        try:
            self._engine.run(self._core.stop(0), timeout_ms=_ABANDON_MS)
        except Exception:  # collected on the I/O thread itself, or the loop is gone
            pass
        self._engine.close()

    def __repr__(self) -> str:
        return f"<Producer {self.config.client_id} {'closed' if self._closed else 'open'}>"

