"""What can go wrong producing, as typed exceptions.

Two families, as in broker.client.errors, because callers react differently:

- `KafkaError` subclasses carry Kafka's ErrorCode: a broker refused a batch
  (`ProduceError`), or a record can never be accepted (`RecordTooLargeError`,
  `UnknownTopicError`, `UnknownPartitionError`); the latter are raised by `send()` itself.
- `ClientError` subclasses: no acknowledgement came. `KafkaTimeoutError` (also a
  `TimeoutError`) when a bound ran out: `BufferFullError` from `send()` after `max_block_ms`,
  `DeliveryTimeoutError` on a record's future after `delivery_timeout_ms`;
  `ProducerClosedError` when the producer is closed.

Bad argument types raise TypeError from `send()`, bad option values ClientConfigError.
"""

from __future__ import annotations

from broker.client.errors import ClientClosedError, ClientError
from broker.wire.errors import ErrorCode, KafkaError

__all__ = [
    "BufferFullError",
    "DeliveryTimeoutError",
    "KafkaTimeoutError",
    "ProduceError",
    "ProducerClosedError",
    "RecordTooLargeError",
    "UnknownPartitionError",
    "UnknownTopicError",
]


class ProducerClosedError(ClientClosedError):
    """The producer is closed (or closing): it takes no records, and records it could not
    deliver before closing fail with this error."""


class KafkaTimeoutError(ClientError, TimeoutError):
    """A time bound of the producer ran out; the message names the bound."""

    retriable = True


class BufferFullError(KafkaTimeoutError):
    """`send()` waited `max_block_ms` for room in `buffer_memory` and found none: records are
    produced faster than the cluster acknowledges them."""


class DeliveryTimeoutError(KafkaTimeoutError):
    """A record was not acknowledged within `delivery_timeout_ms` of `send()`. `last_error`
    is the last reason a send attempt failed (None when it was never sent). The record may or
    may not have been written."""

    def __init__(self, message: str, *, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.last_error = last_error


class RecordTooLargeError(KafkaError):
    """A record, serialized with its batch's overhead, exceeds `max_request_size` or
    `buffer_memory` (raised by `send()`), or the broker's own limit (on the future)."""

    def __init__(self, message: str, *, size_bytes: int, limit_bytes: int) -> None:
        super().__init__(ErrorCode.MESSAGE_TOO_LARGE, message)
        self.size_bytes = size_bytes
        self.limit_bytes = limit_bytes


class UnknownTopicError(KafkaError):
    """The cluster does not know the topic (after waiting up to `max_block_ms` for it), or
    refuses to describe it."""

    def __init__(self, topic: str, message: str,
                 code: ErrorCode = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) -> None:
        super().__init__(code, message)
        self.topic = topic


class UnknownPartitionError(KafkaError):
    """`send(partition=P)` names a partition the topic does not have."""

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        super().__init__(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                         f"topic {topic!r} has no partition {partition} (it has {partitions}: "
                         f"0..{partitions - 1})")
        self.topic = topic
        self.partition = partition


class ProduceError(KafkaError):
    """A broker refused a batch with an error that retrying cannot fix (or the producer gave
    up on it, e.g. OUT_OF_ORDER_SEQUENCE_NUMBER with no earlier batch being retried). Every
    record of that batch fails with it; other batches are not affected."""

    def __init__(self, code: ErrorCode, message: str, *, topic: str, partition: int) -> None:
        super().__init__(code, message)
        self.topic = topic
        self.partition = partition
