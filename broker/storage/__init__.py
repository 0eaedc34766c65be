"""The partition log on disk: segmented, CRC-checked, recovered on open; it is both the Raft log
(`broker.raft.storage.LogStorage`) and the Kafka partition log. See `broker.storage.log`."""

from broker.storage.config import FsyncPolicy, LogConfig
from broker.storage.errors import (
    InvalidAppendError,
    LogConfigError,
    LogCorruptionError,
    LogDamageError,
    LogError,
    LogLockedError,
    LogReadOnlyError,
    OffsetOutOfRangeError,
)
from broker.storage.log import PartitionLog, SegmentInfo

__all__ = [
    "PartitionLog",
    "SegmentInfo",
    "LogConfig",
    "FsyncPolicy",
    "LogError",
    "LogCorruptionError",
    "LogDamageError",
    "LogReadOnlyError",
    "LogLockedError",
    "InvalidAppendError",
    "OffsetOutOfRangeError",
    "LogConfigError",
]
