"""Property tests of the RecordBatch v2 codec: round trips, corruption detection, truncation,
and hostile bytes that may only ever raise the codec's typed errors.

Hypothesis prints the falsifying example (and `@seed` to replay it) when a property fails."""

from __future__ import annotations

import struct
from typing import Any

import crc32c
import lz4.frame
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.wire.records import (
    BATCH_HEADER_BYTES,
    CorruptBatchError,
    Record,
    RecordBatch,
    decode_batches,
    encode_batch,
    iter_batch_headers,
    stamp_batch,
    verify_batch,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

headers = st.lists(
    st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=40)), max_size=4
)


@st.composite
def record_lists(draw: st.DrawFn, max_size: int = 60) -> list[Record]:
    """Records whose timestamps span anything an int64 delta can hold."""
    base = draw(st.integers(-(1 << 62), (1 << 62) - 1))
    spread = draw(st.sampled_from([0, 1000, 1 << 20, 1 << 40, 1 << 62]))
    return draw(st.lists(
        st.builds(
            Record,
            key=st.none() | st.binary(max_size=64),
            value=st.none() | st.binary(max_size=600),
            headers=headers,
            timestamp_ms=st.integers(base - spread, base + spread),
        ),
        max_size=max_size,
    ))


producer_fields = st.fixed_dictionaries({
    "base_offset": st.integers(0, (1 << 62)),
    "compression": st.sampled_from(["none", "lz4"]),
    "producer_id": st.integers(-1, (1 << 63) - 1),
    "producer_epoch": st.integers(-1, (1 << 15) - 1),
    "base_sequence": st.integers(-1, (1 << 31) - 1),
    "partition_leader_epoch": st.integers(-1, (1 << 31) - 1),
    "is_transactional": st.booleans(),
})


def _check_batch(batch: RecordBatch, records: list[Record], options: dict[str, Any]) -> None:
    assert batch.base_offset == options["base_offset"]
    assert batch.last_offset == options["base_offset"] + max(len(records) - 1, 0)
    assert batch.compression == options["compression"]
    for name in ("producer_id", "producer_epoch", "base_sequence", "partition_leader_epoch",
                 "is_transactional"):
        assert getattr(batch, name) == options[name], name
    if records:
        assert batch.max_timestamp == max(r.timestamp_ms for r in records)
    assert len(batch.records) == len(records)
    for i, (got, want) in enumerate(zip(batch.records, records, strict=True)):
        assert got.offset == options["base_offset"] + i
        assert (got.key, got.value, got.timestamp_ms) == (want.key, want.value, want.timestamp_ms)
        assert got.headers == list(want.headers)


@FAST
@given(records=record_lists(), options=producer_fields)
def test_round_trip(records: list[Record], options: dict[str, Any]) -> None:
    buf = encode_batch(records, **options)
    assert verify_batch(buf).size == len(buf)
    (batch,) = decode_batches(buf)
    _check_batch(batch, records, options)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.tuples(record_lists(max_size=10), producer_fields), max_size=6))
def test_concatenated_batches_round_trip(
    batches: list[tuple[list[Record], dict[str, Any]]]
) -> None:
    buf = b"".join(encode_batch(records, **options) for records, options in batches)
    decoded = list(decode_batches(buf))
    assert len(decoded) == len(batches)
    for batch, (records, options) in zip(decoded, batches, strict=True):
        _check_batch(batch, records, options)
    assert sum(h.size for h in iter_batch_headers(buf, verify_crc=True)) == len(buf)


@settings(max_examples=20, deadline=None)
@given(count=st.integers(1000, 3000), compression=st.sampled_from(["none", "lz4"]))
def test_many_records(count: int, compression: str) -> None:
    records = [Record(None, b"%d" % i, [], i) for i in range(count)]
    (batch,) = decode_batches(encode_batch(records, compression=compression))
    assert [r.value for r in batch.records] == [r.value for r in records]
    assert batch.records[-1].offset == count - 1


@FAST
@given(records=record_lists(max_size=8), compression=st.sampled_from(["none", "lz4"]),
       data=st.data())
