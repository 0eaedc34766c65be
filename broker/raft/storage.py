"""The log storage interface the Raft core reads, and an in-memory implementation.

The core only *reads* storage (`initial_state`, `first_index`, `last_index`, `term_at`,
`entries`); the driver *writes* it, executing each `Ready` (see `broker.raft.messages`). Entries
the core has produced but the driver has not yet persisted live in the core's unstable tail.

Index conventions (as etcd's raft): the log holds entries `first_index() .. last_index()`;
`term_at(first_index() - 1)` is still answerable (the log-start entry, deleted by retention or
never present: index 0, term 0, for a fresh log). An empty log has
`last_index() == first_index() - 1`.

`broker.storage` implements this protocol on disk; `MemoryStorage` serves unit tests and the
simulator.
"""

from __future__ import annotations

from typing import Protocol

from broker.raft.messages import ConfState, Entry, HardState

__all__ = ["LogStorage", "CompactedError", "UnavailableError", "MemoryStorage"]


class CompactedError(LookupError):
    """The index is below the log start (deleted by retention)."""


class UnavailableError(LookupError):
    """The index is beyond the last stored entry."""


class LogStorage(Protocol):
    # ---- read side (the core) ----
    def initial_state(self) -> HardState | None:
        """The last persisted hard state, or None for a replica that never persisted one."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term_at(self, index: int) -> int:
        """Term of the entry at `index`, for first_index()-1 <= index <= last_index().
        Raises CompactedError below that range and UnavailableError above it."""
        ...

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[Entry]:
        """Entries [lo, hi), stopping before the running payload size exceeds `bytes_max`, but
        always at least one entry when lo < hi. Same errors as `term_at`."""
        ...

    # ---- write side (the driver) ----
    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append; entries[0].index may be <= last_index(), replacing that suffix. Requires
        first_index() <= entries[0].index <= last_index() + 1 and contiguous entries."""
        ...

    def reset(self, start_index: int, start_term: int) -> None:
        """Discard every entry; the log restarts after (start_index, start_term)."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None: ...

    def sync(self) -> None:
        """Make everything written so far durable."""
        ...

    def delete_prefix(self, index: int) -> None:
        """Retention: delete entries <= index (callers only pass committed indexes)."""
        ...


class MemoryStorage:
    """A LogStorage in memory. Everything is 'durable' at once; the simulator wraps or extends
    it to model unsynced writes being lost in a crash."""

    __slots__ = ("_start_index", "_start_term", "_entries", "_hard_state")

    def __init__(self, conf: ConfState | None = None) -> None:
        self._start_index = 0  # index of the log-start entry (deleted or the zero entry)
        self._start_term = 0
        self._entries: list[Entry] = []  # _entries[i].index == _start_index + 1 + i
        self._hard_state: HardState | None = (
            None if conf is None else HardState(term=0, vote=0, commit=0, conf=conf)
        )

    def initial_state(self) -> HardState | None:
        return self._hard_state

    def first_index(self) -> int:
        return self._start_index + 1

    def last_index(self) -> int:
        return self._start_index + len(self._entries)

    def term_at(self, index: int) -> int:
        if index < self._start_index:
            raise CompactedError(index)
        if index > self.last_index():
            raise UnavailableError(index)
        if index == self._start_index:
            return self._start_term
        return self._entries[index - self._start_index - 1].term

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[Entry]:
        if lo <= self._start_index:
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi)
        out: list[Entry] = []
        size = 0
        for e in self._entries[lo - self._start_index - 1 : hi - self._start_index - 1]:
            size += len(e.data)
            if out and size > bytes_max:
                break
            out.append(e)
        return out

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        if not entries:
            return
        first = entries[0].index
        assert self.first_index() <= first <= self.last_index() + 1, (first, self.last_index())
        del self._entries[first - self._start_index - 1 :]
        self._entries.extend(entries)

    def reset(self, start_index: int, start_term: int) -> None:
        self._start_index = start_index
        self._start_term = start_term
        self._entries = []

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def sync(self) -> None:
        return None

    def delete_prefix(self, index: int) -> None:
        if index <= self._start_index:
            return
        index = min(index, self.last_index())
        self._start_term = self.term_at(index)
        del self._entries[: index - self._start_index]
        self._start_index = index
