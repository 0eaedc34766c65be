"""Segment summaries: what opening a log needs from a sealed segment, so it need not scan it.

Opening used to scan and CRC-check every entry of every segment, so a restart cost O(log).
Now a segment that is sealed (a later one exists) and wholly durable gets a summary file next
to it, and opening takes such a segment from its summary without reading its entries: only the
last segment, and any segment without a usable summary, is scanned (Kafka's recovery point
plays this role; its segments keep their offset indexes on disk for the same reason).

Why one small file per segment rather than one log-wide recovery point: a sealed segment never
changes again except by being cut (a Raft conflict) or deleted (retention, a reset), so its
summary is written once, when it is sealed, and goes with it; nothing is rewritten as the log
grows, and a lost or bad summary costs a scan of that one segment. A log-wide checkpoint would
still have to store each segment's sparse index and term runs (what the scan rebuilds), i.e.
per-segment data plus one more file to keep in step.

File `<20-digit base index>.sum` (integers big-endian):

    magic b"RLSS", version uint16
    base_index uint64, prev_term uint64, header_base_offset int64   the segment header as stored
    file_bytes uint64                                               the segment file's length
    last_index uint64, last_term uint64
    base_offset int64, next_offset int64       Kafka offsets at its start and after its end (>= 0)
    max_timestamp int64                        largest batch max timestamp (-1: no DATA)
    last_position uint64, last_header 25 bytes the last entry's position and stored header
    run_count uint32, point_count uint32
    run starts (uint64 each), run terms (uint64 each)   where the term changes inside the segment
    point indexes, offsets, positions, times (int64 each, point_count of each): the sparse index
    crc uint32 of everything before it

Rules, each closing a crash window:
- Written (temp, fsync, rename, fsync the directory) only for a sealed segment whose every byte
  is fsynced: a summary never describes bytes a crash could still lose or tear. One that cannot
  be written on open (e.g. a full disk) is skipped, so the segment is scanned at the next open;
  a failure while running latches the log (see PartitionLog._write_summaries for why).
- Removed, and the removal made durable, before its segment is cut (truncation after a Raft
  conflict); removed with the segment when the segment is deleted (retention, reset). On open
  the summaries of the last segment, of segments not kept and of no segment are deleted before
  anything is appended: a summary on disk never outlives the file it described, so a new file
  under the same name can never be taken for the old one.
- Used at open (with LogConfig.trust_segment_summaries; else it is only checked and kept)
  only for a segment that is not the last, when its CRC holds, its fields are
  consistent, the file's length and header equal the recorded ones and the recorded last entry
  header is where it says; the neighbours must still continue each other as in a scan. Anything
  else is not an error: the segment is scanned, and its summary written again once the scan
  found it clean.
- Damage inside a trusted segment is found when the entry is read (every read checks the CRC,
  see `broker.storage.reader`): the log then removes the summary, latches read-only and raises
  LogDamageError, so the next open scans that segment and repairs it by recovery's rules.
"""

from __future__ import annotations

import logging
import os
import struct
from bisect import bisect_left
from dataclasses import dataclass

from crc32c import crc32c

from broker.storage.files import write_atomic
from broker.storage.format import (
    ENTRY_HEADER,
    ENTRY_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    FormatError,
    decode_segment_header,
)
from broker.storage.segment import Segment, SummaryState
from broker.storage.terms import TermRuns

__all__ = [
    "SUMMARY_SUFFIX",
    "SegmentSummary",
    "summary_file_name",
    "parse_summary_file_name",
    "encode_summary",
    "decode_summary",
    "summarize",
    "write_summary",
    "load_summary",
    "restore",
    "remove_summary",
    "summary_bases",
]

log = logging.getLogger(__name__)

