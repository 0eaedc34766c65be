"""Requests and responses to and from bytes: the broker decodes requests and encodes responses,
our clients encode requests and decode responses, all through the same compiled schemas.

A *frame* is what follows Kafka's 4-byte big-endian size prefix: header then body. Decoders
take a frame without its size prefix (the connection has already read it); encoders return a
frame with its size prefix unless `framed=False`. Records stay opaque: a decoded Produce
request's `records` is a memoryview into the frame, and a Fetch response's `records` may be a
list of buffers; `encode_response_parts` returns the pieces for `writelines` without joining.

Errors (broker.wire.errors): bad bytes from the peer raise a RemoteProtocolError subclass
(MalformedRequestError / MalformedResponseError, UnknownApiKeyError, UnsupportedVersionError)
that names the field and the byte offset; values we cannot encode raise LocalProtocolError.
Nothing else escapes: no IndexError, struct.error or UnicodeDecodeError.

The broker's loop, in short:

    try:
        header, body = decode_request(frame)
    except UnsupportedVersionError as e:
        if e.api_key == ApiKey.API_VERSIONS:
            return unsupported_api_versions_response(frame)   # v0 body, error 35
        close the connection                                  # Kafka sends nothing
    except RemoteProtocolError:
        close the connection
    ...
    return encode_response(header, ProduceResponse(responses=[...]))
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, TypeAlias

from broker.wire.errors import (
    ErrorCode,
    LocalProtocolError,
    MalformedRequestError,
    MalformedResponseError,
    UnknownApiKeyError,
    UnsupportedVersionError,
)
from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.apis import CODECS, VersionCodec
from broker.wire.kafka.header import (
    REQUEST_HEADER_PREFIX,
    RESPONSE_HEADER_PREFIX,
    RequestHeader,
    ResponseHeader,
)
from broker.wire.kafka.messages.api_versions import ApiVersion, ApiVersionsResponse
from broker.wire.kafka.primitives import (
    DecodeError,
    read_string,
    skip_tagged_fields,
    write_string,
)
from broker.wire.kafka.schema import coerce
from broker.wire.kafka.versions import SUPPORTED_VERSIONS

__all__ = [
    "decode_request",
    "encode_request",
    "decode_response",
    "encode_response",
    "encode_response_parts",
    "peek_request_header",
    "peek_correlation_id",
    "api_versions_response",
    "unsupported_api_versions_response",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

_SIZE = struct.Struct(">i")
_ENCODE_ERRORS = (struct.error, TypeError, AttributeError, OverflowError, UnicodeError)


def _view(frame: Buffer) -> memoryview:
    view = memoryview(frame)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    return view


def _name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"api {api_key}"


# ---- broker side ----------------------------------------------------------------------------

def peek_request_header(frame: Buffer) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id): the first 8 bytes, the same in every header
    version. Raises MalformedRequestError on a shorter frame."""
    return _peek(_view(frame))


def _peek(buf: memoryview) -> tuple[int, int, int]:
    if len(buf) < REQUEST_HEADER_PREFIX.size:
        raise MalformedRequestError(
            f"request of {len(buf)} bytes is shorter than api_key, api_version and "
            f"correlation_id (8 bytes)", offset=0)
    api_key, api_version, correlation_id = REQUEST_HEADER_PREFIX.unpack_from(buf, 0)
    return api_key, api_version, correlation_id


def _request_codec(api_key: int, api_version: int, correlation_id: int) -> VersionCodec:
    per_version = CODECS.get(api_key)
    if per_version is None:
        raise UnknownApiKeyError(f"unknown api key {api_key}", offset=0, api_key=api_key,
                                 api_version=api_version, correlation_id=correlation_id)
    codec = per_version.get(api_version)
    if codec is None:
        low, high = SUPPORTED_VERSIONS[api_key]  # type: ignore[index]
        raise UnsupportedVersionError(
            f"{_name(api_key)} v{api_version} is not served (v{low}-v{high})", offset=2,
            api_key=api_key, api_version=api_version, correlation_id=correlation_id)
    return codec


