"""The typed errors of the partition log.

Each carries the Kafka error code a handler should answer with, so the API layer converts them
at one boundary without knowing the storage internals.
"""

from __future__ import annotations

from broker.wire.errors import ErrorCode

__all__ = [
    "LogError",
    "LogCorruptionError",
    "LogReadOnlyError",
    "LogDamageError",
    "LogLockedError",
    "InvalidAppendError",
    "OffsetOutOfRangeError",
    "LogConfigError",
]


class LogError(Exception):
    """Base class of every error raised by `broker.storage`."""

    error_code: ErrorCode = ErrorCode.KAFKA_STORAGE_ERROR


class LogCorruptionError(LogError):
    """Stored bytes fail validation somewhere a torn write cannot explain (a bad CRC followed by
    valid data, a bad entry in a sealed segment, a gap between segments). Never served."""

    def __init__(self, path: str, position: int, reason: str) -> None:
        super().__init__(f"{path} @ byte {position}: {reason}")
        self.path = path
        self.position = position
        self.reason = reason


class LogReadOnlyError(LogError):
    """A write, fsync or read failed: the log was latched read-only (Kafka's
    KAFKA_STORAGE_ERROR). Every later write raises this; after a failed write, reads see only
    what was durable (a failed read cuts nothing: see PartitionLog, Failure)."""


class LogDamageError(LogCorruptionError, LogReadOnlyError):
    """A read found stored bytes failing their CRC (e.g. damage inside a sealed segment, which
    opening no longer scans). Nothing bad was returned; the log is now latched read-only (so
    this is also a LogReadOnlyError: the replica goes offline as after a write error), and the
    next open scans that segment and repairs the damage by recovery's rules."""


class LogLockedError(LogError):
    """Another PartitionLog (in this or another process) holds the directory."""


class InvalidAppendError(LogError, ValueError):
    """`append` or `reset` got entries that would break the log's invariants (index out of
    range or not contiguous, term going down, a DATA payload that is not one RecordBatch v2,
    Kafka offsets going backwards). Nothing was written."""

    error_code = ErrorCode.CORRUPT_MESSAGE


class OffsetOutOfRangeError(LogError, LookupError):
    """A Kafka offset below the log start or beyond the log end."""

    error_code = ErrorCode.OFFSET_OUT_OF_RANGE


class LogConfigError(LogError, ValueError):
    """A LogConfig field is out of its documented range."""

    error_code = ErrorCode.INVALID_CONFIG
