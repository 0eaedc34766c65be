"""Interoperability with kafka-python's own RecordBatch v2 implementation
(kafka/record/default_records.py) and codecs (kafka/codec.py): batches it writes decode with ours
field for field, batches we write decode with it, under every codec; and LZ4 frames in every
form a client may write. kafka-python's snappy needs python-snappy; its zstd, zstandard."""

from __future__ import annotations

import lz4.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.codec import has_snappy, has_zstd
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from broker.wire.records import (
    BATCH_HEADER_BYTES,
    Compression,
    Record,
    decode_batches,
    encode_batch,
    read_batch_header,
)
from tests.unit.test_records import golden_batch

T = 1_700_000_000_000
KP_NONE, KP_GZIP, KP_SNAPPY, KP_LZ4, KP_ZSTD = 0, 1, 2, 3, 4
_CODECS = [(KP_NONE, "none"), (KP_GZIP, "gzip"), (KP_SNAPPY, "snappy"), (KP_LZ4, "lz4"),
           (KP_ZSTD, "zstd")]
_MISSING = {KP_SNAPPY: None if has_snappy() else "kafka-python's snappy needs python-snappy",
            KP_ZSTD: None if has_zstd() else "kafka-python's zstd needs zstandard"}
EVERY_CODEC = [pytest.param(c, name, id=name, marks=pytest.mark.skipif(
    _MISSING.get(c) is not None, reason=str(_MISSING.get(c)))) for c, name in _CODECS]
AVAILABLE = [(c, name) for c, name in _CODECS if _MISSING.get(c) is None]

RECORDS = [
    Record(b"key-0", b"hello world " * 20, [("trace", b"abc"), ("empty", b""), ("null", None)], T),
    Record(None, b"no key " * 30, [], T + 7),
    Record(b"key-2", None, [("h", b"x")], T - 3),
    Record(b"", b"", [], T + 1000),
] + [Record(b"k%d" % i, b"payload %d " % i * 10, [], T + i) for i in range(100)]


def _kafka_python_batch(records: list[Record], codec: int, *, transactional: bool = False,
                        producer: tuple[int, int, int] = (-1, -1, -1)) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=transactional,
        producer_id=producer[0], producer_epoch=producer[1], base_sequence=producer[2],
        batch_size=1 << 24,
    )
    for offset, r in enumerate(records):
        assert builder.append(offset, timestamp=r.timestamp_ms, key=r.key, value=r.value,
                              headers=list(r.headers)) is not None
    return bytes(builder.build())


@pytest.mark.parametrize("codec,compression", EVERY_CODEC)
def test_kafka_python_batches_decode_with_ours(codec: int, compression: str) -> None:
    buf = _kafka_python_batch(RECORDS, codec, transactional=True, producer=(4321, 3, 17))
    (batch,) = decode_batches(buf)
    assert batch.compression == compression
    assert batch.base_offset == 0 and batch.last_offset == len(RECORDS) - 1
    assert batch.partition_leader_epoch == 0  # kafka-python leaves it to the broker as 0
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (4321, 3, 17)
    assert batch.is_transactional and not batch.is_control
    assert batch.base_timestamp == T
    assert batch.max_timestamp == max(r.timestamp_ms for r in RECORDS)
    assert batch.size == len(buf)
    for i, (got, want) in enumerate(zip(batch.records, RECORDS, strict=True)):
        assert (got.offset, got.timestamp_ms) == (i, want.timestamp_ms)
        assert (got.key, got.value, got.headers) == (want.key, want.value, list(want.headers))


@pytest.mark.parametrize("codec,compression", EVERY_CODEC)
def test_our_batches_decode_with_kafka_python(codec: int, compression: str) -> None:
    buf = encode_batch(RECORDS, base_offset=500, compression=compression, producer_id=99,
                       producer_epoch=2, base_sequence=40, partition_leader_epoch=6,
                       is_transactional=True)
    theirs = DefaultRecordBatch(buf)
    assert theirs.validate_crc()
    assert theirs.compression_type == codec
    assert (theirs.base_offset, theirs.last_offset, theirs.leader_epoch) == (500, 603, 6)
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (99, 2, 40)
    assert theirs.is_transactional and not theirs.is_control_batch
    assert theirs.first_timestamp == T
    assert theirs.max_timestamp == T + 1000
    assert theirs.records_count == len(RECORDS)
    got = list(theirs)
    assert len(got) == len(RECORDS)
    for i, (r, want) in enumerate(zip(got, RECORDS, strict=True)):
        assert (r.offset, r.timestamp, r.timestamp_type) == (500 + i, want.timestamp_ms, 0)
        assert (r.key, r.value, r.headers) == (want.key, want.value, list(want.headers))