def _header_maker() -> Any:
    # Slot setters instead of the frozen dataclass's __init__: half the cost, once per request.
    new = object.__new__
    set_key, set_version, set_cid, set_client = (
        RequestHeader.__dict__[name].__set__
        for name in ("api_key", "api_version", "correlation_id", "client_id"))

    def make(api_key: int, api_version: int, correlation_id: int, client_id: str | None
             ) -> RequestHeader:
        header = new(RequestHeader)
        set_key(header, api_key)
        set_version(header, api_version)
        set_cid(header, correlation_id)
        set_client(header, client_id)
        return header

    return make


_request_header = _header_maker()


def decode_request(frame: Buffer) -> tuple[RequestHeader, Any]:
    """Decode one request frame (size prefix excluded) into its header and body.

    The body is the API's request dataclass; a Produce request's records are memoryviews into
    `frame`, so the caller keeps `frame` alive as long as it uses them.
    """
    buf = _view(frame)
    api_key, api_version, correlation_id = _peek(buf)
    codec = _request_codec(api_key, api_version, correlation_id)
    end = len(buf)
    try:
        client_id, pos = read_string(buf, 8, end, True, "RequestHeader.client_id")
        if codec.flexible:
            pos = skip_tagged_fields(buf, pos, end, "RequestHeader tagged fields")
        body, pos = codec.read_request(buf, pos, end)
    except DecodeError as e:
        raise MalformedRequestError(
            f"{codec.request_type.__name__} v{api_version}: {e.message}", offset=e.offset,
            api_key=api_key, api_version=api_version, correlation_id=correlation_id) from None
    if pos != end:
        raise MalformedRequestError(
            f"{codec.request_type.__name__} v{api_version}: {end - pos} trailing bytes after "
            f"the body at byte {pos}", offset=pos, api_key=api_key, api_version=api_version,
            correlation_id=correlation_id)
    return _request_header(codec.api_key, api_version, correlation_id, client_id), body


def _local_codec(api_key: int, api_version: int) -> VersionCodec:
    codec = CODECS.get(api_key, {}).get(api_version)
    if codec is None:
        raise LocalProtocolError(f"{_name(api_key)} v{api_version} is not a version we speak")
    return codec


def _body(cls: type, body: Any) -> Any:
    if type(body) is cls:
        return body
    if isinstance(body, Mapping) or isinstance(body, cls):
        return coerce(cls, body)
    raise LocalProtocolError(f"expected a {cls.__name__} body, got {type(body).__name__}")


def _response_parts(header: RequestHeader, body: Any) -> list[Buffer]:
    codec = _local_codec(header.api_key, header.api_version)
    body = _body(codec.response_type, body)
    parts: list[Buffer] = [b""]
    app = parts.append
    try:
        app(RESPONSE_HEADER_PREFIX.pack(header.correlation_id))
        if codec.flexible and codec.api_key != ApiKey.API_VERSIONS:
            app(b"\x00")  # response header v1: no tagged fields
        codec.write_response(body, app)
        parts[0] = _SIZE.pack(sum(map(len, parts)))
    except _ENCODE_ERRORS as e:
        raise LocalProtocolError(
            f"{codec.response_type.__name__} v{header.api_version}: {e}") from e
    return parts


def encode_response(header: RequestHeader, body: Any, *, framed: bool = True) -> bytes:
    """The response to the request `header` describes (its api_key, api_version and
    correlation_id), with the 4-byte size prefix unless `framed=False`. `body` is the API's
    response dataclass, or a dict of its fields (nested dicts for structs)."""
    parts = _response_parts(header, body)
    return b"".join(parts if framed else parts[1:])


def encode_response_parts(header: RequestHeader, body: Any) -> list[Buffer]:
    """Like encode_response (framed), as a list of buffers for `transport.writelines`: record
    payloads are passed through, not copied."""
    return _response_parts(header, body)


def api_versions_response(*, error_code: int = 0, throttle_time_ms: int = 0,
                          versions: Mapping[ApiKey, tuple[int, int]] = SUPPORTED_VERSIONS,
                          ) -> ApiVersionsResponse:
    """Our ApiVersions answer: every API in `versions`, by key."""
    keys = tuple(ApiVersion(api_key=int(k), min_version=low, max_version=high)
                 for k, (low, high) in sorted(versions.items()))
    return ApiVersionsResponse(error_code=error_code, api_keys=keys,
                               throttle_time_ms=throttle_time_ms)


