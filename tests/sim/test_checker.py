"""The checker fires on hand-made histories that break each property, and stays quiet on
histories that keep them. A history is a list of observations: (Checker method, args...)."""

from __future__ import annotations

from typing import Any

import pytest

from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from tests.sim import checker as ck
from tests.sim.checker import COMPACTED, Checker, LogView, Violation

CONF = ConfState(voters=frozenset({1, 2, 3}))
G = 0
History = list[tuple[Any, ...]]


def e(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(index=index, term=term, kind=EntryKind.DATA,
                 data=b"v%d.%d" % (index, term) if data is None else data)


def hs(term: int, vote: int = 0, commit: int = 0) -> HardState:
    return HardState(term=term, vote=vote, commit=commit, conf=CONF)


def view(node: int, entries: list[Entry], applied: int, start_index: int = 0) -> LogView:
    return LogView(node=node, start_index=start_index, entries=entries, applied=applied)


def replay(history: History) -> Checker:
    c = Checker()
    for name, *args in history:
        getattr(c, name)(*args)
    return c


def fires(invariant: str, history: History) -> None:
    with pytest.raises(Violation) as info:
        replay(history)
    assert info.value.invariant == invariant, info.value


def test_election_safety() -> None:
    replay([
        ("leader", G, 1, 5),
        ("leader", G, 1, 5),  # seen again: fine
        ("leader", G, 2, 6),
        ("leader", G + 1, 3, 5),  # another group has its own terms
    ])
    fires(ck.ELECTION_SAFETY, [("leader", G, 1, 5), ("leader", G, 2, 5)])


def test_no_double_vote_in_a_term() -> None:
    replay([
        ("vote_granted", G, 1, 3, 2),
        ("vote_granted", G, 1, 3, 2),  # a duplicate response
        ("vote_granted", G, 1, 4, 3),
    ])
    fires(ck.DOUBLE_VOTE, [("vote_granted", G, 1, 3, 2), ("vote_granted", G, 1, 3, 3)])
    # across a restart: the durable vote changed within the term
    fires(ck.DOUBLE_VOTE, [
        ("durable_hard_state", G, 1, hs(3, vote=2)),
        ("restarted", G, 1, hs(3, vote=3), 1),
    ])


def test_durable_term_and_commit_never_regress() -> None:
    replay([
        ("durable_hard_state", G, 1, hs(2, vote=0)),
        ("durable_hard_state", G, 1, hs(2, vote=3, commit=4)),  # one vote in a term is fine
        ("restarted", G, 1, hs(3, commit=4), 1),
    ])
    fires(ck.DURABLE_STATE, [
        ("durable_hard_state", G, 1, hs(3)),
        ("restarted", G, 1, hs(2), 1),
    ])
    fires(ck.DURABLE_STATE, [
        ("durable_hard_state", G, 1, hs(3, commit=5)),
        ("durable_hard_state", G, 1, hs(3, commit=4)),
    ])


def test_term_and_commit_monotonic_while_up() -> None:
    replay([
        ("observe", G, 1, 2, 3),
        ("observe", G, 1, 2, 3),
        ("restarted", G, 1, hs(1, commit=1), 1),
        ("observe", G, 1, 1, 1),  # after a restart, back to what was durable
    ])
    fires(ck.TERM_MONOTONIC, [("observe", G, 1, 3, 0), ("observe", G, 1, 2, 0)])
    fires(ck.COMMIT_MONOTONIC, [("observe", G, 1, 3, 5), ("observe", G, 1, 3, 4)])


def test_log_matching_same_index_and_term_same_entry() -> None:
    replay([
        ("written", G, 1, 0, [e(1, 1), e(2, 1)]),
        ("written", G, 2, 0, [e(1, 1), e(2, 1)]),
        ("written", G, 2, 1, [e(2, 2)]),  # overwriting with a newer term is fine
    ])
    fires(ck.LOG_MATCHING, [
        ("written", G, 1, 0, [e(1, 1), e(2, 1, b"a")]),
        ("written", G, 2, 0, [e(1, 1), e(2, 1, b"b")]),
    ])


def test_log_matching_same_index_and_term_same_predecessor() -> None:
    # both hold (2, term 3) but over different entries at index 1: their prefixes differ
    fires(ck.LOG_MATCHING, [
        ("written", G, 1, 0, [e(1, 1), e(2, 3, b"x")]),
        ("written", G, 2, 0, [e(1, 2), e(2, 3, b"x")]),
    ])
    fires(ck.LOG_MATCHING, [("written", G, 1, 0, [e(1, 2), e(2, 1)])])  # term decreases


def test_log_matching_whole_logs() -> None:
    a = view(1, [e(1, 1), e(2, 2), e(3, 3)], applied=0)
    b = view(2, [e(1, 1), e(2, 1), e(3, 3)], applied=0)
    fires(ck.LOG_MATCHING, [("full_check", G, [a, b])])
    replay([("full_check", G, [a, view(3, [e(2, 2), e(3, 4)], applied=0, start_index=1)])])


def test_state_machine_safety() -> None:
    replay([("applied", G, 1, e(1, 1)), ("applied", G, 2, e(1, 1))])
    fires(ck.STATE_MACHINE_SAFETY, [("applied", G, 1, e(1, 1)), ("applied", G, 2, e(1, 2))])
    # a log whose applied prefix disagrees with what was applied elsewhere
    fires(ck.STATE_MACHINE_SAFETY, [
        ("applied", G, 1, e(1, 1)),
        ("full_check", G, [view(2, [e(1, 2)], applied=1)]),
    ])
    # a log shorter than what it applied
    fires(ck.STATE_MACHINE_SAFETY, [("full_check", G, [view(2, [], applied=1)])])


def test_apply_in_order_without_gaps() -> None:
    replay([
        ("applied", G, 1, e(1, 1)),
        ("restarted", G, 1, hs(1, commit=1), 1),
        ("applied", G, 1, e(1, 1)),  # replay after a restart
        ("log_reset", G, 1, 5),
        ("applied", G, 1, e(6, 1)),  # the log restarted after 5
    ])
    fires(ck.APPLY_ORDER, [("applied", G, 1, e(1, 1)), ("applied", G, 1, e(3, 1))])


def test_leader_completeness() -> None:
    c = replay([("leader_commit", G, 2, 5, 2), ("leader_commit", G, 3, 4, 2)])
    assert c.required_of_leader(G, 4) == (5, 2)  # lower marks do not replace the highest
    assert c.required_of_leader(G, 2) is None  # nothing was committed before term 2
    c.leader_log(G, 1, 4, lambda i: 2)
    c.leader_log(G, 1, 4, lambda i: COMPACTED)  # deleted by retention: committed
    for have in (1, 3, None):  # wrong term, or the log is too short
        fires(ck.LEADER_COMPLETENESS, [
            ("leader_commit", G, 2, 5, 2),
            ("leader_log", G, 1, 4, lambda i, have=have: have),
        ])


def test_committed_entry_stays_out_of_reach_of_logs_lacking_it() -> None:
    # (5, term 3) committed on nodes 1 and 2; node 3 lacks it. Safe while both holders' logs
    # are more up to date than node 3's.
    replay([("commit_safe", G, 5, 3, [(1, True, 3, 6, False), (2, True, 3, 5, False),
                                      (3, False, 2, 9, False)])])
    # figure 8: the entry is of an old term (1); node 2 holds it as its last entry and node 3
    # has a later term: nodes 2 and 3 elect node 3, which overwrites index 5
    fires(ck.COMMITTED_UNSAFE, [
        ("commit_safe", G, 5, 1, [(1, True, 4, 6, False), (2, True, 1, 5, False),
                                  (3, False, 3, 5, False)]),
    ])
    # a repairing node (damage cut the entry it acknowledged) votes by its repair mark, here
    # (term 3, index 5): it refuses node 3, which cannot gather a quorum, so the commit is
    # safe; were node 2 voting by its cut log (last index 2), it would not be
    replay([("commit_safe", G, 5, 3, [(1, True, 3, 5, False), (2, False, 3, 5, True),
                                      (3, False, 3, 4, False)])])
    fires(ck.COMMITTED_UNSAFE, [
        ("commit_safe", G, 5, 3, [(1, True, 3, 5, False), (2, False, 3, 2, True),
                                  (3, False, 3, 4, False)]),
    ])
    # a repairing node lacking the entry is never a candidate (it cannot campaign)
    replay([("commit_safe", G, 5, 3, [(1, True, 3, 5, False), (2, True, 3, 5, False),
                                      (3, False, 3, 2, True)])])


def test_acked_values_stay() -> None:
    replay([("applied", G, 1, e(1, 1, b"x")), ("acked", G, b"x", 1)])
    fires(ck.ACKED_LOST, [("applied", G, 1, e(1, 1, b"x")), ("acked", G, b"y", 1)])
    fires(ck.ACKED_LOST, [("acked", G, b"x", 1)])  # acked but never applied there
    # a log whose applied index covers the acked index holds another value there
    fires(ck.ACKED_LOST, [
        ("applied", G, 1, e(1, 1, b"x")),
        ("acked", G, b"x", 1),
        ("full_check", G, [view(2, [e(1, 1, b"z")], applied=1)]),
    ])
    # a log whose commit index covers the acked index holds another term there
    acked_at_1: History = [("applied", G, 1, e(1, 1, b"x")), ("acked", G, b"x", 1)]
    fires(ck.ACKED_LOST, acked_at_1 + [("commit_covers", G, 2, 1, lambda i: 2)])
    replay(acked_at_1 + [
        ("commit_covers", G, 2, 1, lambda i: 1),
        ("commit_covers", G, 2, 1, lambda i: COMPACTED),  # deleted by retention
        ("commit_covers", G, 2, 0, lambda i: None),  # its commit does not cover it yet
    ])
    # at the end every node must have applied it
    history: History = [("applied", G, 1, e(1, 1, b"x")), ("acked", G, b"x", 1)]
    fires(ck.ACKED_LOST, history + [("final_check", G, [view(3, [e(1, 1, b"x")], applied=0)])])
    replay(history + [("final_check", G, [view(3, [e(1, 1, b"x")], applied=1)])])
