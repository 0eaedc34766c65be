"""Kafka's API keys by Kafka's names, and the range kept for raftlog's own APIs.

Kafka numbers its APIs from 0 (Produce) upwards; keys from `PRIVATE_API_KEY_MIN` up are
raftlog's own operations that Kafka has no API for (API.md: cluster status with dead brokers,
leadership transfer). A private API is added by naming it here and listing its schema in
`broker.wire.kafka.apis`; it is then advertised by ApiVersions like any other.
"""

from __future__ import annotations

import enum

__all__ = ["ApiKey", "PRIVATE_API_KEY_MIN"]

PRIVATE_API_KEY_MIN = 10000


class ApiKey(enum.IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    SASL_AUTHENTICATE = 36
    # raftlog's own (broker.wire.kafka.messages.raftlog documents each one)
    RAFTLOG_DESCRIBE_CLUSTER = 10000
