"""Kafka RecordBatch v2 bytes for the storage tests, built with struct alone (the storage layer
only ever reads a batch's 61-byte header), and checks that the builder is faithful."""

from __future__ import annotations

import struct

from crc32c import crc32c

from broker.raft.messages import Entry, EntryKind
from broker.wire.records import BATCH_HEADER_BYTES, decode_batches, read_batch_header

__all__ = ["make_batch", "batch_base_offset", "Feed"]

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordsCount
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC_FROM = 21  # the CRC covers attributes .. end


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _record(offset_delta: int, timestamp_delta: int, value: bytes) -> bytes:
    body = (b"\x00" + _varint(timestamp_delta) + _varint(offset_delta) + _varint(-1)
            + _varint(len(value)) + value + _varint(0))
    return _varint(len(body)) + body


def make_batch(base_offset: int, values: list[bytes] | None = None, *, timestamp_ms: int = 1000,
               timestamps_ms: list[int] | None = None, epoch: int = 0) -> bytes:
    """One uncompressed batch of `values` (default: one 10-byte value), records at
    `timestamps_ms` (default: all at `timestamp_ms`)."""
    values = [b"v" * 10] if values is None else values
    assert values, "a batch holds at least one record"
    stamps = [timestamp_ms] * len(values) if timestamps_ms is None else timestamps_ms
    base_ts = stamps[0]
    records = b"".join(_record(i, ts - base_ts, v) for i, (v, ts) in enumerate(zip(values, stamps)))
    length = BATCH_HEADER_BYTES - 12 + len(records)
    header = bytearray(_HEADER.pack(base_offset, length, epoch, 2, 0, 0, len(values) - 1,
                                    base_ts, max(stamps), -1, -1, -1, len(values)))
    batch = header + records
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[_CRC_FROM:])))
    return bytes(batch)


def batch_base_offset(batch: bytes | memoryview) -> int:
    return read_batch_header(batch).base_offset


class Feed:
    """Makes the entries a leader would: DATA batches stamped with consecutive offsets,
    CONFIG and EMPTY entries taking none."""

    def __init__(self, next_offset: int = 0) -> None:
        self.next_offset = next_offset

    def data(self, index: int, term: int, records: int = 1, value_bytes: int = 10,
             timestamp_ms: int = 1000) -> Entry:
        batch = make_batch(self.next_offset, [bytes([index % 251]) * value_bytes] * records,
                           timestamp_ms=timestamp_ms, epoch=term)
        self.next_offset += records
        return Entry(index=index, term=term, kind=EntryKind.DATA, data=batch)

    @staticmethod
    def config(index: int, term: int) -> Entry:
        return Entry(index=index, term=term, kind=EntryKind.CONFIG, data=b"conf-%d" % index)

    @staticmethod
    def empty(index: int, term: int) -> Entry:
        return Entry(index=index, term=term, kind=EntryKind.EMPTY)

    def run(self, first: int, n: int, term: int, *, every_config: int = 0, **kw: int) -> list[Entry]:
        """n entries from `first`: DATA, with a CONFIG every `every_config`-th (0: none)."""
        out = []
        for index in range(first, first + n):
            if every_config and index % every_config == 0:
                out.append(self.config(index, term))
            else:
                out.append(self.data(index, term, **kw))
        return out


def test_batch_header_reads_back() -> None:
    b = make_batch(42, [b"a", b"bb", b"ccc"], timestamps_ms=[5, 9, 7], epoch=3)
    h = read_batch_header(b)
    assert (h.base_offset, h.last_offset, h.record_count) == (42, 44, 3)
    assert (h.base_timestamp, h.max_timestamp, h.partition_leader_epoch) == (5, 9, 3)
    assert h.size == len(b)


def test_batch_crc_is_kafkas() -> None:
    b = make_batch(0, [b"x" * 100])
    (crc,) = struct.unpack_from(">I", b, 17)
    assert crc == crc32c(b[_CRC_FROM:])


def test_batch_decodes_with_the_codec() -> None:
    (batch,) = list(decode_batches(make_batch(7, [b"hello", b"world"], timestamps_ms=[1, 2])))
    assert [r.value for r in batch.records] == [b"hello", b"world"]
    assert [r.offset for r in batch.records] == [7, 8]
