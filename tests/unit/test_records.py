"""RecordBatch v2 codec: golden bytes hand-assembled from Kafka's specification, the broker-side
helpers (verify, iterate, stamp) and the typed errors for bad input.

The expected batches are built field by field here, with a bitwise CRC-32C written in this file,
so that a mistake shared by encoder and decoder cannot make them agree with each other.
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import lz4.frame
import pytest

from broker.wire.limits import BATCH_BYTES_MAX
from broker.wire.records import (
    BATCH_HEADER_BYTES,
    Compression,
    CorruptBatchError,
    Record,
    TimestampType,
    UnsupportedCompressionError,
    decode_batches,
    encode_batch,
    iter_batch_headers,
    read_batch_header,
    stamp_batch,
    verify_batch,
)

T = 1_700_000_000_000  # a timestamp in ms: 0x0000018BCFE56800


def crc32c_bitwise(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one bit at a time."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_bitwise_crc_matches_the_standard_check_value() -> None:
    assert crc32c_bitwise(b"123456789") == 0xE3069283


def golden_batch(
    records: bytes,
    *,
    count: int,
    last_offset_delta: int,
    base_ts: int,
    max_ts: int,
    base_offset: int = 0,
    epoch: int = -1,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """A batch assembled field by field as Kafka's documentation lays it out."""
    covered = (
        struct.pack(">h", attributes)
        + struct.pack(">i", last_offset_delta)
        + struct.pack(">q", base_ts)
        + struct.pack(">q", max_ts)
        + struct.pack(">q", producer_id)
        + struct.pack(">h", producer_epoch)
        + struct.pack(">i", base_sequence)
        + struct.pack(">i", count)
        + records
    )
    batch_length = 4 + 1 + 4 + len(covered)  # epoch, magic, crc, then the covered bytes
    return (
        struct.pack(">q", base_offset)
        + struct.pack(">i", batch_length)
        + struct.pack(">i", epoch)
        + bytes([2])
        + struct.pack(">I", crc32c_bitwise(covered))
        + covered
    )


# Records, byte by byte. Varints are zigzag: 0 -> 00, -1 -> 01, 1 -> 02, 2 -> 04, 3 -> 06, ...
REC_KEY_VALUE = bytes.fromhex(
    "1c"  # length 14
    "00"  # attributes
    "00"  # timestamp delta 0
    "00"  # offset delta 0
    "06" "6b6579"  # key length 3, "key"
    "0a" "76616c7565"  # value length 5, "value"
    "00"  # no headers
)
REC_NULL_KEY = bytes.fromhex("16" "00" "00" "00" "01" "0a" "76616c7565" "00")  # length 11
REC_NULL_VALUE = bytes.fromhex("12" "00" "00" "00" "06" "6b6579" "01" "00")  # length 9
REC_HEADERS = bytes.fromhex(
    "24"  # length 18
    "00" "00" "00"
    "02" "6b"  # key "k"
    "02" "76"  # value "v"
    "04"  # 2 headers
    "04" "6831" "04" "7631"  # "h1" -> "v1"
    "04" "6832" "01"  # "h2" -> null
)


