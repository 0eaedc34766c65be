"""Hand-built Kafka requests over a raw TCP socket, for probing a broker's client port.

Independent of `broker.wire.kafka` on purpose: these bytes are written from Kafka's message
schemas (apache/kafka clients/src/main/resources/common/message/*.json), so the broker is checked
against the protocol, not against its own codec. Only what the integration tests need:

    frame            int32 size, then request header + body
    header v1        api_key int16, api_version int16, correlation_id int32, client_id string
    header v2        header v1 + tagged fields (flexible versions); client_id keeps int16 length
    response header  correlation_id int32 (v0); ApiVersions answers always use v0

    ApiVersions v0   request body empty; response: error_code int16,
                     api_keys [api_key int16, min_version int16, max_version int16]
    ApiVersions v3/4 request (flexible): client_software_name compact string,
                     client_software_version compact string, tagged fields; response body:
                     error_code int16, api_keys compact [key, min, max, tagged fields],
                     throttle_time_ms int32, tagged fields
    Metadata v1      topics nullable [name string]; response: brokers [node_id int32,
                     host string, port int32, rack nullable string], controller_id int32,
                     topics [error_code int16, name string, is_internal bool, partitions
                     [error_code int16, partition_index int32, leader_id int32,
                     replica_nodes [int32], isr_nodes [int32]]]
    Produce v3       transactional_id nullable string, acks int16, timeout_ms int32,
                     topic_data [name string, partition_data [index int32, records bytes]];
                     response: responses [name string, partition_responses [index int32,
                     error_code int16, base_offset int64, log_append_time_ms int64]],
                     throttle_time_ms int32
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "API_VERSIONS",
    "METADATA",
    "PRODUCE",
    "UNSUPPORTED_VERSION",
    "ApiVersionsAnswer",
    "Closed",
    "KafkaSocket",
    "MetadataAnswer",
    "PartitionAnswer",
    "ProduceAnswer",
    "WireError",
    "api_versions_request",
    "check_api_versions",
    "frame",
    "metadata_request",
    "parse_api_versions_flexible",
    "parse_api_versions_v0",
    "parse_metadata_v1",
    "parse_produce_v3",
    "produce_v3_request",
    "request_header",
]

PRODUCE = 0
METADATA = 3
API_VERSIONS = 18
UNSUPPORTED_VERSION = 35
RESPONSE_BYTES_MAX = 64 << 20  # a probe never expects more; a larger prefix is a broken stream
CLIENT_ID = "raftlog-integration"


class WireError(Exception):
    """The broker's bytes were not what Kafka's protocol says they must be."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed:
    """The broker closed the connection (EOF or reset) instead of answering."""

    how: str  # "eof" | "reset"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsAnswer:
    correlation_id: int
    error_code: int
    ranges: dict[int, tuple[int, int]]  # api_key -> (min_version, max_version)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceAnswer:
    correlation_id: int
    partitions: dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (error, base)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionAnswer:
    error_code: int
    leader_id: int
    replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataAnswer:
    correlation_id: int
    brokers: dict[int, str]  # node id -> "host:port"
    controller_id: int
    topic_errors: dict[str, int]
    partitions: dict[tuple[str, int], PartitionAnswer]


# ---- encoding -----------------------------------------------------------------------------------
def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _compact_string(value: str) -> bytes:
    data = value.encode()
    return _uvarint(len(data) + 1) + data


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def request_header(api_key: int, api_version: int, correlation_id: int, *,
                   flexible: bool = False, client_id: str | None = CLIENT_ID) -> bytes:
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + _string(client_id)
    return header + (b"\x00" if flexible else b"")  # header v2: no tagged fields


def api_versions_request(correlation_id: int, version: int = 0) -> bytes:
    """A framed ApiVersions request; v3+ is flexible (header v2 and a compact body)."""
    if version < 3:
        return frame(request_header(API_VERSIONS, version, correlation_id))
    body = _compact_string("raftlog-tests") + _compact_string("1.0") + b"\x00"
    return frame(request_header(API_VERSIONS, version, correlation_id, flexible=True) + body)


def metadata_request(correlation_id: int, topics: Sequence[str] | None, version: int = 1) -> bytes:
    """A framed Metadata v1-v3 request (the same body in those versions)."""
    body = struct.pack(">i", -1) if topics is None else (
        struct.pack(">i", len(topics)) + b"".join(_string(t) for t in topics))
    return frame(request_header(METADATA, version, correlation_id) + body)


def produce_v3_request(correlation_id: int, topic: str, partition: int, records: bytes, *,
                       acks: int = -1, timeout_ms: int = 10_000) -> bytes:
    """A framed Produce v3 request carrying `records` (RecordBatch bytes) to one partition."""
    body = (_string(None) + struct.pack(">hi", acks, timeout_ms)
            + struct.pack(">i", 1) + _string(topic)
            + struct.pack(">i", 1) + struct.pack(">ii", partition, len(records)) + records)
    return frame(request_header(PRODUCE, 3, correlation_id) + body)


