"""The producer's options, checked once into a frozen object.

Names and defaults follow API.md (kafka-python / aiokafka names, so a Kafka user finds them);
every time is integer milliseconds and every size integer bytes. Two rules from Kafka's Java
client are enforced rather than silently adjusted:

- `delivery_timeout_ms >= linger_ms + request_timeout_ms`, so a record gets at least one
  full attempt before it can expire;
- idempotence needs acks="all": with acks 0 or 1 a leader change can lose acknowledged
  batches together with their sequence numbers, so the producer runs without idempotence
  then (as Kafka's client does when idempotence was not asked for explicitly); `idempotent`
  says which mode is in effect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from broker.client.errors import ClientConfigError
from broker.wire.limits import REQUEST_BYTES_MAX
from broker.wire.records import Compression

__all__ = ["Acks", "ProducerConfig", "Serializer", "parse_acks", "ACKS_ALL"]

Acks: TypeAlias = "Literal[0, 1, -1, 'all', '0', '1', '-1']"
Serializer: TypeAlias = Callable[[Any], "bytes | None"]

ACKS_ALL = -1
_DAY_MS = 24 * 3600 * 1000
_COMPRESSIONS = tuple(Compression)  # none, gzip, snappy, lz4, zstd
_BATCH_SIZE_MAX = 64 << 20  # one batch; far above any broker's limit
_BUFFER_MEMORY_MAX = 1 << 40
_MAX_REQUEST_SIZE_MIN = 1024  # room for a batch header and a small record


def parse_acks(value: object) -> int:
    """0, 1 or -1 (all) from the forms users write: 0, 1, -1, "all", "0", "1", "-1"."""
    if isinstance(value, bool):
        raise ClientConfigError(f"acks must be 0, 1 or 'all', got {value!r}")
    forms: dict[object, int] = {0: 0, 1: 1, -1: ACKS_ALL, "0": 0, "1": 1, "-1": ACKS_ALL,
                                "all": ACKS_ALL}
    try:
        return forms[value.lower() if isinstance(value, str) else value]
    except (KeyError, TypeError):
        raise ClientConfigError(f"acks must be 0, 1 or 'all', got {value!r}") from None


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ClientConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerConfig:
    bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092"
    client_id: str = "raftlog-producer"
    acks: int = ACKS_ALL  # 0 no answer, 1 leader appended, -1 committed by a Raft quorum
    linger_ms: int = 5  # a batch waits this long for more records before it is sent
    batch_size: int = 65536  # bytes of records per batch (estimated, before compression)
    compression_type: str = "lz4"  # per batch: "none", "gzip", "snappy", "lz4" or "zstd"
    enable_idempotence: bool = True  # effective only with acks="all" (see `idempotent`)
    request_timeout_ms: int = 30000  # one Produce request, sent to answered
    delivery_timeout_ms: int = 120000  # send() to acknowledgement or failure, retries included
    buffer_memory: int = 32 << 20  # bytes of records held before send() blocks
    max_block_ms: int = 60000  # send() waits at most this for metadata and buffer space
    max_request_size: int = 1 << 20  # bytes of batches in one request; bounds one record too
    retry_backoff_ms: int = 100  # pause before a failed batch is sent again
    metadata_max_age_ms: int = 300000  # metadata is refreshed at least this often
    key_serializer: Serializer | None = None
    value_serializer: Serializer | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "acks", parse_acks(self.acks))
        if not isinstance(self.client_id, str) or not 0 < len(self.client_id) <= 255:
            raise ClientConfigError("client_id must be a string of 1 to 255 characters")
        if not isinstance(self.compression_type, str) or \
                self.compression_type.lower() not in _COMPRESSIONS:
            raise ClientConfigError(f"compression_type must be one of "
                                    f"{', '.join(map(str, _COMPRESSIONS))}, "
                                    f"got {self.compression_type!r}")
        object.__setattr__(self, "compression_type", self.compression_type.lower())
        _check_int("linger_ms", self.linger_ms, 0, _DAY_MS)
        _check_int("batch_size", self.batch_size, 0, _BATCH_SIZE_MAX)
        _check_int("request_timeout_ms", self.request_timeout_ms, 1, _DAY_MS)
        _check_int("delivery_timeout_ms", self.delivery_timeout_ms, 1, _DAY_MS)
        _check_int("buffer_memory", self.buffer_memory, _MAX_REQUEST_SIZE_MIN,
                   _BUFFER_MEMORY_MAX)
        _check_int("max_block_ms", self.max_block_ms, 0, _DAY_MS)
        _check_int("max_request_size", self.max_request_size, _MAX_REQUEST_SIZE_MIN,
                   REQUEST_BYTES_MAX)
        _check_int("retry_backoff_ms", self.retry_backoff_ms, 0, _DAY_MS)
        _check_int("metadata_max_age_ms", self.metadata_max_age_ms, 1, _DAY_MS)
        if not isinstance(self.enable_idempotence, bool):
            raise ClientConfigError("enable_idempotence must be True or False")
        for name in ("key_serializer", "value_serializer"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ClientConfigError(f"{name} must be callable or None")
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ClientConfigError(
                f"delivery_timeout_ms ({self.delivery_timeout_ms}) must be at least linger_ms + "
                f"request_timeout_ms ({self.linger_ms} + {self.request_timeout_ms})")

    @property
    def idempotent(self) -> bool:
        """Whether batches carry a producer id and sequence numbers (exactly once per
        partition, order kept across retries)."""
        return self.enable_idempotence and self.acks == ACKS_ALL

    @property
    def compression(self) -> Compression:
        return Compression(self.compression_type)
