"""What `send()` hands back: RecordMetadata, and the futures that carry it.

The async producer returns one `asyncio.Future[RecordMetadata]` per record (API.md). The sync
producer returns a `RecordFuture`, as Kafka's Java client does: a small per-record handle onto
its batch's one `BatchResult`, so a whole batch is completed with one event however many
records it holds, and the RecordMetadata is built only when someone asks for it.

`BatchResult` is completed once, on the producer's event loop; it may be waited on from any
thread. Callbacks run on the producer's I/O thread when the batch completes (or at once, in the
caller's thread, if it already has): they must be quick and must not block on the producer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from producer.errors import KafkaTimeoutError

__all__ = ["RecordMetadata", "BatchResult", "RecordFuture"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where an acknowledged record is. `offset` is -1 with acks=0 (no answer to read it
    from); `timestamp_ms` is the record's create time, or the broker's log-append time when
    the topic uses it. Fields may be given by position, in API.md's order (kafka-python's
    RecordMetadata is a namedtuple)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class BatchResult:
    """The outcome of one batch: base offset and log-append time, or the error."""

    __slots__ = ("topic", "partition", "base_offset", "log_append_time_ms", "error", "_event",
                 "_callbacks", "_lock")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.base_offset = -1
        self.log_append_time_ms = -1
        self.error: BaseException | None = None
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None) -> bool:
        return self._event.wait(timeout_s)

    def complete(self, *, base_offset: int = -1, log_append_time_ms: int = -1,
                 error: BaseException | None = None) -> None:
        """Set the outcome (once) and run the callbacks."""
        with self._lock:
            assert not self._event.is_set(), "a batch completed twice"
            self.base_offset = base_offset
            self.log_append_time_ms = log_append_time_ms
            self.error = error
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _run_callback(callback)

    def add_callback(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        _run_callback(callback)


def _run_callback(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a user's callback must not break the producer's I/O thread
        log.exception("producer callback raised")


class RecordFuture:
    """The future of one record sent by the sync `Producer` (concurrent.futures-style, plus
    kafka-python's `get`, `add_callback` and `add_errback`). Timeouts are in seconds, as in
    concurrent.futures and kafka-python."""

    __slots__ = ("_batch", "_index", "_timestamp_ms")

    def __init__(self, batch: BatchResult, index: int, timestamp_ms: int) -> None:
        self._batch = batch
        self._index = index
        self._timestamp_ms = timestamp_ms

    def done(self) -> bool:
        return self._batch.done

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata once acknowledged; raises the record's error, or
        KafkaTimeoutError when `timeout` seconds pass first."""
        if not self._batch.wait(timeout):
            raise KafkaTimeoutError(f"record not acknowledged within {timeout} s "
                                    "(it is still being sent)")
        return self._value()

    result = get

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._batch.wait(timeout):
            raise KafkaTimeoutError(f"record not acknowledged within {timeout} s")
        return self._batch.error

    def succeeded(self) -> bool:
        return self._batch.done and self._batch.error is None

    def failed(self) -> bool:
        return self._batch.done and self._batch.error is not None

    def add_done_callback(self, fn: Callable[[RecordFuture], Any]) -> None:
        """`fn(self)` once the record is acknowledged or has failed."""
        self._batch.add_callback(lambda: fn(self))

    def add_callback(self, fn: Callable[[RecordMetadata], Any]) -> None:
        """`fn(metadata)` if the record is acknowledged."""
        self._batch.add_callback(lambda: None if self._batch.error else fn(self._value()))

    def add_errback(self, fn: Callable[[BaseException], Any]) -> None:
        """`fn(error)` if the record fails."""
        self._batch.add_callback(
            lambda: None if self._batch.error is None else fn(self._batch.error))

    def _value(self) -> RecordMetadata:
        b = self._batch
        if b.error is not None:
            raise b.error
        return RecordMetadata(
            topic=b.topic, partition=b.partition,
            offset=b.base_offset + self._index if b.base_offset >= 0 else -1,
            timestamp_ms=b.log_append_time_ms if b.log_append_time_ms >= 0
            else self._timestamp_ms)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self.failed() else "done")
        return f"<RecordFuture {self._batch.topic}-{self._batch.partition} {state}>"
