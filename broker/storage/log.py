"""PartitionLog: one replica's Raft log on disk, which is also its Kafka partition log.

It implements `broker.raft.storage.LogStorage` (same index conventions as `MemoryStorage`)
and adds the Kafka side: reads by offset up to a limit (the high watermark), lookup by
timestamp, log start and end offsets, retention. The format is in `broker.storage.format`,
the recovery rules in `broker.storage.recovery`.

Write path. `append` only touches memory: each entry's 25-byte header and its payload are
queued on the active segment (O(1) Python work per entry; no per-record work, batches stay
opaque). `flush()` hands the queue to the OS, one `pwritev` per segment; `fsync()` then makes
it durable and writes the hard state if term, vote or membership changed. The driver calls
`sync()` (= flush + fsync) once per loop turn for every log written in it: group commit.
`flush()` runs on the loop thread; `fsync()` may run in a worker thread (it fsyncs duplicated
descriptors, so nothing the loop does meanwhile can close them under it); other methods
belong to the loop thread. Reads are safe while an `fsync()` runs.

Failure. An OSError from any write, truncate or fsync latches the log read-only: that call and
every later write raise LogReadOnlyError (Kafka's KAFKA_STORAGE_ERROR), and the log shrinks
to what was durable before the error, so nothing half-written is ever served. An OSError from
a read (e.g. EIO) latches it too and raises LogReadOnlyError, but does not shrink it: what was
written is still what Raft believes it appended, and Raft keeps reading it (term_at, entries)
until the replica stops; cutting it would make those reads fail in ways no caller expects.

Sealed segments. Once a segment is sealed and durable its summary is written (see
`broker.storage.summary`), so the next open takes it without a scan (with
LogConfig.trust_segment_summaries). Damage inside such a
segment is then found by the read that meets it (every entry read is CRC-checked): the read
raises LogDamageError, the segment's summary is deleted (so the next open scans it and
recovery cuts and repairs the damage, hard state marked `repairing`) and the log latches
read-only like after a failed read (no shrink), so the replica stops taking part (its next
write or sync fails) and bad bytes are never served or shipped. Repairing in place is not
possible from a read: Raft holds the log's old state in memory until the replica is opened
again.

Offsets. DATA payloads are RecordBatch v2 whose baseOffset the leader stamped; the log reads
base/last offset and max timestamp from the 61-byte batch header and never decodes records.
CONFIG and EMPTY entries take no offset. After `reset` without a start offset the log's
offsets are unknown until its first DATA entry (reported as 0 meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn

from broker.raft.messages import Entry, EntryKind, HardState
from broker.raft.storage import CompactedError, UnavailableError
from broker.storage.batch import batch_offsets
from broker.storage.cache import EntryCache
from broker.storage.config import FsyncPolicy, LogConfig
from broker.storage.errors import (
    InvalidAppendError,
    LogCorruptionError,
    LogDamageError,
    LogError,
    LogReadOnlyError,
    OffsetOutOfRangeError,
)
from broker.storage.files import lock_directory, open_directory, write_atomic
from broker.storage.format import (
    ENTRY_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    LogStart,
    SegmentHeader,
    encode_entry_header,
    encode_hard_state,
    encode_log_start,
)
from broker.storage.reader import Item, iter_segment
from broker.storage.recovery import HARD_STATE_FILE, LOG_START_FILE, learn_offset, recover
from broker.storage.retention import SegmentStats, segments_to_delete
from broker.storage.segment import Segment, SummaryState
from broker.storage.summary import remove_summary, write_summary
from broker.storage.terms import TermRuns
from broker.wire.records import BatchHeader, CorruptBatchError, read_batch_header

__all__ = ["PartitionLog", "SegmentInfo"]

log = logging.getLogger(__name__)

_DATA = int(EntryKind.DATA)
_KIND_VALUES = frozenset(EntryKind)
_KINDS = {int(k): k for k in EntryKind}



@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """One segment file, for diagnostics (Kafka's DescribeLogDirs) and tests."""

    path: str
    base_index: int
    last_index: int  # base_index - 1 when empty
    size_bytes: int  # including bytes still buffered in memory
    durable_bytes: int  # known fsynced
    max_timestamp_ms: int  # -1 when it holds no DATA entry


@dataclass(slots=True, kw_only=True)
class _SyncPlan:
    """What one fsync() owes, captured by flush() on the loop thread."""

    fds: list[int]  # duplicated descriptors of segments with written, unsynced bytes
    sizes: list[tuple[Segment, int]]  # each segment's flushed size when captured
    dir_version: int  # > 0: fsync the directory up to this change
    hard_state: HardState | None  # to write after the data
    last_index: int  # durable once the plan ran
    next_offset: int
    generation: int  # the log's truncation count when captured
    seq: int  # plans are numbered as made: an older one never overwrites a newer hard state

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)


