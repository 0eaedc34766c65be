"""Which versions of each API we serve, and which header each version uses.

We serve every version below each API's first flexible version (tagged fields, compact
strings), plus ApiVersions v3, the one flexible version every modern client sends first
(KAFKA_PROTOCOL.md beside API.md has the table and the clients' habits). Ranges start at v0
even where Kafka 4 raised its minimum, because old clients switch features on only when they
see the old versions advertised.

Produce v0-v2 and Fetch v0-v3 predate RecordBatch v2 (magic 2), the only record format we
store: they are advertised (as Kafka 4 does) and decoded, but the broker refuses them
(`RECORD_BATCH_V2_MIN_VERSIONS`).

Headers: a request at a flexible version has header v2 (v1 plus tagged fields; client_id keeps
its int16 length), otherwise v1. A response at a flexible version has header v1 (correlation_id
plus tagged fields), otherwise v0 -- except ApiVersions, whose response header is always v0 so
that a client can read it whatever version it asked for (KIP-511).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.wire.kafka.api_keys import ApiKey

__all__ = [
    "SUPPORTED_VERSIONS",
    "FIRST_FLEXIBLE_VERSIONS",
    "RECORD_BATCH_V2_MIN_VERSIONS",
    "is_flexible",
    "request_header_version",
    "response_header_version",
]

K = ApiKey

# api key -> (min, max) we serve: the "serve" column of KAFKA_PROTOCOL.md, then raftlog's
# private APIs (broker.wire.kafka.messages.raftlog).
SUPPORTED_VERSIONS: Mapping[ApiKey, tuple[int, int]] = MappingProxyType({
    K.API_VERSIONS: (0, 3),
    K.METADATA: (0, 8),
    K.PRODUCE: (0, 8),
    K.FETCH: (0, 11),
    K.LIST_OFFSETS: (0, 5),
    K.FIND_COORDINATOR: (0, 2),
    K.JOIN_GROUP: (0, 5),
    K.SYNC_GROUP: (0, 3),
    K.HEARTBEAT: (0, 3),
    K.LEAVE_GROUP: (0, 3),
    K.OFFSET_COMMIT: (0, 7),
    K.OFFSET_FETCH: (0, 5),
    K.DESCRIBE_GROUPS: (0, 4),
    K.LIST_GROUPS: (0, 2),
    K.INIT_PRODUCER_ID: (0, 1),
    K.CREATE_TOPICS: (0, 4),
    K.DELETE_TOPICS: (0, 3),
    K.DESCRIBE_CONFIGS: (0, 3),
    K.SASL_HANDSHAKE: (0, 1),
    K.SASL_AUTHENTICATE: (0, 1),
    K.RAFTLOG_DESCRIBE_CLUSTER: (0, 0),
})

# Kafka's first flexible version per API (None: no flexible version exists).
FIRST_FLEXIBLE_VERSIONS: Mapping[ApiKey, int | None] = MappingProxyType({
    K.API_VERSIONS: 3,
    K.METADATA: 9,
    K.PRODUCE: 9,
    K.FETCH: 12,
    K.LIST_OFFSETS: 6,
    K.FIND_COORDINATOR: 3,
    K.JOIN_GROUP: 6,
    K.SYNC_GROUP: 4,
    K.HEARTBEAT: 4,
    K.LEAVE_GROUP: 4,
    K.OFFSET_COMMIT: 8,
    K.OFFSET_FETCH: 6,
    K.DESCRIBE_GROUPS: 5,
    K.LIST_GROUPS: 3,
    K.INIT_PRODUCER_ID: 2,
    K.CREATE_TOPICS: 5,
    K.DELETE_TOPICS: 4,
    K.DESCRIBE_CONFIGS: 4,
    K.SASL_HANDSHAKE: None,
    K.SASL_AUTHENTICATE: 2,
    K.RAFTLOG_DESCRIBE_CLUSTER: None,
})

# Advertised from v0 but refused by the broker below these versions: they carry the old
# message formats (magic 0/1), and we store only RecordBatch v2. Kafka 4 does the same.
RECORD_BATCH_V2_MIN_VERSIONS: Mapping[ApiKey, int] = MappingProxyType({
    K.PRODUCE: 3,
    K.FETCH: 4,
})


def is_flexible(api_key: int, version: int) -> bool:
    first = FIRST_FLEXIBLE_VERSIONS.get(api_key)  # type: ignore[call-overload]
    return first is not None and version >= first


def request_header_version(api_key: int, version: int) -> int:
    return 2 if is_flexible(api_key, version) else 1


def response_header_version(api_key: int, version: int) -> int:
    if api_key == K.API_VERSIONS:
        return 0
    return 1 if is_flexible(api_key, version) else 0
