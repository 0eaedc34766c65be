"""Opening a replica directory: find the segments, validate every entry, cut a torn tail.

Rules (the log serves nothing that fails them):
- A partial or CRC-failing entry at the end of the LAST segment, with no valid entry after it,
  is a torn write: the file is cut there (and the cut fsynced).
- A bad entry followed by a valid one, a bad entry in any earlier segment, an entry whose
  CRC holds but whose index, term, kind or Kafka offsets break the log's order, a bad segment
  header, or a gap between segments is corruption: LogCorruptionError.
- A last segment shorter than its header, or whose header is all zeros, was being created
  when the process stopped: it is deleted (and so on backwards, for a roll that created
  several).
- `log_start` hides the entries up to its index. Segments wholly below it are deleted (a
  retention or reset interrupted after writing it). If the entries at and after it do not
  continue from it (a reset interrupted before deleting the old segments, whose log does not
  match the new start), every segment is deleted: the log restarts empty after it.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from crc32c import crc32c

from broker.raft.messages import EntryKind, HardState
from broker.storage.batch import batch_offsets
from broker.storage.config import LogConfig
from broker.storage.errors import LogCorruptionError
from broker.storage.files import TEMP_SUFFIX
from broker.storage.format import (
    ENTRY_HEADER,
    ENTRY_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    FormatError,
    LogStart,
    SegmentHeader,
    decode_hard_state,
    decode_log_start,
    decode_segment_header,
    parse_segment_file_name,
    segment_file_name,
)
from broker.storage.segment import Segment
from broker.storage.terms import TermRuns
from broker.wire.records import CorruptBatchError

__all__ = ["Recovered", "recover", "scan_segment", "learn_offset", "HARD_STATE_FILE", "LOG_START_FILE"]

log = logging.getLogger(__name__)

HARD_STATE_FILE = "hard_state"
LOG_START_FILE = "log_start"
_KINDS = frozenset(int(k) for k in EntryKind)
_INDEX_FIELD = struct.Struct(">Q")
_INDEX_FIELD_AT = 8  # crc, length, then the index
_SEARCH_CHUNK_BYTES = 1 << 20
_META_BYTES_MAX = 1 << 20  # metadata files are tiny; read no more than this
T = TypeVar("T")


@dataclass(slots=True, kw_only=True)
class Recovered:
    segments: list[Segment]  # at least one; the last is the active segment
    runs: TermRuns
    start: LogStart
    hard_state: HardState | None
    torn_bytes: int  # cut from the tail of the last segment
    dir_changed: bool  # files were deleted or created: the directory needs an fsync


def recover(directory: str, config: LogConfig) -> Recovered:
    """Read and validate a replica directory (which must exist and be locked by the caller)."""
    _remove_temp_files(directory)
    start = _read_meta(directory, LOG_START_FILE, decode_log_start)
    hard_state = _read_meta(directory, HARD_STATE_FILE, decode_hard_state)
    segments: list[Segment] = []
    try:
        dir_changed = _open_segments(directory, config, segments)
        runs, torn_bytes = _scan_all(segments, config)
        start, dropped = _apply_start(segments, runs, start)
        if not segments:
            assert start is not None
            segments.append(Segment.create(directory, SegmentHeader(
                base_index=start.start_index + 1, prev_term=start.start_term,
                base_offset=start.start_offset), config.roll_bytes_for(start.start_index + 1)))
            runs = TermRuns(start.start_index, start.start_term)
            dir_changed = True
        dir_changed = dir_changed or dropped
    except BaseException:
        for seg in segments:
            seg.close()
        raise
    assert start is not None
    return Recovered(segments=segments, runs=runs, start=start, hard_state=hard_state,
                     torn_bytes=torn_bytes, dir_changed=dir_changed)


def _remove_temp_files(directory: str) -> None:
    for name in os.listdir(directory):
        if name.endswith(TEMP_SUFFIX):
            os.unlink(os.path.join(directory, name))


def _read_meta(directory: str, name: str, decode: Callable[[bytes], T]) -> T | None:
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as f:
            data = f.read(_META_BYTES_MAX)
    except FileNotFoundError:
        return None
    try:
        return decode(data)
    except FormatError as e:
        raise LogCorruptionError(path, 0, str(e)) from None


def _open_segments(directory: str, config: LogConfig, out: list[Segment]) -> bool:
    """Open every segment file in index order into `out`; delete half-created trailing ones.
    Returns whether a file was deleted."""
    bases = sorted(b for b in map(parse_segment_file_name, os.listdir(directory)) if b is not None)
    paths = [os.path.join(directory, segment_file_name(b)) for b in bases]
    for k, (base, path) in enumerate(zip(bases, paths)):
        if all(_never_written(p) for p in paths[k:]):
            # Created by a roll (or a reset) whose header never reached the disk; a header
            # is fsynced with the file's first entries, so nothing durable is lost here.
            for p in paths[k:]:
                os.unlink(p)
            return True
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            try:
                header = decode_segment_header(os.pread(fd, SEGMENT_HEADER_BYTES, 0))
            except FormatError as e:
                raise LogCorruptionError(path, 0, str(e)) from None
            if header.base_index != base:
                raise LogCorruptionError(path, 0, f"header says base index {header.base_index}")
        except BaseException:
            os.close(fd)
            raise
        out.append(Segment.open_existing(path, header, fd, config.roll_bytes_for(base)))
    return False


def _never_written(path: str) -> bool:
    """A segment file whose header is missing or all zeros (the size reached the disk, the
    bytes did not)."""
    with open(path, "rb") as f:
        head = f.read(SEGMENT_HEADER_BYTES)
    return len(head) < SEGMENT_HEADER_BYTES or not any(head)


def _apply_start(segments: list[Segment], runs: TermRuns, start: LogStart | None
                 ) -> tuple[LogStart, bool]:
    """The log start, from `log_start` or else the first segment; deletes what it hides
    wholly. Returns (start, whether files were deleted)."""
    if start is None:
        if not segments:
            return LogStart(start_index=0, start_term=0, start_offset=0), False
        first = segments[0]
        return LogStart(start_index=first.base_index - 1, start_term=first.prev_term,
                        start_offset=first.base_offset), False
    s = start.start_index
    dropped = False
    while segments and segments[0].last_index <= s:
        segments.pop(0).unlink()
        dropped = True
    if segments:
        first = segments[0]
        term = first.prev_term if first.base_index == s + 1 else None
        if first.base_index <= s:
            term = runs.term_at(s)
        if term != start.start_term:
            log.warning("%s: segments from index %d do not continue the log start (%d, %d); "
                        "deleting them (an interrupted reset)", first.path, first.base_index,
                        s, start.start_term)
            while segments:
                segments.pop().unlink()
            return start, True
        runs.drop_before(s)
        if start.start_offset >= 0:  # learned after the segments were made
            for seg in segments:
                learn_offset(seg, start.start_offset)
    return start, dropped


def _scan_all(segments: list[Segment], config: LogConfig) -> tuple[TermRuns, int]:
    """Scan every segment in order, checking that each continues the one before."""
    if not segments:
        return TermRuns(0, 0), 0
    runs = TermRuns(segments[0].base_index - 1, segments[0].prev_term)
    torn_bytes = 0
    prev: Segment | None = None
    for k, seg in enumerate(segments):
        if prev is not None:
            _check_continues(prev, seg)
        last = k == len(segments) - 1
        file_size = os.fstat(seg.fd).st_size
        end = scan_segment(seg, file_size, last=last, runs=runs, config=config)
        if end < file_size:
            log.warning("%s: cut a torn tail of %d bytes at byte %d", seg.path, file_size - end, end)
            os.ftruncate(seg.fd, end)
            os.fsync(seg.fd)
            torn_bytes = file_size - end
        seg.size = seg.flushed_size = seg.synced_size = end
        if seg.base_offset >= 0 and segments[0].base_offset < 0:
            for earlier in segments[:k]:  # the log's first DATA entry is in `seg`
                learn_offset(earlier, seg.base_offset)
        prev = seg
    return runs, torn_bytes


def _check_continues(prev: Segment, seg: Segment) -> None:
    if seg.base_index != prev.last_index + 1:
        raise LogCorruptionError(seg.path, 0, f"starts at index {seg.base_index} but the "
                                 f"previous segment ends at {prev.last_index}")
    if seg.prev_term != prev.last_term:
        raise LogCorruptionError(seg.path, 0, f"previous term {seg.prev_term} but the "
                                 f"previous segment ends in term {prev.last_term}")
    if prev.next_offset >= 0 and seg.base_offset != prev.next_offset:
        raise LogCorruptionError(seg.path, 0, f"starts at offset {seg.base_offset} but the "
                                 f"previous segment ends at {prev.next_offset}")


def learn_offset(seg: Segment, offset: int) -> None:
    """The log's first DATA entry showed where its offsets start: fill in the unknowns."""
    if seg.base_offset < 0:
        seg.base_offset = offset
        seg.index.learn_offset(offset)
    if seg.next_offset < 0:
        seg.next_offset = offset


