"""Consumer: the blocking facade. An AsyncConsumer runs on a private event loop in a thread
(broker.client.LoopThread); every method runs the matching coroutine there and waits.

    with Consumer("orders", bootstrap_servers="127.0.0.1:9092", group_id="billing") as c:
        for record in c:
            ...

Construction connects and subscribes (raising NoBrokersAvailableError, UnknownTopicError, ...
at once). Iteration yields records one by one, polling as needed; it stops after
`consumer_timeout_ms` without a record when that is set, and never otherwise. close() commits
(auto-commit), leaves the group, and is harmless to call twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from broker.client import LoopThread
from consumer.async_consumer import AsyncConsumer
from consumer.errors import IllegalStateError
from consumer.structs import ConsumerRecord, OffsetAndTimestamp, TopicPartition

__all__ = ["Consumer"]

T = TypeVar("T")

_CLOSE_TIMEOUT_MS = 30000


class Consumer:
    def __init__(self, *topics: str, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092",
                 **options: Any) -> None:
        self._engine = LoopThread(name="raftlog-consumer")
        self._closed = False
        self._pending: deque[ConsumerRecord] = deque()
        try:
            self._core: AsyncConsumer = self._engine.run(
                _make(topics, bootstrap_servers, options))
            self._engine.run(self._core.start())
        except BaseException:
            core = getattr(self, "_core", None)
            if core is not None:
                self._engine.run(core.stop())
            self._engine.close()
            self._closed = True
            raise

    @property
    def config(self) -> Any:
        return self._core.config

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise IllegalStateError("the consumer is closed")
        return self._engine.run(coro)

    def _call(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._run(call())

    # ---- what to read ---------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str]) -> None:
        self._call(self._core.subscribe, list([topics] if isinstance(topics, str) else topics))

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._call(self._core.assign, list(partitions))

    def unsubscribe(self) -> None:
        self._call(self._core.unsubscribe)

    def subscription(self) -> frozenset[str]:
        result: frozenset[str] = self._call(self._core.subscription)
        return result

    def assignment(self) -> frozenset[TopicPartition]:
        result: frozenset[TopicPartition] = self._call(self._core.assignment)
        return result

    # ---- reading --------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0, max_records: int | None = None
             ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records ready now or arriving within `timeout_ms`: {TopicPartition: [records]}."""
        return self._run(self._core.getmany(timeout_ms=timeout_ms, max_records=max_records))

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        timeout_ms = self._core.config.consumer_timeout_ms
        while not self._pending:
            if self._closed:
                raise StopIteration
            batch = self.poll(timeout_ms=1000 if timeout_ms is None else timeout_ms)
            for records in batch.values():
                self._pending.extend(records)
            if not self._pending and timeout_ms is not None:
                raise StopIteration
        return self._pending.popleft()

    # ---- positions ------------------------------------------------------------------------
    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._drop_pending(partition)
        self._call(self._core.seek, partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._drop_pending(*partitions)
        self._call(self._core.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._drop_pending(*partitions)
        self._call(self._core.seek_to_end, *partitions)

    def _drop_pending(self, *partitions: TopicPartition) -> None:
        """Records iteration holds for a partition being seeked are no longer wanted."""
        if not partitions:
            self._pending.clear()
            return
        gone = {TopicPartition(*tp) for tp in partitions}
        self._pending = deque(r for r in self._pending
                              if TopicPartition(r.topic, r.partition) not in gone)

    def position(self, partition: TopicPartition) -> int:
        return self._run(self._core.position(partition))

    def partitions_for_topic(self, topic: str) -> frozenset[int] | None:
        return self._run(self._core.partitions_for_topic(topic))

    def highwater(self, partition: TopicPartition) -> int | None:
        result: int | None = self._call(self._core.highwater, partition)
        return result

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(self._core.beginning_offsets(list(partitions)))

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(self._core.end_offsets(list(partitions)))

    def offsets_for_times(self, timestamps: Mapping[TopicPartition, int]
                          ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return self._run(self._core.offsets_for_times(dict(timestamps)))

    # ---- committing -----------------------------------------------------------------------
    def commit(self, offsets: Mapping[TopicPartition, Any] | None = None) -> None:
        self._run(self._core.commit(None if offsets is None else dict(offsets)))

    def committed(self, partition: TopicPartition) -> int | None:
        return self._run(self._core.committed(partition))

    # ---- closing --------------------------------------------------------------------------
    def close(self) -> None:
        """Commit (auto-commit), leave the group, stop. Harmless to call twice."""
        if self._closed:
            return
        try:
            self._engine.run(self._core.stop(), timeout_ms=_CLOSE_TIMEOUT_MS)
        finally:
            self._closed = True
            self._pending.clear()
            self._engine.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


async def _make(topics: Sequence[str], bootstrap_servers: str | Sequence[str],
                options: dict[str, Any]) -> AsyncConsumer:
    """Made on the engine's loop, where it will run."""
    return AsyncConsumer(*topics, bootstrap_servers=bootstrap_servers, **options)