def _decoded(buf: bytes) -> list[tuple[int, int, bytes | None, bytes | None, list]]:
    (batch,) = decode_batches(buf)
    return [(r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in batch.records]


def test_golden_one_record_with_key_and_value() -> None:
    expected = golden_batch(REC_KEY_VALUE, count=1, last_offset_delta=0, base_ts=T, max_ts=T)
    assert encode_batch([Record(b"key", b"value", [], T)]) == expected
    assert _decoded(expected) == [(0, T, b"key", b"value", [])]


def test_golden_null_key() -> None:
    expected = golden_batch(REC_NULL_KEY, count=1, last_offset_delta=0, base_ts=T, max_ts=T)
    assert encode_batch([Record(None, b"value", [], T)]) == expected
    assert _decoded(expected) == [(0, T, None, b"value", [])]


def test_golden_null_value() -> None:
    expected = golden_batch(REC_NULL_VALUE, count=1, last_offset_delta=0, base_ts=T, max_ts=T)
    assert encode_batch([Record(b"key", None, [], T)]) == expected
    assert _decoded(expected) == [(0, T, b"key", None, [])]


def test_golden_headers() -> None:
    expected = golden_batch(REC_HEADERS, count=1, last_offset_delta=0, base_ts=T, max_ts=T)
    record = Record(b"k", b"v", [("h1", b"v1"), ("h2", None)], T)
    assert encode_batch([record]) == expected
    assert _decoded(expected) == [(0, T, b"k", b"v", [("h1", b"v1"), ("h2", None)])]


def test_golden_offset_and_timestamp_deltas() -> None:
    # Timestamps T, T+5, T-2 (a negative delta), T+300 (a two-byte varint: zigzag 600 = d8 04).
    records = (
        bytes.fromhex("10" "00" "00" "00" "02" "61" "02" "30" "00")  # length 8, ts +0, offset 0
        + bytes.fromhex("10" "00" "0a" "02" "02" "62" "02" "31" "00")  # ts +5, offset 1
        + bytes.fromhex("10" "00" "03" "04" "02" "63" "02" "32" "00")  # ts -2, offset 2
        + bytes.fromhex("12" "00" "d804" "06" "02" "64" "02" "33" "00")  # length 9, ts +300
    )
    expected = golden_batch(
        records, count=4, last_offset_delta=3, base_ts=T, max_ts=T + 300, base_offset=42
    )
    inputs = [
        Record(b"a", b"0", [], T),
        Record(b"b", b"1", [], T + 5),
        Record(b"c", b"2", [], T - 2),
        Record(b"d", b"3", [], T + 300),
    ]
    assert encode_batch(inputs, base_offset=42) == expected
    assert _decoded(expected) == [
        (42, T, b"a", b"0", []),
        (43, T + 5, b"b", b"1", []),
        (44, T - 2, b"c", b"2", []),
        (45, T + 300, b"d", b"3", []),
    ]
    (batch,) = decode_batches(expected)
    assert (batch.base_offset, batch.last_offset, batch.max_timestamp) == (42, 45, T + 300)


def test_golden_producer_fields() -> None:
    expected = golden_batch(
        REC_KEY_VALUE, count=1, last_offset_delta=0, base_ts=T, max_ts=T,
        producer_id=1234567890123, producer_epoch=7, base_sequence=99, epoch=5,
    )
    buf = encode_batch(
        [Record(b"key", b"value", [], T)], producer_id=1234567890123, producer_epoch=7,
        base_sequence=99, partition_leader_epoch=5,
    )
    assert buf == expected
    (batch,) = decode_batches(expected)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (1234567890123, 7, 99)
    assert batch.partition_leader_epoch == 5
    assert not batch.is_transactional and not batch.is_control


def test_golden_control_transactional_batch() -> None:
    # A commit marker: key = version 0 (int16), type 1 = commit (int16); value =
    # version 0 (int16), coordinator epoch 5 (int32).
    marker = bytes.fromhex(
        "20" "00" "00" "00"  # length 16
        "08" "00000001"  # key, 4 bytes
        "0c" "000000000005"  # value, 6 bytes
        "00"
    )
    expected = golden_batch(
        marker, count=1, last_offset_delta=0, base_ts=T, max_ts=T, attributes=0x30,
        producer_id=77, producer_epoch=1, base_sequence=-1,
    )
    buf = encode_batch(
        [Record(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x05", [], T)],
        producer_id=77, producer_epoch=1, is_transactional=True, is_control=True,
    )
    assert buf == expected
    (batch,) = decode_batches(expected)
    assert batch.is_control and batch.is_transactional
    assert batch.attributes == 0x30 and batch.compression is Compression.NONE
    assert batch.records[0].key == b"\x00\x00\x00\x01"


def test_golden_log_append_time_overrides_record_timestamps() -> None:
    expected = golden_batch(
        REC_KEY_VALUE, count=1, last_offset_delta=0, base_ts=T, max_ts=T + 999, attributes=0x08
    )
    assert encode_batch([Record(b"key", b"value", [], T)], log_append_time_ms=T + 999) == expected
    (batch,) = decode_batches(expected)
    assert batch.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert batch.records[0].timestamp_ms == T + 999


def test_lz4_frame_is_written_as_kafka_writes_it() -> None:
    buf = encode_batch([Record(b"key", b"value" * 100, [], T)], compression="lz4")
    (batch,) = decode_batches(buf)
    assert batch.compression == "lz4" and batch.attributes == 3
    frame = buf[BATCH_HEADER_BYTES:]
    # magic 184D2204 (LE); FLG 0x60 = version 01, independent blocks, no checksums, no size;
    # BD 0x40 = 64 KiB blocks; header checksum 0x82; the frame ends with a zero end mark.
    assert frame[:7] == bytes.fromhex("04224d18604082")
    assert frame[-4:] == b"\x00\x00\x00\x00"
    assert batch.records[0].value == b"value" * 100


def test_lz4_section_decompresses_to_the_uncompressed_section() -> None:
    records = [Record(b"k%d" % i, b"v" * i, [("h", b"x")], T + i) for i in range(50)]
    plain = encode_batch(records)
    packed = encode_batch(records, compression="lz4")
    assert lz4.frame.decompress(packed[BATCH_HEADER_BYTES:]) == plain[BATCH_HEADER_BYTES:]
    assert len(packed) < len(plain)


# ----------------------------------------------------------------------- broker-side helpers


def test_verify_batch_returns_the_header() -> None:
    buf = encode_batch([Record(b"k", b"v", [], T)] * 3, base_offset=10, producer_id=3,
                       producer_epoch=0, base_sequence=0)
    h = verify_batch(buf)
    assert (h.base_offset, h.last_offset, h.record_count, h.size) == (10, 12, 3, len(buf))
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.max_timestamp) == (3, 0, 0, T)
    assert h == read_batch_header(buf)


def test_stamp_then_verify_and_decode() -> None:
    first = encode_batch([Record(b"a", b"1", [], T)])
    second = encode_batch([Record(b"b", b"2", [], T), Record(b"c", b"3", [], T + 1)])
    buf = bytearray(first + second)
    stamp_batch(buf, 0, 1000, 7)
    stamp_batch(memoryview(buf), len(first), 1001, 8)
    assert verify_batch(buf).base_offset == 1000
    assert verify_batch(buf, len(first)).partition_leader_epoch == 8
    b1, b2 = decode_batches(bytes(buf))
    assert (b1.base_offset, b1.partition_leader_epoch, b1.records[0].offset) == (1000, 7, 1000)
    assert (b2.base_offset, b2.last_offset) == (1001, 1002)
    assert [r.offset for r in b2.records] == [1001, 1002]
    assert b2.partition_leader_epoch == 8


def test_stamp_needs_a_header() -> None:
    with pytest.raises(CorruptBatchError):
        stamp_batch(bytearray(20), 0, 1, 1)


def test_iter_batch_headers_walks_concatenated_batches() -> None:
    batches = [encode_batch([Record(None, b"x" * i, [], T)] * (i + 1), base_offset=i * 10)
               for i in range(4)]
    headers = list(iter_batch_headers(b"".join(batches), verify_crc=True))
    assert [h.base_offset for h in headers] == [0, 10, 20, 30]
    assert [h.size for h in headers] == [len(b) for b in batches]
    assert [h.record_count for h in headers] == [1, 2, 3, 4]


def test_partial_tail_is_an_error_unless_allowed() -> None:
    whole = encode_batch([Record(b"k", b"v", [], T)])
    buf = whole + whole[:30]
    with pytest.raises(CorruptBatchError, match="truncated batch at byte"):
        list(iter_batch_headers(buf))
    with pytest.raises(CorruptBatchError, match="truncated"):
        list(decode_batches(buf))
    assert len(list(iter_batch_headers(buf, allow_partial_tail=True))) == 1
    assert len(list(decode_batches(buf, allow_partial_tail=True))) == 1
    assert len(list(decode_batches(whole + whole[:5], allow_partial_tail=True))) == 1


def test_empty_buffer_holds_no_batches() -> None:
    assert list(decode_batches(b"")) == []
    assert list(iter_batch_headers(b"")) == []


def test_empty_batch_round_trips() -> None:
    (batch,) = decode_batches(encode_batch([], base_offset=5))
    assert batch.records == [] and batch.base_offset == 5 and batch.base_timestamp == -1


def test_decode_accepts_bytearray_and_memoryview() -> None:
    buf = encode_batch([Record(b"k", b"v", [("a", b"b")], T)])
    for form in (bytearray(buf), memoryview(buf)):
        (batch,) = decode_batches(form)
        assert type(batch.records[0].key) is bytes and batch.records[0].headers == [("a", b"b")]


# ------------------------------------------------------------------------------- bad input


def _rebuild(buf: bytes, *, records: bytes | None = None, count: int | None = None,
             attributes: int | None = None) -> bytes:
    """`buf` with its records section, count or attributes replaced and a correct CRC."""
    h = read_batch_header(buf)
    return golden_batch(
        buf[BATCH_HEADER_BYTES:] if records is None else records,
        count=h.record_count if count is None else count,
        last_offset_delta=h.last_offset_delta, base_ts=h.base_timestamp,
        max_ts=h.max_timestamp, base_offset=h.base_offset, epoch=h.partition_leader_epoch,
        attributes=h.attributes if attributes is None else attributes,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch,
        base_sequence=h.base_sequence,
    )


GOOD = encode_batch([Record(b"key", b"value", [], T), Record(None, b"v2", [("h", b"x")], T + 1)])


def test_rebuild_helper_reproduces_a_good_batch() -> None:
    assert _rebuild(GOOD) == GOOD


def test_bad_crc_says_so() -> None:
    buf = bytearray(GOOD)
    buf[-1] ^= 0x01
    with pytest.raises(CorruptBatchError, match="CRC mismatch in batch at byte 0"):
        verify_batch(buf)
    with pytest.raises(CorruptBatchError, match="CRC mismatch"):
        list(decode_batches(bytes(buf)))


def test_bad_magic() -> None:
    buf = bytearray(GOOD)
    buf[16] = 1
    with pytest.raises(CorruptBatchError, match="unsupported magic 1 at byte 0"):
        verify_batch(buf)


@pytest.mark.parametrize("length", [-1, -(1 << 31), 0, 48])
def test_length_below_the_header(length: int) -> None:
    buf = bytearray(GOOD)
    struct.pack_into(">i", buf, 8, length)
    with pytest.raises(CorruptBatchError, match="below the header"):
        verify_batch(buf)
    with pytest.raises(CorruptBatchError, match="below the header"):
        list(decode_batches(bytes(buf), allow_partial_tail=True))


def test_oversized_batch_is_refused_before_reading_it() -> None:
    buf = bytearray(GOOD)
    struct.pack_into(">i", buf, 8, BATCH_BYTES_MAX)  # claims more than the default bound
    with pytest.raises(CorruptBatchError, match="above batch_bytes_max"):
        verify_batch(buf)
    with pytest.raises(CorruptBatchError, match="above batch_bytes_max 64"):
        list(decode_batches(GOOD, batch_bytes_max=64))
    assert len(list(decode_batches(GOOD + GOOD, batch_bytes_max=len(GOOD)))) == 2


def test_record_count_too_high() -> None:
    with pytest.raises(CorruptBatchError, match="record 2 at byte 28 .* runs past the end"):
        list(decode_batches(_rebuild(GOOD, count=3)))
    with pytest.raises(CorruptBatchError, match="record count 100000 does not fit"):
        list(decode_batches(_rebuild(GOOD, count=100_000)))
    with pytest.raises(CorruptBatchError, match="record count -1"):
        list(decode_batches(_rebuild(GOOD, count=-1)))


def test_record_count_too_low_leaves_trailing_bytes() -> None:
    with pytest.raises(CorruptBatchError, match="13 bytes after the last record"):
        list(decode_batches(_rebuild(GOOD, count=1)))


def test_record_length_overrunning_the_batch() -> None:
    records = bytes.fromhex("7e" "00" "00" "00" "02" "6b" "02" "76" "00")  # claims 63 bytes
    with pytest.raises(CorruptBatchError, match="record 0 at byte 0 .*bad length 63"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_record_fields_disagreeing_with_its_length() -> None:
    records = bytes.fromhex("12" "00" "00" "00" "02" "6b" "02" "76" "00" "00")  # says 9, has 8
    with pytest.raises(CorruptBatchError, match="length says"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_key_longer_than_the_record() -> None:
    records = bytes.fromhex("0e" "00" "00" "00" "7e" "6b" "02" "76" "00")  # key of 63 bytes
    with pytest.raises(CorruptBatchError, match="record 0"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_negative_key_length_other_than_null() -> None:
    records = bytes.fromhex("0e" "00" "00" "00" "03" "6b" "02" "76" "00")  # key length -2
    with pytest.raises(CorruptBatchError, match="negative length -2"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_varint_too_long() -> None:
    records = bytes.fromhex("ffffffffff7f") + bytes(10)  # a 6-byte varint for the length
    with pytest.raises(CorruptBatchError, match="longer than 5 bytes"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_varint_beyond_int32() -> None:
    records = bytes.fromhex("ffffffff1f") + bytes(10)  # 5 bytes holding 35 bits
    with pytest.raises(CorruptBatchError, match="exceeds 32 bits"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


def test_header_key_must_be_utf8_and_not_null() -> None:
    bad_utf8 = bytes.fromhex("12" "00" "00" "00" "01" "01" "02" "02" "ff" "01")
    with pytest.raises(CorruptBatchError, match="not utf-8"):
        list(decode_batches(_rebuild(GOOD, records=bad_utf8, count=1)))
    null_key = bytes.fromhex("10" "00" "00" "00" "01" "01" "02" "01" "01")
    with pytest.raises(CorruptBatchError, match="null header key"):
        list(decode_batches(_rebuild(GOOD, records=null_key, count=1)))


def test_negative_header_count() -> None:
    records = bytes.fromhex("0c" "00" "00" "00" "01" "01" "03")
    with pytest.raises(CorruptBatchError, match="bad header count -2"):
        list(decode_batches(_rebuild(GOOD, records=records, count=1)))


@pytest.mark.parametrize("codec_id,name", [(5, "5"), (6, "6"), (7, "7")])
def test_unsupported_codecs_are_named(codec_id: int, name: str) -> None:
    buf = _rebuild(GOOD, attributes=codec_id)
    assert verify_batch(buf).attributes == codec_id  # the broker may still store it
    with pytest.raises(UnsupportedCompressionError, match=name) as info:
        list(decode_batches(buf))
    assert info.value.codec == name
    assert isinstance(info.value, CorruptBatchError)


@pytest.mark.parametrize("compression", ["brotli", "lz4hc", ""])
def test_encoding_with_an_unsupported_codec_raises(compression: str) -> None:
    with pytest.raises(UnsupportedCompressionError):
        encode_batch([Record(b"k", b"v", [], T)], compression=compression)


def test_bad_lz4_data() -> None:
    with pytest.raises(CorruptBatchError, match=r"bad lz4 data .* in the batch at byte 0"):
        list(decode_batches(_rebuild(GOOD, records=b"not an lz4 frame", attributes=3)))


def test_truncated_lz4_frame() -> None:
    packed = encode_batch([Record(None, bytes(range(256)) * 8, [], T)], compression="lz4")
    frame = packed[BATCH_HEADER_BYTES:]
    with pytest.raises(CorruptBatchError, match="lz4"):
        list(decode_batches(_rebuild(packed, records=frame[:-6])))


def test_bytes_after_the_lz4_frame() -> None:
    packed = encode_batch([Record(None, b"v" * 100, [], T)], compression="lz4")
    with pytest.raises(CorruptBatchError, match="3 bytes after the lz4 frame"):
        list(decode_batches(_rebuild(packed, records=packed[BATCH_HEADER_BYTES:] + b"abc")))


def test_decompression_bomb_is_bounded() -> None:
    section = encode_batch([Record(None, bytes(4 << 20), [], T)])[BATCH_HEADER_BYTES:]
    bomb = _rebuild(GOOD, records=lz4.frame.compress(section, block_linked=False), count=1,
                    attributes=3)
    assert len(bomb) < 64 << 10
    with pytest.raises(CorruptBatchError, match="exceed decompressed_bytes_max 1048576"):
        list(decode_batches(bomb, decompressed_bytes_max=1 << 20))
    (batch,) = decode_batches(bomb)  # within the default bound it is a legal batch
    assert len(batch.records[0].value) == 4 << 20


def test_lz4_frame_lying_about_its_content_size() -> None:
    """A frame header may claim any content size; decoding must not allocate by it."""
    frame = bytearray(lz4.frame.compress(b"x" * 100, store_size=True, block_linked=False))
    frame[6:14] = struct.pack("<Q", 1 << 50)
    for checksum in range(256):  # find the header checksum byte lz4 accepts for the lie
        frame[14] = checksum
        try:
            lz4.frame.get_frame_info(bytes(frame))
            break
        except RuntimeError:
            continue
    with pytest.raises(CorruptBatchError, match="lz4"):
        list(decode_batches(_rebuild(GOOD, records=bytes(frame), count=1, attributes=3)))


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        encode_batch([Record(b"k", b"v", [], T)], producer_epoch=1 << 15)
    with pytest.raises(ValueError):
        encode_batch([Record(b"k", b"v", [], -(1 << 63)), Record(b"k", b"v", [], (1 << 63) - 1)])
    with pytest.raises(ValueError):
        encode_batch([Record(b"k", b"v", [], 1 << 63)])
    with pytest.raises(TypeError):
        encode_batch([Record(b"k", "text", [], T)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_batch([Record(b"k", b"v", [], 1.5)])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_batch([Record(b"k", b"v", [(b"key", b"v")], T)])  # type: ignore[list-item]


def test_encode_accepts_bytearray_and_memoryview_payloads() -> None:
    payloads: list[object] = [bytearray(b"k"), memoryview(b"value"), bytearray(b"x")]
    key, value, header = payloads
    record = Record(key, value, [("h", header)], T)  # type: ignore[arg-type]
    buf = encode_batch([record])
    (batch,) = decode_batches(buf)
    r = batch.records[0]
    assert (r.key, r.value, r.headers) == (b"k", b"value", [("h", b"x")])


def test_large_records_use_long_varints() -> None:
    big = bytes(range(256)) * 100  # 25600 bytes: a three-byte length varint
    records = [Record(b"k" * 9000, big, [("h" * 70, big)], T + (1 << 40))] + [
        Record(None, b"", [], T - (1 << 40))
    ] * 9000  # offset deltas above 8191
    (batch,) = decode_batches(encode_batch(records, compression="lz4"), batch_bytes_max=1 << 24)
    assert batch.records[0].value == big and batch.records[0].key == b"k" * 9000
    assert batch.records[0].headers == [("h" * 70, big)]
    assert batch.records[-1].offset == 9000 and batch.records[-1].timestamp_ms == T - (1 << 40)
    assert batch.max_timestamp == T + (1 << 40)


# ---------------------------------------------------------------------------------- purity

ALLOWED_IMPORTS = {"__future__", "collections", "dataclasses", "enum", "struct", "typing",
                   "zlib", "lz4", "cramjam", "crc32c", "broker"}


@pytest.mark.parametrize("name", ["records.py", "varint.py", "compression.py"])
def test_codec_imports_only_stdlib_data_modules_and_codec_libraries(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "broker" / "wire" / name
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            if node.module.startswith("broker"):
                assert node.module in {"broker.wire.limits", "broker.wire.varint",
                                       "broker.wire.compression"}
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
