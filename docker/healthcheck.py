"""Container health probe for a raftlog broker: is the Kafka client port answering?

    python healthcheck.py [HOST:PORT] [--timeout-ms N]

Sends one Kafka ApiVersions v0 request (api_key 18, version 0, a correlation id, a client id)
and expects a response carrying the same correlation id and error_code 0. Without HOST:PORT it
probes the broker's own client port, taken from RAFTLOG_LISTEN (a wildcard host such as
0.0.0.0 is probed on loopback); with neither, 127.0.0.1:9092.

Exit status follows Docker's HEALTHCHECK: 0 healthy, 1 unhealthy (one line on stderr says why,
bad usage included). Standard library only, so it runs in the image without raftlog loaded and
costs one connection per probe.

Wire format (Kafka's, big-endian):
    request  = int32 size | int16 api_key=18 | int16 api_version=0 | int32 correlation_id
               | int16 client_id length | client_id bytes          (the v0 body is empty)
    response = int32 size | int32 correlation_id | int16 error_code | api_keys array ...
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Mapping, Sequence

__all__ = [
    "ProbeError",
    "build_request",
    "check_response",
    "main",
    "probe",
    "split_host_port",
    "target_from_env",
]

API_VERSIONS_KEY = 18
API_VERSION = 0
CLIENT_ID = b"raftlog-healthcheck"
DEFAULT_TARGET = "127.0.0.1:9092"
TIMEOUT_MS_DEFAULT = 2000
RESPONSE_BYTES_MAX = 64 << 10  # an ApiVersions answer is a few hundred bytes; refuse more
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "*": "127.0.0.1",
                         "::": "::1", "[::]": "::1"}

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1  # Docker reserves 2; every failure, usage included, is "unhealthy"


class ProbeError(Exception):
    """The broker did not answer as a healthy one; the message says what was seen."""


def build_request(correlation_id: int) -> bytes:
    header = struct.pack(">hhih", API_VERSIONS_KEY, API_VERSION, correlation_id, len(CLIENT_ID))
    payload = header + CLIENT_ID
    return struct.pack(">i", len(payload)) + payload


def check_response(payload: bytes, correlation_id: int) -> None:
    """Validate a response payload (the bytes after the size prefix)."""
    if len(payload) < 6:
        raise ProbeError(f"short ApiVersions response ({len(payload)} bytes)")
    got_id, error_code = struct.unpack_from(">ih", payload)
    if got_id != correlation_id:
        raise ProbeError(f"correlation id {got_id} in the answer, {correlation_id} sent")
    if error_code != 0:
        raise ProbeError(f"ApiVersions answered error code {error_code}")


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ProbeError("connection closed by the broker before a full answer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def split_host_port(target: str) -> tuple[str, int]:
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ProbeError(f"expected HOST:PORT, got {target!r}")
    host = _WILDCARD_TO_LOOPBACK.get(host, host)
    return host.strip("[]"), int(port_text)


def probe(target: str, timeout_ms: int = TIMEOUT_MS_DEFAULT) -> None:
    """Raise ProbeError unless the broker at `target` answers ApiVersions v0 without error."""
    host, port = split_host_port(target)
    correlation_id = os.getpid() & 0x7FFFFFFF
    try:
        with socket.create_connection((host, port), timeout=timeout_ms / 1000) as sock:
            sock.sendall(build_request(correlation_id))
            (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
            if not 0 < size <= RESPONSE_BYTES_MAX:
                raise ProbeError(f"implausible response size {size}")
            check_response(_recv_exactly(sock, size), correlation_id)
    except OSError as e:  # refused, unreachable, timed out, reset
        raise ProbeError(f"{host}:{port}: {e.strerror or e}") from None


def target_from_env(env: Mapping[str, str]) -> str:
    return env.get("RAFTLOG_LISTEN") or DEFAULT_TARGET


def _parse_args(argv: Sequence[str]) -> tuple[str, int]:
    target, timeout_ms = "", TIMEOUT_MS_DEFAULT
    items = list(argv)
    while items:
        item = items.pop(0)
        if item == "--timeout-ms" and items and items[0].isdigit() and int(items[0]) > 0:
            timeout_ms = int(items.pop(0))
        elif not item.startswith("-") and not target:
            target = item
        else:
            raise ProbeError(f"usage: healthcheck.py [HOST:PORT] [--timeout-ms N] (got {item!r})")
    return target or target_from_env(os.environ), timeout_ms


def main(argv: Sequence[str] | None = None) -> int:
    try:
        target, timeout_ms = _parse_args(sys.argv[1:] if argv is None else argv)
        probe(target, timeout_ms)
    except ProbeError as e:
        print(f"healthcheck: unhealthy: {e}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_HEALTHY


if __name__ == "__main__":
    raise SystemExit(main())
