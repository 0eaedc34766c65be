"""Committed offsets: OffsetCommit (8) and OffsetFetch (9).

OffsetCommit served v0-v7: v1 adds generation/member and a per-partition commit_timestamp (v1
only); v2-v4 retention_time_ms; v3 throttle; v6 committed_leader_epoch; v7 group_instance_id.
OffsetFetch served v0-v5: v2 null topics = all and a top-level error_code; v3 throttle;
v5 committed_leader_epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import INT16, INT32, INT64, STRING, ArrayOf, kf

__all__ = [
    "OffsetCommitRequest",
    "OffsetCommitRequestTopic",
    "OffsetCommitRequestPartition",
    "OffsetCommitResponse",
    "OffsetCommitResponseTopic",
    "OffsetCommitResponsePartition",
    "OffsetFetchRequest",
    "OffsetFetchRequestTopic",
    "OffsetFetchResponse",
    "OffsetFetchResponseTopic",
    "OffsetFetchResponsePartition",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestPartition:
    partition_index: int = kf(INT32)
    committed_offset: int = kf(INT64)
    committed_leader_epoch: int = kf(INT32, "6+", default=-1)
    commit_timestamp: int = kf(INT64, "1", default=-1)
    committed_metadata: str | None = kf(STRING, nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestTopic:
    name: str = kf(STRING, "0-9")
    partitions: Sequence[OffsetCommitRequestPartition] = kf(ArrayOf(OffsetCommitRequestPartition))


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_COMMIT
    group_id: str = kf(STRING)
    generation_id_or_member_epoch: int = kf(INT32, "1+", default=-1)
    member_id: str = kf(STRING, "1+")
    group_instance_id: str | None = kf(STRING, "7+", nullable="7+", default=None)
    retention_time_ms: int = kf(INT64, "2-4", default=-1)
    topics: Sequence[OffsetCommitRequestTopic] = kf(ArrayOf(OffsetCommitRequestTopic))


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponsePartition:
    partition_index: int = kf(INT32)
    error_code: int = kf(INT16)


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponseTopic:
    name: str = kf(STRING, "0-9")
    partitions: Sequence[OffsetCommitResponsePartition] = kf(
        ArrayOf(OffsetCommitResponsePartition))


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_COMMIT
    throttle_time_ms: int = kf(INT32, "3+")
    topics: Sequence[OffsetCommitResponseTopic] = kf(ArrayOf(OffsetCommitResponseTopic))


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestTopic:
    name: str = kf(STRING, "0-7")
    partition_indexes: Sequence[int] = kf(ArrayOf(INT32), "0-7")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_FETCH
    group_id: str = kf(STRING, "0-7")
    topics: Sequence[OffsetFetchRequestTopic] | None = kf(
        ArrayOf(OffsetFetchRequestTopic), "0-7", nullable="2-7")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponsePartition:
    partition_index: int = kf(INT32, "0-7")
    committed_offset: int = kf(INT64, "0-7")
    committed_leader_epoch: int = kf(INT32, "5-7", default=-1)
    metadata: str | None = kf(STRING, "0-7", nullable="0-7")
    error_code: int = kf(INT16, "0-7")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseTopic:
    name: str = kf(STRING, "0-7")
    partitions: Sequence[OffsetFetchResponsePartition] = kf(
        ArrayOf(OffsetFetchResponsePartition), "0-7")


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_FETCH
    throttle_time_ms: int = kf(INT32, "3+")
    topics: Sequence[OffsetFetchResponseTopic] = kf(ArrayOf(OffsetFetchResponseTopic), "0-7")
    error_code: int = kf(INT16, "2-7", default=0)
