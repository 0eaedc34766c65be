"""Kafka RecordBatch v2 (magic 2), byte for byte as Kafka's documentation specifies it.

Every integer is big-endian two's complement except the varints, which are zigzag base-128
(see broker/wire/varint.py). A batch:

    baseOffset: int64              @0   offset of the first record; the leader assigns it
    batchLength: int32             @8   bytes after this field (the whole batch is 12 more)
    partitionLeaderEpoch: int32    @12  the leader's epoch (our Raft term); the leader writes it
    magic: int8 (= 2)              @16
    crc: uint32                    @17  CRC-32C (Castagnoli) over attributes .. end of batch
    attributes: int16              @21  bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4,
                                        4 zstd), bit 3 timestamp type (0 create, 1 log append),
                                        bit 4 transactional, bit 5 control, bit 6 delete
                                        horizon set; the rest 0
    lastOffsetDelta: int32         @23  offset delta of the last record (also last sequence delta)
    baseTimestamp: int64           @27  timestamp of the first record (-1 when there is none)
    maxTimestamp: int64            @35  largest record timestamp, or the log-append time
    producerId: int64              @43  -1 when the producer is not idempotent
    producerEpoch: int16           @51  -1 likewise
    baseSequence: int32            @53  sequence of the first record, -1 likewise
    recordsCount: int32            @57
    records                        @61  recordsCount records back to back; when compressed, the
                                        records section is one compressed blob in the form
                                        Kafka's clients write (see broker/wire/compression.py)

A record:

    length: varint                 bytes after this field
    attributes: int8               unused, 0
    timestampDelta: varlong        timestamp - baseTimestamp
    offsetDelta: varint            offset - baseOffset
    keyLength: varint              -1 = null key
    key: byte[keyLength]
    valueLength: varint            -1 = null value
    value: byte[valueLength]
    headersCount: varint
    headers: headersCount times
        headerKeyLength: varint    >= 0
        headerKey: utf-8 string
        headerValueLength: varint  -1 = null value
        headerValue: byte[headerValueLength]

The CRC does not cover baseOffset, batchLength, partitionLeaderEpoch or magic, so a leader stamps
offsets and its epoch into a received batch without recomputing it (`stamp_batch`). With
log-append time, every record's timestamp is the batch's maxTimestamp.

Decoding treats the input as hostile: every length is checked against the bytes that hold it,
each batch against `batch_bytes_max`, every codec's output against `decompressed_bytes_max`; any
violation raises CorruptBatchError (or UnsupportedCompressionError) saying what is wrong and at
which byte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from enum import IntEnum
from typing import Final, TypeAlias

import crc32c as _crc32c

from broker.wire.compression import (
    CODEC_IDS,
    CODECS_BY_ID,
    CodecError,
    Compression,
    compress,
    decompress,
)
from broker.wire.limits import BATCH_BYTES_MAX
from broker.wire.varint import (
    INT64_MAX,
    INT64_MIN,
    ZIGZAG_SMALL,
    VarintError,
    decode_uvarint,
    decode_varint,
    encode_varint,
    encode_varlong,
)

__all__ = [
    "BATCH_HEADER_BYTES",
    "DECOMPRESSED_BYTES_MAX",
    "BatchHeader",
    "Compression",
    "CorruptBatchError",
    "Record",
    "RecordBatch",
    "TimestampType",
    "UnsupportedCompressionError",
    "decode_batches",
    "encode_batch",
    "iter_batch_headers",
    "read_batch_header",
    "stamp_batch",
    "verify_batch",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
Headers: TypeAlias = Sequence[tuple[str, bytes | None]]

BATCH_HEADER_BYTES = 61
# Bound on one batch's decompressed records section: lz4 expands up to ~255x, gzip ~1000x and
# zstd far more, so a 1 MiB batch could claim gigabytes. Real batches stay far below this; a
# larger one is treated as a bomb.
DECOMPRESSED_BYTES_MAX = 64 << 20

_HEADER = struct.Struct(">qiibIhiqqqhii")
_HEAD = struct.Struct(">qiibI")  # baseOffset .. crc: the part the CRC does not cover
_TAIL = struct.Struct(">hiqqqhii")  # attributes .. recordsCount: the first CRC-covered bytes
_LENGTH = struct.Struct(">i")
_OFFSET = struct.Struct(">q")
_EPOCH = struct.Struct(">i")

_LENGTH_POS: Final = 8  # batchLength
_EPOCH_POS: Final = 12  # partitionLeaderEpoch
_ATTRIBUTES_POS: Final = 21  # start of the CRC-covered region
_LENGTH_BYTES_BEFORE: Final = 12  # baseOffset + batchLength precede what batchLength counts
_MAGIC: Final = 2

_CODEC_MASK: Final = 0x07
_TIMESTAMP_TYPE_BIT: Final = 0x08
_TRANSACTIONAL_BIT: Final = 0x10
_CONTROL_BIT: Final = 0x20

# The smallest record: length, attributes, timestamp delta, offset delta, key length, value
# length and header count, one byte each. Bounds recordsCount before anything is allocated.
_RECORD_BYTES_MIN: Final = 7
_RECORD_BODY_BYTES_MIN: Final = _RECORD_BYTES_MIN - 1


class CorruptBatchError(ValueError):
    """A record batch is truncated, oversized, malformed or fails its CRC."""


class UnsupportedCompressionError(CorruptBatchError):
    """A batch names a compression codec id Kafka does not define (5-7), or an encoder was asked
    for a codec name it does not know.

    A subclass of CorruptBatchError so that one `except CorruptBatchError` covers every batch we
    cannot read; the broker maps it to UNSUPPORTED_COMPRESSION_TYPE rather than CORRUPT_MESSAGE.
    """

    def __init__(self, message: str, codec: str) -> None:
        super().__init__(message)
        self.codec = codec


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class _AttributeFlags:
    """Readers of the attribute bits, shared by BatchHeader and RecordBatch."""

    __slots__ = ()
    attributes: int

    @property
    def compression(self) -> Compression:
        """The codec; raises UnsupportedCompressionError for ids Kafka does not define (5-7)."""
        return _codec_of(self.attributes)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType(1 if self.attributes & _TIMESTAMP_TYPE_BIT else 0)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)


def _codec_of(attributes: int) -> Compression:
    codec_id = attributes & _CODEC_MASK
    codec = CODECS_BY_ID.get(codec_id)
    if codec is None:
        raise UnsupportedCompressionError(f"unknown compression codec id {codec_id}", str(codec_id))
    return codec


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader(_AttributeFlags):
    """The 61 fixed bytes of a batch, read without touching its records."""

    base_offset: int
    batch_length: int  # >= BATCH_HEADER_BYTES - 12
    partition_leader_epoch: int
    magic: int  # == 2
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
        return self.batch_length + _LENGTH_BYTES_BEFORE


@dataclass(frozen=True, slots=True)
class Record:
    """One record: Record(key, value, headers, timestamp_ms), positionally or by keyword.

    Encoding ignores `offset` (the record's place in the batch decides it); decoding sets it
    to the record's absolute offset. Decoded headers are a list of (str, bytes | None).
    """

    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    _: KW_ONLY
    offset: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordBatch(_AttributeFlags):
    """A decoded batch: its header fields and its records."""

    base_offset: int
    partition_leader_epoch: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    size: int  # bytes the batch takes in the buffer, header included
    records: list[Record]

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


# --------------------------------------------------------------------------------------- headers


def read_batch_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Parse the fixed header at `pos`; checks magic and that batchLength covers the header,
    not that the batch fits in `buf` (see verify_batch)."""
    if pos < 0:
        raise ValueError(f"negative batch position {pos}")
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
    if h.magic != _MAGIC:
        raise CorruptBatchError(f"unsupported magic {h.magic} at byte {pos} (only v2)")
    if h.batch_length < BATCH_HEADER_BYTES - _LENGTH_BYTES_BEFORE:
        raise CorruptBatchError(f"batch length {h.batch_length} at byte {pos} is below the header")
    return h


def _batch_size_at(buf: Buffer, pos: int, batch_bytes_max: int, partial_ok: bool) -> int | None:
    """Size of the batch at `pos` after bounds checks; None for a partial tail when allowed."""
    if pos < 0:
        raise ValueError(f"negative batch position {pos}")
    remaining = len(buf) - pos
    if remaining < _LENGTH_BYTES_BEFORE:
        if partial_ok:
            return None
        raise CorruptBatchError(f"truncated batch at byte {pos}: {remaining} bytes, no length")
    (batch_length,) = _LENGTH.unpack_from(buf, pos + _LENGTH_POS)
    if batch_length < BATCH_HEADER_BYTES - _LENGTH_BYTES_BEFORE:
        raise CorruptBatchError(f"batch length {batch_length} at byte {pos} is below the header")
    size = batch_length + _LENGTH_BYTES_BEFORE
    if size > batch_bytes_max:
        raise CorruptBatchError(
            f"batch at byte {pos} is {size} bytes, above batch_bytes_max {batch_bytes_max}"
        )
    if size > remaining:
        if partial_ok:
            return None
        raise CorruptBatchError(f"truncated batch at byte {pos}: {remaining} of {size} bytes")
    return size


def _walk(buf: Buffer, batch_bytes_max: int, partial_ok: bool) -> Iterator[tuple[int, BatchHeader]]:
    end = len(buf)
    pos = 0
    while pos < end:
        size = _batch_size_at(buf, pos, batch_bytes_max, partial_ok)
        if size is None:
            return
        header = read_batch_header(buf, pos)
        yield pos, header
        pos += size


def _check_crc(buf: Buffer, pos: int, header: BatchHeader) -> None:
    view = memoryview(buf)[pos + _ATTRIBUTES_POS : pos + header.size]
    crc = _crc32c.crc32c(view)
    if crc != header.crc:
        raise CorruptBatchError(
            f"CRC mismatch in batch at byte {pos}: stored {header.crc:#010x}, computed {crc:#010x}"
        )


def verify_batch(
    buf: Buffer, pos: int = 0, *, batch_bytes_max: int = BATCH_BYTES_MAX
) -> BatchHeader:
    """Check the batch at `pos` without decoding records: it fits in `buf` and in
    `batch_bytes_max`, has magic 2, and its CRC-32C matches. Returns its header."""
    _batch_size_at(buf, pos, batch_bytes_max, False)
    header = read_batch_header(buf, pos)
    _check_crc(buf, pos, header)
    return header


def iter_batch_headers(
    buf: Buffer,
    *,
    batch_bytes_max: int = BATCH_BYTES_MAX,
    verify_crc: bool = False,
    allow_partial_tail: bool = False,
) -> Iterator[BatchHeader]:
    """Headers of the batches laid back to back in `buf`; batch i starts at the sum of the
    previous headers' `.size`. Each batch is bounds-checked (and CRC-checked with `verify_crc`).

    `allow_partial_tail`: stop quietly at an incomplete last batch, as a Kafka broker may end a
    fetch response with one cut at the size limit; otherwise it is a CorruptBatchError.
    """
    for pos, header in _walk(buf, batch_bytes_max, allow_partial_tail):
        if verify_crc:
            _check_crc(buf, pos, header)
        yield header


def stamp_batch(
    buf: bytearray | memoryview, pos: int, base_offset: int, partition_leader_epoch: int
) -> None:
    """Write baseOffset and partitionLeaderEpoch of the batch at `pos` in place.

    The CRC-32C covers attributes .. end of batch only, not these two fields, precisely so that
    a leader can assign offsets and stamp its epoch into a received batch without recomputing
    it (or decoding anything): the batch stays valid for verify_batch afterwards.
    """
    if pos < 0:
        raise ValueError(f"negative batch position {pos}")
    if len(buf) - pos < BATCH_HEADER_BYTES:
        raise CorruptBatchError(f"no batch header to stamp at byte {pos}")
    try:
        _OFFSET.pack_into(buf, pos, base_offset)
        _EPOCH.pack_into(buf, pos + _EPOCH_POS, partition_leader_epoch)
    except struct.error as e:
        raise ValueError(
            f"cannot stamp offset {base_offset} / epoch {partition_leader_epoch}: {e}"
        ) from None


# -------------------------------------------------------------------------------------- encoding


def encode_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    compression: Compression | str = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    log_append_time_ms: int | None = None,
) -> bytes:
    """One RecordBatch v2 holding `records` with offset deltas 0, 1, 2, ...

    baseTimestamp is the first record's timestamp and maxTimestamp the largest, as Kafka's
    producer writes them; `log_append_time_ms` sets the log-append-time bit and maxTimestamp.
    Defaults match Kafka's Java producer (no producer id, epoch -1).
    """
    codec = _encode_codec(compression)
    timestamps = [r.timestamp_ms for r in records]
    if not set(map(type, timestamps)) <= {int}:
        raise TypeError("record timestamp_ms must be int")
    base_ts, max_ts = (timestamps[0], max(timestamps)) if timestamps else (-1, -1)
    if timestamps:
        _check_timestamp_span(base_ts, min(timestamps), max_ts)
    body = compress(codec, _encode_records(records, base_ts))
    attributes = CODEC_IDS[codec]
    attributes |= _TRANSACTIONAL_BIT if is_transactional else 0
    attributes |= _CONTROL_BIT if is_control else 0
    if log_append_time_ms is not None:
        attributes |= _TIMESTAMP_TYPE_BIT
        max_ts = log_append_time_ms
    count = len(records)
    batch_length = BATCH_HEADER_BYTES - _LENGTH_BYTES_BEFORE + len(body)
    try:
        tail = _TAIL.pack(attributes, max(count - 1, 0), base_ts, max_ts, producer_id,
                          producer_epoch, base_sequence, count)
        head = _HEAD.pack(base_offset, batch_length, partition_leader_epoch, _MAGIC,
                          _crc32c.crc32c(body, _crc32c.crc32c(tail)))
    except struct.error as e:
        raise ValueError(f"batch field out of range: {e}") from None
    return b"".join((head, tail, body))