# ---- decoding -----------------------------------------------------------------------------------
class _Reader:
    """Bounds-checked big-endian reads; running off the end is a WireError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise WireError(f"response ends at byte {len(self.data)}, needed {size} more "
                            f"at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def int16(self) -> int:
        return self.take(">h")[0]

    def int32(self) -> int:
        return self.take(">i")[0]

    def int64(self) -> int:
        return self.take(">q")[0]

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            (byte,) = self.take(">B")
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise WireError(f"uvarint too long at byte {self.pos}")

    def string(self) -> str:
        length = self.int16()
        if length < 0:
            raise WireError(f"null string at byte {self.pos}")
        (raw,) = self.take(f">{length}s")
        return raw.decode()

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        (raw,) = self.take(f">{length}s")
        return raw.decode()

    def int32_array(self) -> tuple[int, ...]:
        n = self.count()
        return self.take(f">{n}i") if n else ()

    def count(self) -> int:
        n = self.int32()
        if n < 0 or n > len(self.data):
            raise WireError(f"bad array length {n} at byte {self.pos - 4}")
        return n

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(f">{self.uvarint()}s")

    def done(self) -> None:
        if self.pos != len(self.data):
            raise WireError(f"{len(self.data) - self.pos} unexpected trailing bytes")


def parse_api_versions_v0(payload: bytes) -> ApiVersionsAnswer:
    """A v0-shaped ApiVersions response (also what an unsupported version is answered with)."""
    r = _Reader(payload)
    correlation_id, error_code = r.int32(), r.int16()
    ranges = {}
    for _ in range(r.count()):
        key, low, high = r.take(">hhh")
        ranges[key] = (low, high)
    r.done()
    return ApiVersionsAnswer(correlation_id=correlation_id, error_code=error_code, ranges=ranges)


def parse_api_versions_flexible(payload: bytes) -> ApiVersionsAnswer:
    """An ApiVersions v3 response: header v0, flexible body."""
    r = _Reader(payload)
    correlation_id, error_code = r.int32(), r.int16()
    ranges = {}
    for _ in range(r.uvarint() - 1):
        key, low, high = r.take(">hhh")
        r.skip_tagged_fields()
        ranges[key] = (low, high)
    r.int32()  # throttle_time_ms
    r.skip_tagged_fields()
    r.done()
    return ApiVersionsAnswer(correlation_id=correlation_id, error_code=error_code, ranges=ranges)


def parse_produce_v3(payload: bytes) -> ProduceAnswer:
    r = _Reader(payload)
    correlation_id = r.int32()
    partitions = {}
    for _ in range(r.count()):
        topic = r.string()
        for _ in range(r.count()):
            index, error_code, base_offset, _append_time = r.take(">ihqq")
            partitions[(topic, index)] = (error_code, base_offset)
    r.int32()  # throttle_time_ms
    r.done()
    return ProduceAnswer(correlation_id=correlation_id, partitions=partitions)


def parse_metadata_v1(payload: bytes) -> MetadataAnswer:
    r = _Reader(payload)
    correlation_id = r.int32()
    brokers = {}
    for _ in range(r.count()):
        node_id, host, port = r.int32(), r.string(), r.int32()
        r.nullable_string()  # rack
        brokers[node_id] = f"{host}:{port}"
    controller_id = r.int32()
    topic_errors, partitions = {}, {}
    for _ in range(r.count()):
        error_code, name = r.int16(), r.string()
        r.take(">?")  # is_internal
        topic_errors[name] = error_code
        for _ in range(r.count()):
            p_error, index, leader = r.take(">hii")
            replicas = r.int32_array()
            r.int32_array()  # isr
            partitions[(name, index)] = PartitionAnswer(error_code=p_error, leader_id=leader,
                                                        replicas=replicas)
    r.done()
    return MetadataAnswer(correlation_id=correlation_id, brokers=brokers,
                          controller_id=controller_id, topic_errors=topic_errors,
                          partitions=partitions)


# ---- the socket ---------------------------------------------------------------------------------
class KafkaSocket:
    """One TCP connection to a client port; every read has a deadline."""

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.timeout_s = timeout_s
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)

    def __enter__(self) -> KafkaSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: the broker reads EOF after what we sent (if it has not closed yet)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def _recv_exactly(self, size: int, deadline: float) -> bytes | Closed:
        chunks, got = [], 0
        while got < size:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(min(size - got, 1 << 20))
            except TimeoutError:
                raise TimeoutError(f"{self.address}: no complete response and no close "
                                   f"within {self.timeout_s:g} s ({got}/{size} bytes)") from None
            except (ConnectionResetError, BrokenPipeError):
                return Closed(how="reset")
            if not chunk:
                return Closed(how="eof")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def read_response(self) -> bytes | Closed:
        """The next response frame's payload (correlation id first), or Closed."""
        deadline = time.monotonic() + self.timeout_s
        head = self._recv_exactly(4, deadline)
        if isinstance(head, Closed):
            return head
        (size,) = struct.unpack(">i", head)
        if not 4 <= size <= RESPONSE_BYTES_MAX:
            raise WireError(f"{self.address}: response size prefix {size} is impossible")
        return self._recv_exactly(size, deadline)

    def expect_response(self) -> bytes:
        answer = self.read_response()
        if isinstance(answer, Closed):
            raise WireError(f"{self.address}: connection closed ({answer.how}) instead of a "
                            "response")
        return answer

    def expect_closed(self) -> Closed:
        """Read until the broker closes; any response frame first is a failure."""
        answer = self.read_response()
        if not isinstance(answer, Closed):
            raise WireError(f"{self.address}: expected the connection to be closed, got a "
                            f"{len(answer)}-byte response {answer[:64]!r}")
        return answer


def check_api_versions(address: str, timeout_s: float = 5.0) -> ApiVersionsAnswer:
    """One ApiVersions v0 round trip; raises WireError unless it succeeds with error 0."""
    with KafkaSocket(address, timeout_s) as conn:
        conn.send(api_versions_request(correlation_id=7))
        answer = parse_api_versions_v0(conn.expect_response())
    if answer.correlation_id != 7 or answer.error_code != 0 or API_VERSIONS not in answer.ranges:
        raise WireError(f"{address}: bad ApiVersions v0 answer {answer}")
    return answer
