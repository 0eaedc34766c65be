"""One producer batch: the records bound for one partition that travel, and succeed or fail,
together as one RecordBatch v2 (broker.wire.records).

Sizes are estimates made when a record is queued, before compression, and never below what
the record takes in an uncompressed batch, so `batch_size` and `buffer_memory` are kept
conservatively. The batch is encoded when it is first sent, with its producer id, epoch and
base sequence when the producer is idempotent; the bytes are kept for retries and encoded
again only if the sequence changes (after a producer id reset).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence

from broker.wire.compression import compressed_bytes_max
from broker.wire.records import BATCH_HEADER_BYTES, Compression, Record, encode_batch
from producer.futures import BatchResult, RecordMetadata

__all__ = [
    "BatchState",
    "ProducerBatch",
    "record_bytes_estimate",
    "headers_bytes",
    "batch_bytes_max_for",
]

# Varint fields of a record whose value depends on where it sits in its batch: timestamp
# and offset deltas. 3 bytes each covers deltas below 2**20 (zigzag), beyond any batch here.
_DELTA_BYTES = 6


def _varint_bytes(n: int) -> int:
    """Bytes of a zigzag varint holding n >= -1 (called per record: small values first)."""
    if n < 64:
        return 1
    if n < 8192:
        return 2
    return ((n << 1).bit_length() + 6) // 7


def headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> int:
    """Encoded bytes of a record's headers (count included); key lengths in UTF-8 bytes are
    bounded by 4 bytes per character."""
    total = _varint_bytes(len(headers))
    for key, value in headers:
        k = len(key) * 4 if not key.isascii() else len(key)
        v = -1 if value is None else len(value)
        total += _varint_bytes(k) + k + _varint_bytes(v) + max(v, 0)
    return total


def record_bytes_estimate(key_bytes: int, value_bytes: int, header_bytes: int) -> int:
    """Upper estimate of a record's bytes in an uncompressed batch (key/value -1 = null)."""
    body = 1 + _DELTA_BYTES + header_bytes
    body += 1 if key_bytes < 0 else _varint_bytes(key_bytes) + key_bytes
    body += 1 if value_bytes < 0 else _varint_bytes(value_bytes) + value_bytes
    return _varint_bytes(body) + body


def batch_bytes_max_for(records_bytes: int, compression: Compression) -> int:
    """Largest encoded size of a batch holding `records_bytes` of records under `compression`
    (incompressible data grows by the codec's framing, a few bytes per block)."""
    return BATCH_HEADER_BYTES + compressed_bytes_max(compression, records_bytes)


class BatchState(enum.Enum):
    QUEUED = "queued"  # not sent yet (or sent, then re-queued for a new producer id)
    IN_FLIGHT = "in flight"  # in a request not yet answered
    RETRY = "retry"  # a send failed retriably; it goes again after the backoff
    DONE = "done"  # acknowledged, failed or expired: futures completed


class ProducerBatch:
    __slots__ = ("topic", "partition", "batch_id", "records", "count", "waiters", "result",
                 "size_bytes", "reserved_bytes", "created_s", "deadline_s", "appendable",
                 "state", "attempts", "retry_at_s", "producer_id", "producer_epoch",
                 "base_sequence", "encoded", "last_error", "expired")

    def __init__(self, topic: str, partition: int, *, batch_id: int, created_s: float,
                 deadline_s: float) -> None:
        self.topic = topic
        self.partition = partition
        self.batch_id = batch_id  # increasing in creation order, producer-wide
        self.records: list[Record] = []  # emptied on completion
        self.count = 0  # records appended (kept after completion)
        # (index in records, future) for records sent by the async producer
        self.waiters: list[tuple[int, asyncio.Future[RecordMetadata]]] = []
        self.result = BatchResult(topic, partition)
        self.size_bytes = BATCH_HEADER_BYTES  # estimated, uncompressed
        self.reserved_bytes = 0  # of the memory budget, given back on completion
        self.created_s = created_s  # loop time
        self.deadline_s = deadline_s  # created + delivery_timeout_ms
        self.appendable = True  # false once full or sent: records only join the last batch
        self.state = BatchState.QUEUED
        self.attempts = 0
        self.retry_at_s = 0.0
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1  # >= 0 once sent by an idempotent producer
        self.encoded: bytes | None = None
        self.last_error: BaseException | None = None
        self.expired = False  # futures failed by delivery_timeout_ms while in flight

    def add(self, record: Record, size_bytes: int,
            waiter: asyncio.Future[RecordMetadata] | None) -> int:
        """Append a record (its memory already reserved); returns its index."""
        assert self.appendable and self.state is BatchState.QUEUED
        index = self.count
        self.encoded = None  # encoded for a request it did not go in: stale now
        self.records.append(record)
        self.count += 1
        self.size_bytes += size_bytes
        self.reserved_bytes += size_bytes
        if waiter is not None:
            self.waiters.append((index, waiter))
        return index

    def set_sequence(self, producer_id: int, producer_epoch: int, base_sequence: int) -> None:
        if (producer_id, producer_epoch, base_sequence) != \
                (self.producer_id, self.producer_epoch, self.base_sequence):
            self.producer_id = producer_id
            self.producer_epoch = producer_epoch
            self.base_sequence = base_sequence
            self.encoded = None

    def encode(self, compression: Compression) -> bytes:
        if self.encoded is None:
            self.encoded = encode_batch(
                self.records, compression=compression, producer_id=self.producer_id,
                producer_epoch=self.producer_epoch, base_sequence=self.base_sequence)
        return self.encoded

    def complete(self, *, base_offset: int, log_append_time_ms: int,
                 error: BaseException | None) -> None:
        """Complete every record's future (outside the accumulator's lock: callbacks run)."""
        self.result.complete(base_offset=base_offset, log_append_time_ms=log_append_time_ms,
                             error=error)
        for index, future in self.waiters:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(RecordMetadata(
                    topic=self.topic, partition=self.partition,
                    offset=base_offset + index if base_offset >= 0 else -1,
                    timestamp_ms=log_append_time_ms if log_append_time_ms >= 0
                    else self.records[index].timestamp_ms))
        self.waiters = []
        self.records = []  # the payload is no longer needed; futures keep what they need
        self.encoded = None

    def __repr__(self) -> str:
        return (f"<ProducerBatch #{self.batch_id} {self.topic}-{self.partition} "
                f"{self.count} records {self.state.value} seq={self.base_sequence}>")