def scan_segment(seg: Segment, file_size: int, *, last: bool, runs: TermRuns,
                 config: LogConfig) -> int:
    """`note` every valid entry of `seg` and return where the valid entries end (file_size
    unless a torn tail must be cut). Raises LogCorruptionError by the module's rules."""
    window = _Window(seg, file_size, config.read_chunk_bytes)
    position = SEGMENT_HEADER_BYTES
    expect = seg.base_index
    offset = seg.base_offset
    while position < file_size:
        found = _entry_at(window, position, config.entry_bytes_max)
        if isinstance(found, str):
            if not last:
                raise LogCorruptionError(seg.path, position, found)
            if _valid_entry_follows(window, position, expect, config.entry_bytes_max):
                raise LogCorruptionError(seg.path, position, found + "; valid entries follow")
            return position
        index, term, kind, payload = found
        if index != expect or term < seg.last_term or kind not in _KINDS:
            raise LogCorruptionError(seg.path, position, f"entry (index {index}, term {term}, "
                                     f"kind {kind}) does not follow index {expect - 1} "
                                     f"(term {seg.last_term})")
        after, max_ts = offset, -1
        if kind == EntryKind.DATA:
            base, after, max_ts = _batch_offsets(seg.path, position, payload, offset)
            if offset < 0:  # the log's offsets start here
                learn_offset(seg, base)
                offset = base
        seg.note(index, term, position, offset, after, max_ts, config.index_interval_bytes)
        runs.note(index, term)
        offset = after
        expect += 1
        position += ENTRY_HEADER_BYTES + len(payload)
    return position