def _encode_codec(compression: Compression | str) -> Compression:
    try:
        codec = Compression(compression.lower())
    except ValueError:
        raise UnsupportedCompressionError(
            f"unknown compression {compression!r}", str(compression)
        ) from None
    return codec


def _check_timestamp_span(base_ts: int, min_ts: int, max_ts: int) -> None:
    """Every timestamp delta must fit a varlong (int64), every timestamp an int64."""
    if min_ts < INT64_MIN or max_ts > INT64_MAX:
        raise ValueError(f"record timestamps must be int64, got {min_ts} .. {max_ts}")
    if min_ts - base_ts < INT64_MIN or max_ts - base_ts > INT64_MAX:
        raise ValueError("record timestamps differ from the first one by more than an int64")


def _encode_records(records: Sequence[Record], base_ts: int) -> bytes:
    """The uncompressed records section. Hot loop: table lookups for small varints, and one
    join at the end rather than a buffer grown field by field."""
    small = ZIGZAG_SMALL
    small_count = len(small)
    parts: list[bytes] = []
    extend = parts.extend
    for offset_delta, r in enumerate(records):
        key = r.key
        value = r.value
        ts = r.timestamp_ms - base_ts
        ts_enc = small[ts] if 0 <= ts < small_count else encode_varlong(ts)
        off_enc = small[offset_delta] if offset_delta < small_count else encode_varint(offset_delta)
        if key is None:
            key, key_enc = b"", b"\x01"
        else:
            if type(key) is not bytes:
                key = _as_bytes(key, "key")
            n = len(key)
            key_enc = small[n] if n < small_count else encode_varint(n)
        if value is None:
            value, value_enc = b"", b"\x01"
        else:
            if type(value) is not bytes:
                value = _as_bytes(value, "value")
            n = len(value)
            value_enc = small[n] if n < small_count else encode_varint(n)
        headers_enc = _encode_headers(r.headers) if r.headers else b"\x00"
        n = (1 + len(ts_enc) + len(off_enc) + len(key_enc) + len(key) + len(value_enc)
             + len(value) + len(headers_enc))
        length_enc = small[n] if n < small_count else encode_varint(n)
        extend((length_enc, b"\x00", ts_enc, off_enc, key_enc, key, value_enc, value, headers_enc))
    return b"".join(parts)


