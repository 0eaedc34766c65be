"""One segment file: its descriptor, its write buffer and what is known about its entries.

Appends only touch memory (`add` queues the header and payload); `write_pending` hands the
queued bytes to the OS with as few `pwritev` calls as the iovec limit allows, and `fsync`
makes them durable. The three sizes track that progress:
`synced_size <= flushed_size <= size`.
"""

from __future__ import annotations

import enum
import os

from broker.storage.format import (
    SEGMENT_HEADER_BYTES,
    SegmentHeader,
    encode_segment_header,
    segment_file_name,
)
from broker.storage.index import SparseIndex

__all__ = ["Segment", "SummaryState", "IOV_MAX"]

IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)


class SummaryState(enum.Enum):
    """Whether a summary file describes this segment (see `broker.storage.summary`)."""

    ABSENT = "absent"  # none on disk; one is owed once the segment is sealed and durable
    WRITTEN = "written"  # on disk, and describes the file as it is
    NEVER = "never"  # this segment gets none (e.g. its Kafka offsets were unknown): scanned
    FAILED = "failed"  # writing it failed on open: none trusted, a file may remain (removed
    # with the segment), not retried until the next open


class Segment:
    __slots__ = (
        "path", "fd", "base_index", "prev_term", "base_offset", "roll_bytes",
        "last_index", "last_term", "next_offset", "max_timestamp",
        "size", "flushed_size", "synced_size", "pending", "pending_bytes", "index", "summary",
    )

    def __init__(self, *, path: str, fd: int, header: SegmentHeader, roll_bytes: int) -> None:
        self.path = path
        self.fd = fd
        self.base_index = header.base_index
        self.prev_term = header.prev_term  # term of base_index - 1
        self.base_offset = header.base_offset  # Kafka offset at the start; -1 unknown
        self.roll_bytes = roll_bytes  # a new segment starts before this size is exceeded
        self.last_index = header.base_index - 1  # == base_index - 1 while empty
        self.last_term = header.prev_term
        self.next_offset = header.base_offset  # Kafka offset after the last DATA entry here
        self.max_timestamp = -1  # largest batch max_timestamp here (-1: no DATA)
        self.size = SEGMENT_HEADER_BYTES  # bytes including the write buffer
        self.flushed_size = SEGMENT_HEADER_BYTES  # bytes handed to the OS
        self.synced_size = SEGMENT_HEADER_BYTES  # bytes known durable
        self.pending: list[bytes | memoryview] = []  # queued chunks: entry = header, payload
        self.pending_bytes = 0  # == size - flushed_size
        self.index = SparseIndex()
        self.summary = SummaryState.ABSENT

    # ---- life cycle -----------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str, header: SegmentHeader, roll_bytes: int) -> Segment:
        """A new, empty segment file; its header is queued like an entry (written on flush)."""
        path = os.path.join(directory, segment_file_name(header.base_index))
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644)
        seg = cls(path=path, fd=fd, header=header, roll_bytes=roll_bytes)
        seg.flushed_size = seg.synced_size = 0
        seg.pending.append(encode_segment_header(header))
        seg.pending_bytes = SEGMENT_HEADER_BYTES
        return seg

    @classmethod
    def open_existing(cls, path: str, header: SegmentHeader, fd: int, roll_bytes: int) -> Segment:
        """A segment whose entries the caller will `note` while scanning it."""
        return cls(path=path, fd=fd, header=header, roll_bytes=roll_bytes)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def unlink(self) -> None:
        self.close()
        os.unlink(self.path)

    # ---- appending ------------------------------------------------------------------------
    def note(self, index: int, term: int, position: int, offset_before: int, offset_after: int,
             batch_max_timestamp: int, index_interval_bytes: int) -> None:
        """Record an entry at `position` (appended, or found by a scan)."""
        if not self.index.positions or position - self.index.positions[-1] >= index_interval_bytes:
            self.index.add(index, offset_before, position, self.max_timestamp)
        self.last_index = index
        self.last_term = term
        self.next_offset = offset_after
        if batch_max_timestamp > self.max_timestamp:
            self.max_timestamp = batch_max_timestamp

    def add(self, header: bytes, payload: bytes, index: int, term: int, offset_before: int,
            offset_after: int, batch_max_timestamp: int, index_interval_bytes: int) -> int:
        """Append one entry: note it and queue its bytes. Returns its position."""
        position = self.size
        self.note(index, term, position, offset_before, offset_after, batch_max_timestamp,
                  index_interval_bytes)
        n = len(header) + len(payload)
        self.pending.append(header)
        self.pending.append(payload)
        self.pending_bytes += n
        self.size = position + n
        return position

    @property
    def is_empty(self) -> bool:
        return self.last_index < self.base_index

    # ---- writing --------------------------------------------------------------------------
    def write_pending(self) -> None:
        """Hand every queued byte to the OS. Raises OSError (the caller latches the log)."""
        if not self.pending:
            return
        chunks, self.pending = self.pending, []
        expected, self.pending_bytes = self.pending_bytes, 0
        position = self.flushed_size
        if len(chunks) <= IOV_MAX and os.pwritev(self.fd, chunks, position) == expected:
            self.flushed_size = position + expected
            return
        self.flushed_size = _write_all(self.fd, chunks, position, expected)
        assert self.flushed_size == self.size, (self.flushed_size, self.size)

    def fsync(self) -> None:
        os.fsync(self.fd)
        self.synced_size = self.flushed_size

    def truncate(self, position: int) -> None:
        """Cut the file at `position` (an entry boundary). A cut into written bytes is made
        durable at once: a later segment or entry must never be seen after a stale tail."""
        assert SEGMENT_HEADER_BYTES <= position <= self.size, (position, self.size)
        if position >= self.flushed_size:
            while self.flushed_size + self.pending_bytes > position:
                self.pending_bytes -= len(self.pending.pop())
            assert self.flushed_size + self.pending_bytes == position, "cut inside an entry"
        else:
            self.pending.clear()
            self.pending_bytes = 0
            os.ftruncate(self.fd, position)
            os.fsync(self.fd)
            self.flushed_size = self.synced_size = position
        self.size = position

    def pread(self, position: int, n: int) -> bytes:
        return os.pread(self.fd, n, position)

    def check_invariants(self) -> None:
        assert self.synced_size <= self.flushed_size <= self.size
        if self.summary is SummaryState.WRITTEN:  # it describes durable bytes only
            assert self.synced_size == self.size and not self.pending
        assert self.size - self.flushed_size == self.pending_bytes
        assert sum(len(c) for c in self.pending) == self.pending_bytes
        assert self.last_index >= self.base_index - 1
        assert self.last_term >= self.prev_term
        assert (len(self.index) == 0) == self.is_empty
        if self.index.indexes:
            assert self.index.indexes[0] == self.base_index
            assert self.index.positions[0] == SEGMENT_HEADER_BYTES
            assert self.index.indexes[-1] <= self.last_index
            assert self.index.positions[-1] < self.size
        self.index.check_invariants()


def _write_all(fd: int, chunks: list[bytes | memoryview], position: int, expected: int) -> int:
    """pwritev in IOV_MAX groups, resuming after short writes. Returns the end position."""
    end = position + expected
    k = 0
    while k < len(chunks):
        group = chunks[k : k + IOV_MAX]
        written = os.pwritev(fd, group, position)
        if written <= 0:
            raise OSError(f"pwritev wrote {written} bytes at {position}")
        position += written
        # Skip the chunks fully written; keep the unwritten rest of a partial one.
        while k < len(chunks) and written >= len(chunks[k]):
            written -= len(chunks[k])
            k += 1
        if written:
            chunks[k] = memoryview(chunks[k])[written:]
    assert position == end, (position, end)
    return position