def unsupported_api_versions_response(frame: Buffer) -> bytes:
    """The answer to an ApiVersions request at a version we do not serve, framed.

    As Kafka 2.4+ does, whatever the version and body: a v0 body (header v0) with error 35
    UNSUPPORTED_VERSION and only our ApiVersions range, so the client retries at a version we
    serve. Only the correlation id (bytes 4-7 of the frame) is read.
    """
    _, _, correlation_id = peek_request_header(frame)
    low, high = SUPPORTED_VERSIONS[ApiKey.API_VERSIONS]
    body = ApiVersionsResponse(
        error_code=ErrorCode.UNSUPPORTED_VERSION,
        api_keys=(ApiVersion(api_key=ApiKey.API_VERSIONS, min_version=low, max_version=high),))
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=0,
                           correlation_id=correlation_id)
    return encode_response(header, body)


# ---- client side ----------------------------------------------------------------------------

def encode_request(header: RequestHeader, body: Any, *, framed: bool = True) -> bytes:
    """A request frame (4-byte size prefix included unless `framed=False`). `body` is the
    API's request dataclass or a dict of its fields."""
    codec = _local_codec(header.api_key, header.api_version)
    body = _body(codec.request_type, body)
    parts: list[Buffer] = [b""]
    app = parts.append
    try:
        app(REQUEST_HEADER_PREFIX.pack(header.api_key, header.api_version, header.correlation_id))
        write_string(app, header.client_id, True, "RequestHeader.client_id")
        if codec.flexible:
            app(b"\x00")  # request header v2: no tagged fields
        codec.write_request(body, app)
        parts[0] = _SIZE.pack(sum(map(len, parts)))
    except _ENCODE_ERRORS as e:
        raise LocalProtocolError(
            f"{codec.request_type.__name__} v{header.api_version}: {e}") from e
    return b"".join(parts if framed else parts[1:])


def peek_correlation_id(frame: Buffer) -> int:
    """The correlation id of a response frame, to find the request it answers."""
    buf = _view(frame)
    if len(buf) < RESPONSE_HEADER_PREFIX.size:
        raise MalformedResponseError(f"response of {len(buf)} bytes has no correlation_id",
                                     offset=0)
    return int(RESPONSE_HEADER_PREFIX.unpack_from(buf, 0)[0])


def decode_response(api_key: int, api_version: int, frame: Buffer
                    ) -> tuple[ResponseHeader, Any]:
    """Decode a response frame (size prefix excluded) to the request we sent at `api_version`.

    ApiVersions: an UNSUPPORTED_VERSION answer is decoded as v0 whatever we asked, as Kafka's
    clients do, since the broker answers an unsupported version in the v0 shape.
    """
    codec = _local_codec(api_key, api_version)
    buf = _view(frame)
    correlation_id = peek_correlation_id(buf)
    end = len(buf)
    pos = 4
    try:
        if codec.flexible and codec.api_key != ApiKey.API_VERSIONS:
            pos = skip_tagged_fields(buf, pos, end, "ResponseHeader tagged fields")
        if codec.api_key == ApiKey.API_VERSIONS and end - pos >= 2 and \
                struct.unpack_from(">h", buf, pos)[0] == ErrorCode.UNSUPPORTED_VERSION:
            codec = CODECS[ApiKey.API_VERSIONS][0]
        body, pos = codec.read_response(buf, pos, end)
    except DecodeError as e:
        raise MalformedResponseError(
            f"{codec.response_type.__name__} v{codec.version}: {e.message}", offset=e.offset,
            api_key=api_key, api_version=api_version, correlation_id=correlation_id) from None
    if pos != end:
        raise MalformedResponseError(
            f"{codec.response_type.__name__} v{codec.version}: {end - pos} trailing bytes after "
            f"the body at byte {pos}", offset=pos, api_key=api_key, api_version=api_version,
            correlation_id=correlation_id)
    return ResponseHeader(correlation_id=correlation_id), body
