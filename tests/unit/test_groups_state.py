"""The group state machine (broker.groups.state), driven as the coordinator drives it: requests
and clock ticks in, answers and writes out; invariants checked after every step."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.groups.state import (
    INITIAL_REBALANCE_DELAY_MS,
    Effects,
    Group,
    GroupState,
    JoinRequest,
    JoinResult,
    SyncResult,
)
from broker.wire.errors import ErrorCode as E

SESSION_MS = 10_000
REBALANCE_MS = 30_000
RANGE = (("range", b"sub-range"), ("roundrobin", b"sub-rr"))


@dataclass
class Driver:
    """One group, a clock, and every answer it gave, by waiter."""

    group: Group = field(default_factory=lambda: Group("g"))
    now_ms: int = 1_000_000
    answers: dict[int, JoinResult | SyncResult] = field(default_factory=dict)
    persisted: int = 0
    waiters: itertools.count = field(default_factory=lambda: itertools.count(1))
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def apply(self, fx: Effects) -> Effects:
        for reply in fx.replies + fx.after_persist:
            assert reply.waiter not in self.answers, f"waiter {reply.waiter} answered twice"
            self.answers[reply.waiter] = reply
        self.persisted += fx.persist
        self.group.check_invariants()
        return fx

    def join(self, member_id: str = "", *, v4: bool = True, protocols=RANGE,
             session_ms: int = SESSION_MS, protocol_type: str = "consumer") -> int:
        waiter = next(self.waiters)
        self.apply(self.group.join(JoinRequest(
            waiter=waiter, member_id=member_id, new_member_id=f"m{next(self.ids)}",
            group_instance_id=None, client_id="c", client_host="h",
            session_timeout_ms=session_ms, rebalance_timeout_ms=REBALANCE_MS,
            protocol_type=protocol_type, protocols=tuple(protocols),
            require_known_member_id=v4), self.now_ms))
        return waiter

    def sync(self, member_id: str, generation: int, assignments=None) -> int:
        waiter = next(self.waiters)
        self.apply(self.group.sync(waiter=waiter, member_id=member_id, generation_id=generation,
                                   assignments=assignments or {}, now_ms=self.now_ms))
        return waiter

    def tick(self, advance_ms: int) -> Effects:
        self.now_ms += advance_ms
        return self.apply(self.group.tick(self.now_ms))

    def heartbeat(self, member_id: str, generation: int) -> E:
        code = self.group.heartbeat(member_id=member_id, generation_id=generation,
                                    now_ms=self.now_ms)
        self.group.check_invariants()
        return code

    def leave(self, *member_ids: str) -> list[tuple[str, E]]:
        results, fx = self.group.leave(member_ids, self.now_ms)
        self.apply(fx)
        return results

    def new_member(self) -> str:
        """A v4 member: MEMBER_ID_REQUIRED, then the join with its id (answer pending)."""
        w = self.join()
        answer = self.answers[w]
        assert isinstance(answer, JoinResult)
        assert answer.error_code == E.MEMBER_ID_REQUIRED
        return answer.member_id

    def stable(self, n: int) -> list[str]:
        """A Stable group of n members (first generation)."""
        members = [self.new_member() for _ in range(n)]
        waits = [self.join(m) for m in members]
        self.tick(INITIAL_REBALANCE_DELAY_MS)
        gen = self.answers[waits[0]].generation_id
        leader = self.answers[waits[0]].leader
        self.sync(leader, gen, {m: m.encode() for m in members})
        assert self.group.state is GroupState.STABLE
        return members


def test_v4_member_gets_an_id_then_leads_the_first_generation() -> None:
    d = Driver()
    w = d.join()
    required = d.answers[w]
    assert required.error_code == E.MEMBER_ID_REQUIRED and required.member_id == "m1"
    assert d.group.state is GroupState.EMPTY and d.group.pending == {"m1": d.now_ms + SESSION_MS}

    w = d.join("m1")
    assert w not in d.answers, "an empty group's first join phase waits the initial delay"
    d.tick(INITIAL_REBALANCE_DELAY_MS)
    joined = d.answers[w]
    assert (joined.error_code, joined.generation_id, joined.leader, joined.member_id,
            joined.protocol_name) == (E.NONE, 1, "m1", "m1", "range")
    assert joined.members == (("m1", None, b"sub-range"),)
    assert d.group.state is GroupState.COMPLETING_REBALANCE

    persisted = d.persisted
    w = d.sync("m1", 1, {"m1": b"assignment-1"})
    assert d.persisted == persisted + 1, "the leader's assignment is written"
    assert d.answers[w] == SyncResult(waiter=w, error_code=E.NONE, assignment=b"assignment-1")
    assert d.group.state is GroupState.STABLE
    assert d.heartbeat("m1", 1) == E.NONE


def test_v3_join_adds_the_member_at_once() -> None:
    d = Driver()
    w = d.join(v4=False)
    d.tick(INITIAL_REBALANCE_DELAY_MS)
    assert d.answers[w].error_code == E.NONE and d.answers[w].member_id == "m1"


def test_new_member_rebalances_a_stable_group_and_followers_wait_for_the_leader() -> None:
    d = Driver()
    (m1,) = d.stable(1)
    m2 = d.new_member()
    w2 = d.join(m2)
    assert d.group.state is GroupState.PREPARING_REBALANCE
    assert d.heartbeat(m1, 1) == E.REBALANCE_IN_PROGRESS
    assert w2 not in d.answers, "waits for the known member to rejoin"
    w1 = d.join(m1)
    leader, follower = d.answers[w1], d.answers[w2]
    assert leader.generation_id == follower.generation_id == 2
    assert leader.leader == m1 and {m for m, _, _ in leader.members} == {m1, m2}
    assert follower.members == ()

    wf = d.sync(m2, 2)
    assert wf not in d.answers, "a follower waits for the leader's assignment"
    wl = d.sync(m1, 2, {m1: b"a1", m2: b"a2"})
    assert d.answers[wf].assignment == b"a2" and d.answers[wl].assignment == b"a1"
    assert d.heartbeat(m2, 2) == E.NONE
    assert d.heartbeat(m2, 1) == E.ILLEGAL_GENERATION


def test_silent_member_expires_after_its_session_and_the_rest_rebalance() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    d.tick(SESSION_MS // 2)
    assert d.heartbeat(m1, 1) == E.NONE
    d.tick(SESSION_MS // 2)  # m2 silent for a whole session
    assert set(d.group.members) == {m1}
    assert d.group.state is GroupState.PREPARING_REBALANCE
    assert d.heartbeat(m2, 1) == E.UNKNOWN_MEMBER_ID
    w = d.join(m1)
    assert d.answers[w].generation_id == 2 and d.answers[w].members == ((m1, None, b"sub-range"),)


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    m3 = d.new_member()
    w3 = d.join(m3)
    w1 = d.join(m1)
    half = SESSION_MS // 2
    for _ in range(REBALANCE_MS // half - 1):
        d.tick(half)
        assert d.heartbeat(m2, 1) == E.REBALANCE_IN_PROGRESS  # alive, but never rejoins
    # m1 and m3 sent nothing for longer than a session: waiting on a join, they stay.
    assert set(d.group.members) == {m1, m2, m3} and w1 not in d.answers
    d.tick(half)
    assert d.answers[w1].error_code == d.answers[w3].error_code == E.NONE
    assert set(d.group.members) == {m1, m3}
    assert d.heartbeat(m2, 1) == E.UNKNOWN_MEMBER_ID


def test_clean_leave_rebalances_at_once_and_the_last_leave_empties_the_group() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    assert d.leave(m2, "nobody") == [(m2, E.NONE), ("nobody", E.UNKNOWN_MEMBER_ID)]
    assert d.group.state is GroupState.PREPARING_REBALANCE
    assert d.heartbeat(m1, 1) == E.REBALANCE_IN_PROGRESS
    persisted = d.persisted
    d.leave(m1)
    assert d.group.state is GroupState.EMPTY and d.group.generation == 2
    assert d.persisted == persisted + 1, "an emptied group is written"


def test_leader_leaving_mid_sync_fails_the_waiting_followers() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    m3 = d.new_member()
    w3 = d.join(m3)
    d.join(m1)
    d.join(m2)
    assert d.answers[w3].leader == m1 and d.group.state is GroupState.COMPLETING_REBALANCE
    ws = d.sync(m3, 2)
    d.leave(m1)
    assert d.answers[ws].error_code == E.REBALANCE_IN_PROGRESS
    assert d.group.state is GroupState.PREPARING_REBALANCE and d.group.leader in (m2, m3)


def test_commit_rules() -> None:
    d = Driver()
    assert d.group.validate_commit(member_id="", generation_id=-1, now_ms=d.now_ms) == E.NONE
    m1, m2 = d.stable(2)
    check = d.group.validate_commit
    assert check(member_id=m1, generation_id=1, now_ms=d.now_ms) == E.NONE
    assert check(member_id="", generation_id=-1, now_ms=d.now_ms) == E.UNKNOWN_MEMBER_ID
    assert check(member_id="ghost", generation_id=1, now_ms=d.now_ms) == E.UNKNOWN_MEMBER_ID
    assert check(member_id=m1, generation_id=0, now_ms=d.now_ms) == E.ILLEGAL_GENERATION
    m3 = d.new_member()
    d.join(m3)
    # PreparingRebalance: the current generation may still commit (before it rejoins)
    assert check(member_id=m1, generation_id=1, now_ms=d.now_ms) == E.NONE
    d.join(m1)
    d.join(m2)
    assert d.group.state is GroupState.COMPLETING_REBALANCE
    assert check(member_id=m1, generation_id=2, now_ms=d.now_ms) == E.REBALANCE_IN_PROGRESS


def test_protocols_must_be_shared() -> None:
    d = Driver()
    d.stable(1)
    w = d.join("", protocols=(("sticky", b""),), v4=False)
    assert d.answers[w].error_code == E.INCONSISTENT_GROUP_PROTOCOL
    w = d.join("", protocol_type="connect", v4=False)
    assert d.answers[w].error_code == E.INCONSISTENT_GROUP_PROTOCOL
    w = d.join("ghost")
    assert d.answers[w].error_code == E.UNKNOWN_MEMBER_ID
    w = d.join("", session_ms=10)
    assert d.answers[w].error_code == E.INVALID_SESSION_TIMEOUT


def test_most_preferred_common_protocol_wins() -> None:
    d = Driver()
    a, b, c = d.new_member(), d.new_member(), d.new_member()
    rr_first = (("roundrobin", b"x"), ("range", b"y"))
    waits = [d.join(a, protocols=rr_first), d.join(b, protocols=rr_first), d.join(c)]
    d.tick(INITIAL_REBALANCE_DELAY_MS)
    assert {d.answers[w].protocol_name for w in waits} == {"roundrobin"}


def test_joining_again_in_a_stable_group_returns_the_current_generation() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    w = d.join(m2)  # a follower that missed its answer, same protocols
    assert d.answers[w].generation_id == 1 and d.group.state is GroupState.STABLE
    d.join(m1)  # the leader rejoining starts a rebalance
    assert d.group.state is GroupState.PREPARING_REBALANCE


def test_restore_keeps_members_and_generation() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    restored = Group.restore(d.group.snapshot(), d.now_ms + 5)
    restored.check_invariants()
    assert restored.state is GroupState.STABLE and restored.generation == 1
    assert restored.leader == d.group.leader
    assert restored.heartbeat(member_id=m2, generation_id=1, now_ms=d.now_ms + 6) == E.NONE
    assert restored.members[m2].assignment == m2.encode()
    fx = restored.tick(d.now_ms + 5 + SESSION_MS)
    assert set(restored.members) == {m2}, "members that never reach the new coordinator expire"
    assert not fx.replies


def test_unload_answers_every_waiter() -> None:
    d = Driver()
    m1, m2 = d.stable(2)
    m3 = d.new_member()
    w3 = d.join(m3)
    fx = d.group.unload()
    d.apply(fx)
    assert d.answers[w3].error_code == E.NOT_COORDINATOR
    assert d.group.state is GroupState.DEAD


OPS = st.lists(st.tuples(st.sampled_from(["new", "join", "sync", "hb", "leave", "tick"]),
                         st.integers(0, 5), st.integers(0, 12_000)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_random_operations_keep_the_invariants_and_answer_every_waiter_once(ops) -> None:
    d = Driver()
    known: list[str] = []
    for op, pick, amount in ops:
        member = known[pick % len(known)] if known else ""
        if op == "new":
            known.append(d.new_member())
        elif op == "join":
            d.join(member)
        elif op == "sync" and member:
            d.sync(member, d.group.generation, {m: b"a" for m in d.group.members})
        elif op == "hb" and member:
            d.heartbeat(member, d.group.generation)
        elif op == "leave" and member:
            d.leave(member)
        elif op == "tick":
            d.tick(amount)
    # Nobody heartbeats any more: a long enough wait ends every join phase and session.
    for _ in range(6):
        d.tick(REBALANCE_MS + SESSION_MS)
    assert d.group.state is GroupState.EMPTY and not d.group.members
    waiting = [w for w in range(1, next(d.waiters)) if w not in d.answers]
    assert not waiting, f"waiters never answered: {waiting}"
