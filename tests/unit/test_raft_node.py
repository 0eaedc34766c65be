"""One RaftNode against hand-written messages: the Ready contract and single protocol rules."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from broker.raft.core import (
    NoHardStateError,
    RaftConfig,
    RaftConfigError,
    RaftNode,
    StorageStateError,
)
from broker.raft.confchange import encode_conf_change
from broker.raft.messages import (
    AppendRequest,
    AppendResponse,
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    LogStartRequest,
    Message,
    Ready,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from broker.raft.storage import MemoryStorage

CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1)


def conf(*voters: int) -> ConfState:
    return ConfState(voters=frozenset(voters))


def make(
    node_id: int = 1,
    voters: tuple[int, ...] = (1, 2, 3),
    *,
    terms: list[int] | None = None,
    term: int = 0,
    commit: int = 0,
    config: RaftConfig = CONFIG,
    node_class: type[RaftNode] = RaftNode,
) -> tuple[RaftNode, MemoryStorage]:
    st = MemoryStorage(conf(*voters))
    if terms:
        st.append([Entry(index=i + 1, term=t, kind=EntryKind.DATA, data=b"d") for i, t in enumerate(terms)])
        st.set_hard_state(HardState(term=term, vote=0, commit=commit, conf=conf(*voters)))
    node = node_class(node_id=node_id, storage=st, rng=random.Random(node_id), config=config)
    node.check_invariants()
    return node, st


def execute(node: RaftNode, st: MemoryStorage) -> Ready:
    rd = node.ready()
    if rd.log_reset is not None:
        st.reset(*rd.log_reset)
    st.append(rd.entries)
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    node.advance(rd)
    node.check_invariants()
    return rd


def step(node: RaftNode, msg: Message) -> None:
    node.step(msg)
    node.check_invariants()


def make_leader(voters: tuple[int, ...] = (1, 2, 3), **kw: object) -> tuple[RaftNode, MemoryStorage]:
    """Node 1 elected by the others' grants; its EMPTY entry persisted."""
    node, st = make(1, voters, config=replace(CONFIG, pre_vote=False), **kw)  # type: ignore[arg-type]
    node.campaign()
    execute(node, st)
    for v in voters[1:]:
        step(node, VoteResponse(src=v, dst=1, term=node.term, granted=True))
    assert node.role is Role.LEADER
    execute(node, st)
    return node, st


# ---- construction -----------------------------------------------------------------------------


def test_storage_without_hard_state_is_a_typed_error() -> None:
    with pytest.raises(NoHardStateError):
        RaftNode(node_id=1, storage=MemoryStorage(), rng=random.Random(1))


@pytest.mark.parametrize(
    ("node_id", "config"),
    [
        (0, CONFIG),
        (1, replace(CONFIG, heartbeat_ticks=10)),
        (1, replace(CONFIG, inflight_messages_max=0)),
        (1, replace(CONFIG, message_bytes_max=0)),
    ],
)
def test_bad_config_is_a_typed_error(node_id: int, config: RaftConfig) -> None:
    with pytest.raises(RaftConfigError):
        RaftNode(node_id=node_id, storage=MemoryStorage(conf(1)), rng=random.Random(1), config=config)


def test_commit_beyond_log_is_a_typed_error() -> None:
    st = MemoryStorage()
    st.set_hard_state(HardState(term=1, vote=0, commit=5, conf=conf(1)))
    with pytest.raises(StorageStateError):
        RaftNode(node_id=1, storage=st, rng=random.Random(1))


def test_fresh_node_has_nothing_ready() -> None:
    node, _ = make()
    assert not node.has_ready()
    assert node.role is Role.FOLLOWER and node.term == 0 and node.leader_id == 0


# ---- the Ready contract ------------------------------------------------------------------------


def test_pre_vote_requests_leave_at_once_and_change_nothing_durable() -> None:
    node, st = make()
    node.campaign()
    assert node.role is Role.PRE_CANDIDATE and node.term == 0
    rd = execute(node, st)
    assert rd.hard_state is None and not rd.must_sync
    assert sorted(m.dst for m in rd.messages if isinstance(m, VoteRequest)) == [2, 3]
    assert all(m.pre_vote and m.term == 1 for m in rd.messages)  # type: ignore[union-attr]
    assert rd.soft_state is not None and rd.soft_state.role is Role.PRE_CANDIDATE


def test_vote_requests_wait_for_the_persisted_term_and_vote() -> None:
    node, st = make(config=replace(CONFIG, pre_vote=False))
    node.campaign()
    rd = node.ready()
    assert rd.must_sync and rd.hard_state == HardState(term=1, vote=1, commit=0, conf=conf(1, 2, 3))
    assert not rd.messages
    assert sorted(m.dst for m in rd.messages_after_persist) == [2, 3]


