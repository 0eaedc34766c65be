"""Opening a replica directory: find the segments, validate every entry, cut a torn tail.

Rules (the log serves nothing that fails them):
- A partial or CRC-failing entry at the end of the LAST segment, with no valid entry after it,
  is a torn write: the file is cut there (and the cut fsynced).
- A bad entry followed by a valid one, a bad entry in any earlier segment, a whole entry
  (its length within the file, its header not all zeros) at the end whose CRC fails, an entry whose CRC holds but whose
  index, term, kind or Kafka offsets break the log's order, a bad segment header, or a gap
  between segments is damage. The log is cut just before it (the damaged entry, the rest of its
  segment and every later segment are dropped) and the hard state is marked `repairing` with
  its commit lowered into what remains: Raft then refetches the lost suffix from the leader, and
  until it has caught up the node never campaigns and votes only for logs reaching the repair
  mark (see RaftNode), so it can never help elect a leader that lacks an entry it had promised. The hard state is written before
  anything is cut, so a crash in between finds the same damage again. A log damaged without a
  hard state to mark (or damaged metadata files) raises LogCorruptionError: nothing is cut.
  Damage at the very end that a torn write could also explain (an entry cut short, a length
  running past the file) is taken for a torn write, except a length running past the file
  whose entry is whole and CRC-valid with one bit of that length flipped back: damage. Left
  ambiguous: the last segment cut short after an entry boundary, or several bits of the last
  entry's length flipped; the hard state's commit index still catches the cut entries it
  covers (and a leader that counted the lost entries tells the replica: see RaftNode).
- The repair mark's index never understates the log's old last index (the vote rule and the
  end of the repair rely on it): where the entries after the damage cannot be read, it counts
  one entry per ENTRY_HEADER_BYTES of the bytes left (`_last_before_cut`); a torn tail is cut
  only after the mark, so its bytes bound the entries lost with it.
- A last segment shorter than its header, or whose header is all zeros, was being created
  when the process stopped: it is deleted (and so on backwards, for a roll that created
  several).
- A segment that is not the last and has a usable summary (see `broker.storage.summary`) is
  taken from it without reading its entries: damage inside it is found when it is read. Every
  other segment is scanned by the rules above. Summaries that describe no kept segment, or the
  last one, are deleted before anything is appended; one found unusable is never an error.
- `log_start` hides the entries up to its index. Segments wholly below it are deleted (a
  retention or reset interrupted after writing it). If the entries at and after it do not
  continue from it (a reset interrupted before deleting the old segments, whose log does not
  match the new start), every segment is deleted: the log restarts empty after it.
"""

from __future__ import annotations

import dataclasses
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
from broker.storage.files import TEMP_SUFFIX, open_directory, write_atomic
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
    encode_hard_state,
    parse_segment_file_name,
    segment_file_name,
)
from broker.storage.segment import Segment, SummaryState
from broker.storage.summary import (
    SegmentSummary,
    load_summary,
    remove_summary,
    restore,
    summary_bases,
)
from broker.storage.terms import TermRuns
from broker.wire.records import CorruptBatchError

__all__ = ["Recovered", "recover", "scan_segment", "learn_offset", "HARD_STATE_FILE", "LOG_START_FILE"]

log = logging.getLogger(__name__)

HARD_STATE_FILE = "hard_state"
LOG_START_FILE = "log_start"
_KINDS = frozenset(int(k) for k in EntryKind)
_INDEX_FIELD = struct.Struct(">Q")
_INDEX_FIELD_AT = 8  # crc, length, then the index
_LENGTH_FIELD = struct.Struct(">I")
_SEARCH_CHUNK_BYTES = 1 << 20
_META_BYTES_MAX = 1 << 20  # metadata files are tiny; read no more than this
_CRC_MISMATCH = "CRC mismatch"
_SKIP_AHEAD_MAX = 4  # damaged entries in a row looked past to find the log's old last index
T = TypeVar("T")