def _encode_headers(headers: Headers) -> bytes:
    parts = [encode_varint(len(headers))]
    for name, value in headers:
        if not isinstance(name, str):
            raise TypeError(f"header key must be str, got {type(name).__name__}")
        name_bytes = name.encode("utf-8")
        parts += (encode_varint(len(name_bytes)), name_bytes)
        if value is None:
            parts.append(b"\x01")
        else:
            value = _as_bytes(value, "header value")
            parts += (encode_varint(len(value)), value)
    return b"".join(parts)


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"record {what} must be bytes or None, got {type(data).__name__}")


# -------------------------------------------------------------------------------------- decoding


def decode_batches(
    buf: Buffer,
    *,
    batch_bytes_max: int = BATCH_BYTES_MAX,
    decompressed_bytes_max: int = DECOMPRESSED_BYTES_MAX,
    allow_partial_tail: bool = False,
) -> Iterator[RecordBatch]:
    """Decode every batch laid back to back in `buf`, checking each one's bounds and CRC.

    Lazy: a corrupt batch raises when iteration reaches it, after the good ones before it.
    `allow_partial_tail` as in iter_batch_headers.
    """
    for pos, header in _walk(buf, batch_bytes_max, allow_partial_tail):
        _check_crc(buf, pos, header)
        yield _decode_batch(buf, pos, header, decompressed_bytes_max)


