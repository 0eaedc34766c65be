"""Fetch (key 1): served v0-v11 (flexible from v12).

v3 adds max_bytes; v4 isolation_level, last_stable_offset, aborted_transactions and RecordBatch
v2; v5 log_start_offset; v7 fetch sessions (session_id/epoch, forgotten topics, top-level
error_code); v9 current_leader_epoch; v10 allows zstd; v11 rack_id and preferred_read_replica.
Like Kafka 4, the broker advertises v0 but refuses v0-v3. `records` stays opaque bytes: the
broker sends the stored batches as they are (one buffer or several, see `schema.Records`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import INT8, INT16, INT32, INT64, RECORDS, STRING, ArrayOf, Records, kf

__all__ = [
    "FetchRequest",
    "FetchTopic",
    "FetchPartition",
    "ForgottenTopic",
    "FetchResponse",
    "FetchableTopicResponse",
    "PartitionData",
    "AbortedTransaction",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPartition:
    partition: int = kf(INT32)
    current_leader_epoch: int = kf(INT32, "9+", default=-1)
    fetch_offset: int = kf(INT64)
    log_start_offset: int = kf(INT64, "5+", default=-1)
    partition_max_bytes: int = kf(INT32)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchTopic:
    topic: str = kf(STRING, "0-12")
    partitions: Sequence[FetchPartition] = kf(ArrayOf(FetchPartition))


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgottenTopic:
    topic: str = kf(STRING, "7-12")
    partitions: Sequence[int] = kf(ArrayOf(INT32), "7+")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.FETCH
    replica_id: int = kf(INT32, "0-14", default=-1)
    max_wait_ms: int = kf(INT32)
    min_bytes: int = kf(INT32)
    max_bytes: int = kf(INT32, "3+", default=0x7FFFFFFF)
    isolation_level: int = kf(INT8, "4+", default=0)
    session_id: int = kf(INT32, "7+", default=0)
    session_epoch: int = kf(INT32, "7+", default=-1)
    topics: Sequence[FetchTopic] = kf(ArrayOf(FetchTopic))
    forgotten_topics_data: Sequence[ForgottenTopic] = kf(ArrayOf(ForgottenTopic), "7+")
    rack_id: str = kf(STRING, "11+", default="")


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortedTransaction:
    producer_id: int = kf(INT64, "4+")
    first_offset: int = kf(INT64, "4+")


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionData:
    partition_index: int = kf(INT32)
    error_code: int = kf(INT16)
    high_watermark: int = kf(INT64)
    last_stable_offset: int = kf(INT64, "4+", default=-1)
    log_start_offset: int = kf(INT64, "5+", default=-1)
    aborted_transactions: Sequence[AbortedTransaction] | None = kf(
        ArrayOf(AbortedTransaction), "4+", nullable="4+")
    preferred_read_replica: int = kf(INT32, "11+", default=-1)
    records: Records | None = kf(RECORDS, nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchableTopicResponse:
    topic: str = kf(STRING, "0-12")
    partitions: Sequence[PartitionData] = kf(ArrayOf(PartitionData))


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.FETCH
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16, "7+")
    session_id: int = kf(INT32, "7+", default=0)
    responses: Sequence[FetchableTopicResponse] = kf(ArrayOf(FetchableTopicResponse))