def test_vote_responses_wait_for_the_persist() -> None:
    node, st = make(2)
    step(node, VoteRequest(src=1, dst=2, term=1, last_index=0, last_term=0))
    rd = execute(node, st)
    assert rd.must_sync and rd.hard_state is not None and rd.hard_state.vote == 1
    assert rd.messages == ()
    assert rd.messages_after_persist == (VoteResponse(src=2, dst=1, term=1, granted=True),)
    # Already voted in term 1: node 3 is refused, the refusal also waits for the persist.
    step(node, VoteRequest(src=3, dst=2, term=1, last_index=0, last_term=0))
    rd = execute(node, st)
    assert rd.messages_after_persist == (VoteResponse(src=2, dst=3, term=1, granted=False),)
    # Pre-vote answers too.
    step(node, VoteRequest(src=3, dst=2, term=2, last_index=0, last_term=0, pre_vote=True))
    rd = execute(node, st)
    assert rd.messages_after_persist == (
        VoteResponse(src=2, dst=3, term=2, granted=True, pre_vote=True),
    )
    assert rd.hard_state is None and node.term == 1  # a pre-vote changes nothing


def test_follower_append_response_waits_for_persist_and_commit_waits_for_stable() -> None:
    node, st = make(2)
    entries = tuple(Entry(index=i, term=1, kind=EntryKind.DATA, data=b"v") for i in (1, 2))
    step(node, AppendRequest(src=1, dst=2, term=1, prev_index=0, prev_term=0, entries=entries, commit=2))
    rd = node.ready()
    assert rd.entries == entries and rd.must_sync
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert rd.committed == ()  # not persisted yet
    assert rd.messages_after_persist == (
        AppendResponse(src=2, dst=1, term=1, success=True, index=2),
    )
    st.append(rd.entries)
    st.set_hard_state(rd.hard_state)
    node.advance(rd)
    rd = execute(node, st)
    assert rd.committed == entries and not rd.must_sync and rd.hard_state is None


def test_commit_only_change_does_not_sync() -> None:
    node, st = make(2)
    e = (Entry(index=1, term=1, kind=EntryKind.DATA, data=b"v"),)
    step(node, AppendRequest(src=1, dst=2, term=1, prev_index=0, prev_term=0, entries=e, commit=0))
    execute(node, st)
    step(node, Heartbeat(src=1, dst=2, term=1, commit=1))
    rd = execute(node, st)
    assert rd.hard_state is not None and rd.hard_state.commit == 1 and not rd.must_sync
    assert rd.messages == (HeartbeatResponse(src=2, dst=1, term=1),)
    assert rd.committed == e


def test_ready_twice_without_advance_is_a_bug() -> None:
    node, _ = make()
    node.campaign()
    node.ready()
    with pytest.raises(AssertionError):
        node.ready()
    assert not node.has_ready()


def test_steps_between_ready_and_advance_go_into_the_next_ready() -> None:
    node, st = make(2)
    step(node, VoteRequest(src=1, dst=2, term=1, last_index=0, last_term=0))
    rd = node.ready()
    e = (Entry(index=1, term=1, kind=EntryKind.EMPTY),)
    step(node, AppendRequest(src=1, dst=2, term=1, prev_index=0, prev_term=0, entries=e, commit=0))
    st.set_hard_state(rd.hard_state)  # type: ignore[arg-type]
    node.advance(rd)
    rd2 = execute(node, st)
    assert rd2.entries == e and len(rd2.messages_after_persist) == 1


def test_leader_counts_itself_only_after_persisting() -> None:
    node, st = make_leader((1, 2))
    assert node.commit_index == 0  # its EMPTY entry (index 1) is not acknowledged by 2 yet
    step(node, AppendResponse(src=2, dst=1, term=1, success=True, index=1))
    assert node.commit_index == 1
    node.propose(b"a")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"a"]
    assert any(isinstance(m, AppendRequest) for m in rd.messages)  # appends leave at once
    step(node, AppendResponse(src=2, dst=1, term=1, success=True, index=2))
    assert node.commit_index == 1  # the follower has it, the leader has not persisted it
    st.append(rd.entries)
    node.advance(rd)
    assert node.commit_index == 2
    assert [e.data for e in execute(node, st).committed] == [b"a"]


def test_heartbeat_commit_is_bounded_by_the_follower_match() -> None:
    node, st = make_leader((1, 2, 3))
    step(node, AppendResponse(src=2, dst=1, term=1, success=True, index=1))
    node.propose(b"a")
    execute(node, st)
    step(node, AppendResponse(src=2, dst=1, term=1, success=True, index=2))
    assert node.commit_index == 2
    node.tick()
    rd = execute(node, st)
    beats = {m.dst: m.commit for m in rd.messages if isinstance(m, Heartbeat)}
    assert beats == {2: 2, 3: 0}


