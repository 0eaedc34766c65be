"""The records-section codecs of a Kafka RecordBatch: what each one writes, how its output is
bounded, and how it is read back without ever producing more than a caller's limit.

Forms, as Kafka clients write them:

    gzip    one gzip member (RFC 1952; zlib with wbits 31). Readers also take several
            concatenated members, as Java's GZIPInputStream does (up to 4096 of them).
    snappy  Kafka's Java client writes xerial framing (snappy-java's SnappyOutputStream): a
            16-byte header b"\\x82SNAPPY\\x00" + int32 version + int32 compatible version (both
            1), then blocks of [int32 big-endian length][raw snappy block] of at most 32 KiB
            uncompressed each. librdkafka writes one plain raw snappy block instead. A raw block
            cannot begin with the xerial magic (its first tag would copy from empty output), so
            the magic tells them apart. We write xerial framing.
    lz4     one LZ4 frame: independent 64 KiB blocks, no checksums, no content size.
    zstd    zstd frames (the Java client's streaming writer leaves the content size out).

Decompression treats the input as hostile: every codec is bounded by `limit` decompressed
bytes (a bomb fails after at most that many), its time is linear in input and output (gzip
members and xerial blocks are counted and capped), and any malformed input raises CodecError.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Final, TypeAlias

import cramjam as _cramjam
import lz4.frame as _lz4

__all__ = [
    "CODEC_IDS",
    "CODECS_BY_ID",
    "CodecError",
    "Compression",
    "compress",
    "compressed_bytes_max",
    "decompress",
]

Buffer: TypeAlias = bytes | bytearray | memoryview


class CodecError(ValueError):
    """Compressed data is malformed, truncated, or decompresses past its limit."""


class Compression(enum.StrEnum):
    """Kafka's codecs; the value is the name clients use (compression_type="lz4")."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"

    @property
    def codec_id(self) -> int:
        return CODEC_IDS[self]


CODEC_IDS: Final = {
    Compression.NONE: 0,
    Compression.GZIP: 1,
    Compression.SNAPPY: 2,
    Compression.LZ4: 3,
    Compression.ZSTD: 4,
}
CODECS_BY_ID: Final = {v: k for k, v in CODEC_IDS.items()}

# Kafka's producer defaults: gzip Deflater.DEFAULT_COMPRESSION (6), zstd level 3.
_GZIP_LEVEL: Final = 6
_GZIP_WBITS: Final = 16 + 15  # a gzip wrapper around a 32 KiB-window deflate stream
_ZSTD_LEVEL: Final = 3

_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_BYTES: Final = 32 << 10  # snappy-java's default block
_XERIAL_LENGTH = struct.Struct(">i")
# A raw snappy block of at most 32 KiB: a preamble varint of <= 3 bytes; stored as one
# literal its tag takes 3 more (tag byte + 2-byte length).
_SNAPPY_BLOCK_OVERHEAD_BYTES: Final = 4 + 3 + 3

_LZ4_FRAME_BYTES: Final = 11  # magic, descriptor and end mark of an LZ4 frame
_LZ4_BLOCK_BYTES: Final = 64 << 10
_LZ4_BLOCK_HEADER_BYTES: Final = 4

# Decompression output starts at this many times the input (records compress 2-10x) and grows
# 4x per attempt up to the limit: neither a zstd frame nor a Java-written lz4 frame states its
# content size, and reserving the whole limit up front would cost 64 MiB per decode.
_OUTPUT_FIRST_RATIO: Final = 8
_OUTPUT_FIRST_BYTES: Final = 64 << 10
_OUTPUT_GROWTH: Final = 4
# lz4 output comes in steps, each allocated whole before it is filled: this caps the last
# step's overshoot (16 steps for a 64 MiB section).
_LZ4_STEP_BYTES_MAX: Final = 4 << 20
# Java writes one gzip member and xerial blocks of 32 KiB each (a 64 MiB limit is 2048 of
# them). Each member or block costs a decoder call however small it is, so a section of
# 20-byte empty members could stall the event loop for seconds: more than this is refused.
_GZIP_MEMBERS_MAX: Final = 4096
_XERIAL_BLOCKS_MAX: Final = 4096
# A gzip member's end is known only once zlib has read past it, and zlib copies what it did
# not use into unused_data; feeding it a small piece first (growing 4x while the member lasts)
# keeps that copy small, so the walk over many members stays linear in the input.
_GZIP_FEED_FIRST_BYTES: Final = 4 << 10
_OUTPUT_FULL: Final = "failed to write whole buffer"  # cramjam's error for a full output


# ---------------------------------------------------------------------------------- encoding


