"""The cluster client's options, checked once into a frozen object.

Defaults follow kafka-python / aiokafka where a Kafka user would expect them. Every option is
an integer count of milliseconds or bytes, named with its unit last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker.client.errors import ClientConfigError
from broker.wire.limits import REQUEST_BYTES_MAX

__all__ = ["Address", "ClientConfig", "parse_bootstrap", "parse_address"]

# Each bound exists so a typo cannot make a client wait for days or hold gigabytes.
_TIMEOUT_MS_MAX = 24 * 3600 * 1000
_INFLIGHT_MAX = 1024
_BOOTSTRAP_SERVERS_MAX = 256


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """`HOST:PORT` (or `[V6]:PORT`) into an Address; ClientConfigError if malformed."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ClientConfigError(f"bad broker address {text!r}: expected HOST:PORT")
    return Address(host=host, port=int(port_text))


def parse_bootstrap(servers: str | Sequence[str]) -> tuple[Address, ...]:
    """"h:p,h:p" or ["h:p", ...] into addresses, in order, without duplicates."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out: list[Address] = []
    for item in items:
        if not isinstance(item, str):
            raise ClientConfigError(f"bad broker address {item!r}: expected a string")
        if item.strip():
            address = parse_address(item)
            if address not in out:
                out.append(address)
    if not out:
        raise ClientConfigError("bootstrap_servers names no broker")
    if len(out) > _BOOTSTRAP_SERVERS_MAX:
        raise ClientConfigError(f"more than {_BOOTSTRAP_SERVERS_MAX} bootstrap servers")
    return tuple(out)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ClientConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    bootstrap: tuple[Address, ...]
    client_id: str = "raftlog"
    request_timeout_ms: int = 30000  # one request, sent to answered; also bounds connecting
    metadata_max_age_ms: int = 300000  # refresh metadata at least this often
    retry_backoff_ms: int = 100  # pause between retries, and between metadata refreshes
    reconnect_backoff_ms: int = 50  # after a failed connect, the address is not retried sooner
    inflight_requests_max: int = 32  # per connection; more senders wait for a slot
    response_bytes_max: int = REQUEST_BYTES_MAX  # a larger frame closes the connection

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or len(self.client_id) > 255:
            raise ClientConfigError("client_id must be a string of at most 255 characters")
        _check_range("request_timeout_ms", self.request_timeout_ms, 1, _TIMEOUT_MS_MAX)
        _check_range("metadata_max_age_ms", self.metadata_max_age_ms, 1, _TIMEOUT_MS_MAX)
        _check_range("retry_backoff_ms", self.retry_backoff_ms, 0, _TIMEOUT_MS_MAX)
        _check_range("reconnect_backoff_ms", self.reconnect_backoff_ms, 0, _TIMEOUT_MS_MAX)
        _check_range("inflight_requests_max", self.inflight_requests_max, 1, _INFLIGHT_MAX)
        _check_range("response_bytes_max", self.response_bytes_max, 64, (1 << 31) - 1)

    @property
    def bootstrap_text(self) -> str:
        return ",".join(str(a) for a in self.bootstrap)