def test_byte_identical_to_kafka_python_without_compression() -> None:
    """Both follow the same spec; kafka-python leaves the leader epoch 0 for the broker."""
    theirs = _kafka_python_batch(RECORDS, KP_NONE, producer=(1, 0, 0))
    ours = encode_batch(RECORDS, producer_id=1, producer_epoch=0, base_sequence=0,
                        partition_leader_epoch=0)
    assert ours == theirs


def test_concatenated_batches_both_ways() -> None:
    ours = b"".join(
        encode_batch(RECORDS[i : i + 10], base_offset=i, compression=("lz4", "none")[i % 2])
        for i in range(0, 100, 10)
    )
    records = MemoryRecords(ours)
    offsets = []
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        offsets += [r.offset for r in batch]
    assert offsets == list(range(100))

    theirs = b"".join(_kafka_python_batch(RECORDS[i : i + 10], (KP_NONE, KP_LZ4)[i % 2])
                      for i in range(0, 100, 10))
    decoded = list(decode_batches(theirs))
    assert len(decoded) == 10
    assert [r.value for b in decoded for r in b.records] == [r.value for r in RECORDS[:100]]


def test_our_control_batch_reads_as_a_commit_marker() -> None:
    marker = Record(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x05", [], T)
    buf = encode_batch([marker], producer_id=5, producer_epoch=0, is_transactional=True,
                       is_control=True)
    theirs = DefaultRecordBatch(buf)
    assert theirs.is_control_batch and theirs.is_transactional
    (record,) = list(theirs)
    assert record.commit and record.version == 0


# LZ4 frames as different writers make them: Kafka's Java client (independent 64 KiB blocks,
# nothing else), kafka-python (adds the content size), and whatever else lz4 permits.
FRAME_OPTIONS = [
    {"store_size": False},
    {"store_size": True},
    {"content_checksum": True},
    {"block_checksum": True},
    {"block_linked": True},
    {"block_size": lz4.frame.BLOCKSIZE_MAX256KB},
    {"block_size": lz4.frame.BLOCKSIZE_MAX4MB, "compression_level": 9},
]


@pytest.mark.parametrize("options", FRAME_OPTIONS, ids=lambda o: ",".join(map(str, o.items())))
def test_every_lz4_frame_variant_decodes(options: dict[str, object]) -> None:
    records = [Record(b"k%d" % i, b"value %d " % i * 50, [], T + i) for i in range(400)]
    plain = encode_batch(records)  # > 64 KiB of records: several blocks
    h = read_batch_header(plain)
    frame = lz4.frame.compress(plain[BATCH_HEADER_BYTES:], **options)
    buf = golden_batch(frame, count=h.record_count, last_offset_delta=h.last_offset_delta,
                       base_ts=h.base_timestamp, max_ts=h.max_timestamp, attributes=3)
    (batch,) = decode_batches(buf)
    assert batch.compression is Compression.LZ4
    assert [(r.key, r.value, r.timestamp_ms) for r in batch.records] == [
        (r.key, r.value, r.timestamp_ms) for r in records
    ]


_records = st.lists(
    st.builds(
        Record,
        key=st.none() | st.binary(max_size=40),
        value=st.none() | st.binary(max_size=300),
        headers=st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)),
                         max_size=3),
        timestamp_ms=st.integers(0, 1 << 50),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(records=_records, codec=st.sampled_from(AVAILABLE))
def test_random_batches_agree_with_kafka_python(
    records: list[Record], codec: tuple[int, str]
) -> None:
    theirs = DefaultRecordBatch(encode_batch(records, compression=codec[1]))
    assert theirs.validate_crc()
    assert [(r.key, r.value, r.headers, r.timestamp) for r in theirs] == [
        (r.key, r.value, r.headers, r.timestamp_ms) for r in records
    ]
    (ours,) = decode_batches(_kafka_python_batch(records, codec[0]))
    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in ours.records] == [
        (r.key, r.value, r.headers, r.timestamp_ms) for r in records
    ]
