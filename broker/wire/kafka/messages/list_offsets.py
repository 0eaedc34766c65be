"""ListOffsets (key 2): served v0-v5 (flexible from v6).

v0 answers with an array of offsets (max_num_offsets); v1+ one offset and its timestamp;
v2 adds isolation_level and throttle_time_ms; v4 current/returned leader epoch.
Timestamps -1 (latest) and -2 (earliest) are Kafka's special values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import INT8, INT16, INT32, INT64, STRING, ArrayOf, kf

__all__ = [
    "ListOffsetsRequest",
    "ListOffsetsTopic",
    "ListOffsetsPartition",
    "ListOffsetsResponse",
    "ListOffsetsTopicResponse",
    "ListOffsetsPartitionResponse",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartition:
    partition_index: int = kf(INT32)
    current_leader_epoch: int = kf(INT32, "4+", default=-1)
    timestamp: int = kf(INT64)
    max_num_offsets: int = kf(INT32, "0", default=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopic:
    name: str = kf(STRING)
    partitions: Sequence[ListOffsetsPartition] = kf(ArrayOf(ListOffsetsPartition))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_OFFSETS
    replica_id: int = kf(INT32)  # Kafka's schema has no default: consumers send -1
    isolation_level: int = kf(INT8, "2+")
    topics: Sequence[ListOffsetsTopic] = kf(ArrayOf(ListOffsetsTopic))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartitionResponse:
    partition_index: int = kf(INT32)
    error_code: int = kf(INT16)
    old_style_offsets: Sequence[int] = kf(ArrayOf(INT64), "0")
    timestamp: int = kf(INT64, "1+", default=-1)
    offset: int = kf(INT64, "1+", default=-1)
    leader_epoch: int = kf(INT32, "4+", default=-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopicResponse:
    name: str = kf(STRING)
    partitions: Sequence[ListOffsetsPartitionResponse] = kf(ArrayOf(ListOffsetsPartitionResponse))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_OFFSETS
    throttle_time_ms: int = kf(INT32, "2+")
    topics: Sequence[ListOffsetsTopicResponse] = kf(ArrayOf(ListOffsetsTopicResponse))
