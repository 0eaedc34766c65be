"""Kafka's client protocol: a schema-driven codec shared by the broker and our clients.

    api_keys.py   ApiKey (Kafka's names), the range for raftlog's own APIs
    versions.py   SUPPORTED_VERSIONS (what ApiVersions advertises), header-version rules
    schema.py     how schemas are declared: dataclass fields carrying Kafka's JSON attributes
    messages/     the schemas: one dataclass per message and nested struct; raftlog's
                  private APIs (keys from 10000) are documented in messages/raftlog.py
    primitives.py Kafka's primitive types, bounds-checked
    codegen.py    compiles a schema, once per version, into a reader and a writer
    apis.py       the registry: API key -> schemas, compiled codecs per served version
    header.py     request and response headers
    codec.py      decode_request / encode_response (broker), encode_request / decode_response
                  (clients), the ApiVersions fallback for unsupported versions

Pure: imports only the standard library and broker.wire.
"""

from broker.wire.errors import (
    LocalProtocolError,
    MalformedMessageError,
    MalformedRequestError,
    MalformedResponseError,
    ProtocolError,
    RemoteProtocolError,
    UnknownApiKeyError,
    UnsupportedVersionError,
)
from broker.wire.kafka.api_keys import PRIVATE_API_KEY_MIN, ApiKey
from broker.wire.kafka.codec import (
    api_versions_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    encode_response_parts,
    peek_correlation_id,
    peek_request_header,
    unsupported_api_versions_response,
)
from broker.wire.kafka.header import RequestHeader, ResponseHeader
from broker.wire.kafka.schema import coerce
from broker.wire.kafka.versions import (
    FIRST_FLEXIBLE_VERSIONS,
    RECORD_BATCH_V2_MIN_VERSIONS,
    SUPPORTED_VERSIONS,
    is_flexible,
    request_header_version,
    response_header_version,
)

__all__ = [
    "ApiKey",
    "PRIVATE_API_KEY_MIN",
    "SUPPORTED_VERSIONS",
    "FIRST_FLEXIBLE_VERSIONS",
    "RECORD_BATCH_V2_MIN_VERSIONS",
    "is_flexible",
    "request_header_version",
    "response_header_version",
    "RequestHeader",
    "ResponseHeader",
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "encode_response_parts",
    "peek_request_header",
    "peek_correlation_id",
    "api_versions_response",
    "unsupported_api_versions_response",
    "coerce",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "MalformedMessageError",
    "MalformedRequestError",
    "MalformedResponseError",
    "UnknownApiKeyError",
    "UnsupportedVersionError",
]
