"""raftlog's private APIs: operations Kafka has no API for (API.md), keyed from 10000
(`PRIVATE_API_KEY_MIN`) and advertised by ApiVersions like any other API, so a client learns
whether the broker it talks to has them before sending one.

RaftlogDescribeCluster (key 10000), version 0 only, not flexible (header v1 / response header
v0). Metadata lists only live brokers; this lists every registered broker with its liveness as
the controller sees it, and every partition's replicas and ISR, for `raftlog cluster status`.

    request:   (no fields)
    response:  throttle_time_ms int32
               error_code       int16        0, or why the broker cannot answer
               controller_id    int32        the controller quorum's leader; -1: none known
               brokers          [node_id int32, host string, port int32, alive bool]
               partitions       [topic string, partition int32,
                                 leader int32 (-1: none), replicas [int32], isr [int32]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BOOL, INT16, INT32, STRING, ArrayOf, kf

__all__ = [
    "RaftlogDescribeClusterRequest",
    "RaftlogDescribeClusterResponse",
    "RaftlogDescribeClusterBroker",
    "RaftlogDescribeClusterPartition",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftlogDescribeClusterRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.RAFTLOG_DESCRIBE_CLUSTER


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftlogDescribeClusterBroker:
    node_id: int = kf(INT32)
    host: str = kf(STRING)
    port: int = kf(INT32)
    alive: bool = kf(BOOL)  # registered and within its session timeout, per the controller


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftlogDescribeClusterPartition:
    topic: str = kf(STRING)
    partition: int = kf(INT32)
    leader: int = kf(INT32, default=-1)  # -1: no leader known
    replicas: Sequence[int] = kf(ArrayOf(INT32))
    isr: Sequence[int] = kf(ArrayOf(INT32))  # replicas caught up with the leader


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftlogDescribeClusterResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.RAFTLOG_DESCRIBE_CLUSTER
    throttle_time_ms: int = kf(INT32)
    error_code: int = kf(INT16)
    controller_id: int = kf(INT32, default=-1)  # -1: no controller leader known
    brokers: Sequence[RaftlogDescribeClusterBroker] = kf(ArrayOf(RaftlogDescribeClusterBroker))
    partitions: Sequence[RaftlogDescribeClusterPartition] = kf(
        ArrayOf(RaftlogDescribeClusterPartition))