def test_rejection_hint_skips_the_divergent_term() -> None:
    node, st = make(2, terms=[1, 3, 3, 3, 3], term=3, commit=1)
    step(node, AppendRequest(src=1, dst=2, term=4, prev_index=5, prev_term=2, entries=(), commit=1))
    rd = execute(node, st)
    assert rd.messages_after_persist == (
        AppendResponse(src=2, dst=1, term=4, success=False, index=5, hint_index=1, hint_term=1),
    )


def test_leader_uses_hint_to_probe_once_per_term() -> None:
    # Leader log: 1 3 3 3 5 5 5 5 5, follower rejects the probe at 9 with hint (6, 2).
    node, st = make_leader((1, 2), terms=[1, 3, 3, 3, 5, 5, 5, 5, 5], term=5, commit=1)
    rejected = node.last_index - 1  # the probe anchored at the previous last entry
    step(node, AppendResponse(src=2, dst=1, term=6, success=False, index=rejected, hint_index=6, hint_term=2))
    rd = execute(node, st)
    probe = [m for m in rd.messages if isinstance(m, AppendRequest)]
    assert len(probe) == 1 and probe[0].prev_index == 1  # not 6, 5, 4, ...


def test_in_lease_vote_requests_are_ignored_unless_transfer() -> None:
    node, st = make(2)
    step(node, Heartbeat(src=1, dst=2, term=1, commit=0))
    execute(node, st)
    for pre in (False, True):
        step(node, VoteRequest(src=3, dst=2, term=2, last_index=5, last_term=1, pre_vote=pre))
        assert node.term == 1
        assert not execute(node, st).messages_after_persist  # no answer at all
    step(node, VoteRequest(src=3, dst=2, term=2, last_index=5, last_term=1, transfer=True))
    rd = execute(node, st)
    assert node.term == 2 and node.vote == 3
    assert rd.messages_after_persist == (VoteResponse(src=2, dst=3, term=2, granted=True),)


def test_stale_leader_is_told_the_term() -> None:
    node, st = make(2)
    step(node, Heartbeat(src=1, dst=2, term=3, commit=0))
    execute(node, st)
    step(node, AppendRequest(src=3, dst=2, term=2, prev_index=0, prev_term=0, entries=(), commit=0))
    rd = execute(node, st)
    assert rd.messages_after_persist == (
        AppendResponse(src=2, dst=3, term=3, success=False, index=0),
    )


def test_timeout_now_campaigns_at_once_without_pre_vote() -> None:
    node, st = make(2)
    step(node, Heartbeat(src=1, dst=2, term=1, commit=0))
    execute(node, st)
    step(node, TimeoutNow(src=1, dst=2, term=1))
    assert node.role is Role.CANDIDATE and node.term == 2
    rd = execute(node, st)
    reqs = [m for m in rd.messages_after_persist if isinstance(m, VoteRequest)]
    assert sorted(m.dst for m in reqs) == [1, 3] and all(m.transfer and not m.pre_vote for m in reqs)


def test_check_quorum_steps_down_a_leader_without_followers() -> None:
    node, st = make_leader((1, 2, 3))
    for _ in range(2 * CONFIG.election_ticks):
        node.tick()
        node.check_invariants()
        execute(node, st)
    assert node.role is Role.FOLLOWER and node.term == 1


def test_election_timeout_is_randomized_in_range() -> None:
    firsts = set()
    for seed in range(30):
        st = MemoryStorage(conf(1, 2, 3))
        node = RaftNode(node_id=1, storage=st, rng=random.Random(seed), config=CONFIG)
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        firsts.add(ticks)
    assert min(firsts) >= CONFIG.election_ticks and max(firsts) < 2 * CONFIG.election_ticks
    assert len(firsts) > 3


def test_leader_progress_and_has_committed_in_term() -> None:
    node, st = make_leader((1, 2, 3))
    assert not node.has_committed_in_term
    step(node, AppendResponse(src=3, dst=1, term=1, success=True, index=1))
    assert node.has_committed_in_term
    pr = node.progress(3)
    assert pr is not None and pr.match == 1 and pr.next == 2
    assert node.progress(9) is None