SUMMARY_SUFFIX = ".sum"
_NAME_DIGITS = 20
_MAGIC = b"RLSS"
_VERSION = 1
# magic, version, base_index, prev_term, header_base_offset, file_bytes, last_index, last_term,
# base_offset, next_offset, max_timestamp, last_position, last_header, run_count, point_count
_FIXED = struct.Struct(f">4sHQQqQQQqqqQ{ENTRY_HEADER_BYTES}sII")
_CRC = struct.Struct(">I")
_POINT_BYTES = 4 * 8
_RUN_BYTES = 2 * 8


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentSummary:
    base_index: int
    prev_term: int
    header_base_offset: int  # as in the file's header (-1 when the offsets were learned later)
    file_bytes: int  # the file's length; > SEGMENT_HEADER_BYTES (a sealed segment has entries)
    last_index: int  # >= base_index
    last_term: int  # == run_terms[-1], or prev_term without runs
    base_offset: int  # >= 0
    next_offset: int  # >= base_offset
    max_timestamp: int  # >= -1
    last_position: int  # of the last entry; its header ends the file's bytes with its payload
    last_header: bytes  # ENTRY_HEADER_BYTES, as stored
    run_starts: tuple[int, ...]  # increasing, in [base_index, last_index]
    run_terms: tuple[int, ...]  # increasing, the first above prev_term
    point_indexes: tuple[int, ...]  # the sparse index, as SparseIndex holds it
    point_offsets: tuple[int, ...]
    point_positions: tuple[int, ...]
    point_times: tuple[int, ...]


def summary_file_name(base_index: int) -> str:
    return f"{base_index:0{_NAME_DIGITS}d}{SUMMARY_SUFFIX}"


def parse_summary_file_name(name: str) -> int | None:
    """The base index a summary file name encodes, or None for any other file."""
    stem, dot, suffix = name.partition(".")
    if not dot or "." + suffix != SUMMARY_SUFFIX or len(stem) != _NAME_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def _column(fmt: str, values: tuple[int, ...]) -> bytes:
    return struct.pack(f">{len(values)}{fmt}", *values)


def encode_summary(s: SegmentSummary) -> bytes:
    parts = [_FIXED.pack(_MAGIC, _VERSION, s.base_index, s.prev_term, s.header_base_offset,
                         s.file_bytes, s.last_index, s.last_term, s.base_offset, s.next_offset,
                         s.max_timestamp, s.last_position, s.last_header, len(s.run_starts),
                         len(s.point_indexes)),
             _column("Q", s.run_starts), _column("Q", s.run_terms),
             _column("q", s.point_indexes), _column("q", s.point_offsets),
             _column("q", s.point_positions), _column("q", s.point_times)]
    body = b"".join(parts)
    return body + _CRC.pack(crc32c(body))


def decode_summary(buf: bytes) -> SegmentSummary:
    """Raises FormatError for bytes that are not a consistent summary."""
    if len(buf) < _FIXED.size + _CRC.size:
        raise FormatError(f"summary: {len(buf)} bytes is too short")
    body = memoryview(buf)[:-_CRC.size]
    if crc32c(body) != _CRC.unpack_from(buf, len(buf) - _CRC.size)[0]:
        raise FormatError("summary: CRC mismatch")
    (magic, version, base_index, prev_term, header_base_offset, file_bytes, last_index,
     last_term, base_offset, next_offset, max_timestamp, last_position, last_header,
     n_runs, n_points) = _FIXED.unpack_from(body)
    if magic != _MAGIC or version != _VERSION:
        raise FormatError(f"summary: magic {magic!r} version {version} not ours")
    if len(body) != _FIXED.size + n_runs * _RUN_BYTES + n_points * _POINT_BYTES:
        raise FormatError(f"summary: {n_runs} runs and {n_points} points do not fit "
                          f"its {len(buf)} bytes")
    at = _FIXED.size
    cols: list[tuple[int, ...]] = []
    for fmt, n in (("Q", n_runs), ("Q", n_runs), ("q", n_points), ("q", n_points),
                   ("q", n_points), ("q", n_points)):
        cols.append(struct.unpack_from(f">{n}{fmt}", body, at))
        at += 8 * n
    s = SegmentSummary(base_index=base_index, prev_term=prev_term,
                       header_base_offset=header_base_offset, file_bytes=file_bytes,
                       last_index=last_index, last_term=last_term, base_offset=base_offset,
                       next_offset=next_offset, max_timestamp=max_timestamp,
                       last_position=last_position, last_header=bytes(last_header),
                       run_starts=cols[0], run_terms=cols[1], point_indexes=cols[2],
                       point_offsets=cols[3], point_positions=cols[4], point_times=cols[5])
    reason = _inconsistency(s)
    if reason is not None:
        raise FormatError(f"summary: {reason}")
    return s


