"""RecordBatch compression: gzip, snappy (xerial framing and plain raw blocks), lz4 and zstd
round trip; every section we write reads back with an independent decoder of its format; every
form other clients write decodes with ours; decompression is bounded by
`decompressed_bytes_max`; malformed sections raise CorruptBatchError naming the codec."""

from __future__ import annotations

import gzip
import os
import random
import struct
import tracemalloc
import zlib

import cramjam
import crc32c
import pytest
import zstandard

from broker.wire.compression import (
    CODECS_BY_ID,
    Compression,
    compress,
    compressed_bytes_max,
    decompress,
)
from broker.wire.records import (
    BATCH_HEADER_BYTES,
    CorruptBatchError,
    Record,
    decode_batches,
    encode_batch,
    read_batch_header,
)
from tests.unit.test_records import golden_batch

T = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
COMPRESSED = ["gzip", "snappy", "lz4", "zstd"]
XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)

# > 64 KiB of records: several xerial blocks, several lz4 blocks, a multi-block zstd frame.
RECORDS = [
    Record(b"key-0", b"hello world " * 20, [("trace", b"abc"), ("null", None)], T),
    Record(None, None, [], T + 7),
    Record(b"", b"", [], T - 3),
] + [Record(b"k%d" % i, b"payload %d " % i * 40, [], T + i) for i in range(300)]


def _section_of(records: list[Record]) -> tuple[bytes, dict[str, int]]:
    """The uncompressed records section and the header fields to rebuild a batch around it."""
    plain = encode_batch(records)
    h = read_batch_header(plain)
    fields = {"count": h.record_count, "last_offset_delta": h.last_offset_delta,
              "base_ts": h.base_timestamp, "max_ts": h.max_timestamp}
    return plain[BATCH_HEADER_BYTES:], fields


SECTION, FIELDS = _section_of(RECORDS)
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _batch(codec: str, compressed: bytes, fields: dict[str, int] | None = None) -> bytes:
    return golden_batch(compressed, attributes=CODEC_ID[codec], **(fields or FIELDS))


def _decoded(buf: bytes, **limits: int) -> list[tuple[bytes | None, bytes | None, object, int]]:
    (batch,) = decode_batches(buf, **limits)
    return [(r.key, r.value, r.headers, r.timestamp_ms) for r in batch.records]


WANT = [(r.key, r.value, list(r.headers), r.timestamp_ms) for r in RECORDS]


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip(codec: str) -> None:
    buf = encode_batch(RECORDS, base_offset=40, compression=codec, producer_id=7,
                       producer_epoch=1, base_sequence=3)
    (batch,) = decode_batches(buf)
    assert batch.compression == codec and batch.attributes & 7 == CODEC_ID[codec]
    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in batch.records] == WANT
    assert [r.offset for r in batch.records] == list(range(40, 40 + len(RECORDS)))
    if codec != "none":
        assert len(buf) < BATCH_HEADER_BYTES + len(SECTION) // 2  # it did compress


@pytest.mark.parametrize("codec", CODECS)
def test_empty_and_single_record_batches(codec: str) -> None:
    for records in ([], [Record(None, b"x", [], T)]):
        (batch,) = decode_batches(encode_batch(records, compression=codec))
        assert [r.value for r in batch.records] == [r.value for r in records]


def test_gzip_section_is_one_gzip_member() -> None:
    buf = encode_batch(RECORDS, compression="gzip")
    assert buf[BATCH_HEADER_BYTES : BATCH_HEADER_BYTES + 2] == b"\x1f\x8b"
    assert gzip.decompress(buf[BATCH_HEADER_BYTES:]) == SECTION


