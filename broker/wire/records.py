"""Kafka RecordBatch v2 (magic 2). PARTIAL: header view only; the full codec is pending.

    baseOffset: int64              @0
    batchLength: int32             @8   bytes after this field
    partitionLeaderEpoch: int32    @12
    magic: int8 (= 2)              @16
    crc: uint32                    @17  CRC-32C over attributes .. end of batch
    attributes: int16              @21
    lastOffsetDelta: int32         @23
    baseTimestamp: int64           @27
    maxTimestamp: int64            @35
    producerId: int64              @43
    producerEpoch: int16           @51
    baseSequence: int32            @53
    recordsCount: int32            @57
    records                        @61
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["CorruptBatchError", "BatchHeader", "read_batch_header", "BATCH_HEADER_BYTES"]

BATCH_HEADER_BYTES = 61
_HEADER = struct.Struct(">qiibIhiqqqhii")


class CorruptBatchError(ValueError):
    """A record batch is truncated, oversized or fails its CRC."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def size(self) -> int:
        """Whole batch size in bytes, including baseOffset and batchLength."""
        return self.batch_length + 12


def read_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    if len(buf) - pos < BATCH_HEADER_BYTES:
        raise CorruptBatchError(
            f"truncated batch header at byte {pos}: {len(buf) - pos} of {BATCH_HEADER_BYTES} bytes"
        )
    (base_offset, batch_length, epoch, magic, crc, attributes, last_delta, base_ts, max_ts,
     producer_id, producer_epoch, base_sequence, record_count) = _HEADER.unpack_from(buf, pos)
    h = BatchHeader(
        base_offset=base_offset, batch_length=batch_length, partition_leader_epoch=epoch,
        magic=magic, crc=crc, attributes=attributes, last_offset_delta=last_delta,
        base_timestamp=base_ts, max_timestamp=max_ts, producer_id=producer_id,
        producer_epoch=producer_epoch, base_sequence=base_sequence, record_count=record_count,
    )
    if h.magic != 2:
        raise CorruptBatchError(f"unsupported magic {h.magic} at byte {pos} (only v2)")
    if h.batch_length < BATCH_HEADER_BYTES - 12:
        raise CorruptBatchError(f"batch length {h.batch_length} at byte {pos} is below the header")
    return h
