"""Sequential reads of a segment's written entries, in bounded chunks, every CRC checked."""

from __future__ import annotations

from collections.abc import Iterator

from crc32c import crc32c

from broker.storage.errors import LogCorruptionError
from broker.storage.format import ENTRY_HEADER, ENTRY_HEADER_BYTES
from broker.storage.segment import Segment

__all__ = ["Item", "iter_segment"]

# (raft index, term, kind, payload, byte position of the entry in its segment)
Item = tuple[int, int, int, bytes | memoryview, int]


def iter_segment(seg: Segment, position: int, chunk_bytes: int) -> Iterator[Item]:
    """Entries from `position` (an entry boundary) to the end of what was handed to the OS.

    Reads `chunk_bytes` at a time (a larger entry is read whole), so memory stays bounded by
    the chunk plus one entry; payloads are views into the chunk and stay valid after the
    iteration. A bad CRC or a short file raises LogCorruptionError: what was written whole
    must read back whole, and nothing failing its check is ever served.
    """
    end = seg.flushed_size
    buf = b""
    view = memoryview(buf)
    base = position  # file position of buf[0]
    while position < end:
        off = position - base
        if len(buf) - off < ENTRY_HEADER_BYTES:
            buf, base, off = seg.pread(position, min(chunk_bytes, end - position)), position, 0
            view = memoryview(buf)
            if len(buf) < ENTRY_HEADER_BYTES:
                raise LogCorruptionError(seg.path, position, "entry header cut short")
        crc, length, index, term, kind = ENTRY_HEADER.unpack_from(buf, off)
        total = ENTRY_HEADER_BYTES + length
        if position + total > end:
            raise LogCorruptionError(seg.path, position, f"entry of {total} bytes runs past {end}")
        if len(buf) - off < total:
            want = max(total, min(chunk_bytes, end - position))
            buf, base, off = seg.pread(position, want), position, 0
            view = memoryview(buf)
            if len(buf) < total:
                raise LogCorruptionError(seg.path, position, "entry cut short")
        if crc32c(view[off + 4 : off + total]) != crc:
            raise LogCorruptionError(seg.path, position, f"CRC mismatch in entry {index}")
        yield index, term, kind, view[off + ENTRY_HEADER_BYTES : off + total], position
        position += total
