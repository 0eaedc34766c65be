"""Kafka's request and response headers.

    request header v1   api_key int16, api_version int16, correlation_id int32,
                        client_id nullable string (int16 length)
    request header v2   v1 + tagged fields (client_id keeps its int16 length)
    response header v0  correlation_id int32
    response header v1  v0 + tagged fields

Which version a message uses is decided in `broker.wire.kafka.versions`. The first 8 bytes of
every request are the same in all header versions, so api_key, api_version and correlation_id
can be read before the version is known (and are, to answer an unsupported ApiVersions).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["RequestHeader", "ResponseHeader", "REQUEST_HEADER_PREFIX", "RESPONSE_HEADER_PREFIX"]

REQUEST_HEADER_PREFIX = struct.Struct(">hhi")  # api_key, api_version, correlation_id
RESPONSE_HEADER_PREFIX = struct.Struct(">i")  # correlation_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeader:
    """What a request is (api_key, api_version) and how to answer it (correlation_id).

    Decoded requests carry an ApiKey member in `api_key`. To encode a response, pass the
    request's header back; a client encoding a request builds one.
    """

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHeader:
    correlation_id: int
