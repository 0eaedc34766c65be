"""The Raft log as the core sees it: the driver's storage plus an in-memory tail.

    storage (read-only here)        memory tail `_mem`
    [first_index ........ ]         [mem_offset ......................... last_index]
                                    [ stable, not yet applied ][ unstable          ]
                                                               ^ unstable_from

- `storage` holds what the driver has persisted. The core never writes it: entries it produces
  (proposals on a leader, appends on a follower) go to the memory tail and leave in a `Ready`;
  once the driver persisted them and called `advance`, they are *stable* (`stable_to`).
- The memory tail holds every entry at or above `mem_offset`: the unstable ones, and stable ones
  not yet applied (so that committed entries and fresh appends to followers come from memory,
  not from disk). Applied stable entries are trimmed away in chunks, keeping the tail bounded by
  the uncommitted and unapplied window.
- Storage may still hold a stale suffix at and above `unstable_from` (entries a new leader
  replaced and that the next Ready overwrites); reads at those indexes come from memory.
- A log reset (`LogStartRequest`) discards everything at once. Until the Ready carrying it has
  been persisted, storage still holds the old log, so reads below the memory tail come from the
  pending reset point instead of storage.

Every index the core works with satisfies first_index() - 1 <= index <= last_index();
`term_at` answers for that whole range (the log-start entry included).
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.raft.messages import Entry
from broker.raft.storage import CompactedError, LogStorage, UnavailableError

__all__ = ["RaftLog"]

# Applied entries are trimmed from the memory tail once this many have piled up (or once they
# are half of it): amortized O(1) per entry, never a large copy per step.
_TRIM_MIN = 256


class RaftLog:
    __slots__ = (
        "_storage",
        "_mem",
        "_mem_offset",
        "_unstable_from",
        "_sent_to",
        "_reset",
        "_reset_sent",
        "commit",
        "applied",
    )

    def __init__(self, storage: LogStorage, *, commit: int, applied: int) -> None:
        self._storage = storage
        last = storage.last_index()
        first = storage.first_index()
        self._mem: list[Entry] = []
        self._mem_offset = last + 1  # index of _mem[0]; last_index() + 1 when _mem is empty
        self._unstable_from = last + 1  # entries at or above are not yet persisted
        self._sent_to = last  # entries up to here have been handed out in a Ready
        self._reset: tuple[int, int] | None = None  # a log reset not yet persisted
        self._reset_sent = False  # ... and already handed out in the Ready in flight
        # Retention only deletes committed entries: the log start is committed even if the
        # hard state that said so was not synced.
        self.commit = max(commit, first - 1)  # highest index known committed
        self.applied = min(max(applied, first - 1), self.commit)  # highest index applied

    # ---- reads --------------------------------------------------------------------------

    def first_index(self) -> int:
        if self._reset is not None:
            return self._reset[0] + 1
        return self._storage.first_index()

    def last_index(self) -> int:
        return self._mem_offset + len(self._mem) - 1

    def is_compacted(self, index: int) -> bool:
        """True if index < first_index(): the entry at `index` or the one before it (whose
        term an append from `index` needs) was deleted by retention. Cheap in the common case:
        both in the memory tail."""
        return index <= self._mem_offset and index < self.first_index()

    def stable_last_index(self) -> int:
        """Highest index persisted by the driver (and acknowledged through `advance`)."""
        return self._unstable_from - 1

    def term_at(self, index: int) -> int:
        """Term of the entry at `index`; raises CompactedError below first_index() - 1 and
        UnavailableError above last_index()."""
        offset = self._mem_offset
        if index >= offset:
            i = index - offset
            if i < len(self._mem):
                return self._mem[i].term
            raise UnavailableError(index)
        if self._reset is not None:
            start, term = self._reset
            if index == start:
                return term
            raise CompactedError(index)
        return self._storage.term_at(index)

    def last_term(self) -> int:
        if self._mem:
            return self._mem[-1].term
        return self.term_at(self._mem_offset - 1)

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term_at(index) == term
        except LookupError:
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction: is a log ending at (last_index, last_term) at least as
        up to date as this one?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def entries(self, lo: int, hi: int, bytes_max: int) -> tuple[list[Entry], int]:
        """Entries [lo, hi) and their payload bytes, stopping before the total exceeds
        `bytes_max` but always at least one entry when lo < hi."""
        offset = self._mem_offset
        assert lo <= hi <= offset + len(self._mem), (lo, hi)
        assert lo >= offset or lo >= self.first_index(), (lo, self.first_index())
        out: list[Entry] = []
        size = 0
        if lo < offset:
            stop = min(hi, offset)
            out = list(self._storage.entries(lo, stop, bytes_max))
            size = sum(len(e.data) for e in out)
            if len(out) < stop - lo or stop == hi:
                return out, size
            lo = stop
        mem = self._mem
        for i in range(lo - offset, hi - offset):
            entry = mem[i]
            n = len(entry.data)
            if out and size + n > bytes_max:
                break
            out.append(entry)
            size += n
        return out, size

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of `entries` this log does not hold (a different term at that
        index, or beyond the end); 0 if it holds them all. The entries must lie above
        first_index() - 1."""
        last = self.last_index()
        for entry in entries:
            if entry.index > last or self.term_at(entry.index) != entry.term:
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The highest index <= `index` whose term is <= `term`, with that term (etcd's
        findConflictByTerm). No index above the result can match a log whose entry at `index`
        or below has term `term`, so a probe may skip straight to it. Terms never decrease
        along a log, so this is a binary search: O(log n) term lookups, never a scan.

        If even the log start's term is above `term`, returns the log start (the best we
        know); if `index` is below the log start, returns (index, 0): nothing known."""
        index = min(index, self.last_index())
        lo = self.first_index() - 1
        if index < lo:
            return index, 0
        t = self.term_at(index)
        if t <= term:
            return index, t
        t_lo = self.term_at(lo)
        if t_lo > term:
            return lo, t_lo
        hi = index  # term_at(lo) <= term < term_at(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            t_mid = self.term_at(mid)
            if t_mid <= term:
                lo, t_lo = mid, t_mid
            else:
                hi = mid
        return lo, t_lo

    # ---- writes (in memory only) ------------------------------------------------------------

    def append(self, entry: Entry) -> None:
        """A leader's own new entry."""
        assert entry.index == self.last_index() + 1, (entry.index, self.last_index())
        self._mem.append(entry)

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """A follower's entries from its leader: entries[0] may replace an existing suffix
        (never a committed entry)."""
        first = entries[0].index
        assert self.commit < first <= self.last_index() + 1, (first, self.commit)
        offset = self._mem_offset
        if first >= offset:
            del self._mem[first - offset :]
            self._mem.extend(entries)
        else:  # replaces stable entries below the memory tail: they are stale in storage now
            self._mem = list(entries)
            self._mem_offset = first
        if first < self._unstable_from:
            self._unstable_from = first
        if self._sent_to >= first:
            self._sent_to = first - 1

    def commit_to(self, index: int) -> None:
        assert index <= self.last_index(), (index, self.last_index())
        if index > self.commit:
            self.commit = index

    def reset(self, start_index: int, start_term: int) -> None:
        """Discard the whole log; it restarts after (start_index, start_term), all of it
        committed. Entries up to start_index are gone and are never applied here."""
        self._mem = []
        self._mem_offset = start_index + 1
        self._unstable_from = start_index + 1
        self._sent_to = start_index
        self._reset = (start_index, start_term)
        self._reset_sent = False
        self.commit = max(self.commit, start_index)
        self.applied = max(self.applied, start_index)

    # ---- the Ready hand-off -------------------------------------------------------------------

    def has_unsent(self) -> bool:
        return self._sent_to < self.last_index() or (
            self._reset is not None and not self._reset_sent
        )

    def take_reset(self) -> tuple[int, int] | None:
        """The reset to hand out in the next Ready, if any."""
        if self._reset is None or self._reset_sent:
            return None
        self._reset_sent = True
        return self._reset

    def take_unsent(self) -> tuple[Entry, ...]:
        """Entries to persist, handed out once each (until a truncation replaces them)."""
        # With no Ready in flight everything handed out earlier is stable.
        assert self._sent_to == self._unstable_from - 1, (self._sent_to, self._unstable_from)
        last = self.last_index()
        if self._sent_to >= last:
            return ()
        out = tuple(self._mem[self._sent_to + 1 - self._mem_offset :])
        self._sent_to = last
        return out

    def has_next_committed(self) -> bool:
        return self.applied < min(self.commit, self._unstable_from - 1)

    def next_committed(self, bytes_max: int) -> list[Entry]:
        """Committed, persisted, not yet applied entries, up to `bytes_max` payload bytes."""
        hi = min(self.commit, self._unstable_from - 1)
        lo = self.applied + 1
        if lo > hi:
            return []
        if self.is_compacted(lo):  # retention deleted entries not applied: they cannot be now
            lo = self.first_index()
            self.applied = lo - 1
            if lo > hi:
                return []
        return self.entries(lo, hi + 1, bytes_max)[0]

    def persisted(self, reset: tuple[int, int] | None, entries: tuple[Entry, ...]) -> None:
        """The driver persisted a Ready holding `reset` and `entries`."""
        if reset is not None and self._reset_sent:
            self._reset = None  # else a newer reset superseded it: still pending
            self._reset_sent = False
        if not entries:
            return
        # Entries replaced while the Ready was in flight are not the ones persisted: find the
        # last one still in place (normally the very last, at once).
        mem, offset = self._mem, self._mem_offset
        for entry in reversed(entries):
            i = entry.index - offset
            if 0 <= i < len(mem) and mem[i] is entry:
                if entry.index >= self._unstable_from:
                    self._unstable_from = entry.index + 1
                return

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index
        if self._reset is not None:
            return
        drop = min(self.applied, self._unstable_from - 1) - self._mem_offset + 1
        if drop > 0 and (drop >= _TRIM_MIN or 2 * drop >= len(self._mem)):
            del self._mem[:drop]
            self._mem_offset += drop

    def check(self) -> None:
        last = self.last_index()
        assert self._mem_offset <= self._unstable_from <= last + 1, (
            self._mem_offset,
            self._unstable_from,
            last,
        )
        assert self._unstable_from - 1 <= self._sent_to <= last, (self._sent_to, last)
        assert self.applied <= self.commit <= last, (self.applied, self.commit, last)
        assert self.first_index() - 1 <= self.commit, (self.first_index(), self.commit)
        if self._mem:
            assert self._mem[0].index == self._mem_offset
            assert self._mem[-1].index == last
            prev = self._mem_offset - 1
            if prev >= self.first_index() - 1:
                assert self._mem[0].term >= self.term_at(prev), "terms decrease along the log"
        if self._reset is not None:
            assert self._mem_offset == self._reset[0] + 1, (self._mem_offset, self._reset)
