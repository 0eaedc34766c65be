"""Metadata (key 3): served v0-v8 (flexible from v9).

v0: an empty topic list means all topics; v1+: null means all, empty means none. v1 adds rack,
controller_id, is_internal; v2 cluster_id; v3 throttle_time_ms; v4 allow_auto_topic_creation;
v5 offline_replicas; v7 leader_epoch; v8 authorized operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BOOL, INT16, INT32, STRING, ArrayOf, kf

__all__ = [
    "MetadataRequest",
    "MetadataRequestTopic",
    "MetadataResponse",
    "MetadataResponseBroker",
    "MetadataResponseTopic",
    "MetadataResponsePartition",
]

INT32_MIN = -(1 << 31)  # "authorized operations not requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequestTopic:
    name: str | None = kf(STRING, nullable="10+")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.METADATA
    topics: Sequence[MetadataRequestTopic] | None = kf(
        ArrayOf(MetadataRequestTopic), nullable="1+")
    allow_auto_topic_creation: bool = kf(BOOL, "4+", default=True)
    include_cluster_authorized_operations: bool = kf(BOOL, "8-10")
    include_topic_authorized_operations: bool = kf(BOOL, "8+")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseBroker:
    node_id: int = kf(INT32)
    host: str = kf(STRING)
    port: int = kf(INT32)
    rack: str | None = kf(STRING, "1+", nullable="1+", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponsePartition:
    error_code: int = kf(INT16)
    partition_index: int = kf(INT32)
    leader_id: int = kf(INT32)
    leader_epoch: int = kf(INT32, "7+", default=-1)
    replica_nodes: Sequence[int] = kf(ArrayOf(INT32))
    isr_nodes: Sequence[int] = kf(ArrayOf(INT32))
    offline_replicas: Sequence[int] = kf(ArrayOf(INT32), "5+")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseTopic:
    error_code: int = kf(INT16)
    name: str | None = kf(STRING, nullable="12+")
    is_internal: bool = kf(BOOL, "1+", default=False)
    partitions: Sequence[MetadataResponsePartition] = kf(ArrayOf(MetadataResponsePartition))
    topic_authorized_operations: int = kf(INT32, "8+", default=INT32_MIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.METADATA
    throttle_time_ms: int = kf(INT32, "3+")
    brokers: Sequence[MetadataResponseBroker] = kf(ArrayOf(MetadataResponseBroker))
    cluster_id: str | None = kf(STRING, "2+", nullable="2+", default=None)
    controller_id: int = kf(INT32, "1+", default=-1)
    topics: Sequence[MetadataResponseTopic] = kf(ArrayOf(MetadataResponseTopic))
    cluster_authorized_operations: int = kf(INT32, "8-10", default=INT32_MIN)