def test_snappy_section_is_xerial_framed_as_the_java_client_writes_it() -> None:
    section = encode_batch(RECORDS, compression="snappy")[BATCH_HEADER_BYTES:]
    assert section[:16] == XERIAL_HEADER
    out, pos, blocks = b"", 16, 0
    while pos < len(section):
        (length,) = struct.unpack_from(">i", section, pos)
        block = section[pos + 4 : pos + 4 + length]
        assert cramjam.snappy.decompress_raw_len(block) <= 32 << 10
        out += bytes(cramjam.snappy.decompress_raw(block))
        pos += 4 + length
        blocks += 1
    assert out == SECTION and blocks == -(-len(SECTION) // (32 << 10))


def test_zstd_section_is_one_zstd_frame() -> None:
    section = encode_batch(RECORDS, compression="zstd")[BATCH_HEADER_BYTES:]
    assert zstandard.ZstdDecompressor().decompress(section) == SECTION


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("size", [0, 1, 61, 300, 32 << 10, (32 << 10) + 1, 100_000, 1 << 20])
def test_incompressible_data_stays_within_the_stated_bound(codec: str, size: int) -> None:
    data = os.urandom(size)
    out = compress(Compression(codec), data)
    assert len(out) <= compressed_bytes_max(Compression(codec), size)
    buf = _batch(codec, out, {"count": 0, "last_offset_delta": 0, "base_ts": -1, "max_ts": -1})
    if size == 0:
        assert _decoded(buf) == []


# --------------------------------------------------------------------- other writers' forms


def test_raw_snappy_block_as_librdkafka_writes_it() -> None:
    assert _decoded(_batch("snappy", bytes(cramjam.snappy.compress_raw(SECTION)))) == WANT


def test_xerial_with_other_version_fields_and_block_sizes() -> None:
    """Readers ignore version and compatible version (some writers put them little-endian)."""
    header = b"\x82SNAPPY\x00" + struct.pack("<ii", 1, 1)
    blocks = [SECTION[i : i + 10_000] for i in range(0, len(SECTION), 10_000)]
    body = b"".join(struct.pack(">i", len(b)) + b
                    for b in (bytes(cramjam.snappy.compress_raw(x)) for x in blocks))
    assert _decoded(_batch("snappy", header + body)) == WANT


def test_concatenated_gzip_members() -> None:
    half = len(SECTION) // 2
    section = gzip.compress(SECTION[:half]) + gzip.compress(SECTION[half:], compresslevel=1)
    assert _decoded(_batch("gzip", section)) == WANT


@pytest.mark.parametrize("content_size", [True, False])
def test_zstd_frame_with_or_without_content_size(content_size: bool) -> None:
    frame = zstandard.ZstdCompressor(write_content_size=content_size).compress(SECTION)
    assert _decoded(_batch("zstd", frame)) == WANT


def test_zstd_streamed_frames_and_high_ratios() -> None:
    """The Java client streams (no content size); zeros compress ~1000x, so the decoder's first
    output guess is far too small and must grow."""
    records = [Record(None, bytes(200_000), [], T), Record(b"k", b"v", [], T)]
    section, fields = _section_of(records)
    writer = zstandard.ZstdCompressor(level=19).compressobj()
    frame = writer.compress(section[:1000]) + writer.compress(section[1000:]) + writer.flush()
    assert len(section) > 100 * len(frame)
    (batch,) = decode_batches(_batch("zstd", frame, fields))
    assert [r.value for r in batch.records] == [bytes(200_000), b"v"]
    two_frames = zstandard.ZstdCompressor().compress(section[:500]) + \
        zstandard.ZstdCompressor().compress(section[500:])
    (batch,) = decode_batches(_batch("zstd", two_frames, fields))
    assert len(batch.records) == 2


# ----------------------------------------------------------------------------------- bombs

BOMB_RECORDS = [Record(None, bytes(4 << 20), [], T)]
BOMB_SECTION, BOMB_FIELDS = _section_of(BOMB_RECORDS)
LIMIT = 512 << 10

BOMBS = {
    "gzip": lambda: zlib.compress(BOMB_SECTION, 9, 31),
    "snappy": lambda: bytes(cramjam.snappy.compress_raw(BOMB_SECTION)),
    "xerial": lambda: compress(Compression.SNAPPY, BOMB_SECTION),
    "lz4": lambda: compress(Compression.LZ4, BOMB_SECTION),
    "zstd": lambda: zstandard.ZstdCompressor(write_content_size=False).compress(BOMB_SECTION),
}


@pytest.mark.parametrize("form", sorted(BOMBS))
def test_decompression_is_bounded(form: str) -> None:
    codec = "snappy" if form == "xerial" else form
    buf = _batch(codec, BOMBS[form](), BOMB_FIELDS)
    assert len(buf) < 256 << 10
    tracemalloc.start()
    try:
        with pytest.raises(CorruptBatchError,
                           match=f"{codec} records exceed decompressed_bytes_max {LIMIT} "
                                 f"in the batch at byte 0"):
            list(decode_batches(buf, decompressed_bytes_max=LIMIT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What Python allocated (the output and at most one copy of it), far below the 4 MiB the
    # section decodes to.
    assert peak < 2.5 * LIMIT, peak
    (batch,) = decode_batches(buf)  # within the default bound it is a legal batch
    assert len(batch.records[0].value) == 4 << 20


def test_snappy_preamble_claiming_gigabytes_fails_before_decoding() -> None:
    block = b"\x80\x80\x80\x80\x08" + bytes(cramjam.snappy.compress_raw(b"tiny"))[1:]
    with pytest.raises(CorruptBatchError, match="snappy records exceed decompressed_bytes_max"):
        list(decode_batches(_batch("snappy", block)))
    xerial = XERIAL_HEADER + struct.pack(">i", len(block)) + block
    with pytest.raises(CorruptBatchError, match="snappy records exceed decompressed_bytes_max"):
        list(decode_batches(_batch("snappy", xerial)))


def test_xerial_blocks_add_up_against_the_bound() -> None:
    block = bytes(cramjam.snappy.compress_raw(bytes(300_000)))
    xerial = XERIAL_HEADER + (struct.pack(">i", len(block)) + block) * 4
    with pytest.raises(CorruptBatchError, match="exceed decompressed_bytes_max 1000000"):
        list(decode_batches(_batch("snappy", xerial), decompressed_bytes_max=1_000_000))


def test_output_exactly_at_the_bound_is_accepted() -> None:
    for codec in COMPRESSED:
        buf = encode_batch(RECORDS, compression=codec)
        assert len(_decoded(buf, decompressed_bytes_max=len(SECTION))) == len(RECORDS)
        with pytest.raises(CorruptBatchError, match="exceed decompressed_bytes_max"):
            list(decode_batches(buf, decompressed_bytes_max=len(SECTION) - 1))


# ------------------------------------------------------------------------------ malformed


def _good_section(codec: str) -> bytes:
    return encode_batch(RECORDS, compression=codec)[BATCH_HEADER_BYTES:]


MALFORMED = {
    "gzip garbage": ("gzip", b"not a gzip stream at all", "bad gzip data"),
    "gzip truncated": ("gzip", _good_section("gzip")[:-9], "truncated gzip stream"),
    "gzip trailing bytes": ("gzip", _good_section("gzip") + b"junk", "bad gzip data"),
    "gzip empty": ("gzip", b"", "truncated gzip stream"),
    "zlib not gzip": ("gzip", zlib.compress(SECTION), "bad gzip data"),
    "snappy garbage": ("snappy", b"\xff\xff\xff\xff\xff\xff", "bad snappy data"),
    "snappy empty": ("snappy", b"", "bad snappy data"),
    "snappy raw truncated": ("snappy", bytes(cramjam.snappy.compress_raw(SECTION))[:-5],
                             "bad snappy data"),
    "snappy raw trailing": ("snappy", bytes(cramjam.snappy.compress_raw(SECTION)) + b"x",
                            "bad snappy data"),
    "xerial header cut": ("snappy", XERIAL_HEADER[:12], "truncated xerial snappy header"),
    "xerial length cut": ("snappy", XERIAL_HEADER + b"\x00\x00",
                          "truncated xerial snappy block length"),
    "xerial block past end": ("snappy", _good_section("snappy")[:-3], "runs past the end"),
    "xerial negative length": ("snappy", XERIAL_HEADER + struct.pack(">i", -1),
                               "block of -1 bytes"),
    "xerial bad block": ("snappy", XERIAL_HEADER + struct.pack(">i", 3) + b"\xff\xff\xff",
                         "bad snappy data"),
    "lz4 truncated": ("lz4", _good_section("lz4")[:-6], "lz4"),
    "zstd garbage": ("zstd", b"\x28\xb5\x2f\xfd" + b"\xff" * 40, "bad zstd data"),
    "zstd truncated": ("zstd", _good_section("zstd")[:-4], "bad zstd data"),
    "zstd trailing bytes": ("zstd", _good_section("zstd") + b"\x00" * 8, "bad zstd data"),
    "zstd empty": ("zstd", b"", "bad zstd data"),
    "zstd window too large": ("zstd", b"\x28\xb5\x2f\xfd\x00\xf8" + b"\x01\x00\x00",
                              "bad zstd data"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sections_raise_corrupt_batch(case: str) -> None:
    codec, section, message = MALFORMED[case]
    with pytest.raises(CorruptBatchError, match=message):
        list(decode_batches(_batch(codec, section)))


@pytest.mark.parametrize("codec", COMPRESSED)
def test_valid_compression_of_wrong_records_is_still_caught(codec: str) -> None:
    """Decompression succeeds; the record parser then finds the section disagrees with the
    header's count."""
    buf = _batch(codec, _good_section(codec), {**FIELDS, "count": FIELDS["count"] + 1})
    with pytest.raises(CorruptBatchError, match="decompressed records of the batch at byte 0"):
        list(decode_batches(buf))


# ------------------------------------------------------------- many members, blocks and steps
# Java writes one gzip member and 32 KiB xerial blocks; every further member or block costs a
# decoder call, so their number is capped (walked one at a time, 2 MB of 20-byte empty gzip
# members took seconds).
MEMBERS_MAX = 4096
EMPTY_GZIP_MEMBER = gzip.compress(b"")


def _quick_batch(codec_id: int, section: bytes, fields: dict[str, int]) -> bytes:
    """golden_batch with the CRC from the crc32c library: its bitwise CRC takes a second per
    MiB, too slow for megabyte sections and hundreds of fuzz cases."""
    buf = bytearray(golden_batch(b"", attributes=codec_id, **fields) + section)
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[21:])))
    return bytes(buf)


def _xerial(blocks: list[bytes]) -> bytes:
    return XERIAL_HEADER + b"".join(struct.pack(">i", len(b)) + b for b in blocks)


def test_gzip_members_beyond_the_cap_are_refused() -> None:
    at_cap = gzip.compress(SECTION) + EMPTY_GZIP_MEMBER * (MEMBERS_MAX - 1)
    assert _decoded(_quick_batch(1, at_cap, FIELDS)) == WANT
    for extra in (1, 100_000):  # 100,000 members is a 2 MB section
        buf = _quick_batch(1, at_cap + EMPTY_GZIP_MEMBER * extra, FIELDS)
        with pytest.raises(CorruptBatchError, match=f"more than {MEMBERS_MAX} gzip members"):
            list(decode_batches(buf, batch_bytes_max=4 << 20))


def test_xerial_blocks_beyond_the_cap_are_refused() -> None:
    empty_block = bytes(cramjam.snappy.compress_raw(b""))
    blocks = [bytes(cramjam.snappy.compress_raw(SECTION))] + [empty_block] * (MEMBERS_MAX - 1)
    assert _decoded(_quick_batch(2, _xerial(blocks), FIELDS)) == WANT
    for extra in (1, 300_000):  # 300,000 blocks of 5 bytes: 1.5 MB
        buf = _quick_batch(2, _xerial(blocks + [empty_block] * extra), FIELDS)
        with pytest.raises(CorruptBatchError,
                           match=f"more than {MEMBERS_MAX} xerial snappy blocks"):
            list(decode_batches(buf, batch_bytes_max=4 << 20))


def test_gzip_members_of_every_size_split_where_they_end() -> None:
    """Members shorter and far longer than the pieces zlib is fed, ending anywhere in one."""
    rng = random.Random(8)
    cuts = sorted(rng.sample(range(1, len(SECTION)), 40))
    pieces = [SECTION[a:b] for a, b in zip([0, *cuts], [*cuts, len(SECTION)])]
    pieces[5:5] = [b"", b""]
    pieces.append(b"")
    # Level 0 stores the bytes as they are, so those members span several of zlib's pieces.
    noisy = [gzip.compress(p, compresslevel=rng.choice([0, 1, 9])) for p in pieces]
    assert max(map(len, noisy)) > 4 << 10
    assert _decoded(_quick_batch(1, b"".join(noisy), FIELDS)) == WANT
    big = os.urandom(300_000)
    section = gzip.compress(big, compresslevel=0) + gzip.compress(big[:5])
    assert decompress(Compression.GZIP, section, 1 << 20) == big + big[:5]


def test_lz4_does_not_reserve_the_whole_bound_for_a_small_frame() -> None:
    """The bound is 64 MiB by default; a 5-byte record set must not allocate it."""
    buf = encode_batch([Record(None, b"hello", [], T)], compression="lz4")
    tracemalloc.start()
    try:
        (batch,) = decode_batches(buf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.records[0].value == b"hello"
    assert peak < 1 << 20, peak


def test_lz4_output_in_many_steps_and_cut_between_them() -> None:
    frame = compress(Compression.LZ4, BOMB_SECTION)  # 4 MiB from a few KiB: several steps
    (batch,) = decode_batches(_quick_batch(3, frame, BOMB_FIELDS))
    assert batch.records[0].value == bytes(4 << 20)
    with pytest.raises(CorruptBatchError, match="truncated lz4 frame"):
        list(decode_batches(_quick_batch(3, frame[:-4], BOMB_FIELDS)))
    with pytest.raises(CorruptBatchError, match="1 bytes after the lz4 frame"):
        list(decode_batches(_quick_batch(3, frame + b"x", BOMB_FIELDS)))


# -------------------------------------------------------------------------------------- fuzz
# Random and mutated records sections in batches whose CRC is valid, under every codec id
# (5-7 are undefined): decoding either succeeds or raises CorruptBatchError, nothing else.

FUZZ_CASES = 2000  # per codec id; a few seconds in all
FUZZ_PREFIXES = {1: b"\x1f\x8b\x08", 2: XERIAL_HEADER, 3: b"\x04\x22\x4d\x18",
                 4: b"\x28\xb5\x2f\xfd"}
FUZZ_RECORDS = [Record(b"key%d" % i, b"v%d" % i + b"a" * (i * 150), [("h", b"x")], T + i)
                for i in range(20)]
FUZZ_SEEDS = {c.codec_id: compress(c, _section_of(FUZZ_RECORDS)[0])
              for c in Compression if c is not Compression.NONE}
FUZZ_SEEDS[0] = _section_of(FUZZ_RECORDS)[0]


def _fuzz_section(rng: random.Random, codec_id: int) -> bytes:
    """Random bytes after the codec's magic, a mutated compressed section, or a mutated plain
    section compressed (so the record parser meets it too)."""
    mode = rng.randrange(4)
    if codec_id not in FUZZ_SEEDS or mode == 0:
        section = rng.randbytes(rng.randrange(300))
        if codec_id in FUZZ_PREFIXES and rng.random() < 0.5:
            section = FUZZ_PREFIXES[codec_id] + section
        return section
    if mode == 1:
        plain = _mutated(rng, FUZZ_SEEDS[0])
        return compress(CODECS_BY_ID[codec_id], plain) if codec_id else plain
    seed = FUZZ_SEEDS[codec_id]
    if codec_id == 2 and rng.random() < 0.3:  # librdkafka's raw block
        seed = bytes(cramjam.snappy.compress_raw(FUZZ_SEEDS[0]))
    return _mutated(rng, seed)


def _mutated(rng: random.Random, seed: bytes) -> bytes:
    base = bytearray(seed)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        if op == 0 and base:
            base[rng.randrange(len(base))] = rng.getrandbits(8)
        elif op == 1 and base:
            del base[rng.randrange(len(base)):]
        elif op == 2:
            i = rng.randrange(len(base) + 1)
            base[i:i] = rng.randbytes(rng.randrange(1, 8))
        elif op == 3:  # several gzip members or zstd frames, or a broken repeat
            base += base[: rng.randrange(len(base) + 1)]
        else:
            base += seed
    return bytes(base)


@pytest.mark.parametrize("codec_id", range(8))
def test_fuzzed_sections_raise_only_corrupt_batch(codec_id: int) -> None:
    for case in range(FUZZ_CASES):
        seed = codec_id * 1_000_000 + case
        rng = random.Random(seed)
        section = _fuzz_section(rng, codec_id)
        count = rng.choice([0, 1, 20, 20, 40, rng.randrange(-5, 100), 2**31 - 1, -(2**31)])
        buf = _quick_batch(codec_id, section, {**FIELDS, "count": count})
        try:
            for batch in decode_batches(buf, decompressed_bytes_max=4 << 20):
                assert len(batch.records) == count, f"seed {seed}"
        except CorruptBatchError:
            pass
        except Exception as e:  # noqa: BLE001 - anything else is the bug reported
            raise AssertionError(f"seed {seed}: {type(e).__name__}: {e}") from e