def _increasing(values: tuple[int, ...], strict: bool) -> bool:
    if strict:
        return all(a < b for a, b in zip(values, values[1:]))
    return all(a <= b for a, b in zip(values, values[1:]))


def _inconsistency(s: SegmentSummary) -> str | None:
    """What breaks the invariants a segment restored from `s` must keep, if anything (so a
    summary that passes never trips Segment's or the log's invariant checks)."""
    if not 1 <= s.base_index <= s.last_index or not SEGMENT_HEADER_BYTES < s.file_bytes:
        return f"entries {s.base_index}..{s.last_index} in {s.file_bytes} bytes"
    if not 0 <= s.header_base_offset == s.base_offset <= s.next_offset or s.max_timestamp < -1:
        return f"offsets {s.base_offset}..{s.next_offset}, timestamp {s.max_timestamp}"
    if not SEGMENT_HEADER_BYTES <= s.last_position <= s.file_bytes - ENTRY_HEADER_BYTES:
        return f"last entry at {s.last_position} of {s.file_bytes} bytes"
    starts, terms = s.run_starts, s.run_terms
    if starts and (starts[0] < s.base_index or starts[-1] > s.last_index or terms[0] <= s.prev_term
                   or not _increasing(starts, True) or not _increasing(terms, True)):
        return "term runs out of order"
    if s.last_term != (terms[-1] if terms else s.prev_term):
        return f"last term {s.last_term} is not the last run's"
    idx, offs, pos, times = s.point_indexes, s.point_offsets, s.point_positions, s.point_times
    if not idx or idx[0] != s.base_index or pos[0] != SEGMENT_HEADER_BYTES:
        return "the sparse index does not start at the first entry"
    if idx[-1] > s.last_index or pos[-1] > s.last_position or offs[0] < s.base_offset:
        return "the sparse index runs past the last entry"
    if offs[-1] > s.next_offset or times[0] < -1 or times[-1] > s.max_timestamp:
        return "the sparse index's offsets or times exceed the segment's"
    if not (_increasing(idx, True) and _increasing(pos, True) and _increasing(offs, False)
            and _increasing(times, False)):
        return "the sparse index is out of order"
    return None


def summarize(seg: Segment, runs: TermRuns) -> SegmentSummary | None:
    """The summary of a sealed, wholly durable segment, or None when it cannot have one (it
    was made before the log's Kafka offsets were known, the log's term runs no longer cover
    its start, or its bytes no longer read as written). Reads its header and the entry headers after its last
    index point (at most one interval's worth)."""
    assert seg.synced_size == seg.size and not seg.is_empty, seg.path
    if seg.base_offset < 0 or seg.next_offset < 0 or runs.starts[0] >= seg.base_index:
        return None
    last = _last_entry(seg)
    if last is None:
        log.warning("%s: its bytes do not read back as written; no summary (it is scanned "
                    "on open)", seg.path)
        return None
    header_base_offset, position, head = last
    if header_base_offset < 0:
        # Made while the log's offsets were unknown: a scan leaves them unknown in a segment
        # without DATA, so the summary could not say what the scan would. Rare (after a
        # reset without a start offset): scanned.
        return None
    k = bisect_left(runs.starts, seg.base_index)
    m = bisect_left(runs.starts, seg.last_index + 1)
    sparse = seg.index
    return SegmentSummary(
        base_index=seg.base_index, prev_term=seg.prev_term,
        header_base_offset=header_base_offset, file_bytes=seg.size,
        last_index=seg.last_index, last_term=seg.last_term, base_offset=seg.base_offset,
        next_offset=seg.next_offset, max_timestamp=seg.max_timestamp, last_position=position,
        last_header=head, run_starts=tuple(runs.starts[k:m]), run_terms=tuple(runs.terms[k:m]),
        point_indexes=tuple(sparse.indexes), point_offsets=tuple(sparse.offsets),
        point_positions=tuple(sparse.positions), point_times=tuple(sparse.times))


