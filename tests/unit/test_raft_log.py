"""RaftLog: storage plus the in-memory tail, the Ready hand-off of entries, conflict finding."""

from __future__ import annotations

import pytest

from broker.raft.log import RaftLog
from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.raft.storage import CompactedError, MemoryStorage, UnavailableError

CONF = ConfState(voters=frozenset({1}))


def ent(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index=index, term=term, kind=EntryKind.DATA, data=data)


def ents(first: int, terms: list[int], data: bytes = b"x") -> list[Entry]:
    return [ent(first + i, t, data) for i, t in enumerate(terms)]


def storage(terms: list[int], commit: int = 0) -> MemoryStorage:
    st = MemoryStorage()
    st.append(ents(1, terms))
    st.set_hard_state(HardState(term=max(terms, default=0), vote=0, commit=commit, conf=CONF))
    return st


def persist(log: RaftLog, st: MemoryStorage) -> tuple[Entry, ...]:
    """Hand out the unsent entries, persist them, acknowledge: what a driver does."""
    reset = log.take_reset()
    out = log.take_unsent()
    if reset is not None:
        st.reset(*reset)
    st.append(out)
    log.persisted(reset, out)
    log.check()
    return out


def test_reads_span_storage_and_memory_tail() -> None:
    st = storage([1, 1, 2])
    log = RaftLog(st, commit=0, applied=0)
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 3, 2)
    for e in ents(4, [3, 3]):
        log.append(e)
    assert log.last_index() == 5 and log.term_at(4) == 3 and log.term_at(2) == 1
    assert log.term_at(0) == 0
    with pytest.raises(UnavailableError):
        log.term_at(6)
    got, size = log.entries(2, 6, 1 << 20)
    assert [e.index for e in got] == [2, 3, 4, 5] and size == 4
    got, size = log.entries(2, 6, 2)  # byte-bounded across the boundary
    assert [e.index for e in got] == [2, 3]
    got, _ = log.entries(3, 6, 0)  # always at least one entry
    assert [e.index for e in got] == [3]
    log.check()


def test_unstable_tail_becomes_stable_only_after_persist() -> None:
    st = storage([1])
    log = RaftLog(st, commit=0, applied=0)
    log.append(ent(2, 1))
    log.append(ent(3, 1))
    assert log.stable_last_index() == 1 and log.has_unsent()
    out = log.take_unsent()
    assert [e.index for e in out] == [2, 3]
    assert not log.has_unsent() and log.stable_last_index() == 1  # in flight, not stable
    log.append(ent(4, 1))  # arrives while the Ready is in flight
    st.append(out)
    log.persisted(None, out)
    assert log.stable_last_index() == 3
    assert [e.index for e in log.take_unsent()] == [4]


def test_committed_entries_only_up_to_stable_index() -> None:
    st = storage([1, 1])
    log = RaftLog(st, commit=0, applied=0)
    log.truncate_and_append(ents(3, [1, 1]))
    log.commit_to(4)
    got = log.next_committed(1 << 20)
    assert [e.index for e in got] == [1, 2]  # 3 and 4 are not persisted yet
    log.applied_to(2)
    assert not log.has_next_committed()
    persist(log, st)
    assert [e.index for e in log.next_committed(1 << 20)] == [3, 4]
    assert [e.index for e in log.next_committed(1)] == [3]  # paginated


def test_truncation_of_unstable_and_stable_entries() -> None:
    st = storage([1, 1, 2, 2])
    log = RaftLog(st, commit=1, applied=1)
    log.truncate_and_append(ents(5, [2, 2]))
    persist(log, st)
    # A new leader replaces everything from index 3 (stable, some in memory, some not).
    log.truncate_and_append(ents(3, [3]))
    assert log.last_index() == 3 and log.term_at(3) == 3 and log.stable_last_index() == 2
    assert st.last_index() == 6  # storage still holds the stale suffix ...
    out = persist(log, st)  # ... until the next Ready replaces it
    assert [(e.index, e.term) for e in out] == [(3, 3)]
    assert st.last_index() == 3 and st.term_at(3) == 3


def test_truncation_while_ready_in_flight() -> None:
    st = storage([1])
    log = RaftLog(st, commit=0, applied=0)
    log.truncate_and_append(ents(2, [1, 1, 1, 1]))  # 2..5
    out = log.take_unsent()
    log.truncate_and_append(ents(4, [2]))  # replaces 4 and 5 before the persist lands
    st.append(out)
    log.persisted(None, out)
    assert log.stable_last_index() == 3  # 4 and 5 were persisted, but not the ones we hold
    assert [(e.index, e.term) for e in log.take_unsent()] == [(4, 2)]
    log.check()


def test_truncation_below_in_flight_entries() -> None:
    st = storage([1, 1])
    log = RaftLog(st, commit=0, applied=0)
    log.truncate_and_append(ents(3, [1, 1]))
    out = log.take_unsent()
    log.truncate_and_append(ents(2, [2]))
    st.append(out)
    log.persisted(None, out)
    assert log.stable_last_index() == 1
    assert [(e.index, e.term) for e in persist(log, st)] == [(2, 2)]
    assert st.last_index() == 2