def _decode_batch(
    buf: Buffer, pos: int, h: BatchHeader, decompressed_bytes_max: int
) -> RecordBatch:
    section = memoryview(buf)[pos + BATCH_HEADER_BYTES : pos + h.size]
    codec = _codec_of(h.attributes)
    try:
        data = decompress(codec, section, decompressed_bytes_max)
    except CodecError as e:
        raise CorruptBatchError(f"{e} in the batch at byte {pos}") from None
    if codec is Compression.NONE:
        where = f"records section of the batch at byte {pos}"
    else:
        where = f"decompressed records of the batch at byte {pos}"
    count = h.record_count
    if count < 0 or count * _RECORD_BYTES_MIN > len(data):
        raise CorruptBatchError(f"record count {count} does not fit the {len(data)}-byte {where}")
    fixed_ts = h.max_timestamp if h.attributes & _TIMESTAMP_TYPE_BIT else None
    records = _decode_records(data, count, h.base_offset, h.base_timestamp, fixed_ts, where)
    return RecordBatch(
        base_offset=h.base_offset, partition_leader_epoch=h.partition_leader_epoch, crc=h.crc,
        attributes=h.attributes, last_offset_delta=h.last_offset_delta,
        base_timestamp=h.base_timestamp, max_timestamp=h.max_timestamp,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence, size=h.size, records=records,
    )