def _batch_offsets(path: str, position: int, payload: memoryview, offset: int) -> tuple[int, int, int]:
    """(base offset, offset after, max timestamp) of a stored DATA payload."""
    try:
        base, after, max_ts = batch_offsets(payload)
    except CorruptBatchError as e:
        raise LogCorruptionError(path, position, f"DATA entry: {e}") from None
    if base < offset:
        raise LogCorruptionError(path, position, f"batch offset {base} is below the log's "
                                 f"next offset {offset}")
    return base, after, max_ts


def _entry_at(window: _Window, position: int, entry_bytes_max: int
              ) -> tuple[int, int, int, memoryview] | str:
    """The entry at `position` if whole and its CRC holds, else why not."""
    head = window.view(position, ENTRY_HEADER_BYTES)
    if head is None:
        return "entry header cut short"
    crc, length, index, term, kind = ENTRY_HEADER.unpack_from(head)
    if length > entry_bytes_max:
        return f"entry length {length} exceeds {entry_bytes_max}"
    whole = window.view(position, ENTRY_HEADER_BYTES + length)
    if whole is None:
        return f"entry of {ENTRY_HEADER_BYTES + length} bytes runs past the end of the file"
    if crc32c(whole[4:]) != crc:
        return f"CRC mismatch in entry {index}"
    return index, term, kind, whole[ENTRY_HEADER_BYTES:]


def _valid_entry_follows(window: _Window, position: int, expect: int, entry_bytes_max: int) -> bool:
    """Is there a whole, CRC-valid entry `expect + 1` anywhere after the bad one at `position`?
    (Its index field is searched for, so a corrupted length cannot hide it.)"""
    pattern = _INDEX_FIELD.pack(expect + 1)
    start = position + 1
    while start < window.file_size:
        n = min(_SEARCH_CHUNK_BYTES, window.file_size - start)
        chunk = window.seg.pread(start, n)
        found = chunk.find(pattern)
        while found >= 0:
            candidate = start + found - _INDEX_FIELD_AT
            if candidate > position and not isinstance(
                _entry_at(window, candidate, entry_bytes_max), str
            ):
                return True
            found = chunk.find(pattern, found + 1)
        if start + n >= window.file_size:
            break
        start += n - len(pattern) + 1  # overlap: a pattern across the chunk edge is found next
    return False


class _Window:
    """Bounded reads of one file: a chunk at a time, or one entry when it is larger."""

    __slots__ = ("seg", "file_size", "chunk_bytes", "_buf", "_view", "_base")

    def __init__(self, seg: Segment, file_size: int, chunk_bytes: int) -> None:
        self.seg = seg
        self.file_size = file_size
        self.chunk_bytes = chunk_bytes
        self._buf = b""
        self._view = memoryview(self._buf)
        self._base = 0

    def view(self, position: int, n: int) -> memoryview | None:
        """Bytes [position, position + n), or None if the file ends before."""
        if position + n > self.file_size:
            return None
        off = position - self._base
        if off < 0 or off + n > len(self._buf):
            want = min(max(n, self.chunk_bytes), self.file_size - position)
            self._buf = self.seg.pread(position, want)
            self._view = memoryview(self._buf)
            self._base, off = position, 0
            if len(self._buf) < n:
                return None
        return self._view[off : off + n]