def test_find_conflict() -> None:
    st = storage([1, 1, 2])
    log = RaftLog(st, commit=0, applied=0)
    assert log.find_conflict(ents(1, [1, 1, 2])) == 0
    assert log.find_conflict(ents(2, [1, 2])) == 0
    assert log.find_conflict(ents(2, [1, 2, 3])) == 4  # new entries
    assert log.find_conflict(ents(2, [1, 3, 3])) == 3  # a different term at 3
    assert log.find_conflict([]) == 0


def test_find_conflict_by_term() -> None:
    # The follower log from etcd's example: idx 1..9, terms 1 3 3 4 4 5 5 5 6.
    st = storage([1, 3, 3, 4, 4, 5, 5, 5, 6])
    log = RaftLog(st, commit=0, applied=0)
    assert log.find_conflict_by_term(8, 3) == (3, 3)
    assert log.find_conflict_by_term(9, 6) == (9, 6)
    assert log.find_conflict_by_term(9, 5) == (8, 5)
    assert log.find_conflict_by_term(9, 2) == (1, 1)
    assert log.find_conflict_by_term(9, 0) == (0, 0)
    assert log.find_conflict_by_term(20, 4) == (5, 4)  # clamped to the last index
    st.delete_prefix(4)  # the log start is now (4, term 4)
    log = RaftLog(st, commit=4, applied=4)
    assert log.find_conflict_by_term(9, 4) == (5, 4)
    assert log.find_conflict_by_term(9, 3) == (4, 4)  # even the log start is above: best known
    assert log.find_conflict_by_term(2, 3) == (2, 0)  # below the log start: nothing known


def test_is_up_to_date() -> None:
    log = RaftLog(storage([1, 2, 2]), commit=0, applied=0)
    assert log.is_up_to_date(3, 2) and log.is_up_to_date(9, 2) and log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2) and not log.is_up_to_date(9, 1)


def test_reset_discards_everything_until_persisted() -> None:
    st = storage([1, 1, 1])
    log = RaftLog(st, commit=1, applied=1)
    log.reset(10, 4)
    assert (log.first_index(), log.last_index(), log.term_at(10)) == (11, 10, 4)
    assert log.commit == 10 and log.applied == 10
    with pytest.raises(CompactedError):
        log.term_at(9)
    log.truncate_and_append(ents(11, [4, 5]))
    assert log.has_unsent()
    out = persist(log, st)
    assert [e.index for e in out] == [11, 12]
    assert st.first_index() == 11 and st.last_index() == 12 and st.term_at(10) == 4
    assert log.first_index() == 11 and log.term_at(10) == 4
    assert not log.has_next_committed()


def test_superseded_reset_stays_pending() -> None:
    st = storage([1, 1])
    log = RaftLog(st, commit=0, applied=0)
    log.reset(5, 2)
    first = log.take_reset()
    assert first == (5, 2)
    log.reset(8, 3)  # a newer one while the first is in flight
    st.reset(*first)
    log.persisted(first, ())
    assert log.first_index() == 9 and log.take_reset() == (8, 3)


def test_applied_entries_are_trimmed_from_memory() -> None:
    st = storage([])
    log = RaftLog(st, commit=0, applied=0)
    for i in range(1, 1001):
        log.append(ent(i, 1))
    persist(log, st)
    log.commit_to(1000)
    while log.has_next_committed():
        log.applied_to(log.next_committed(1 << 20)[-1].index)
    log.check()
    assert log.applied == 1000 and log._mem == []  # noqa: SLF001 - the bound under test
    assert log.term_at(1000) == 1 and log.last_index() == 1000


def test_restart_clamps_commit_and_applied_to_the_log_start() -> None:
    st = storage([1, 1, 1, 1])
    st.delete_prefix(2)
    log = RaftLog(st, commit=1, applied=0)
    assert log.commit == 2 and log.applied == 2
    log = RaftLog(st, commit=4, applied=9)
    assert log.applied == 4


def test_compaction_seen_through_memory_tail() -> None:
    """Retention may delete entries the memory tail still holds (applied, not yet trimmed):
    an append from index i needs the term at i - 1 too."""
    st = storage([])
    log = RaftLog(st, commit=0, applied=0)
    for i in range(1, 6):
        log.append(ent(i, 1))
    persist(log, st)
    log.commit_to(5)
    log.applied_to(2)  # too few to trim: entries 1..5 stay in memory
    st.delete_prefix(2)  # storage now starts after index 2
    assert log.first_index() == 3
    assert not log.is_compacted(3) and not log.is_compacted(5)
    assert log.is_compacted(1)  # term at 0 is gone
    assert log.term_at(1) == 1  # still readable from memory
    log.check()