# Decoded records are built by writing their slots directly: the frozen dataclass __init__
# goes through object.__setattr__ per field, which costs more than parsing the record.
_new_record = object.__new__
_set_key = Record.key.__set__  # type: ignore[attr-defined]
_set_value = Record.value.__set__  # type: ignore[attr-defined]
_set_headers = Record.headers.__set__  # type: ignore[attr-defined]
_set_timestamp = Record.timestamp_ms.__set__  # type: ignore[attr-defined]
_set_offset = Record.offset.__set__  # type: ignore[attr-defined]


def _decode_records(
    data: bytes, count: int, base_offset: int, base_ts: int, fixed_ts: int | None, where: str
) -> list[Record]:
    """Parse `count` records filling `data` exactly.

    The hot loop of every consumer, so it is written out by hand: varints of one or two bytes
    (every length under 8 KiB, every small delta) are decoded inline, longer ones by
    decode_uvarint; an IndexError means a field ran past the end of `data`.
    """
    end = len(data)
    records: list[Record] = []
    append = records.append
    pos = rec_start = i = 0
    try:
        for i in range(count):
            rec_start = pos
            u = data[pos]
            if u < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (u & 0x7F) | (data[pos + 1] << 7)
                pos += 2
            else:
                u, pos = decode_uvarint(data, pos, 5)
            rec_end = pos + ((u >> 1) ^ -(u & 1))
            if rec_end - pos < _RECORD_BODY_BYTES_MIN or rec_end > end:
                raise _record_error(i, rec_start, where, f"bad length {rec_end - pos}")
            u = data[pos + 1]  # after the unused attributes byte
            if u < 0x80:
                pos += 2
            else:
                u, pos = decode_uvarint(data, pos + 1, 10)
            ts = fixed_ts if fixed_ts is not None else base_ts + ((u >> 1) ^ -(u & 1))
            u = data[pos]
            if u < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:
                u = (u & 0x7F) | (data[pos + 1] << 7)
                pos += 2
            else:
                u, pos = decode_uvarint(data, pos, 5)
            offset = base_offset + ((u >> 1) ^ -(u & 1))
            u = data[pos]
            if u < 0x80 and u & 1 == 0:  # a non-negative length under 64
                key: bytes | None = data[pos + 1 : pos + 1 + (u >> 1)]
                pos += 1 + (u >> 1)
            else:
                key, pos = _read_bytes(data, pos, i, rec_start, where)
            u = data[pos]
            if u < 0x80 and u & 1 == 0:
                value: bytes | None = data[pos + 1 : pos + 1 + (u >> 1)]
                pos += 1 + (u >> 1)
            elif u & 1 == 0 and data[pos + 1] < 0x80:  # a non-negative length under 8 KiB
                u = ((u & 0x7F) | (data[pos + 1] << 7)) >> 1
                value = data[pos + 2 : pos + 2 + u]
                pos += 2 + u
            else:
                value, pos = _read_bytes(data, pos, i, rec_start, where)
            if data[pos] == 0:
                headers: list[tuple[str, bytes | None]] = []
                pos += 1
            else:
                headers, pos = _read_headers(data, pos, rec_end, i, rec_start, where)
            if pos != rec_end:
                raise _record_error(
                    i, rec_start, where, f"fields end at {pos}, length says {rec_end}"
                )
            r = _new_record(Record)
            _set_key(r, key)
            _set_value(r, value)
            _set_headers(r, headers)
            _set_timestamp(r, ts)
            _set_offset(r, offset)
            append(r)
    except IndexError:
        raise _record_error(i, rec_start, where, "runs past the end") from None
    except VarintError as e:
        raise _record_error(i, rec_start, where, str(e)) from None
    if pos != end:
        raise CorruptBatchError(f"{end - pos} bytes after the last record in the {where}")
    return records