def compress(codec: Compression, data: bytes) -> bytes:
    """`data` compressed as Kafka's Java client writes `codec`; at most
    compressed_bytes_max(codec, len(data)) bytes."""
    if codec is Compression.NONE:
        out = data
    elif codec is Compression.GZIP:
        out = zlib.compress(data, _GZIP_LEVEL, _GZIP_WBITS)
    elif codec is Compression.SNAPPY:
        out = _xerial_compress(data)
    elif codec is Compression.LZ4:
        out = _lz4_compress(data)
    else:
        assert codec is Compression.ZSTD, codec
        out = bytes(_cramjam.zstd.compress(data, level=_ZSTD_LEVEL))
    assert len(out) <= compressed_bytes_max(codec, len(data)), (codec, len(data), len(out))
    return out


def compressed_bytes_max(codec: Compression, data_bytes: int) -> int:
    """Largest output of compress(codec, data) for `data_bytes` of input."""
    n = data_bytes
    if codec is Compression.NONE:
        return n
    if codec is Compression.GZIP:
        # zlib's deflateBound is n + n/4096 + n/16384 + 25 for a gzip stream; some slack
        # over it for other zlib builds.
        return n + (n >> 10) + 64
    if codec is Compression.SNAPPY:
        blocks = -(-n // _XERIAL_BLOCK_BYTES)
        return len(_XERIAL_HEADER) + n + blocks * _SNAPPY_BLOCK_OVERHEAD_BYTES
    if codec is Compression.LZ4:
        blocks = max(1, -(-n // _LZ4_BLOCK_BYTES))
        return n + _LZ4_FRAME_BYTES + blocks * _LZ4_BLOCK_HEADER_BYTES
    assert codec is Compression.ZSTD, codec
    small = ((128 << 10) - n) >> 11 if n < 128 << 10 else 0
    return n + (n >> 8) + small  # ZSTD_COMPRESSBOUND


def _xerial_compress(data: bytes) -> bytes:
    parts = [_XERIAL_HEADER]
    view = memoryview(data)
    for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
        chunk = view[start : start + _XERIAL_BLOCK_BYTES]
        block = bytes(_cramjam.snappy.compress_raw(chunk))
        if len(block) > len(chunk) + 6:
            # Incompressible: one literal is shorter, and keeps the bound at a few bytes
            # per block instead of snappy's n/6.
            block = _snappy_literal_block(chunk)
        parts += (_XERIAL_LENGTH.pack(len(block)), block)
    return b"".join(parts)


def _snappy_literal_block(chunk: memoryview) -> bytes:
    """A raw snappy block holding `chunk` (1 .. 64 KiB) as a single literal."""
    n = len(chunk)
    assert 0 < n <= 1 << 16, n
    preamble = bytearray()
    v = n
    while v >= 0x80:
        preamble.append(v & 0x7F | 0x80)
        v >>= 7
    preamble.append(v)
    if n <= 60:
        tag = bytes([(n - 1) << 2])
    elif n <= 256:
        tag = bytes([60 << 2, n - 1])
    else:
        tag = bytes([61 << 2]) + (n - 1).to_bytes(2, "little")
    return bytes(preamble) + tag + bytes(chunk)


def _lz4_compress(data: bytes) -> bytes:
    """One LZ4 frame as Kafka's Java client writes it (Lz4BlockOutputStream): independent
    64 KiB blocks, no block or content checksum, no content size. Kafka's reader rejects
    linked blocks, and librdkafka and kafka-python read this form too."""
    return _lz4.compress(
        data,
        block_size=_lz4.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        block_checksum=False,
        store_size=False,
    )


# ---------------------------------------------------------------------------------- decoding


def decompress(codec: Compression, data: Buffer, limit: int) -> bytes:
    """The bytes `data` decompresses to under `codec`; CodecError when it is malformed or
    would exceed `limit` bytes (never producing more than about that many)."""
    if codec is Compression.NONE:
        return bytes(data)
    if codec is Compression.GZIP:
        return _gzip_decompress(data, limit)
    if codec is Compression.SNAPPY:
        return _snappy_decompress(data, limit)
    if codec is Compression.LZ4:
        return _lz4_decompress(data, limit)
    assert codec is Compression.ZSTD, codec
    return _zstd_decompress(data, limit)


def _exceeds(codec: Compression, limit: int) -> CodecError:
    return CodecError(f"{codec} records exceed decompressed_bytes_max {limit}")


def _gzip_decompress(data: Buffer, limit: int) -> bytes:
    view = memoryview(data)
    parts: list[bytes] = []
    pos = total = 0
    for _ in range(_GZIP_MEMBERS_MAX):
        pos, total = _gzip_member(view, pos, parts, total, limit)
        if pos == len(view):
            return b"".join(parts)
    raise CodecError(f"more than {_GZIP_MEMBERS_MAX} gzip members")


def _gzip_member(
    view: memoryview, pos: int, parts: list[bytes], total: int, limit: int
) -> tuple[int, int]:
    """Inflate the gzip member starting at view[pos] onto `parts` (which already hold `total`
    bytes); returns where the member ends and the new total."""
    d = zlib.decompressobj(_GZIP_WBITS)
    feed_bytes = _GZIP_FEED_FIRST_BYTES
    while True:
        piece = view[pos : pos + feed_bytes]
        try:
            chunk = d.decompress(piece, limit + 1 - total)
        except zlib.error as e:
            raise CodecError(f"bad gzip data ({e})") from None
        total += len(chunk)
        if total > limit:
            raise _exceeds(Compression.GZIP, limit)
        parts.append(chunk)
        if d.eof:
            return pos + len(piece) - len(d.unused_data), total
        # Below max_length zlib stops only when the piece is used up.
        assert not d.unconsumed_tail, len(d.unconsumed_tail)
        pos += len(piece)
        if pos == len(view):
            raise CodecError("truncated gzip stream")
        feed_bytes *= _OUTPUT_GROWTH


def _snappy_decompress(data: Buffer, limit: int) -> bytes:
    view = memoryview(data)
    blocks = _xerial_blocks(view) if view[: len(_XERIAL_MAGIC)] == _XERIAL_MAGIC else [view]
    parts: list[bytes] = []
    total = 0
    for block in blocks:
        try:
            # The preamble states the block's size; checked before anything is allocated.
            total += _cramjam.snappy.decompress_raw_len(block)
            if total > limit:
                raise _exceeds(Compression.SNAPPY, limit)
            parts.append(bytes(_cramjam.snappy.decompress_raw(block)))
        except _cramjam.DecompressionError as e:
            raise CodecError(f"bad snappy data ({e})") from None
    return b"".join(parts)


def _xerial_blocks(view: memoryview) -> list[memoryview]:
    if len(view) < len(_XERIAL_HEADER):
        raise CodecError(f"truncated xerial snappy header ({len(view)} bytes)")
    blocks: list[memoryview] = []
    pos = len(_XERIAL_HEADER)
    end = len(view)
    while pos < end:
        if len(blocks) == _XERIAL_BLOCKS_MAX:
            raise CodecError(f"more than {_XERIAL_BLOCKS_MAX} xerial snappy blocks")
        if end - pos < _XERIAL_LENGTH.size:
            raise CodecError(f"truncated xerial snappy block length at byte {pos}")
        (length,) = _XERIAL_LENGTH.unpack_from(view, pos)
        pos += _XERIAL_LENGTH.size
        if length < 0 or length > end - pos:
            raise CodecError(f"xerial snappy block of {length} bytes at byte {pos} runs past "
                             f"the end")
        blocks.append(view[pos : pos + length])
        pos += length
    return blocks


def _lz4_decompress(data: Buffer, limit: int) -> bytes:
    """In growing steps: the decompressor allocates all of max_length for each call."""
    decompressor = _lz4.LZ4FrameDecompressor()
    parts: list[bytes] = []
    total = 0
    step = min(_LZ4_STEP_BYTES_MAX, _output_first_bytes(data, limit))
    rest: Buffer = data  # the decompressor keeps what one step leaves unread
    while True:
        try:
            chunk = decompressor.decompress(rest, max_length=min(step, limit + 1 - total))
        except Exception as e:  # lz4 reports every malformed frame as a bare RuntimeError
            raise CodecError(f"bad lz4 data ({e})") from None
        rest = b""
        total += len(chunk)
        if total > limit:
            raise _exceeds(Compression.LZ4, limit)
        parts.append(chunk)
        if decompressor.eof:
            break
        if decompressor.needs_input:
            raise CodecError("truncated lz4 frame")
        step = min(_LZ4_STEP_BYTES_MAX, step * _OUTPUT_GROWTH)
    if decompressor.unused_data:
        raise CodecError(f"{len(decompressor.unused_data)} bytes after the lz4 frame")
    return b"".join(parts)


def _output_first_bytes(data: Buffer, limit: int) -> int:
    """The first output buffer for decompressing `data`: records compress 2-10x."""
    return min(limit + 1, max(_OUTPUT_FIRST_BYTES, _OUTPUT_FIRST_RATIO * len(data)))


def _zstd_decompress(data: Buffer, limit: int) -> bytes:
    """Into a fixed output buffer, which cramjam refuses to overrun: the only hard output
    bound it offers. A frame need not state its size, so a full buffer is retried larger."""
    size = _output_first_bytes(data, limit)
    while True:
        out = bytearray(size)
        try:
            n = _cramjam.zstd.decompress_into(data, out)
        except _cramjam.DecompressionError as e:
            if _OUTPUT_FULL not in str(e):
                raise CodecError(f"bad zstd data ({e})") from None
            if size > limit:
                raise _exceeds(Compression.ZSTD, limit) from None
            size = min(limit + 1, size * _OUTPUT_GROWTH)
            del out  # before the larger one is made
            continue
        if n > limit:
            raise _exceeds(Compression.ZSTD, limit)
        return bytes(memoryview(out)[:n])