def _last_entry(seg: Segment) -> tuple[int, int, bytes] | None:
    """(the header's base offset, the last entry's position, its stored header), walking the
    headers from the last index point; None if the file does not hold what `seg` says."""
    try:
        header = decode_segment_header(seg.pread(0, SEGMENT_HEADER_BYTES))
    except FormatError:
        return None
    position = seg.index.positions[-1]
    index = seg.index.indexes[-1]
    while True:
        head = seg.pread(position, ENTRY_HEADER_BYTES)
        if len(head) < ENTRY_HEADER_BYTES:
            return None
        _crc, length, found, _term, _kind = ENTRY_HEADER.unpack(head)
        end = position + ENTRY_HEADER_BYTES + length
        if found != index or end > seg.size:
            return None
        if end == seg.size:
            break
        position, index = end, index + 1
    if index != seg.last_index or header.base_index != seg.base_index:
        return None
    return header.base_offset, position, head


def write_summary(dir_fd: int, directory: str, seg: Segment, runs: TermRuns) -> bool:
    """Write `seg`'s summary durably and mark it; False (and marked NEVER) when it cannot
    have one. The caller has made `seg`'s bytes durable. Raises OSError."""
    summary = summarize(seg, runs)
    if summary is None:
        seg.summary = SummaryState.NEVER
        return False
    write_atomic(dir_fd, directory, summary_file_name(seg.base_index), encode_summary(summary))
    seg.summary = SummaryState.WRITTEN
    return True


def remove_summary(directory: str, base_index: int) -> bool:
    """Delete a summary file (the caller fsyncs the directory). Whether one was there."""
    try:
        os.unlink(os.path.join(directory, summary_file_name(base_index)))
    except FileNotFoundError:
        return False
    return True


def summary_bases(directory: str) -> list[int]:
    return sorted(b for b in map(parse_summary_file_name, os.listdir(directory)) if b is not None)


def load_summary(directory: str, seg: Segment, file_size: int) -> SegmentSummary | str | None:
    """`seg`'s summary if consistent with its file (opened, header decoded, nothing noted
    yet); None when it has none; else why it cannot be used."""
    path = os.path.join(directory, summary_file_name(seg.base_index))
    # A summary is at most two int64 columns per entry and four per index point.
    bytes_max = _FIXED.size + _CRC.size + (file_size // ENTRY_HEADER_BYTES + 1) * (
        _RUN_BYTES + _POINT_BYTES)
    try:
        with open(path, "rb") as f:
            data = f.read(bytes_max + 1)
    except FileNotFoundError:
        return None
    if len(data) > bytes_max:
        return f"{path}: larger than a summary of this segment can be"
    try:
        s = decode_summary(data)
    except FormatError as e:
        return f"{path}: {e}"
    if (s.base_index, s.prev_term, s.header_base_offset) != (
            seg.base_index, seg.prev_term, seg.base_offset):
        return f"{path}: describes another segment header"
    if s.file_bytes != file_size:
        return f"{path}: describes {s.file_bytes} bytes, the file has {file_size}"
    head = seg.pread(s.last_position, ENTRY_HEADER_BYTES)
    _crc, length, index, term, _kind = ENTRY_HEADER.unpack_from(s.last_header)
    if (head != s.last_header or (index, term) != (s.last_index, s.last_term)
            or s.last_position + ENTRY_HEADER_BYTES + length != file_size):
        return f"{path}: the last entry is not the one recorded"
    return s


def restore(seg: Segment, s: SegmentSummary, runs: TermRuns) -> None:
    """Fill in `seg` (and the log's term runs) from its summary, as a clean scan would."""
    seg.last_index, seg.last_term = s.last_index, s.last_term
    seg.base_offset, seg.next_offset = s.base_offset, s.next_offset
    seg.max_timestamp = s.max_timestamp
    seg.size = seg.flushed_size = seg.synced_size = s.file_bytes
    sparse = seg.index
    sparse.indexes, sparse.offsets = list(s.point_indexes), list(s.point_offsets)
    sparse.positions, sparse.times = list(s.point_positions), list(s.point_times)
    for start, term in zip(s.run_starts, s.run_terms):
        runs.note(start, term)
    seg.summary = SummaryState.WRITTEN