class PartitionLog:
    """The segmented log of one replica in `directory` (created if missing)."""

    __slots__ = (
        "_dir", "_config", "_lock_fd", "_dir_fd", "_segments", "_seg_bases", "_seg_offsets",
        "_runs", "_cache", "_start_index", "_start_term", "_start_offset", "_last_index",
        "_next_offset", "_flushed_index", "_durable_index", "_durable_offset", "_hard_state",
        "_stored_hard_state", "_plan", "_dir_version", "_dir_synced_version", "_generation",
        "_error", "_closed", "_last_fsync_ms", "_last_checkpoint_ms", "torn_bytes", "_plan_seq",
        "_stored_seq", "_sync_lock", "_handoff_lock", "damage",
    )

    # set by _install (open and reset); see the comments there
    _segments: list[Segment]
    _seg_bases: list[int]
    _seg_offsets: list[int]
    _runs: TermRuns
    _cache: EntryCache
    _start_index: int
    _start_term: int
    _start_offset: int
    _last_index: int
    _next_offset: int
    _flushed_index: int
    _durable_index: int
    _durable_offset: int

    def __init__(self, directory: str | os.PathLike[str], config: LogConfig | None = None) -> None:
        self._config = config if config is not None else LogConfig()
        self._dir = os.fspath(directory)
        os.makedirs(self._dir, exist_ok=True)
        self._lock_fd = lock_directory(self._dir)
        try:
            self._dir_fd = open_directory(self._dir)
            try:
                recovered = recover(self._dir, self._config)
            except BaseException:
                os.close(self._dir_fd)
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._closed = False
        self._error: Exception | None = None  # what latched the log read-only
        self._plan: _SyncPlan | None = None  # made by flush(), run by fsync()
        self._plan_seq = 0  # plans made
        self._stored_seq = 0  # the plan whose hard state is the stored one
        self._sync_lock = threading.Lock()  # one plan runs at a time
        self._handoff_lock = threading.Lock()  # guards taking self._plan
        self._generation = 0
        self._dir_version = 1 if recovered.dir_changed else 0  # directory changes made
        self._dir_synced_version = 0  # ... and made durable
        self._last_fsync_ms: int | None = None
        self._last_checkpoint_ms: int | None = None
        self.torn_bytes = recovered.torn_bytes  # cut from a torn tail on open
        self.damage = recovered.damage  # damage found and cut on open (then repairing)
        self._hard_state = self._stored_hard_state = recovered.hard_state
        self._install(recovered.segments, recovered.runs, recovered.start)
        try:
            if self._start_offset < 0 <= self._next_offset:
                self._start_offset = self._offset_at(self._start_index + 1)
            if recovered.dir_changed or self._segments[-1].pending:
                self._sync_now(checkpoint=False)  # make the recovery itself durable first
            self._write_summaries(every=True)  # for sealed segments scanned just now
        except BaseException:
            self.close(sync=False)
            raise

    def _install(self, segments: list[Segment], runs: TermRuns, start: LogStart) -> None:
        self._segments = segments
        self._seg_bases = [s.base_index for s in segments]  # for bisect by raft index
        self._seg_offsets = [s.base_offset for s in segments]  # for bisect by Kafka offset
        self._runs = runs
        self._start_index = start.start_index  # entries <= this are deleted
        self._start_term = start.start_term
        self._start_offset = start.start_offset  # Kafka offset after the start entry; -1 unknown
        self._last_index = max(segments[-1].last_index, start.start_index)
        self._next_offset = segments[-1].next_offset  # Kafka offset after the last DATA entry
        self._cache = EntryCache(self._last_index + 1, self._next_offset,
                                 self._config.cache_bytes_max)
        self._flushed_index = self._last_index  # entries <= this were handed to the OS
        self._durable_index = self._last_index  # entries <= this were fsynced
        self._durable_offset = self._next_offset  # next offset after the durable entries

    # ---- LogStorage: read side -------------------------------------------------------------
    def initial_state(self) -> HardState | None:
        return self._hard_state

    def first_index(self) -> int:
        return self._start_index + 1

    def last_index(self) -> int:
        return self._last_index

    def term_at(self, index: int) -> int:
        if index < self._start_index:
            raise CompactedError(index)
        if index > self._last_index:
            raise UnavailableError(index)
        if index == self._start_index:
            return self._start_term
        return self._runs.term_at(index)

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[Entry]:
        if lo <= self._start_index:
            raise CompactedError(lo)
        if hi > self._last_index + 1:
            raise UnavailableError(hi)
        if lo >= hi:
            return []
        if lo >= self._cache.first_index:
            return self._cache.slice(lo, hi, bytes_max)
        out: list[Entry] = []
        size = 0
        for index, term, kind, payload, _ in self._iter_at_index(lo):
            if index < lo:
                continue
            if index >= hi:
                break
            size += len(payload)
            if out and size > bytes_max:
                break
            out.append(Entry(index=index, term=term, kind=_KINDS[kind], data=bytes(payload)))
        return out

    # ---- LogStorage: write side ------------------------------------------------------------
    def append(self, entries: Sequence[Entry]) -> None:
        """Append; `entries[0].index` may be <= last_index(), replacing that suffix (the cut is
        durable at once). Raises InvalidAppendError (nothing written) or LogReadOnlyError."""
        self._check_writable()
        if not entries:
            return
        first = entries[0].index
        if not self._start_index < first <= self._last_index + 1:
            raise InvalidAppendError(f"append at index {first}: the log holds "
                                     f"{self._start_index + 1}..{self._last_index}")
        checked, learned = self._check_entries(entries, first)
        if first <= self._last_index:
            self._truncate_after(first - 1)
        # The hot loop: O(1) per entry, bytes queued, nothing written.
        interval = self._config.index_interval_bytes
        seg, runs, cache = self._segments[-1], self._runs, self._cache
        terms = runs.terms
        for e, (after, max_ts) in zip(entries, checked):
            data, index, term = e.data, e.index, e.term
            if seg.size + ENTRY_HEADER_BYTES + len(data) > seg.roll_bytes and not seg.is_empty:
                seg = self._roll()
            if after >= 0 > self._next_offset:
                self._learn_offset(learned)
            position = seg.add(encode_entry_header(index, term, e.kind, data), data, index, term,
                               self._next_offset, after, max_ts, interval)
            if term != terms[-1]:
                runs.note(index, term)
            cache.append(e, position, after)
            self._last_index = index
            self._next_offset = after
        if seg.pending_bytes > self._config.write_buffer_bytes_max:
            self._write_buffers()
        if cache.bytes > cache.bytes_max:
            cache.evict(self._flushed_index)

    def _check_entries(self, entries: Sequence[Entry], first: int
                       ) -> tuple[list[tuple[int, int]], int]:
        """Validate before writing anything. Returns, per entry, (the log's next Kafka offset
        after it, its batch max timestamp or -1), and the first batch's base offset if the
        log's offsets are not known yet (else -1)."""
        term = self.term_at(first - 1)
        offset = self._next_offset if first == self._last_index + 1 else self._offset_at(first)
        learned = -1
        entry_bytes_max = self._config.entry_bytes_max
        out: list[tuple[int, int]] = []
        for expect, e in enumerate(entries, first):
            if e.index != expect or e.term < term or e.kind not in _KIND_VALUES:
                raise InvalidAppendError(f"entry (index {e.index}, term {e.term}, {e.kind!r}) "
                                         f"cannot follow index {expect - 1} in term {term}")
            if len(e.data) > entry_bytes_max:
                raise InvalidAppendError(f"entry {e.index}: {len(e.data)} bytes exceed "
                                         f"entry_bytes_max {entry_bytes_max}")
            term = e.term
            if e.kind is not EntryKind.DATA:
                out.append((offset, -1))
                continue
            try:
                base, after, max_ts = batch_offsets(e.data)
            except CorruptBatchError as exc:
                raise InvalidAppendError(f"entry {e.index}: DATA payload is not one "
                                         f"RecordBatch v2: {exc}") from None
            if base < offset:
                raise InvalidAppendError(f"entry {e.index}: batch offset {base} is below the "
                                         f"log's next offset {offset}")
            if offset < 0:
                learned = base
            offset = after
            out.append((offset, max_ts))
        return out, learned

    def reset(self, start_index: int, start_term: int, start_offset: int | None = None) -> None:
        """Discard every entry; the log restarts after (start_index, start_term), durably.

        `start_offset` is the Kafka offset the next DATA entry takes (the leader's log start
        offset). None: not known here; the log's offsets then start at its first DATA entry's
        baseOffset, and read as 0 until one arrives."""
        self._check_writable()
        if start_index < 0 or start_term < 0 or (start_offset is not None and start_offset < 0):
            raise InvalidAppendError(f"reset to ({start_index}, {start_term}, {start_offset})")
        offset = -1 if start_offset is None else start_offset
        start = LogStart(start_index=start_index, start_term=start_term, start_offset=offset)
        self._drop_plan()
        try:
            write_atomic(self._dir_fd, self._dir, LOG_START_FILE, encode_log_start(start))
            self._remove_summaries(self._segments, sync=False)  # synced with the unlinks
            while self._segments:
                self._segments.pop().unlink()  # newest first: an interruption leaves a prefix
            os.fsync(self._dir_fd)
            seg = Segment.create(self._dir, SegmentHeader(
                base_index=start_index + 1, prev_term=start_term, base_offset=offset),
                self._config.roll_bytes_for(start_index + 1))
        except OSError as exc:
            self._fail(exc)
        self._install([seg], TermRuns(start_index, start_term), start)
        self._dir_version += 1
        self._generation += 1

    def set_hard_state(self, hard_state: HardState) -> None:
        """Record the hard state. The next fsync() writes it durably if term, vote,
        membership or entry_term_max changed; a change of commit alone waits for the checkpoint
        interval (see LogConfig.commit_checkpoint_interval_ms) or close()."""
        self._check_writable()
        self._hard_state = hard_state

    def sync(self) -> None:
        """flush() then fsync(): make everything appended so far durable (per fsync_policy)."""
        if self.flush():
            self.fsync()

    def delete_prefix(self, index: int) -> None:
        """Retention: entries <= index are deleted (callers pass committed indexes only). The
        new log start is written durably first; then the segments it covers wholly are
        removed (never the active one). Entries hidden inside a kept segment stay on disk
        until that segment goes."""
        self._check_writable()
        if index <= self._start_index:
            return
        index = min(index, self._last_index)
        start = LogStart(start_index=index, start_term=self.term_at(index),
                         start_offset=self._offset_at(index + 1))
        segments = self._segments
        n = 0
        while n < len(segments) - 1 and segments[n].last_index <= index:
            n += 1
        # Hidden entries may still be read (a scan starts at an index point before the start),
        # and the cache drops them below: hand them to the OS first.
        self._write_buffers()
        try:
            write_atomic(self._dir_fd, self._dir, LOG_START_FILE, encode_log_start(start))
            self._remove_summaries(segments[:n], sync=False)  # synced with the unlinks
            for seg in segments[:n]:
                seg.unlink()
            if n:
                os.fsync(self._dir_fd)
        except OSError as exc:
            self._fail(exc)
        del segments[:n], self._seg_bases[:n], self._seg_offsets[:n]
        self._start_index, self._start_term = index, start.start_term
        self._start_offset = start.start_offset
        self._runs.drop_before(index)
        self._cache.evict(self._flushed_index, below_index=index + 1)
        if self._durable_index < index:
            self._durable_index, self._durable_offset = index, start.start_offset

    def apply_retention(self, *, bytes_max: int | None = None, age_ms: int | None = None,
                        now_ms: int, commit_index: int) -> int:
        """Delete the oldest whole segments beyond `bytes_max` or older than `age_ms` (by their
        newest batch timestamp against `now_ms`), never the active segment, never past
        `commit_index`. Returns how many segments were deleted."""
        stats = [SegmentStats(size_bytes=s.size, last_index=s.last_index,
                              max_timestamp_ms=s.max_timestamp) for s in self._segments]
        n = segments_to_delete(stats, bytes_max=bytes_max, age_ms=age_ms, now_ms=now_ms,
                               commit_index=min(commit_index, self._last_index))
        if n:
            self.delete_prefix(self._segments[n - 1].last_index)
        return n

    # ---- durability ------------------------------------------------------------------------
    def flush(self) -> bool:
        """Loop thread: hand every buffered entry to the OS and capture what fsync() owes.
        Returns whether fsync() has work (always False when nothing changed)."""
        self._check_writable()
        self._write_buffers()
        self._cache.evict(self._flushed_index)
        self._drop_plan()
        self._plan = self._make_plan(data=self._config.policy is FsyncPolicy.ALWAYS,
                                     checkpoint=False)
        return self._plan is not None

    def fsync(self) -> None:
        """Any thread: make durable what the last flush() captured, then write the hard state
        it captured. Raises LogReadOnlyError (the log is latched)."""
        plan = self._take_plan()
        if plan is None:
            return
        try:
            if self._error is not None:
                raise LogReadOnlyError(f"{self._dir} is read-only after: {self._error}")
            self._run_plan(plan)
        finally:
            plan.close()

    def maybe_sync(self, now_ms: int) -> bool:
        """Call periodically (e.g. every tick). With fsync_policy INTERVAL_MS, fsyncs once
        `fsync_interval_ms` passed since the last time; in both policies, writes a hard state
        whose commit moved once `commit_checkpoint_interval_ms` passed. Returns whether it
        synced."""
        self._check_writable()
        cfg = self._config
        data_due = cfg.policy is FsyncPolicy.INTERVAL_MS and self._unsynced() and (
            self._last_fsync_ms is None or now_ms - self._last_fsync_ms >= cfg.fsync_interval_ms)
        checkpoint_due = self._hard_state != self._stored_hard_state and (
            self._last_checkpoint_ms is None
            or now_ms - self._last_checkpoint_ms >= cfg.commit_checkpoint_interval_ms)
        if not (data_due or checkpoint_due):
            return False
        self._sync_now(checkpoint=checkpoint_due)
        if data_due:
            self._last_fsync_ms = now_ms
        if checkpoint_due:
            self._last_checkpoint_ms = now_ms
        return True

    def _sync_now(self, *, checkpoint: bool) -> None:
        """Write, fsync and store the hard state inline, whatever the policy."""
        self._write_buffers()
        self._drop_plan()
        plan = self._make_plan(data=True, checkpoint=checkpoint)
        if plan is not None:
            try:
                self._run_plan(plan)
            finally:
                plan.close()

    def _unsynced(self) -> bool:
        seg = self._segments[-1]
        return bool(seg.pending) or seg.synced_size < seg.flushed_size or (
            self._dir_synced_version < self._dir_version)

    def _write_buffers(self) -> None:
        """Write the queued bytes of every segment that has some, oldest first. A sealed
        segment is fsynced before any later one gets bytes, so after a crash only the last
        segment can have a torn tail."""
        segments = self._segments
        k = len(segments)
        while k > 0 and (segments[k - 1].pending or
                         segments[k - 1].synced_size < segments[k - 1].flushed_size):
            k -= 1
        try:
            for seg in segments[k:-1]:
                seg.write_pending()
                seg.fsync()
            segments[-1].write_pending()
        except OSError as exc:
            self._fail(exc)
        self._flushed_index = self._last_index
        self._write_summaries()

    def _write_summaries(self, *, every: bool = False) -> None:
        """Write the summary of every sealed, durable segment that is owed one. They are
        written as segments seal, so the walk back from the newest sealed one stops at the
        first that has one, unless `every` (on open, where any segment may have been scanned:
        there a summary that cannot be written is skipped, see _summary_failed)."""
        segments = self._segments
        owed = []
        for k in range(len(segments) - 2, -1, -1):  # on every flush: no copy of the list
            seg = segments[k]
            if seg.summary is not SummaryState.ABSENT:
                if every:
                    continue
                break
            if seg.is_empty:  # never sealed so (see check_invariants): scanned
                seg.summary = SummaryState.NEVER
            elif seg.synced_size == seg.size:  # else: fsynced by a later flush, then written
                owed.append(seg)
        for seg in reversed(owed):
            if every:
                try:
                    # Scanned just now, it may hold bytes a crash of the process left in the
                    # page cache only: durable data, not a summary, so a failure fails the open.
                    seg.fsync()
                except OSError as exc:
                    self._fail(exc)
            try:
                write_summary(self._dir_fd, self._dir, seg, self._runs)
            except OSError as exc:
                if not every:
                    # Running, a roll's directory entry may still be unsynced, and the
                    # summary's directory fsync (same descriptor) may have consumed an error
                    # the log's own fsync would otherwise have seen: latch, as for any write.
                    self._fail(exc)
                self._summary_failed(seg, exc)

    def _summary_failed(self, seg: Segment, exc: OSError) -> None:
        """On open a summary write failed (e.g. a full disk). Nothing of the log's is unsynced
        then (the recovery was made durable first), so the error hides nothing: the segment
        goes without a summary (scanned at the next open) instead of failing the open. It is
        not retried while open (that would latch the log at run time on the same full disk)."""
        log.warning("%s: no summary for %s (scanned at the next open): %s", self._dir,
                    seg.path, exc)
        seg.summary = SummaryState.FAILED

    def _remove_summaries(self, segments: list[Segment], *, sync: bool) -> None:
        """Delete the summaries of `segments` (about to be cut or deleted); with `sync`, make
        that durable now. Raises OSError."""
        removed = False
        for seg in segments:
            # FAILED: the write may have got as far as the rename; never outlive the bytes.
            if seg.summary in (SummaryState.WRITTEN, SummaryState.FAILED):
                removed = remove_summary(self._dir, seg.base_index) or removed
            seg.summary = SummaryState.ABSENT
        if removed and sync:
            os.fsync(self._dir_fd)

    def _make_plan(self, *, data: bool, checkpoint: bool) -> _SyncPlan | None:
        sizes: list[tuple[Segment, int]] = []
        dir_version = 0
        if data:
            seg = self._segments[-1]
            if seg.synced_size < seg.flushed_size:
                sizes.append((seg, seg.flushed_size))
            if self._dir_synced_version < self._dir_version:
                dir_version = self._dir_version
        hs = self._hard_state
        stored = self._stored_hard_state
        # entry_term_max bounds a repairing node's votes (see RaftNode): stored with the
        # entries that raise it, like term and vote, never left to the checkpoint.
        if hs is None or hs == stored or not (checkpoint or stored is None or (
                hs.term, hs.vote, hs.conf, hs.entry_term_max) != (
                stored.term, stored.vote, stored.conf, stored.entry_term_max)):
            hs = None
        if not sizes and not dir_version and hs is None:
            return None
        last_index = self._last_index if data else self._durable_index
        if hs is not None and hs.commit > last_index:
            # Stored with entries not yet durable (fsync_policy interval_ms), such a commit
            # could outlive them in a crash. A lower commit is always safe: it is re-learned.
            hs = dataclasses.replace(hs, commit=last_index)
        self._plan_seq += 1
        return _SyncPlan(fds=[os.dup(seg.fd) for seg, _ in sizes], sizes=sizes,
                         dir_version=dir_version, hard_state=hs, last_index=last_index,
                         next_offset=self._next_offset if data else self._durable_offset,
                         generation=self._generation, seq=self._plan_seq)

    def _run_plan(self, plan: _SyncPlan) -> None:
        """Execute a plan (in any thread). Plans run one at a time: maybe_sync() on the loop
        may meet an fsync() still running in a worker."""
        with self._sync_lock:
            try:
                for fd in plan.fds:
                    os.fsync(fd)
                if plan.dir_version:
                    os.fsync(self._dir_fd)
                if plan.hard_state is not None and plan.seq > self._stored_seq:
                    write_atomic(self._dir_fd, self._dir, HARD_STATE_FILE,
                                 encode_hard_state(plan.hard_state))
                    self._stored_hard_state, self._stored_seq = plan.hard_state, plan.seq
            except OSError as exc:
                self._fail(exc)
        for seg, size in plan.sizes:
            seg.synced_size = max(seg.synced_size, min(size, seg.flushed_size))
        self._dir_synced_version = max(self._dir_synced_version, plan.dir_version)
        if plan.generation == self._generation and plan.last_index > self._durable_index:
            self._durable_index, self._durable_offset = plan.last_index, plan.next_offset

    def _take_plan(self) -> _SyncPlan | None:
        """Hand the plan over exactly once, though the loop and a worker may both ask."""
        with self._handoff_lock:
            plan, self._plan = self._plan, None
        return plan

    def _drop_plan(self) -> None:
        plan = self._take_plan()
        if plan is not None:
            plan.close()

    # ---- failure and life cycle ------------------------------------------------------------
    def _check_writable(self) -> None:
        if self._closed:
            raise LogError(f"{self._dir}: the log is closed")
        if self._error is not None:
            raise LogReadOnlyError(f"{self._dir} is read-only after: {self._error}")

    def _fail(self, exc: OSError) -> NoReturn:
        """A write, truncate or fsync failed: latch read-only and shrink the visible log to
        what was durable."""
        self._latch(exc, shrink=True)
        raise LogReadOnlyError(f"{self._dir} is read-only after: {exc}") from exc

    def _read_failed(self, exc: OSError) -> NoReturn:
        """A read failed (e.g. EIO): latch read-only without shrinking (see the module
        docstring, Failure), so the replica goes offline and clients get
        KAFKA_STORAGE_ERROR."""
        self._latch(exc, shrink=False)
        raise LogReadOnlyError(f"{self._dir} is read-only after a failed read: {exc}") from exc

    def _latch(self, exc: Exception, *, shrink: bool) -> None:
        """`shrink` only for a failed write: bytes past the durable point may be half-written.
        A failed read leaves the written bytes as they were, and Raft still reads the entries
        it appended (term_at, entries); cutting them would make those reads raise
        UnavailableError. A write failing after a read latched still shrinks."""
        if self._error is None:
            self._error = exc
            log.error("%s: storage error, the log is now read-only: %s", self._dir, exc)
        if shrink and self._last_index > self._durable_index:
            self._last_index = self._durable_index
            self._next_offset = self._durable_offset

    def _damaged(self, seg: Segment, exc: LogCorruptionError) -> NoReturn:
        """A read met bytes that fail their check: see the module docstring (Sealed segments)."""
        if seg.summary is SummaryState.WRITTEN and not self._closed:
            try:
                self._remove_summaries([seg], sync=True)
            except OSError as e:  # the next read of it finds the damage again
                log.error("%s: cannot delete the summary of %s: %s", self._dir, seg.path, e)
        self._latch(exc, shrink=False)  # a read's finding: see _latch
        raise LogDamageError(exc.path, exc.position, exc.reason) from exc

    @property
    def read_only(self) -> bool:
        """True once a storage error latched the log (see LogReadOnlyError)."""
        return self._error is not None

    def close(self, *, sync: bool = True) -> None:
        """Release the files. `sync=True` first makes everything durable, hard state
        included; `sync=False` drops what is buffered, as a crash would (use it after a
        LogReadOnlyError)."""
        if self._closed:
            return
        try:
            if sync and self._error is None:
                self._sync_now(checkpoint=True)
        finally:
            self._closed = True
            self._drop_plan()
            with self._sync_lock:  # not under an fsync() still running in a worker
                for seg in self._segments:
                    seg.close()
                os.close(self._dir_fd)
                os.close(self._lock_fd)

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(sync=exc_type is None)

    # ---- Kafka side ------------------------------------------------------------------------
    @property
    def log_start_offset(self) -> int:
        """Kafka offset of the first record still in the log (or next_offset if none)."""
        return max(self._start_offset, 0)

    @property
    def next_offset(self) -> int:
        """Kafka offset after the last DATA entry: the log end offset."""
        return max(self._next_offset, 0)

    def offset_end_at(self, index: int) -> int:
        """Kafka offset after the last DATA entry at or before raft index `index`: the high
        watermark when `index` is the commit index. Clamped to the log's range."""
        if index <= self._start_index:
            return self.log_start_offset
        if index >= self._last_index:
            return self.next_offset
        return max(self._offset_at(index + 1), 0)

    def read(self, offset: int, limit_offset: int, bytes_max: int) -> list[bytes | memoryview]:
        """The raw DATA batches holding offsets >= `offset`, each ending below `limit_offset`
        (the high watermark), in order, up to `bytes_max` bytes but at least one batch if one
        qualifies (Kafka's rule: the first batch may exceed the budget). Raises
        OffsetOutOfRangeError outside [log_start_offset, next_offset]."""
        next_offset = self.next_offset
        if offset < self.log_start_offset or offset > next_offset:
            raise OffsetOutOfRangeError(f"offset {offset} outside [{self.log_start_offset}, "
                                        f"{next_offset}]")
        limit = min(limit_offset, next_offset)
        if offset >= limit:
            return []
        cache = self._cache
        if len(cache) and offset >= cache.prev_offset:
            return self._read_cached(offset, limit, bytes_max)
        out: list[bytes | memoryview] = []
        size = 0
        for index, _term, kind, payload, _ in self._iter_at_offset(offset):
            if index > self._last_index:
                break
            if kind != _DATA:
                continue
            _, after, _ = batch_offsets(payload)
            if after <= offset:
                continue
            if after > limit:
                break
            size += len(payload)
            if out and size > bytes_max:
                break
            out.append(payload)
        return out

    def _read_cached(self, offset: int, limit: int, bytes_max: int) -> list[bytes | memoryview]:
        cache = self._cache
        entries, ends = cache.entries, cache.ends
        stop = min(len(entries), cache.slot(self._last_index) + 1)
        out: list[bytes | memoryview] = []
        size = 0
        for k in range(cache.find_offset(offset), stop):
            e = entries[k]
            if e.kind is not EntryKind.DATA:
                continue
            if ends[k] > limit:
                break
            size += len(e.data)
            if out and size > bytes_max:
                break
            out.append(e.data)
        return out

    def offset_for_timestamp(self, timestamp_ms: int, limit_offset: int | None = None) -> int | None:
        """Base offset of the first batch whose max timestamp is >= `timestamp_ms` and that
        ends below `limit_offset` (default: the log end), or None. (ListOffsets then finds
        the record inside that batch.)"""
        limit = self.next_offset if limit_offset is None else min(limit_offset, self.next_offset)
        for k, seg in enumerate(self._segments):
            if seg.max_timestamp < timestamp_ms or seg.last_index <= self._start_index:
                continue
            p = seg.index.floor_time(timestamp_ms)
            for index, _t, kind, payload, _ in self._iter(k, seg.index.positions[p],
                                                          seg.index.indexes[p]):
                if index > self._last_index:
                    return None
                if index <= self._start_index or kind != _DATA:
                    continue
                base, after, max_ts = batch_offsets(payload)
                if max_ts >= timestamp_ms:
                    return base if after <= limit else None
            return None
        return None

    def batch_headers(self, start_offset: int, limit_offset: int) -> Iterator[BatchHeader]:
        """Headers of the DATA batches ending in [start_offset, limit_offset), in order (e.g.
        to rebuild producer state). A generator: do not write to the log while iterating."""
        start = max(start_offset, self.log_start_offset)
        limit = min(limit_offset, self.next_offset)
        if start >= limit:
            return
        for index, _term, kind, payload, _ in self._iter_at_offset(start):
            if index > self._last_index:
                return
            if kind != _DATA:
                continue
            h = read_batch_header(payload)
            if h.last_offset < start:
                continue
            if h.last_offset >= limit:
                return
            yield h

    # ---- locating and iterating ------------------------------------------------------------
    def _iter(self, k: int, position: int, index: int) -> Iterator[Item]:
        """Entries from `index`, at `position` in segment slot `k`, to the log's end: from the
        files while below the cache, then from the cache."""
        cache, segments = self._cache, self._segments
        chunk_bytes = self._config.read_chunk_bytes
        while index < cache.first_index:
            seg = segments[k]
            for item in self._iter_segment(seg, position, chunk_bytes):
                yield item
                index = item[0] + 1
                if index >= cache.first_index:
                    break
            else:
                assert index == seg.last_index + 1, "entries not yet written must be cached"
                k, position = k + 1, SEGMENT_HEADER_BYTES
        yield from cache.iter_from(index)

    def _iter_segment(self, seg: Segment, position: int, chunk_bytes: int) -> Iterator[Item]:
        """iter_segment, with damage turned into LogDamageError (see _damaged) and an OSError
        into LogReadOnlyError (see _read_failed)."""
        items = iter_segment(seg, position, chunk_bytes)
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            except LogCorruptionError as exc:
                self._damaged(seg, exc)
            except OSError as exc:  # e.g. EIO: a typed error, so callers' storage guards hold
                self._read_failed(exc)
            yield item

    def _iter_at_index(self, index: int) -> Iterator[Item]:
        """Entries from at most one index interval before raft index `index`."""
        if index >= self._cache.first_index:
            return self._cache.iter_from(index)
        k = bisect_right(self._seg_bases, index) - 1
        sparse = self._segments[k].index
        p = sparse.floor_index(index)
        return self._iter(k, sparse.positions[p], sparse.indexes[p])

    def _iter_at_offset(self, offset: int) -> Iterator[Item]:
        """Entries from at most one index interval before the batch holding `offset`."""
        k = max(bisect_right(self._seg_offsets, offset) - 1, 0)
        sparse = self._segments[k].index
        if not len(sparse):
            return self._cache.iter_from(self._cache.first_index)
        p = sparse.floor_offset(offset)
        return self._iter(k, sparse.positions[p], sparse.indexes[p])

    def _walk_to(self, index: int) -> tuple[int, int, int, int]:
        """For start_index < index <= last_index + 1: (segment slot, byte position of entry
        `index` in it, the log's next Kafka offset before it, the largest batch timestamp
        before it in that segment)."""
        segments = self._segments
        if index == self._last_index + 1:
            seg = segments[-1]
            return len(segments) - 1, seg.size, self._next_offset, seg.max_timestamp
        k = bisect_right(self._seg_bases, index) - 1
        seg = segments[k]
        sparse = seg.index
        p = sparse.floor_index(index)
        offset, max_ts = sparse.offsets[p], sparse.times[p]
        for i, _term, kind, payload, position in self._iter(k, sparse.positions[p],
                                                            sparse.indexes[p]):
            if i == index:
                return k, position, offset, max_ts
            if kind == _DATA:
                _, offset, batch_max_ts = batch_offsets(payload)
                max_ts = max(max_ts, batch_max_ts)
        raise AssertionError(f"entry {index} not found")

    def _offset_at(self, index: int) -> int:
        """The log's next Kafka offset just before raft index `index` (-1 unknown)."""
        cache = self._cache
        if index >= cache.first_index and index <= self._last_index:
            return cache.offset_before(index)
        return self._walk_to(index)[2]

    # ---- structural changes ----------------------------------------------------------------
    def _roll(self) -> Segment:
        old = self._segments[-1]
        base = old.last_index + 1
        header = SegmentHeader(base_index=base, prev_term=old.last_term,
                               base_offset=self._next_offset)
        try:
            seg = Segment.create(self._dir, header, self._config.roll_bytes_for(base))
        except OSError as exc:
            self._fail(exc)
        self._segments.append(seg)
        self._seg_bases.append(base)
        self._seg_offsets.append(header.base_offset)
        self._dir_version += 1
        return seg

    def _truncate_after(self, keep: int) -> None:
        """Remove entries > keep (start_index <= keep < last_index), durably."""
        k, position, offset, max_ts = self._walk_to(keep + 1)
        keep_term = self.term_at(keep)
        self._drop_plan()
        segments = self._segments
        try:
            # A summary must never outlive the bytes it describes: gone, durably, first.
            self._remove_summaries(segments[k:], sync=True)
            while len(segments) > k + 1:
                segments.pop().unlink()  # newest first: an interruption leaves a prefix
                self._seg_bases.pop()
                self._seg_offsets.pop()
                self._dir_version += 1
            if self._dir_synced_version < self._dir_version:
                os.fsync(self._dir_fd)
                self._dir_synced_version = self._dir_version
            segments[k].truncate(position)
        except OSError as exc:
            self._fail(exc)
        seg = segments[k]
        seg.index.truncate(keep + 1)
        seg.last_index, seg.last_term = keep, keep_term
        seg.next_offset, seg.max_timestamp = offset, max_ts
        self._runs.truncate_after(keep)
        if keep + 1 > self._cache.first_index:
            self._cache.truncate_from(keep + 1)
        else:
            self._cache.reset(keep + 1, offset)
        self._last_index, self._next_offset = keep, offset
        self._flushed_index = min(self._flushed_index, keep)
        if self._durable_index > keep:
            self._durable_index, self._durable_offset = keep, offset
        self._generation += 1

    def _learn_offset(self, offset: int) -> None:
        """The first DATA entry of a log whose offsets were unknown starts them at `offset`.
        The log start offset is stored at once (rare: once after a reset without one), so a
        later truncation or a reopen cannot forget it: it is the leader's start offset."""
        if self._start_offset < 0:
            start = LogStart(start_index=self._start_index, start_term=self._start_term,
                             start_offset=offset)
            try:
                write_atomic(self._dir_fd, self._dir, LOG_START_FILE, encode_log_start(start))
            except OSError as exc:
                self._fail(exc)
        for k, seg in enumerate(self._segments):
            learn_offset(seg, offset)
            self._seg_offsets[k] = seg.base_offset
        self._cache.learn_offset(offset)
        if self._start_offset < 0:
            self._start_offset = offset
        self._next_offset = offset

    # ---- introspection ---------------------------------------------------------------------
    @property
    def directory(self) -> str:
        return self._dir

    @property
    def config(self) -> LogConfig:
        return self._config

    def segments(self) -> list[SegmentInfo]:
        return [SegmentInfo(path=s.path, base_index=s.base_index, last_index=s.last_index,
                            size_bytes=s.size, durable_bytes=s.synced_size,
                            max_timestamp_ms=s.max_timestamp) for s in self._segments]

    def check_invariants(self) -> None:
        segments = self._segments
        assert segments and len(segments) == len(self._seg_bases) == len(self._seg_offsets)
        for k, seg in enumerate(segments):
            seg.check_invariants()
            assert self._seg_bases[k] == seg.base_index
            assert self._seg_offsets[k] == seg.base_offset
            if k:
                prev = segments[k - 1]
                assert seg.base_index == prev.last_index + 1 and seg.prev_term == prev.last_term
                assert not prev.is_empty, "only the active segment may be empty"
                assert prev.pending_bytes == 0 or seg.synced_size == 0
        assert segments[0].base_index <= self._start_index + 1
        if self._error is None:
            assert segments[-1].last_index == self._last_index or (
                segments[-1].last_index < self._last_index == self._start_index)
            assert segments[-1].next_offset == self._next_offset
        assert self._durable_index <= self._last_index or self._error is not None
        assert self._flushed_index <= self._last_index or self._error is not None
        self._runs.check_invariants()
        assert self._runs.starts[0] <= self._start_index
        if self._error is None:
            self._cache.check_invariants(self._last_index)
        assert self._cache.first_index > self._start_index