@dataclass(slots=True, kw_only=True)
class Recovered:
    segments: list[Segment]  # at least one; the last is the active segment
    runs: TermRuns
    start: LogStart
    hard_state: HardState | None
    torn_bytes: int  # cut from the tail of the last segment
    dir_changed: bool  # files were deleted or created: the directory needs an fsync
    damage: str | None = None  # what was found and cut (the hard state is then `repairing`)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cut:
    """Where damage was found: segment `k` keeps the bytes before `position` (none of it when
    `position` is 0, e.g. a bad header); every later segment goes."""

    k: int
    position: int
    reason: str


def recover(directory: str, config: LogConfig) -> Recovered:
    """Read and validate a replica directory (which must exist and be locked by the caller)."""
    _remove_temp_files(directory)
    start = _read_meta(directory, LOG_START_FILE, decode_log_start)
    hard_state = _read_meta(directory, HARD_STATE_FILE, decode_hard_state)
    segments: list[Segment] = []
    try:
        dir_changed, cut = _open_segments(directory, config, segments)
        runs, torn_bytes, scan_cut = _scan_all(directory, segments, config,
                                               len(segments) if cut is None else cut.k)
        cut = scan_cut or cut
        # A torn tail is cut only after the check below has marked the hard state if it must:
        # a crash in between then finds the same tail again, and the bytes that bound the lost
        # entries' indexes.
        torn = (segments[-1], segments[-1].last_index) if torn_bytes else None
        damage = None
        floor = start.start_index if start is not None else 0
        if cut is not None:
            damage = cut.reason
            hard_state = _mark_repairing(directory, hard_state, _kept(segments, cut), floor,
                                         _last_before_cut(segments, cut, config),
                                         damage, segments[cut.k].path, cut.position)
            _forget_summaries(directory, segments[cut.k:])
            _apply_cut(segments, cut)
            dir_changed = True
        start, dropped = _apply_start(segments, runs, start)
        if not segments:
            assert start is not None
            segments.append(Segment.create(directory, SegmentHeader(
                base_index=start.start_index + 1, prev_term=start.start_term,
                base_offset=start.start_offset), config.roll_bytes_for(start.start_index + 1)))
            runs = TermRuns(start.start_index, start.start_term)
            dir_changed = True
        dir_changed = _keep_summaries(directory, segments) or dir_changed or dropped
        last = segments[-1].last_index
        if hard_state is not None and hard_state.commit > last:
            # Entries the hard state knew committed (so synced) are gone: a tail that looked
            # torn was not, or the file lost its end. Acknowledged entries past the commit
            # index may be gone too: those in a torn tail fit in its bytes; of a file cut
            # short at an entry boundary nothing tells (the leader's mark covers that).
            lost_up_to = max(hard_state.commit, last + 1)
            if torn is not None:
                lost_up_to = max(lost_up_to, torn[1] + torn_bytes // ENTRY_HEADER_BYTES)
            damage = damage or f"the log ends at {last}, below its commit index {hard_state.commit}"
            hard_state = _mark_repairing(directory, hard_state, last, floor, lost_up_to, damage,
                                         segments[-1].path, segments[-1].size)
        if torn is not None and torn[0] in segments:
            _cut_torn_tail(torn[0], torn_bytes)
    except BaseException:
        for seg in segments:
            seg.close()
        raise
    assert start is not None
    return Recovered(segments=segments, runs=runs, start=start, hard_state=hard_state,
                     torn_bytes=torn_bytes, dir_changed=dir_changed, damage=damage)


def _forget_summaries(directory: str, segments: list[Segment]) -> None:
    """Before `segments` are cut: their summaries go first, durably, so none can outlive the
    bytes it described."""
    removed = False
    for seg in segments:
        removed = remove_summary(directory, seg.base_index) or removed
        seg.summary = SummaryState.ABSENT
    if removed:
        _fsync_directory(directory)


def _keep_summaries(directory: str, segments: list[Segment]) -> bool:
    """Delete every summary but those the kept sealed segments were taken from (the caller
    fsyncs the directory before anything is appended). Returns whether one was deleted."""
    segments[-1].summary = SummaryState.ABSENT  # the last segment may still change
    trusted = {s.base_index for s in segments[:-1] if s.summary is SummaryState.WRITTEN}
    removed = False
    for base in summary_bases(directory):
        if base not in trusted:
            removed = remove_summary(directory, base) or removed
    return removed


def _fsync_directory(directory: str) -> None:
    dir_fd = open_directory(directory)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _kept(segments: list[Segment], cut: _Cut) -> int:
    """The last index the cut keeps."""
    if cut.position:
        return segments[cut.k].last_index
    return segments[cut.k - 1].last_index if cut.k else segments[0].base_index - 1


def _mark_repairing(directory: str, hard_state: HardState | None, kept: int, floor: int,
                    lost_up_to: int, reason: str, path: str, position: int) -> HardState:
    """Durably mark the hard state as repairing up to `lost_up_to` (the last index before the
    cut) with its commit lowered to what the log keeps (never below the log start: what that
    hides was committed), before anything is cut. Raises LogCorruptionError when there is no
    hard state to mark."""
    if hard_state is None:
        raise LogCorruptionError(path, position, f"{reason} (no hard state to mark for a repair)")
    commit = min(hard_state.commit, max(kept, floor))
    marked = dataclasses.replace(hard_state, commit=commit,
                                 repair_index=max(hard_state.repair_index, lost_up_to, kept + 1),
                                 repair_term=hard_state.term)
    log.error("%s: damage: %s; the log keeps indexes up to %d and is repaired from the "
              "leader (no votes until then)", directory, reason, kept)
    dir_fd = open_directory(directory)
    try:
        write_atomic(dir_fd, directory, HARD_STATE_FILE, encode_hard_state(marked))
    finally:
        os.close(dir_fd)
    return marked


def _last_before_cut(segments: list[Segment], cut: _Cut, config: LogConfig) -> int:
    """An upper bound on the last index the log had before the cut (the repair mark relies on
    it: it must never understate). Every entry takes at least ENTRY_HEADER_BYTES of a file and
    the log's entries lie in index order across the segments, so the entries after one found
    whole and CRC-valid fit in the bytes after it: the bound is the index of the last such
    entry plus those bytes (segment headers aside) over ENTRY_HEADER_BYTES. Where no valid
    entry follows the damage, the damaged entry (the one after the last kept) starts the count.
    Valid entries are found by walking from the damage and skipping a few damaged ones; a tail
    that cannot be read only loosens the bound."""
    best = _kept(segments, cut)  # the last index known to end before `rest` bytes
    rest = 0  # bytes after that entry, in its segment and in the later ones
    for j in range(cut.k, len(segments)):
        seg = segments[j]
        size = os.fstat(seg.fd).st_size
        start = cut.position if j == cut.k and cut.position else SEGMENT_HEADER_BYTES
        window = _Window(seg, size, config.read_chunk_bytes)
        found, end = _last_valid_entry(window, start, best + 1, config.entry_bytes_max)
        if found:
            best, rest = max(best, found), 0
            start = end
        rest += max(0, size - start)
    return max(best + rest // ENTRY_HEADER_BYTES, _kept(segments, cut) + 1)


def _last_valid_entry(window: _Window, position: int, expect: int, entry_bytes_max: int
                      ) -> tuple[int, int]:
    """Walk the entries from `position`, skipping damaged ones by searching for the index that
    should come next (a few indexes ahead, for damage spanning several entries). Returns the
    index of the last whole, CRC-valid entry met and where it ends; (0, position) if none.
    `expect` is the index the entry at `position` should have."""
    last, end = 0, position
    while position < window.file_size:
        found = _entry_at(window, position, entry_bytes_max)
        if isinstance(found, str):
            nxt = None
            for ahead in range(1, _SKIP_AHEAD_MAX + 1):
                nxt = _valid_entry_at_or_after(window, position + 1, expect + ahead, entry_bytes_max)
                if nxt is not None:
                    break
            if nxt is None:
                break
            position = nxt
            continue
        index, _, _, payload = found
        position += ENTRY_HEADER_BYTES + len(payload)
        last, end, expect = index, position, index + 1
    return last, end


def _apply_cut(segments: list[Segment], cut: _Cut) -> None:
    """Drop the damaged entry and all after it (the hard state already says `repairing`)."""
    keep = cut.k + 1 if cut.position else cut.k
    while len(segments) > keep:
        segments.pop().unlink()
    if cut.position:
        seg = segments[cut.k]
        os.ftruncate(seg.fd, cut.position)
        os.fsync(seg.fd)
        seg.size = seg.flushed_size = seg.synced_size = cut.position


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


def _open_segments(directory: str, config: LogConfig, out: list[Segment]
                   ) -> tuple[bool, _Cut | None]:
    """Open every segment file in index order into `out`; delete half-created trailing ones.
    Returns whether a file was deleted, and the first segment whose header is damaged (the
    files from it on are left out of `out`, to be deleted by the cut)."""
    bases = sorted(b for b in map(parse_segment_file_name, os.listdir(directory)) if b is not None)
    paths = [os.path.join(directory, segment_file_name(b)) for b in bases]
    for k, (base, path) in enumerate(zip(bases, paths)):
        if all(_never_written(p) for p in paths[k:]):
            # Created by a roll (or a reset) whose header never reached the disk; a header
            # is fsynced with the file's first entries, so nothing durable is lost here.
            for p in paths[k:]:
                os.unlink(p)
            return True, None
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            try:
                header = decode_segment_header(os.pread(fd, SEGMENT_HEADER_BYTES, 0))
            except FormatError as e:
                reason = f"{path}: {e}"
            else:
                reason = (None if header.base_index == base
                          else f"{path}: header says base index {header.base_index}")
        except BaseException:
            os.close(fd)
            raise
        if reason is not None:
            os.close(fd)
            for p in paths[k:]:  # opened only to be deleted by the cut
                out.append(Segment.open_existing(p, SegmentHeader(base_index=base, prev_term=0,
                           base_offset=-1), os.open(p, os.O_RDWR | getattr(os, "O_CLOEXEC", 0)),
                           config.roll_bytes_for(base)))
            return False, _Cut(k=k, position=0, reason=reason)
        out.append(Segment.open_existing(path, header, fd, config.roll_bytes_for(base)))
    return False, None


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


def _scan_all(directory: str, segments: list[Segment], config: LogConfig, count: int
              ) -> tuple[TermRuns, int, _Cut | None]:
    """Scan the first `count` segments in order (or take a sealed one from its summary),
    checking that each continues the one before. Returns the term runs, the bytes of the last
    segment's torn tail (its size excludes them; the caller cuts them), and the first damage
    found (scanning stops there: the entries noted are exactly those before it)."""
    if not segments:
        return TermRuns(0, 0), 0, None
    runs = TermRuns(segments[0].base_index - 1, segments[0].prev_term)
    torn_bytes = 0
    prev: Segment | None = None
    for k, seg in enumerate(segments[:count]):
        last = k == len(segments) - 1
        file_size = os.fstat(seg.fd).st_size
        try:
            if prev is not None:
                _check_continues(prev, seg)
            summary = None if last else load_summary(directory, seg, file_size)
            if isinstance(summary, SegmentSummary) and config.trust_segment_summaries:
                restore(seg, summary, runs)
                end = file_size
            else:
                if isinstance(summary, str):
                    log.info("%s: scanned: %s", seg.path, summary)
                end = scan_segment(seg, file_size, last=last, runs=runs, config=config)
                if isinstance(summary, SegmentSummary) and end == file_size:
                    seg.summary = SummaryState.WRITTEN  # it held, and the scan agrees
        except LogCorruptionError as e:
            # Keep the entries noted before the damage: they are whole and in order.
            position = e.position if e.position >= SEGMENT_HEADER_BYTES else 0
            if position:
                seg.size = seg.flushed_size = seg.synced_size = position
            return runs, torn_bytes, _Cut(k=k, position=position, reason=str(e))
        torn_bytes = file_size - end  # cut by the caller (only the last segment has one)
        seg.size = seg.flushed_size = seg.synced_size = end
        if seg.base_offset >= 0 and segments[0].base_offset < 0:
            for earlier in segments[:k]:  # the log's first DATA entry is in `seg`
                learn_offset(earlier, seg.base_offset)
        prev = seg
    return runs, torn_bytes, None


def _cut_torn_tail(seg: Segment, torn_bytes: int) -> None:
    log.warning("%s: cut a torn tail of %d bytes at byte %d", seg.path, torn_bytes, seg.size)
    os.ftruncate(seg.fd, seg.size)
    os.fsync(seg.fd)


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
            if found.startswith(_CRC_MISMATCH) and any(window.view(position, ENTRY_HEADER_BYTES)):
                # A whole entry whose header was written (a header of zeros is a page that never
                # reached the disk): its bytes changed after they were written. Damage.
                raise LogCorruptionError(seg.path, position, found + " at the end of the log")
            flipped = _length_bit_flipped(window, position, config.entry_bytes_max)
            if flipped is not None:
                raise LogCorruptionError(seg.path, position, f"{found}, yet the entry is whole "
                                         f"with length {flipped} (one bit of its length field "
                                         "flipped)")
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
        return f"{_CRC_MISMATCH} in entry {index}"
    return index, term, kind, whole[ENTRY_HEADER_BYTES:]


def _length_bit_flipped(window: _Window, position: int, entry_bytes_max: int) -> int | None:
    """The length the entry at `position` really has, when its stored length runs past the
    file (what a torn write leaves) but the entry is whole and its CRC holds with one bit of
    the length field flipped back: the one-bit damage a torn write cannot produce (a CRC-32C
    collision aside). None when no such length exists: then the tail is taken as torn."""
    head = window.view(position, ENTRY_HEADER_BYTES)
    if head is None or not any(head):
        return None
    crc, length, *_ = ENTRY_HEADER.unpack_from(head)
    room = min(window.file_size - position - ENTRY_HEADER_BYTES, entry_bytes_max)
    rest = bytes(head[8:])
    for bit in range(32):
        candidate = length ^ (1 << bit)
        if candidate > room:
            continue
        payload = window.view(position + ENTRY_HEADER_BYTES, candidate)
        if payload is not None and crc32c(payload, crc32c(_LENGTH_FIELD.pack(candidate) + rest)) == crc:
            return candidate
    return None


def _valid_entry_follows(window: _Window, position: int, expect: int, entry_bytes_max: int) -> bool:
    """Is there a whole, CRC-valid entry `expect + 1` anywhere after the bad one at `position`?
    (Its index field is searched for, so a corrupted length cannot hide it.)"""
    return _valid_entry_at_or_after(window, position + 1, expect + 1, entry_bytes_max) is not None


def _valid_entry_at_or_after(window: _Window, start: int, index: int, entry_bytes_max: int
                             ) -> int | None:
    """Where a whole, CRC-valid entry `index` starts at or after byte `start`, if anywhere."""
    pattern = _INDEX_FIELD.pack(index)
    search = start + _INDEX_FIELD_AT
    while search < window.file_size:
        n = min(_SEARCH_CHUNK_BYTES, window.file_size - search)
        chunk = window.seg.pread(search, n)
        found = chunk.find(pattern)
        while found >= 0:
            candidate = search + found - _INDEX_FIELD_AT
            if not isinstance(_entry_at(window, candidate, entry_bytes_max), str):
                return candidate
            found = chunk.find(pattern, found + 1)
        if search + n >= window.file_size:
            break
        search += n - len(pattern) + 1  # overlap: a pattern across the chunk edge is found next
    return None


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