def test_any_changed_byte_in_the_crc_region_is_detected(
    records: list[Record], compression: str, data: st.DataObject
) -> None:
    buf = bytearray(encode_batch(records, compression=compression))
    # Everything from the crc field on; CRC-32C catches every error burst of 32 bits or less.
    pos = data.draw(st.integers(17, len(buf) - 1), label="pos")
    buf[pos] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        verify_batch(buf)
    except CorruptBatchError as e:
        assert "CRC mismatch" in str(e)
    else:
        raise AssertionError("a changed byte passed verify_batch")
    try:
        list(decode_batches(bytes(buf)))
    except CorruptBatchError:
        pass
    else:
        raise AssertionError("a changed byte decoded")


@FAST
@given(records=record_lists(max_size=8), compression=st.sampled_from(["none", "lz4"]),
       data=st.data())
def test_any_truncation_is_detected(
    records: list[Record], compression: str, data: st.DataObject
) -> None:
    buf = encode_batch(records, compression=compression)
    cut = data.draw(st.integers(1, len(buf) - 1), label="cut")
    calls = (lambda b: list(decode_batches(b)), verify_batch, lambda b: list(iter_batch_headers(b)))
    for call in calls:
        try:
            call(buf[:cut])
        except CorruptBatchError:
            continue
        raise AssertionError(f"truncation at {cut} of {len(buf)} went unnoticed")
    assert list(decode_batches(buf[:cut], allow_partial_tail=True)) == []
    assert len(list(decode_batches(buf + buf[:cut], allow_partial_tail=True))) == 1


@FAST
@given(records=record_lists(max_size=8), offset=st.integers(0, 1 << 62),
       epoch=st.integers(-1, (1 << 31) - 1))
def test_stamped_batches_stay_valid(records: list[Record], offset: int, epoch: int) -> None:
    buf = bytearray(encode_batch(records))
    stamp_batch(buf, 0, offset, epoch)
    header = verify_batch(buf)
    assert (header.base_offset, header.partition_leader_epoch) == (offset, epoch)
    (batch,) = decode_batches(bytes(buf))
    assert [r.offset for r in batch.records] == [offset + i for i in range(len(records))]


def _decode_all(buf: bytes) -> None:
    """Decode and walk `buf` every way there is; only the codec's typed errors may escape."""
    for call in (
        lambda: list(decode_batches(buf, decompressed_bytes_max=1 << 20)),
        lambda: list(decode_batches(buf, allow_partial_tail=True)),
        lambda: list(iter_batch_headers(buf, verify_crc=True)),
        lambda: verify_batch(buf),
    ):
        try:
            call()
        except CorruptBatchError:
            pass


def _with_crc(header: bytes, section: bytes) -> bytes:
    """A batch whose CRC and length are right whatever the other bytes say, so that garbage
    gets past the CRC check into the record parser."""
    buf = bytearray(header[:BATCH_HEADER_BYTES].ljust(BATCH_HEADER_BYTES, b"\0") + section)
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    buf[16] = 2
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return bytes(buf)


@FAST
@given(garbage=st.binary(max_size=300))
def test_garbage_raises_only_typed_errors(garbage: bytes) -> None:
    _decode_all(garbage)


@FAST
@given(header=st.binary(min_size=BATCH_HEADER_BYTES, max_size=BATCH_HEADER_BYTES),
       section=st.binary(max_size=300), codec=st.sampled_from([0, 3]),
       count=st.integers(-2, 50))
def test_garbage_records_raise_only_typed_errors(
    header: bytes, section: bytes, codec: int, count: int
) -> None:
    buf = bytearray(_with_crc(header, section))
    struct.pack_into(">h", buf, 21, codec)
    struct.pack_into(">i", buf, 57, count)
    if codec == 3:
        buf[BATCH_HEADER_BYTES:] = lz4.frame.compress(bytes(buf[BATCH_HEADER_BYTES:]))
    _decode_all(_with_crc(bytes(buf[:BATCH_HEADER_BYTES]), bytes(buf[BATCH_HEADER_BYTES:])))


@FAST
@given(records=record_lists(max_size=6).filter(bool), compression=st.sampled_from(["none", "lz4"]),
       edits=st.lists(st.tuples(st.integers(0), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_records_with_a_valid_crc_raise_only_typed_errors(
    records: list[Record], compression: str, edits: list[tuple[int, int]]
) -> None:
    """Real batches with a few bytes of the records section changed and the CRC fixed up."""
    buf = encode_batch(records, compression=compression)
    section = bytearray(buf[BATCH_HEADER_BYTES:])
    assume(section)
    for where, value in edits:
        section[where % len(section)] = value
    _decode_all(_with_crc(buf, bytes(section)))