def _read_bytes(
    data: bytes, pos: int, i: int, rec_start: int, where: str
) -> tuple[bytes | None, int]:
    """A varint length (-1 = null) and that many bytes."""
    n, pos = decode_varint(data, pos)
    if n >= 0:
        stop = pos + n
        if stop > len(data):
            raise _record_error(i, rec_start, where, f"a {n}-byte field runs past the end")
        return data[pos:stop], stop
    if n == -1:
        return None, pos
    raise _record_error(i, rec_start, where, f"negative length {n}")


def _read_headers(
    data: bytes, pos: int, rec_end: int, i: int, rec_start: int, where: str
) -> tuple[list[tuple[str, bytes | None]], int]:
    count, pos = decode_varint(data, pos)
    if count < 0 or count * 2 > rec_end - pos:
        raise _record_error(i, rec_start, where, f"bad header count {count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        name, pos = _read_bytes(data, pos, i, rec_start, where)
        if name is None:
            raise _record_error(i, rec_start, where, "null header key")
        try:
            key = name.decode("utf-8")
        except UnicodeDecodeError:
            raise _record_error(i, rec_start, where, "header key is not utf-8") from None
        value, pos = _read_bytes(data, pos, i, rec_start, where)
        headers.append((key, value))
    return headers, pos


def _record_error(i: int, rec_start: int, where: str, what: str) -> CorruptBatchError:
    return CorruptBatchError(f"record {i} at byte {rec_start} of the {where}: {what}")
