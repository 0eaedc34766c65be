"""Produce (key 0): served v0-v8 (flexible from v9).

v3 adds transactional_id and requires RecordBatch v2 (one batch per partition); v2 adds
log_append_time_ms; v5 log_start_offset; v7 allows zstd; v8 record_errors and error_message.
Like Kafka 4, the broker advertises v0 but refuses v0-v2 (no RecordBatch v2), see
`broker.wire.kafka.versions.RECORD_BATCH_V2_MIN_VERSIONS`. `records` stays opaque bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import INT16, INT32, INT64, RECORDS, STRING, ArrayOf, Records, kf

__all__ = [
    "ProduceRequest",
    "TopicProduceData",
    "PartitionProduceData",
    "ProduceResponse",
    "TopicProduceResponse",
    "PartitionProduceResponse",
    "BatchIndexAndErrorMessage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceData:
    index: int = kf(INT32)
    records: Records | None = kf(RECORDS, nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceData:
    name: str = kf(STRING, "0-12")
    partition_data: Sequence[PartitionProduceData] = kf(ArrayOf(PartitionProduceData))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.PRODUCE
    transactional_id: str | None = kf(STRING, "3+", nullable="3+", default=None)
    acks: int = kf(INT16)
    timeout_ms: int = kf(INT32)
    topic_data: Sequence[TopicProduceData] = kf(ArrayOf(TopicProduceData))


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchIndexAndErrorMessage:
    batch_index: int = kf(INT32, "8+")
    batch_index_error_message: str | None = kf(STRING, "8+", nullable="8+", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceResponse:
    index: int = kf(INT32)
    error_code: int = kf(INT16)
    base_offset: int = kf(INT64)
    log_append_time_ms: int = kf(INT64, "2+", default=-1)
    log_start_offset: int = kf(INT64, "5+", default=-1)
    record_errors: Sequence[BatchIndexAndErrorMessage] = kf(
        ArrayOf(BatchIndexAndErrorMessage), "8+")
    error_message: str | None = kf(STRING, "8+", nullable="8+", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceResponse:
    name: str = kf(STRING, "0-12")
    partition_responses: Sequence[PartitionProduceResponse] = kf(
        ArrayOf(PartitionProduceResponse))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.PRODUCE
    responses: Sequence[TopicProduceResponse] = kf(ArrayOf(TopicProduceResponse))
    throttle_time_ms: int = kf(INT32, "1+", default=0)
