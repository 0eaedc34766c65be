"""A crash-modelling disk: a `LogStorage` whose writes are volatile until synced.

Each replica's storage keeps two copies of its log: the *volatile* view (what the process reads
back, page cache included) and the *durable* view (what survives a crash). A write is applied to
the volatile view at once and queued as an operation; `sync` replays queued operations onto the
durable view. A crash throws the volatile view away and rebuilds it from the durable one; a *torn*
crash also keeps a prefix of the queued operations, the last one possibly cut inside its entries,
as a disk that wrote some of the unsynced pages in order would.

`Disk` groups one node's storages: one sync covers every group on the node (group commit), and a
sync in flight covers only the writes made before it started.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from broker.raft.messages import ConfState, Entry, HardState
from broker.raft.storage import CompactedError, UnavailableError

__all__ = ["LogState", "CrashStorage", "Disk", "SyncTicket"]

# Queued write operations, replayed in order onto the durable view.
_APPEND = 0  # (_APPEND, tuple[Entry, ...])
_RESET = 1  # (_RESET, (start_index, start_term))
_HARD_STATE = 2  # (_HARD_STATE, HardState)
_DELETE_PREFIX = 3  # (_DELETE_PREFIX, index)

Op = tuple[int, object]


class LogState:
    """One copy of a replica's log and hard state; `apply` executes one queued write."""

    __slots__ = ("start_index", "start_term", "entries", "hard_state")

    def __init__(self, hard_state: HardState | None) -> None:
        self.start_index = 0  # index of the log-start entry (deleted, or the zero entry)
        self.start_term = 0
        self.entries: list[Entry] = []  # entries[i].index == start_index + 1 + i
        self.hard_state = hard_state

    def copy(self) -> LogState:
        out = LogState(self.hard_state)
        out.start_index = self.start_index
        out.start_term = self.start_term
        out.entries = list(self.entries)
        return out

    def last_index(self) -> int:
        return self.start_index + len(self.entries)

    def term_at(self, index: int) -> int:
        if index == self.start_index:
            return self.start_term
        return self.entries[index - self.start_index - 1].term

    def apply(self, op: Op) -> None:
        kind, arg = op
        if kind == _APPEND:
            entries: tuple[Entry, ...] = arg  # type: ignore[assignment]
            first = entries[0].index
            assert self.start_index < first <= self.last_index() + 1, (first, self.last_index())
            del self.entries[first - self.start_index - 1 :]
            self.entries.extend(entries)
        elif kind == _RESET:
            self.start_index, self.start_term = arg  # type: ignore[misc]
            self.entries = []
        elif kind == _HARD_STATE:
            self.hard_state = arg  # type: ignore[assignment]
        else:
            index: int = min(arg, self.last_index())  # type: ignore[call-overload]
            if index > self.start_index:
                self.start_term = self.term_at(index)
                del self.entries[: index - self.start_index]
                self.start_index = index


