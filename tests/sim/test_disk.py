"""The crash-modelling storage: reads like MemoryStorage, loses exactly the unsynced writes."""

from __future__ import annotations

import random

import pytest

from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.raft.storage import CompactedError, MemoryStorage, UnavailableError
from tests.sim.disk import CrashStorage, Disk

CONF = ConfState(voters=frozenset({1, 2, 3}))


def e(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index=index, term=term, kind=EntryKind.DATA, data=data or b"%d" % index)


def hs(term: int, vote: int = 0, commit: int = 0) -> HardState:
    return HardState(term=term, vote=vote, commit=commit, conf=CONF)


def log_of(s: CrashStorage | MemoryStorage) -> tuple[int, int, list[Entry], HardState | None]:
    first, last = s.first_index(), s.last_index()
    entries = s.entries(first, last + 1, 1 << 30) if last >= first else []
    return first, s.term_at(first - 1), entries, s.initial_state()


def test_reads_like_memory_storage() -> None:
    s = CrashStorage(CONF)
    s.append([e(1, 1), e(2, 1), e(3, 2)])
    s.append([e(3, 3), e(4, 3)])  # replaces the suffix from 3
    assert (s.first_index(), s.last_index()) == (1, 4)
    assert [s.term_at(i) for i in range(0, 5)] == [0, 1, 1, 3, 3]
    with pytest.raises(UnavailableError):
        s.term_at(5)
    assert [x.index for x in s.entries(1, 5, 1)] == [1]  # at least one entry
    assert [x.index for x in s.entries(1, 5, 2)] == [1, 2]
    s.delete_prefix(2)
    assert (s.first_index(), s.term_at(2)) == (3, 1)
    with pytest.raises(CompactedError):
        s.term_at(1)
    with pytest.raises(CompactedError):
        s.entries(2, 4, 100)
    s.reset(10, 4)
    assert (s.first_index(), s.last_index(), s.term_at(10)) == (11, 10, 4)


def test_crash_loses_unsynced_writes_only() -> None:
    s = CrashStorage(CONF)
    s.append([e(1, 1), e(2, 1)])
    s.set_hard_state(hs(1, vote=2))
    s.sync()
    s.append([e(2, 2), e(3, 2)])
    s.set_hard_state(hs(2, vote=3))
    assert s.pending_ops == 2
    s.crash()
    assert log_of(s) == (1, 0, [e(1, 1), e(2, 1)], hs(1, vote=2))
    assert s.pending_ops == 0


def test_torn_crash_keeps_a_prefix_of_an_append() -> None:
    s = CrashStorage(CONF)
    s.append([e(1, 1)])
    s.sync()
    s.set_hard_state(hs(1))
    s.append([e(2, 1), e(3, 1), e(4, 1)])
    s.set_hard_state(hs(1, commit=4))
    s.crash(keep_ops=1, keep_entries=2)  # the hard state, then 2 of the 3 appended entries
    assert log_of(s) == (1, 0, [e(1, 1), e(2, 1), e(3, 1)], hs(1))


def test_disk_sync_covers_only_writes_before_it_started() -> None:
    disk = Disk()
    a, b = CrashStorage(CONF), CrashStorage(CONF)
    disk.storages.update({0: a, 1: b})
    a.append([e(1, 1)])
    b.append([e(1, 1)])
    ticket = disk.begin_sync()
    a.append([e(2, 1)])  # after the sync started: not covered
    disk.complete_sync(ticket)
    assert (a.pending_ops, b.pending_ops) == (1, 0)
    disk.crash(random.Random(1), torn_probability=0.0)
    assert (a.last_index(), b.last_index()) == (1, 1)


def test_random_histories_match_a_reference() -> None:
    """Random writes, syncs and crashes: the volatile view always equals a MemoryStorage given
    the same writes, and a crash returns exactly the state as of the last sync."""
    for seed in range(200):
        rng = random.Random(seed)
        s = CrashStorage(CONF)
        live, synced = MemoryStorage(CONF), MemoryStorage(CONF)
        pending: list[tuple[str, object]] = []
        term = 1
        for _ in range(60):
            op = rng.random()
            if op < 0.45:
                first = rng.randint(live.first_index(), live.last_index() + 1)
                term += rng.random() < 0.3
                batch = [e(i, term, bytes([rng.randrange(256)])) for i in
                         range(first, first + rng.randint(1, 3))]
                writes: tuple[str, object] = ("append", batch)
            elif op < 0.6:
                writes = ("set_hard_state", hs(term, commit=rng.randrange(10)))
            elif op < 0.65 and live.last_index() >= live.first_index():
                writes = ("delete_prefix", rng.randint(live.first_index(), live.last_index()))
            elif op < 0.68:
                writes = ("reset", (live.last_index() + rng.randint(0, 3), term))
            elif op < 0.85:
                s.sync()
                for name, arg in pending:
                    _apply(synced, name, arg)
                pending.clear()
                continue
            else:
                s.crash()
                live = _copy(synced)
                pending.clear()
                assert log_of(s) == log_of(live), seed
                continue
            name, arg = writes
            _apply(s, name, arg)
            _apply(live, name, arg)
            pending.append(writes)
            assert log_of(s) == log_of(live), seed


def _apply(s: CrashStorage | MemoryStorage, name: str, arg: object) -> None:
    if name == "reset":
        s.reset(*arg)  # type: ignore[misc]
    else:
        getattr(s, name)(arg)


def _copy(m: MemoryStorage) -> MemoryStorage:
    out = MemoryStorage()
    first, start_term, entries, hard_state = log_of(m)
    out.reset(first - 1, start_term)
    out.append(entries)
    if hard_state is not None:
        out.set_hard_state(hard_state)
    return out


def test_a_cut_tail_above_the_commit_index_goes_unnoticed() -> None:
    """Synced entries vanish and nothing is marked (storage takes it for a torn write) while
    the cut keeps the commit index; below it, the repair is marked up to the commit index."""
    cuts = {}
    for seed in range(40):
        s = CrashStorage(CONF)
        s.append([e(i, 1) for i in range(1, 9)])
        s.set_hard_state(hs(1, vote=1, commit=4))
        s.sync()
        keep = s.cut_tail(random.Random(seed))
        assert keep is not None and 0 <= keep < 8
        assert s.last_index() == s.durable.last_index() == keep
        state = s.initial_state()
        assert state is not None
        if keep >= 4:
            assert state == hs(1, vote=1, commit=4)
        else:
            assert (state.commit, state.repair_index, state.repair_term) == (keep, 4, 1)
        cuts[keep >= 4] = True
    assert cuts == {True: True, False: True}  # both kinds were drawn
