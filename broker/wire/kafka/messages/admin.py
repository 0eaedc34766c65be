"""Topic administration: CreateTopics (19) served v0-v4, DeleteTopics (20) served v0-v3,
DescribeConfigs (32) served v0-v3.

CreateTopics: v1 validate_only and error_message, v2 throttle, v4 allows -1 partitions and
replication factor (broker defaults). DeleteTopics: v1 throttle. DescribeConfigs: v0 is_default;
v1 config_source and synonyms (include_synonyms); v3 config_type and documentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BOOL, INT8, INT16, INT32, STRING, ArrayOf, kf

__all__ = [
    "CreateTopicsRequest",
    "CreatableTopic",
    "CreatableReplicaAssignment",
    "CreatableTopicConfig",
    "CreateTopicsResponse",
    "CreatableTopicResult",
    "DeleteTopicsRequest",
    "DeleteTopicsResponse",
    "DeletableTopicResult",
    "DescribeConfigsRequest",
    "DescribeConfigsResource",
    "DescribeConfigsResponse",
    "DescribeConfigsResult",
    "DescribeConfigsResourceResult",
    "DescribeConfigsSynonym",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableReplicaAssignment:
    partition_index: int = kf(INT32)
    broker_ids: Sequence[int] = kf(ArrayOf(INT32))


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicConfig:
    name: str = kf(STRING)
    value: str | None = kf(STRING, nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopic:
    name: str = kf(STRING)
    num_partitions: int = kf(INT32)
    replication_factor: int = kf(INT16)
    assignments: Sequence[CreatableReplicaAssignment] = kf(ArrayOf(CreatableReplicaAssignment))
    configs: Sequence[CreatableTopicConfig] = kf(ArrayOf(CreatableTopicConfig))


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_TOPICS
    topics: Sequence[CreatableTopic] = kf(ArrayOf(CreatableTopic))
    timeout_ms: int = kf(INT32, default=60000)
    validate_only: bool = kf(BOOL, "1+", default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicResult:
    name: str = kf(STRING)
    error_code: int = kf(INT16)
    error_message: str | None = kf(STRING, "1+", nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_TOPICS
    throttle_time_ms: int = kf(INT32, "2+")
    topics: Sequence[CreatableTopicResult] = kf(ArrayOf(CreatableTopicResult))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_TOPICS
    topic_names: Sequence[str] = kf(ArrayOf(STRING), "0-5")
    timeout_ms: int = kf(INT32)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletableTopicResult:
    name: str = kf(STRING, nullable="6+")
    error_code: int = kf(INT16)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_TOPICS
    throttle_time_ms: int = kf(INT32, "1+")
    responses: Sequence[DeletableTopicResult] = kf(ArrayOf(DeletableTopicResult))


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResource:
    resource_type: int = kf(INT8)  # 2 topic, 4 broker
    resource_name: str = kf(STRING)
    configuration_keys: Sequence[str] | None = kf(ArrayOf(STRING), nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_CONFIGS
    resources: Sequence[DescribeConfigsResource] = kf(ArrayOf(DescribeConfigsResource))
    include_synonyms: bool = kf(BOOL, "1+", default=False)
    include_documentation: bool = kf(BOOL, "3+", default=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsSynonym:
    name: str = kf(STRING, "1+")
    value: str | None = kf(STRING, "1+", nullable="0+")
    source: int = kf(INT8, "1+")


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResourceResult:
    name: str = kf(STRING)
    value: str | None = kf(STRING, nullable="0+")
    read_only: bool = kf(BOOL)
    config_source: int = kf(INT8, "1+", default=-1)
    is_default: bool = kf(BOOL, "0")
    is_sensitive: bool = kf(BOOL)
    synonyms: Sequence[DescribeConfigsSynonym] = kf(ArrayOf(DescribeConfigsSynonym), "1+")
    config_type: int = kf(INT8, "3+", default=0)
    documentation: str | None = kf(STRING, "3+", nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResult:
    error_code: int = kf(INT16)
    error_message: str | None = kf(STRING, nullable="0+")
    resource_type: int = kf(INT8)
    resource_name: str = kf(STRING)
    configs: Sequence[DescribeConfigsResourceResult] = kf(ArrayOf(DescribeConfigsResourceResult))


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_CONFIGS
    throttle_time_ms: int = kf(INT32)
    results: Sequence[DescribeConfigsResult] = kf(ArrayOf(DescribeConfigsResult))