class CrashStorage:
    """`LogStorage` over a volatile view backed by a durable view (see the module docstring)."""

    __slots__ = ("volatile", "durable", "_ops")

    def __init__(self, conf: ConfState | None = None) -> None:
        hs = None if conf is None else HardState(term=0, vote=0, commit=0, conf=conf)
        self.volatile = LogState(hs)
        self.durable = LogState(hs)
        self._ops: list[Op] = []  # writes not yet durable, oldest first

    # ---- read side (the core), all on the volatile view ----
    def initial_state(self) -> HardState | None:
        return self.volatile.hard_state

    def first_index(self) -> int:
        return self.volatile.start_index + 1

    def last_index(self) -> int:
        v = self.volatile
        return v.start_index + len(v.entries)

    def term_at(self, index: int) -> int:
        v = self.volatile
        start = v.start_index
        if index < start:
            raise CompactedError(index)
        if index == start:
            return v.start_term
        pos = index - start - 1
        if pos >= len(v.entries):
            raise UnavailableError(index)
        return v.entries[pos].term

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[Entry]:
        v = self.volatile
        start = v.start_index
        if lo <= start:
            raise CompactedError(lo)
        if hi > start + len(v.entries) + 1:
            raise UnavailableError(hi)
        window = v.entries[lo - start - 1 : hi - start - 1]
        out: list[Entry] = []
        size = 0
        for e in window:
            size += len(e.data)
            if out and size > bytes_max:
                break
            out.append(e)
        return out

    # ---- write side (the driver) ----
    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        if entries:
            self._write((_APPEND, tuple(entries)))

    def reset(self, start_index: int, start_term: int) -> None:
        self._write((_RESET, (start_index, start_term)))

    def set_hard_state(self, hard_state: HardState) -> None:
        self._write((_HARD_STATE, hard_state))

    def delete_prefix(self, index: int) -> None:
        self._write((_DELETE_PREFIX, index))

    def sync(self) -> None:
        self.sync_ops(len(self._ops))

    # ---- simulation side ----
    @property
    def pending_ops(self) -> int:
        """Writes not yet durable."""
        return len(self._ops)

    def sync_ops(self, count: int) -> None:
        """Make the oldest `count` pending writes durable (a sync that started after them)."""
        assert 0 <= count <= len(self._ops), (count, len(self._ops))
        durable = self.durable
        for op in self._ops[:count]:
            durable.apply(op)
        del self._ops[:count]

    def crash(self, keep_ops: int = 0, keep_entries: int | None = None) -> None:
        """Lose unsynced writes except the oldest `keep_ops`; then, if `keep_entries` is set and
        the next pending write is an append, also keep its first `keep_entries` entries (a torn
        write). What survives becomes durable: it is what a restart reads."""
        assert 0 <= keep_ops <= len(self._ops)
        self.sync_ops(keep_ops)
        if keep_entries is not None and self._ops and self._ops[0][0] == _APPEND:
            cut: tuple[Entry, ...] = self._ops[0][1][:keep_entries]  # type: ignore[index]
            if cut:
                self.durable.apply((_APPEND, cut))
        self._ops.clear()
        self.volatile = self.durable.copy()

    def torn_crash(self, rng: random.Random) -> None:
        """Crash keeping a random prefix of the unsynced writes (see `crash`)."""
        ops = self._ops
        if not ops:
            self.crash()
            return
        keep = rng.randrange(len(ops) + 1)
        keep_entries = None
        if keep < len(ops) and ops[keep][0] == _APPEND:
            keep_entries = rng.randrange(len(ops[keep][1]) + 1)  # type: ignore[arg-type]
        self.crash(keep, keep_entries)

    def damage(self, rng: random.Random) -> int | None:
        """Storage found damage on open and cut the durable log after a random index (the
        crashed node's volatile view is rebuilt from it); the hard state is marked `repairing`
        with its commit lowered into what is kept, as broker.storage's recovery does. Returns
        the last index kept, or None if the log holds no entry to lose."""
        d = self.durable
        if not d.entries or d.hard_state is None:
            return None
        keep = rng.randrange(d.start_index, d.last_index())
        hs = d.hard_state
        lost_up_to = max(hs.repair_index, d.last_index())
        del d.entries[keep - d.start_index :]
        d.hard_state = dataclasses.replace(hs, commit=min(hs.commit, keep),
                                           repair_index=lost_up_to, repair_term=hs.term)
        self.volatile = d.copy()
        return keep

    def cut_tail(self, rng: random.Random) -> int | None:
        """The durable log lost a suffix, synced entries included, in a way storage takes for
        a torn write (its newest segment cut short at an entry boundary): nothing is marked
        when the cut stays above the hard state's commit index. Below it, storage sees the log
        end under its commit and marks the repair up to the commit index (all it can tell;
        acknowledged entries past it are lost unmarked), as broker.storage's recovery does.
        Returns the last index kept, or None if the log holds no entry to lose."""
        d = self.durable
        if not d.entries or d.hard_state is None:
            return None
        keep = rng.randrange(d.start_index, d.last_index())
        hs = d.hard_state
        del d.entries[keep - d.start_index :]
        if keep < hs.commit:
            d.hard_state = dataclasses.replace(
                hs, commit=keep, repair_index=max(hs.repair_index, hs.commit, keep + 1),
                repair_term=hs.term)
        self.volatile = d.copy()
        return keep

    def _write(self, op: Op) -> None:
        self.volatile.apply(op)
        self._ops.append(op)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncTicket:
    """A sync in flight: how many pending writes of each group it covers (taken at its start)."""

    sync_id: int
    marks: tuple[tuple[int, int], ...]  # (group, pending writes covered), by group


class Disk:
    """One node's disk holding every group's storage; one sync makes all of them durable."""

    __slots__ = ("storages", "_next_sync_id", "syncs")

    def __init__(self) -> None:
        self.storages: dict[int, CrashStorage] = {}  # by group id
        self._next_sync_id = 1
        self.syncs = 0  # completed syncs, for the summary

    def begin_sync(self) -> SyncTicket:
        marks = tuple((g, s.pending_ops) for g, s in self.storages.items() if s.pending_ops)
        ticket = SyncTicket(sync_id=self._next_sync_id, marks=marks)
        self._next_sync_id += 1
        return ticket

    def complete_sync(self, ticket: SyncTicket) -> None:
        for group, count in ticket.marks:
            self.storages[group].sync_ops(count)
        self.syncs += 1

    def sync_all(self) -> None:
        """An instantaneous sync of every group."""
        for s in self.storages.values():
            if s.pending_ops:
                s.sync()
        self.syncs += 1

    def crash(self, rng: random.Random, torn_probability: float) -> int:
        """Lose what is not durable (each group torn with `torn_probability`); returns how many
        groups had their last writes torn rather than lost."""
        torn = 0
        for s in self.storages.values():
            if s.pending_ops and rng.random() < torn_probability:
                s.torn_crash(rng)
                torn += 1
            else:
                s.crash()
        return torn