def test_commit_rule_is_overridable() -> None:
    """The commit rule lives in `_maybe_commit` alone: a subclass that counts replicas of a
    previous-term entry (the figure 8 mistake) does commit it."""

    class CountsOldEntries(RaftNode):
        def _maybe_commit(self) -> bool:
            progress = self._progress  # noqa: SLF001
            matches = sorted((progress[v].match for v in self.conf.voters), reverse=True)
            index = matches[len(matches) // 2]
            if index <= self.commit_index:
                return False
            self._log.commit_to(index)  # noqa: SLF001
            return True

    for cls, expected in ((RaftNode, 0), (CountsOldEntries, 2)):
        node, st = make_leader((1, 2, 3), terms=[1, 2], term=2, node_class=cls)
        step(node, AppendResponse(src=2, dst=1, term=3, success=True, index=2))
        assert node.commit_index == expected, cls


def test_restart_with_entries_ahead_of_the_hard_state_term() -> None:
    """A crash after a Ready's entries reached the disk and before its hard state did: the
    node resumes in the term of its last entry, with no vote."""
    st = MemoryStorage()
    st.append([Entry(index=1, term=2, kind=EntryKind.DATA, data=b"a")])
    st.set_hard_state(HardState(term=0, vote=0, commit=0, conf=conf(1)))
    node = RaftNode(node_id=1, storage=st, rng=random.Random(1), config=CONFIG)
    node.check_invariants()
    assert node.term == 2 and node.vote == 0
    node.campaign()
    rd = execute(node, st)
    assert rd.must_sync and rd.hard_state is not None and rd.hard_state.term == 3
    execute(node, st)
    assert node.role is Role.LEADER and node.term == 3
    assert st.term_at(2) == 3  # its EMPTY entry follows the term-2 entry: terms never decrease


def config_entry(index: int, change: ConfChange, result: ConfState) -> Entry:
    return Entry(index=index, term=1, kind=EntryKind.CONFIG, data=encode_conf_change(change, result))


def test_membership_adopted_from_log_start_never_goes_back() -> None:
    """After a LogStartRequest the follower holds the leader's membership as of the leader's
    commit index; the CONFIG entries that built it, arriving later, must not roll it back,
    not even across a restart."""
    node, st = make(4, (1, 2, 3))
    full = ConfState(voters=frozenset({1, 2, 3, 4}))
    step(node, LogStartRequest(src=1, dst=4, term=1, start_index=5, start_term=1, commit=10, conf=full, conf_index=9))
    rd = execute(node, st)
    assert rd.log_reset == (5, 1) and node.conf == full
    assert rd.hard_state is not None and rd.hard_state.conf_index == 9
    add = config_entry(7, ConfChange(kind=ConfChangeKind.ADD_LEARNER, node=4), ConfState(voters=frozenset({1, 2, 3}), learners=frozenset({4})))
    data = [Entry(index=6, term=1, kind=EntryKind.DATA, data=b"d"), add]
    step(node, AppendRequest(src=1, dst=4, term=1, prev_index=5, prev_term=1, entries=tuple(data), commit=10))
    execute(node, st)
    assert node.commit_index == 7 and node.conf == full
    # Restart before the rest arrives: the durable conf_index keeps the entries skipped.
    node = RaftNode(node_id=4, storage=st, rng=random.Random(4), config=CONFIG)
    promote = config_entry(9, ConfChange(kind=ConfChangeKind.PROMOTE, node=4), full)
    rest = [Entry(index=8, term=1, kind=EntryKind.DATA, data=b"d"), promote, Entry(index=10, term=1, kind=EntryKind.DATA, data=b"d")]
    step(node, AppendRequest(src=1, dst=4, term=1, prev_index=7, prev_term=1, entries=tuple(rest), commit=8))
    assert node.conf == full
    # A change after the adopted one applies as usual.
    removed = ConfState(voters=frozenset({2, 3, 4}))
    later = config_entry(11, ConfChange(kind=ConfChangeKind.REMOVE, node=1), removed)
    step(node, AppendRequest(src=1, dst=4, term=1, prev_index=10, prev_term=1, entries=(later,), commit=11))
    assert node.conf == removed
    assert execute(node, st).hard_state.conf_index == 11  # type: ignore[union-attr]


def test_forget_leader_ends_the_lease_and_shortens_the_election_wait() -> None:
    node, st = make(2)
    step(node, Heartbeat(src=1, dst=2, term=1, commit=0))
    execute(node, st)
    assert node.leader_id == 1
    node.forget_leader()
    node.check_invariants()
    assert node.leader_id == 0 and node.role is Role.FOLLOWER
    # No longer in the dead leader's lease: a pre-vote from another follower is answered.
    step(node, VoteRequest(src=3, dst=2, term=2, last_index=0, last_term=0, pre_vote=True))
    rd = execute(node, st)
    assert rd.messages_after_persist == (
        VoteResponse(src=2, dst=3, term=2, granted=True, pre_vote=True),)
    # The election starts within the randomized part of the timeout, not a whole timeout.
    ticks = 0
    while node.role is Role.FOLLOWER:
        node.tick()
        node.check_invariants()
        ticks += 1
        assert ticks <= CONFIG.election_ticks, "forget_leader did not shorten the wait"
    assert node.role is Role.PRE_CANDIDATE


def test_forget_leader_is_ignored_by_a_leader() -> None:
    node, st = make_leader()
    node.forget_leader()
    assert node.role is Role.LEADER and node.leader_id == 1
