"""Scenario tests: several RaftNodes over a tiny deterministic in-test network.

`Cluster` delivers messages explicitly (FIFO, with partitions, crashed nodes and an optional
message filter) and executes every Ready in the contract's order (persist into MemoryStorage,
send, apply, advance). After every step, tick, proposal and advance it checks each node's own
invariants and two cluster-wide ones: at most one leader per term, and every index applied
with the same entry everywhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace

import pytest

from broker.raft.core import RaftConfig, RaftNode
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
    LogStartRequest,
    Message,
    ProposeResult,
    Ready,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from broker.raft.storage import MemoryStorage

ACCEPTED, DROPPED = ProposeResult.ACCEPTED, ProposeResult.DROPPED
CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1)


def conf_of(voters: Iterable[int], learners: Iterable[int] = ()) -> ConfState:
    return ConfState(voters=frozenset(voters), learners=frozenset(learners))


def storage_with(
    terms: list[int], *, term: int, conf: ConfState, commit: int = 0, vote: int = 0
) -> MemoryStorage:
    """A storage holding one entry per listed term (indexes 1..n)."""
    st = MemoryStorage()
    st.append([Entry(index=i + 1, term=t, kind=EntryKind.DATA, data=b"x") for i, t in enumerate(terms)])
    st.set_hard_state(HardState(term=term, vote=vote, commit=commit, conf=conf))
    return st


def log_terms(st: MemoryStorage) -> list[int]:
    return [st.term_at(i) for i in range(st.first_index(), st.last_index() + 1)]


class Cluster:
    def __init__(
        self,
        ids: Iterable[int],
        *,
        conf: ConfState | None = None,
        config: RaftConfig = CONFIG,
        seed: int = 1,
        storages: dict[int, MemoryStorage] | None = None,
    ) -> None:
        ids = list(ids)
        self.config = config
        self.seed = seed
        conf = conf or conf_of(ids)
        self.storages = storages or {n: MemoryStorage(conf) for n in ids}
        self.nodes: dict[int, RaftNode] = {}
        self.applied: dict[int, list[Entry]] = {n: [] for n in ids}
        self.queue: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.filter: Callable[[Message], Message | None] | None = None
        self.sent: list[Message] = []  # every message that left a node, for inspection
        self.leader_of_term: dict[int, int] = {}
        self.entry_at: dict[int, Entry] = {}  # index -> the entry applied there (everywhere)
        for n in ids:
            self.start(n)

    # ---- nodes -----------------------------------------------------------------------------

    def start(self, n: int, applied: int = 0, node_class: type[RaftNode] = RaftNode) -> RaftNode:
        """(Re)start node n from its storage."""
        node = node_class(
            node_id=n,
            storage=self.storages[n],
            rng=random.Random(self.seed * 1000 + n),
            config=self.config,
            applied=applied,
        )
        self.nodes[n] = node
        # The state machine restarts from `applied`; replayed entries must be the same ones.
        self.applied[n] = [e for e in self.applied.get(n, []) if e.index <= node.applied_index]
        self.down.discard(n)
        self.queue = [m for m in self.queue if m.dst != n]  # lost with the old process
        self.check()
        return node

    def add_node(self, n: int, conf: ConfState) -> RaftNode:
        self.storages[n] = MemoryStorage(conf)
        self.applied[n] = []
        return self.start(n)

    def crash(self, n: int) -> None:
        self.down.add(n)
        self.queue = [m for m in self.queue if m.dst != n]

    def alive(self) -> list[int]:
        return [n for n in sorted(self.nodes) if n not in self.down]

    # ---- the network -------------------------------------------------------------------------

    def isolate(self, n: int) -> None:
        for other in self.nodes:
            if other != n:
                self.blocked |= {(n, other), (other, n)}

    def cut(self, a: int, b: int) -> None:
        self.blocked |= {(a, b), (b, a)}

    def heal(self) -> None:
        self.blocked.clear()

    def send(self, msg: Message) -> None:
        self.sent.append(msg)
        if msg.src in self.down or msg.dst in self.down or (msg.src, msg.dst) in self.blocked:
            return
        if self.filter is not None:
            out = self.filter(msg)
            if out is None:
                return
            msg = out
        self.queue.append(msg)

    def deliver(self, pred: Callable[[Message], bool] = lambda m: True) -> int:
        """Deliver the queued messages matching `pred` (others stay queued); returns how many."""
        batch = [m for m in self.queue if pred(m)]
        self.queue = [m for m in self.queue if not pred(m)]
        for msg in batch:
            if msg.dst in self.down or (msg.src, msg.dst) in self.blocked:
                continue
            self.nodes[msg.dst].step(msg)
            self.check()
        return len(batch)

    # ---- driving -------------------------------------------------------------------------------

    def execute(self, n: int, rd: Ready) -> None:
        """What a driver does with a Ready, in the contract's order."""
        st = self.storages[n]
        if rd.log_reset is not None:
            st.reset(*rd.log_reset)
            self.applied[n].append(Entry(index=rd.log_reset[0], term=0, kind=EntryKind.EMPTY))
        if rd.entries:
            st.append(rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        if rd.must_sync:
            st.sync()
        for msg in rd.messages + rd.messages_after_persist:
            self.send(msg)
        for entry in rd.committed:
            self.apply(n, entry)
        self.nodes[n].advance(rd)
        self.check()

    def apply(self, n: int, entry: Entry) -> None:
        applied = self.applied[n]
        if applied:
            assert entry.index == applied[-1].index + 1, (n, entry.index, applied[-1].index)
        seen = self.entry_at.setdefault(entry.index, entry)
        assert seen == entry, f"node {n} applied {entry} at {entry.index}, others {seen}"
        applied.append(entry)

    def process(self, n: int) -> None:
        node = self.nodes[n]
        while node.has_ready():
            self.execute(n, node.ready())

    def settle(self, rounds_max: int = 5000) -> None:
        """Process Readys and deliver messages until nothing moves."""
        for _ in range(rounds_max):
            for n in self.alive():
                self.process(n)
            if not self.queue:
                return
            self.deliver()
        raise AssertionError("the cluster did not settle")

    def tick(self, times: int = 1, nodes: Iterable[int] | None = None) -> None:
        for _ in range(times):
            for n in list(nodes) if nodes is not None else self.alive():
                self.nodes[n].tick()
                self.check()
            self.settle()

    def propose(self, n: int, data: bytes) -> ProposeResult:
        result = self.nodes[n].propose(data)
        self.check()
        return result

    def conf_change(self, n: int, kind: ConfChangeKind, node: int) -> ProposeResult:
        result = self.nodes[n].propose_conf_change(ConfChange(kind=kind, node=node))
        self.check()
        return result

    def elect(self, n: int) -> None:
        self.nodes[n].campaign()
        self.check()
        self.settle()
        assert self.nodes[n].role is Role.LEADER, self.nodes[n].soft_state

    def tick_until_leader(self, ticks_max: int = 200) -> int:
        for _ in range(ticks_max):
            self.tick()
            leaders = [n for n in self.alive() if self.nodes[n].role is Role.LEADER]
            if leaders and all(
                self.nodes[n].leader_id == leaders[0] for n in self.alive() if self.promotable(n)
            ):
                return leaders[0]
        raise AssertionError("no leader elected")

    def promotable(self, n: int) -> bool:
        return n in self.nodes[n].conf.voters

    # ---- checks ----------------------------------------------------------------------------------

    def check(self) -> None:
        for n, node in self.nodes.items():
            node.check_invariants()
            if node.role is Role.LEADER:
                first = self.leader_of_term.setdefault(node.term, n)
                assert first == n, f"two leaders in term {node.term}: {first} and {n}"

    def leader(self) -> int:
        leaders = [n for n in self.alive() if self.nodes[n].role is Role.LEADER]
        assert len(leaders) == 1, leaders
        return leaders[0]

    def data_applied(self, n: int) -> list[bytes]:
        return [e.data for e in self.applied[n] if e.kind is EntryKind.DATA]

    def assert_logs_equal(self, nodes: Iterable[int]) -> None:
        logs = {n: self.log_of(n) for n in nodes}
        first = next(iter(logs.values()))
        for n, log in logs.items():
            assert log == first, (n, log, first)

    def assert_logs_agree(self, nodes: Iterable[int]) -> None:
        """Same last index, same entries where retention left both logs something."""
        logs = {n: {i: (t, d) for i, t, d in self.log_of(n)} for n in nodes}
        lasts = {n: self.storages[n].last_index() for n in nodes}
        assert len(set(lasts.values())) == 1, lasts
        for a in logs:
            for b in logs:
                common = logs[a].keys() & logs[b].keys()
                assert all(logs[a][i] == logs[b][i] for i in common), (a, b)

    def log_of(self, n: int) -> list[tuple[int, int, bytes]]:
        st = self.storages[n]
        return [(e.index, e.term, e.data) for e in st.entries(st.first_index(), st.last_index() + 1, 1 << 40)]


def new_cluster(n: int, **kw: object) -> Cluster:
    c = Cluster(range(1, n + 1), **kw)  # type: ignore[arg-type]
    return c


# ---- elections ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 5])
def test_election_by_timeouts(size: int) -> None:
    c = new_cluster(size)
    leader = c.tick_until_leader()
    term = c.nodes[leader].term
    for n in c.alive():
        assert c.nodes[n].term == term
        assert c.nodes[n].leader_id == leader
    # The new leader commits its EMPTY entry, which makes its commit index final.
    assert c.nodes[leader].has_committed_in_term
    # A quiet, healthy cluster keeps its leader (heartbeats reset the followers' timers).
    c.tick(50)
    assert c.leader() == leader and c.nodes[leader].term == term


def test_single_node_group_elects_itself_after_persisting_its_vote() -> None:
    c = new_cluster(1)
    node = c.nodes[1]
    node.campaign()
    rd = node.ready()
    assert node.role is Role.CANDIDATE  # not leader before its term and vote are durable
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.must_sync
    c.execute(1, rd)
    assert node.role is Role.LEADER
    c.settle()
    assert c.propose(1, b"a") is ACCEPTED
    c.settle()
    assert c.data_applied(1) == [b"a"]


def test_stale_log_cannot_win() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.isolate(3)
    for i in range(3):
        assert c.propose(1, b"v%d" % i) is ACCEPTED
    c.settle()
    assert c.nodes[1].commit_index == c.nodes[2].commit_index == 4
    c.crash(1)
    c.heal()
    # Node 3 lacks committed entries: node 2 refuses it (pre-vote and vote alike).
    for _ in range(5):
        c.nodes[3].campaign()
        c.settle()
        assert c.nodes[3].role is not Role.LEADER
    c.nodes[2].campaign()
    c.settle()
    assert c.leader() == 2
    assert c.propose(2, b"after") is ACCEPTED
    c.settle()
    assert c.data_applied(3) == [b"v0", b"v1", b"v2", b"after"]


# ---- replication --------------------------------------------------------------------------------


def test_replication_and_commit() -> None:
    c = new_cluster(3)
    c.elect(1)
    values = [b"value-%d" % i for i in range(20)]
    for v in values:
        assert c.propose(1, v) is ACCEPTED
    c.settle()
    for n in (1, 2, 3):
        assert c.data_applied(n) == values
        assert c.nodes[n].commit_index == 21  # EMPTY entry + 20
    c.assert_logs_equal([1, 2, 3])


def test_burst_of_proposals_leaves_as_one_append_per_follower() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.sent.clear()
    for i in range(10):
        c.propose(1, b"%d" % i)
    rd = c.nodes[1].ready()
    appends = [m for m in rd.messages if isinstance(m, AppendRequest)]
    assert sorted(m.dst for m in appends) == [2, 3]
    assert all(len(m.entries) == 10 for m in appends)
    c.execute(1, rd)
    c.settle()


def test_figure_7_followers_with_missing_and_extra_entries_converge() -> None:
    """Raft paper figure 7: the term-8 leader's log and six follower logs (a-f)."""
    logs = {
        1: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],  # the leader
        2: [1, 1, 1, 4, 4, 5, 5, 6, 6],  # a: missing one
        3: [1, 1, 1, 4],  # b: missing many
        4: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # c: one extra uncommitted
        5: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # d: extra entries of a later term
        6: [1, 1, 1, 4, 4, 4, 4],  # e: missing and extra of term 4
        7: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # f: a long divergent tail
    }
    conf = conf_of(logs)
    storages = {n: storage_with(t, term=7, conf=conf, commit=3) for n, t in logs.items()}
    c = Cluster(logs, storages=storages)
    c.elect(1)  # a, b, e, f grant; c and d have more up-to-date logs and refuse
    assert c.nodes[1].term == 8
    assert c.propose(1, b"new") is ACCEPTED
    c.settle()
    c.assert_logs_equal(logs)
    assert log_terms(c.storages[7]) == [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 8, 8]
    # Rejection hints: follower f needs one rejected probe, not one per divergent entry.
    rejects = [
        m for m in c.sent if isinstance(m, AppendResponse) and m.src == 7 and not m.success
    ]
    assert len(rejects) == 1, rejects
    for n in logs:
        assert c.nodes[n].commit_index == 12


def test_figure_8_leader_does_not_commit_previous_term_entry_by_counting() -> None:
    """Raft paper figure 8 (c)-(d): S1, leader in term 4, gets its term-2 entry onto a majority;
    that must not commit it, as S5 (term-3 entry at the same index) can still win."""
    conf = conf_of(range(1, 6))
    storages = {
        1: storage_with([1, 2], term=3, conf=conf, commit=1),
        2: storage_with([1, 2], term=3, conf=conf, commit=1),
        3: storage_with([1], term=3, conf=conf, commit=1, vote=5),
        4: storage_with([1], term=3, conf=conf, commit=1, vote=5),
        5: storage_with([1, 3], term=3, conf=conf, commit=1, vote=5),
    }
    c = Cluster(range(1, 6), storages=storages, config=replace(CONFIG, check_quorum=False))
    c.crash(5)
    # S1 "crashes" before anything of term 4 leaves it: strip those entries in flight.
    c.filter = lambda m: (
        replace(m, entries=tuple(e for e in m.entries if e.term < 4))
        if isinstance(m, AppendRequest)
        else m
    )
    c.elect(1)
    assert c.nodes[1].term == 4
    c.settle()
    holders = [n for n in (1, 2, 3, 4) if c.storages[n].last_index() >= 2 and c.storages[n].term_at(2) == 2]
    assert len(holders) >= 3  # on a majority of the five ...
    assert c.nodes[1].commit_index == 1  # ... and still not committed
    # (d): S1 crashes, S5 returns and wins; its term-3 entry replaces the term-2 one.
    c.crash(1)
    c.filter = None
    c.start(5)
    c.nodes[5].campaign()  # rejected, but the answers carry term 4: S5 catches up its term
    c.settle()
    c.elect(5)
    c.settle()
    assert c.nodes[5].commit_index == 3
    for n in (2, 3, 4, 5):
        assert log_terms(c.storages[n]) == [1, 3, c.nodes[5].term]


def test_leader_commits_previous_term_entry_with_its_own() -> None:
    conf = conf_of([1, 2, 3])
    storages = {
        1: storage_with([1, 2], term=2, conf=conf, commit=1),
        2: storage_with([1], term=2, conf=conf, commit=1),
        3: storage_with([1], term=2, conf=conf, commit=1),
    }
    c = Cluster([1, 2, 3], storages=storages)
    c.elect(1)
    c.settle()
    # Once the EMPTY entry of term 3 is on a majority, everything before it is committed.
    assert c.nodes[1].commit_index == 3
    assert [e.term for e in c.applied[2]] == [1, 2, 3]


def test_partitioned_leader_steps_down_and_its_uncommitted_entries_are_overwritten() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.propose(1, b"committed")
    c.settle()
    c.isolate(1)
    for i in range(3):
        assert c.propose(1, b"lost-%d" % i) is ACCEPTED
    c.settle()
    # Check-quorum: within two election timeouts without a live quorum, node 1 steps down.
    c.tick(2 * CONFIG.election_ticks)
    assert c.nodes[1].role is Role.FOLLOWER
    assert c.nodes[1].term == 1  # stepping down does not raise the term (pre-vote fails)
    c.tick(2 * CONFIG.election_ticks)
    new = c.leader()
    assert new in (2, 3)
    assert c.propose(new, b"new") is ACCEPTED
    c.settle()
    c.heal()
    c.tick(3)
    c.assert_logs_equal([1, 2, 3])
    for n in (1, 2, 3):
        assert c.data_applied(n) == [b"committed", b"new"]
        assert b"lost-0" not in [d for _, _, d in c.log_of(n)]


def test_rejoining_node_does_not_disrupt_thanks_to_pre_vote() -> None:
    c = new_cluster(3)
    c.elect(1)
    term = c.nodes[1].term
    c.isolate(3)
    c.tick(100)  # node 3 times out again and again, but only pre-votes: its term stays put
    assert c.nodes[3].term == term
    assert c.nodes[3].role is Role.PRE_CANDIDATE
    c.heal()
    c.tick(5)
    assert c.leader() == 1 and c.nodes[1].term == term
    assert c.nodes[3].leader_id == 1


def test_check_quorum_lease_ignores_vote_requests_without_raising_term() -> None:
    c = new_cluster(3, config=replace(CONFIG, pre_vote=False))
    c.elect(1)
    term = c.nodes[1].term
    c.isolate(3)
    c.tick(30, nodes=[3])  # without pre-vote, node 3 raises its term on every timeout
    assert c.nodes[3].term > term + 1
    c.heal()
    c.nodes[3].campaign()
    c.settle()
    # Nodes 1 and 2 heard from the leader recently: they ignore the request, terms unchanged.
    assert c.nodes[1].role is Role.LEADER and c.nodes[1].term == term
    assert c.nodes[2].term == term


# ---- leadership transfer ----------------------------------------------------------------------


def test_transfer_under_load() -> None:
    c = new_cluster(3)
    c.elect(1)
    for i in range(5):
        c.propose(1, b"before-%d" % i)
    c.settle()
    for i in range(5):
        c.propose(1, b"inflight-%d" % i)  # not yet replicated
    c.nodes[1].transfer_leadership(2)
    c.check()
    assert c.propose(1, b"during") is DROPPED
    c.settle()
    assert c.leader() == 2
    assert c.nodes[2].term == c.nodes[1].term == 2
    assert c.propose(2, b"after") is ACCEPTED
    c.settle()
    expected = [b"before-%d" % i for i in range(5)] + [b"inflight-%d" % i for i in range(5)]
    for n in (1, 2, 3):
        assert c.data_applied(n) == expected + [b"after"]


def test_transfer_to_lagging_node_catches_it_up_first() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.isolate(3)
    for i in range(10):
        c.propose(1, b"%d" % i)
    c.settle()
    c.heal()
    c.sent.clear()
    c.nodes[1].transfer_leadership(3)
    c.settle()
    assert c.leader() == 3
    timeout_now = [i for i, m in enumerate(c.sent) if isinstance(m, TimeoutNow)]
    appends_to_3 = [i for i, m in enumerate(c.sent) if isinstance(m, AppendRequest) and m.dst == 3]
    assert timeout_now and appends_to_3 and appends_to_3[0] < timeout_now[0]
    assert c.data_applied(3)[:10] == [b"%d" % i for i in range(10)]


def test_transfer_times_out() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.isolate(3)
    c.propose(1, b"x")
    c.settle()
    c.nodes[1].transfer_leadership(3)
    assert c.nodes[1].lead_transferee == 3
    assert c.propose(1, b"dropped") is DROPPED
    c.tick(CONFIG.election_ticks, nodes=[1, 2])
    assert c.nodes[1].role is Role.LEADER and c.nodes[1].lead_transferee == 0
    assert c.propose(1, b"accepted") is ACCEPTED
    c.settle()
    assert c.data_applied(2) == [b"x", b"accepted"]


# ---- membership -------------------------------------------------------------------------------


def test_learner_add_catch_up_promote_remove() -> None:
    c = new_cluster(3)
    c.elect(1)
    for i in range(5):
        c.propose(1, b"%d" % i)
    c.settle()
    c.add_node(4, conf_of([1, 2, 3], [4]))
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 4) is ACCEPTED
    c.settle()
    for n in (1, 2, 3, 4):
        assert c.nodes[n].conf == conf_of([1, 2, 3], [4])
        assert c.storages[n].initial_state().conf == conf_of([1, 2, 3], [4])  # type: ignore[union-attr]
    assert c.data_applied(4) == [b"%d" % i for i in range(5)]  # caught up
    pr = c.nodes[1].progress(4)
    assert pr is not None and pr.is_learner and pr.match == c.nodes[1].last_index
    # A learner never campaigns and is not needed for a quorum.
    c.isolate(4)
    c.tick(50)
    assert c.nodes[4].role is Role.FOLLOWER and c.leader() == 1
    assert c.propose(1, b"without-4") is ACCEPTED
    c.settle()
    assert c.nodes[1].commit_index == c.nodes[1].last_index
    c.heal()
    c.tick(2)
    assert c.conf_change(1, ConfChangeKind.PROMOTE, 4) is ACCEPTED
    c.settle()
    for n in (1, 2, 3, 4):
        assert c.nodes[n].conf == conf_of([1, 2, 3, 4])
    # Four voters: a quorum is three, so with two down nothing commits.
    c.crash(3)
    c.crash(4)
    c.propose(1, b"stuck")
    c.settle()
    assert c.nodes[1].commit_index < c.nodes[1].last_index
    c.start(3)
    c.start(4)
    c.tick(2)
    assert c.nodes[1].commit_index == c.nodes[1].last_index
    assert c.conf_change(1, ConfChangeKind.REMOVE, 4) is ACCEPTED
    c.settle()
    for n in (1, 2, 3):
        assert c.nodes[n].conf == conf_of([1, 2, 3])
    assert c.nodes[1].progress(4) is None


def test_remove_leader_hands_over_then_steps_down() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.propose(1, b"before")
    assert c.conf_change(1, ConfChangeKind.REMOVE, 1) is ACCEPTED
    c.settle()
    # Once the removal committed, node 1 sent TimeoutNow to a caught-up voter: no timeout.
    new = c.leader()
    assert new in (2, 3) and c.nodes[1].role is Role.FOLLOWER
    for n in (1, 2, 3):
        assert c.nodes[n].conf == conf_of([2, 3])
    c.tick(50)
    assert c.nodes[1].role is Role.FOLLOWER  # not a voter: never campaigns
    assert c.leader() == new
    assert c.propose(new, b"x") is ACCEPTED
    c.settle()
    assert c.data_applied(new) == [b"before", b"x"]


def test_removed_leader_keeps_leading_until_handover_succeeds() -> None:
    c = new_cluster(2)
    c.elect(1)
    c.propose(1, b"a")
    c.settle()
    # Node 2 hears neither of the commit of node 1's removal nor of TimeoutNow at first:
    # it still counts node 1 in its quorum, so node 1 must not just walk away.
    c.filter = lambda m: None if (
        isinstance(m, TimeoutNow) or (isinstance(m, AppendRequest) and m.commit >= 3)
    ) else m
    assert c.conf_change(1, ConfChangeKind.REMOVE, 1) is ACCEPTED
    c.settle()
    assert c.nodes[1].commit_index == 3 and c.nodes[2].commit_index < 3
    assert c.nodes[1].role is Role.LEADER and c.nodes[1].lead_transferee == 2
    assert c.propose(1, b"dropped") is DROPPED
    c.tick(3 * CONFIG.election_ticks)  # node 2 learns the commit from heartbeats meanwhile
    assert c.nodes[1].role is Role.LEADER and c.nodes[2].leader_id == 1
    assert c.nodes[2].conf == conf_of([2])
    c.filter = None
    c.tick(CONFIG.election_ticks)  # the handover is retried: TimeoutNow gets through
    assert c.leader() == 2 and c.nodes[1].role is Role.FOLLOWER
    assert c.propose(2, b"b") is ACCEPTED
    c.settle()
    assert c.data_applied(2) == [b"a", b"b"]


def test_removed_leader_that_crashed_mid_handover_unblocks_the_group() -> None:
    c = new_cluster(2)
    c.elect(1)
    c.propose(1, b"a")
    c.settle()
    # Node 2 acknowledges the removal of node 1 but never receives "b" nor learns that the
    # removal committed; then node 1 crashes. Node 2 still counts node 1 in its quorum, and
    # node 1 (longer log) refuses to vote for it.
    c.filter = lambda m: (
        None
        if isinstance(m, TimeoutNow) or (isinstance(m, (AppendRequest, Heartbeat)) and m.commit >= 3)
        else replace(m, entries=tuple(e for e in m.entries if e.data != b"b"))
        if isinstance(m, AppendRequest)
        else m
    )
    assert c.conf_change(1, ConfChangeKind.REMOVE, 1) is ACCEPTED
    assert c.propose(1, b"b") is ACCEPTED
    c.settle()
    assert c.nodes[1].commit_index == 3 and c.nodes[1].conf == conf_of([2])
    assert c.nodes[2].commit_index < 3 and c.nodes[2].conf == conf_of([1, 2])
    c.crash(1)
    c.filter = None
    c.start(1, applied=c.nodes[1].applied_index)
    assert c.nodes[1].conf == conf_of([2]) and c.nodes[1].last_index == 4
    # The removed node campaigns once more (counting node 2's vote only) to hand over.
    c.tick(6 * CONFIG.election_ticks)
    assert c.leader() == 2 and c.nodes[2].conf == conf_of([2])
    assert c.data_applied(2) == [b"a", b"b"]
    assert c.propose(2, b"c") is ACCEPTED
    c.settle()
    assert c.data_applied(2)[-1] == b"c"


def test_one_pending_conf_change_at_a_time() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.add_node(4, conf_of([1, 2, 3], [4]))
    c.add_node(5, conf_of([1, 2, 3], [4, 5]))
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 4) is ACCEPTED
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 5) is DROPPED
    assert c.nodes[1].has_pending_conf_change
    c.settle()
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 5) is ACCEPTED
    c.settle()
    assert c.nodes[2].conf == conf_of([1, 2, 3], [4, 5])
    # Followers drop proposals; a change that does not apply raises.
    assert c.conf_change(2, ConfChangeKind.PROMOTE, 4) is DROPPED
    with pytest.raises(ValueError):
        c.nodes[1].propose_conf_change(ConfChange(kind=ConfChangeKind.PROMOTE, node=9))


def test_new_leader_waits_for_its_own_commit_before_conf_change() -> None:
    c = new_cluster(3)
    c.nodes[1].campaign()
    while c.nodes[1].role is not Role.LEADER:  # votes only: the EMPTY entry stays queued
        for n in (1, 2, 3):
            c.process(n)
        c.deliver(lambda m: isinstance(m, (VoteRequest, VoteResponse)))
    assert c.nodes[1].role is Role.LEADER and not c.nodes[1].has_committed_in_term
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 4) is DROPPED
    c.settle()
    assert c.nodes[1].has_committed_in_term
    assert c.conf_change(1, ConfChangeKind.ADD_LEARNER, 4) is ACCEPTED


# ---- flow control ---------------------------------------------------------------------------


def test_uncommitted_bytes_max_drops_proposals() -> None:
    c = new_cluster(3, config=replace(CONFIG, uncommitted_bytes_max=100))
    c.elect(1)
    c.isolate(1)
    assert c.propose(1, b"a" * 40) is ACCEPTED
    assert c.propose(1, b"b" * 40) is ACCEPTED
    assert c.propose(1, b"c" * 40) is DROPPED
    assert c.nodes[1].uncommitted_bytes == 80
    c.heal()
    c.tick(1)
    assert c.nodes[1].uncommitted_bytes == 0
    assert c.propose(1, b"c" * 40) is ACCEPTED
    # One entry larger than the limit is accepted when nothing is uncommitted.
    c.settle()
    assert c.propose(1, b"d" * 500) is ACCEPTED


def test_inflight_bounds_are_respected() -> None:
    cfg = replace(CONFIG, inflight_messages_max=2, message_bytes_max=10, inflight_bytes_max=1000)
    c = new_cluster(3, config=cfg)
    c.elect(1)
    for round_ in range(3):
        c.sent.clear()
        for i in range(10):
            c.propose(1, b"%d-%07d" % (round_, i))  # 10 bytes each: one entry per message
        # Deliver nothing back to the leader: at most two appends per follower leave.
        for _ in range(5):
            c.process(1)
            c.process(2)
            c.process(3)
            c.deliver(lambda m: m.dst != 1)
        for follower in (2, 3):
            appends = [m for m in c.sent if isinstance(m, AppendRequest) and m.dst == follower]
            assert len([m for m in appends if m.entries]) == 2, appends
            pr = c.nodes[1].progress(follower)
            assert pr is not None and len(pr.inflights) == 2
        c.settle()
        assert c.nodes[2].commit_index == c.nodes[1].last_index
    assert len(c.data_applied(3)) == 30


def test_inflight_bytes_bound() -> None:
    cfg = replace(CONFIG, inflight_messages_max=100, message_bytes_max=10, inflight_bytes_max=25)
    c = new_cluster(2, config=cfg)
    c.elect(1)
    c.sent.clear()
    for i in range(10):
        c.propose(1, b"%010d" % i)
    c.process(1)
    appends = [m for m in c.sent if isinstance(m, AppendRequest) and m.entries]
    assert len(appends) == 3  # 10 + 10 < 25, the third takes it to 30: full
    c.settle()
    assert len(c.data_applied(2)) == 10


def test_lost_appends_are_recovered_by_heartbeats() -> None:
    c = new_cluster(3, config=replace(CONFIG, inflight_messages_max=2, message_bytes_max=1))
    c.elect(1)
    c.cut(1, 3)
    for i in range(6):
        c.propose(1, b"%d" % i)
    c.settle()  # every append to 3 is lost; its window fills up
    c.heal()
    c.tick(3)
    assert c.data_applied(3) == [b"%d" % i for i in range(6)]


def test_report_unreachable_moves_follower_to_probe() -> None:
    c = new_cluster(3)
    c.elect(1)
    pr = c.nodes[1].progress(2)
    assert pr is not None and pr.state.value == "replicate"
    c.nodes[1].report_unreachable(2)
    c.check()
    assert pr.state.value == "probe"
    c.tick(2)
    assert pr.state.value == "replicate"


# ---- retention and restart -----------------------------------------------------------------


def test_follower_behind_deleted_prefix_gets_log_start() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.crash(3)
    for i in range(20):
        c.propose(1, b"%d" % i)
    c.settle()
    # Retention on the live replicas deletes a committed, applied prefix.
    for n in (1, 2):
        c.storages[n].delete_prefix(15)
    c.start(3)
    c.sent.clear()
    c.tick(3)
    starts = [m for m in c.sent if isinstance(m, LogStartRequest)]
    assert starts and starts[0].start_index == 15 and starts[0].dst == 3
    st3 = c.storages[3]
    assert st3.first_index() == 16 and st3.term_at(15) == c.storages[1].term_at(15)
    c.assert_logs_equal([1, 2, 3])
    assert c.nodes[3].commit_index == c.nodes[1].commit_index == 21
    assert c.nodes[3].applied_index == 21
    assert c.propose(1, b"after") is ACCEPTED
    c.settle()
    assert c.data_applied(3)[-1] == b"after"


def test_log_start_carries_membership() -> None:
    c = new_cluster(3)
    c.elect(1)
    c.crash(3)
    c.add_node(4, conf_of([1, 2, 3], [4]))
    c.conf_change(1, ConfChangeKind.ADD_LEARNER, 4)
    c.settle()
    c.propose(1, b"x")
    c.settle()
    for n in (1, 2, 4):
        c.storages[n].delete_prefix(c.nodes[n].applied_index)
    c.start(3)
    c.tick(3)
    assert c.nodes[3].conf == conf_of([1, 2, 3], [4])
    assert c.storages[3].initial_state().conf == conf_of([1, 2, 3], [4])  # type: ignore[union-attr]


def test_restart_replays_committed_entries() -> None:
    cfg = replace(CONFIG, message_bytes_max=25)
    c = new_cluster(3, config=cfg)
    c.elect(1)
    values = [b"%010d" % i for i in range(12)]
    for v in values:
        c.propose(1, v)
    c.settle()
    before = c.applied[2]
    hard = c.storages[2].initial_state()
    assert hard is not None and hard.commit == 13
    c.crash(2)
    node = c.start(2, applied=0)
    assert node.term == hard.term and node.commit_index == 13 and node.applied_index == 0
    c.applied[2] = []
    pages = []
    while node.has_ready():
        rd = node.ready()
        pages.append(len(rd.committed))
        c.execute(2, rd)
    assert c.applied[2] == before  # the same entries, in order
    assert max(pages) <= 3 and len(pages) > 3  # paginated by message_bytes_max
    # Skipping the replay: applied=commit.
    c.crash(2)
    node = c.start(2, applied=13)
    assert not node.has_ready()
    c.tick(2)
    assert c.leader() == 1


def test_follower_that_lost_its_tail_unnoticed_is_repaired_by_the_leader() -> None:
    """A follower's newest entries vanish without a repair mark (its last segment cut short
    looks like a torn write): it restarts behind the match index the leader holds for it.
    Its rejections fall below that match index; the leader must probe down from them, not
    take them for stale ones and probe at the match index forever."""
    c = new_cluster(3)
    c.elect(1)
    for i in range(10):
        c.propose(1, b"v%d" % i)
    c.settle()
    st = c.storages[2]
    hard = st.initial_state()
    assert hard is not None and st.last_index() == 11
    c.crash(2)
    del st._entries[5:]  # entries 6..11 gone, all of them acknowledged
    st.set_hard_state(replace(hard, commit=5))
    c.start(2)
    for i in range(5):
        c.propose(1, b"w%d" % i)
    c.tick(3)
    c.settle()
    assert c.storages[2].last_index() == c.storages[1].last_index() == 16
    c.assert_logs_equal([1, 2, 3])
    pr = c.nodes[1].progress(2)
    assert pr is not None and pr.match == 16


def test_follower_that_lost_acknowledged_entries_unnoticed_votes_by_the_leaders_mark() -> None:
    """Node 2 acknowledged entries 1..6 (3..6 committed with its help while node 3 was cut
    off), then lost 3..6 without a repair mark (its newest segment cut short looks like a torn
    write). The leader learns it from a rejection below node 2's match index and tells it to
    repair up to its last entry. The leader is gone before node 2 has caught up; node 3's log
    (up to index 3) is then as up to date as node 2's, but node 2 refuses it by the mark (and
    never campaigns): without the mark, a leader lacking committed entries 4..6 would win."""
    c = new_cluster(3, config=replace(CONFIG, message_bytes_max=1))
    c.elect(1)
    c.propose(1, b"a")
    c.propose(1, b"b")
    c.settle()
    c.isolate(3)
    for v in (b"c", b"d", b"e"):
        c.propose(1, v)
    c.settle()
    assert c.nodes[1].commit_index == 6 and c.storages[3].last_index() == 3
    term = c.nodes[1].term
    c.crash(2)
    st = c.storages[2]
    hard = st.initial_state()
    assert hard is not None
    del st._entries[2:]  # entries 3..6 gone, all acknowledged; the commit index was not synced
    st.set_hard_state(replace(hard, commit=2))
    assert not c.start(2).repairing
    c.propose(1, b"f")  # its append is rejected below the match index
    for _ in range(20):
        for n in c.alive():
            c.process(n)
        if st.last_index() >= 3:  # the first probe arrived, one entry long
            break
        c.deliver()
    assert st.last_index() == 3
    assert c.nodes[2].repairing and c.nodes[2].repair_mark == (term, 7)
    persisted = st.initial_state()
    assert persisted is not None and (persisted.repair_term, persisted.repair_index) == (term, 7)
    c.crash(1)
    c.queue = [m for m in c.queue if m.src != 1]  # lost with the leader
    c.heal()
    for _ in range(3):
        c.nodes[3].campaign()
        c.settle()
    c.tick(40, nodes=[2, 3])
    assert not any(c.nodes[n].role is Role.LEADER for n in (2, 3))
    assert c.nodes[2].repairing
    c.start(1)
    assert c.tick_until_leader() == 1
    assert c.propose(1, b"g") is ACCEPTED
    c.settle()
    assert not c.nodes[2].repairing
    for n in (1, 2, 3):
        assert c.data_applied(n) == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_a_repair_mark_is_taken_only_where_entries_can_have_been_lost() -> None:
    """A follower can lose entries only across a restart, so it ignores a mark from a leader
    of a term it entered in this process (the mark answers a rejection another append
    overtook), and one whose entry it holds; it takes one it cannot rule out, once."""
    from broker.raft.messages import RepairMark

    c = new_cluster(3)
    c.elect(1)
    c.propose(1, b"a")
    c.settle()
    term = c.nodes[1].term

    def mark(index: int) -> None:
        c.nodes[2].step(RepairMark(src=1, dst=2, term=term, index=index, log_term=term))
        c.check()
        c.process(2)

    mark(9)
    assert not c.nodes[2].repairing  # it entered the leader's term while running
    c.crash(2)
    c.start(2)
    mark(2)
    assert not c.nodes[2].repairing  # it holds entry 2 of the leader's term
    mark(9)
    persisted = c.storages[2].initial_state()
    assert c.nodes[2].repair_mark == (term, 9)
    assert persisted is not None and (persisted.repair_term, persisted.repair_index) == (term, 9)


def restart_damaged(c: Cluster, n: int, keep: int) -> RaftNode:
    """Restart node n as storage recovery leaves it after damage: entries above `keep` cut,
    the hard state marked repairing up to the old last index (in its term), commit lowered."""
    c.crash(n)
    st = c.storages[n]
    hard = st.initial_state()
    assert hard is not None and keep < st.last_index()
    old_last = st.last_index()
    del st._entries[keep - st.first_index() + 1 :]
    st.set_hard_state(replace(hard, commit=min(hard.commit, keep), repair_index=old_last,
                              repair_term=hard.term))
    node = c.start(n)
    assert node.repairing and node.repair_mark[1] == old_last
    return node


@pytest.mark.parametrize("pre_vote", [True, False])
def test_repairing_voter_refuses_logs_below_its_repair_mark(pre_vote: bool) -> None:
    """Node 2 acknowledged entries 1..5 (committed with its help), then damage cut its log to
    index 1. Node 3 holds only up to index 3: more than node 2 kept, less than it had. Node 2
    refuses it (by its repair mark, not its cut log), so node 3 never leads; node 1, whose
    log reaches the mark, gets node 2's vote and repairs it."""
    c = new_cluster(3, config=replace(CONFIG, pre_vote=pre_vote))
    c.elect(1)
    c.propose(1, b"a")
    c.propose(1, b"b")
    c.settle()
    c.isolate(3)
    c.propose(1, b"c")
    c.propose(1, b"d")
    c.settle()
    assert c.nodes[1].commit_index == 5 and c.storages[3].last_index() == 3
    c.crash(1)
    c.heal()
    restart_damaged(c, 2, keep=1)
    for _ in range(5):
        c.nodes[3].campaign()
        c.settle()
        assert c.nodes[3].role is not Role.LEADER
    c.tick(30, nodes=[2, 3])
    assert not any(c.nodes[n].role is Role.LEADER for n in (2, 3))
    c.start(1)
    assert c.tick_until_leader() == 1  # without pre-vote, after it catches up on the term
    assert c.propose(1, b"e") is ACCEPTED
    c.settle()
    assert not c.nodes[2].repairing
    assert c.data_applied(2)[-5:] == [b"a", b"b", b"c", b"d", b"e"]
    c.assert_logs_equal([1, 2, 3])


def test_repairing_voter_votes_so_a_group_short_of_a_voter_elects() -> None:
    """Four voters: node 4 (the leader) is gone for good and node 3 is repairing after damage.
    Nodes 1 and 2 need node 3's vote. It grants it to a log at least as up to date as its
    repair mark (abstaining left the group without a leader forever)."""
    c = new_cluster(4)
    c.elect(4)
    for i in range(4):
        c.propose(4, b"v%d" % i)
    c.settle()
    assert c.nodes[4].commit_index == 5
    c.crash(4)
    restart_damaged(c, 3, keep=2)
    leader = c.tick_until_leader()
    assert leader in (1, 2)
    assert c.propose(leader, b"after") is ACCEPTED
    c.settle()
    assert not c.nodes[3].repairing
    for n in (1, 2, 3):
        assert c.data_applied(n) == [b"v0", b"v1", b"v2", b"v3", b"after"]


def test_repairing_voters_mark_ignores_a_term_raised_by_a_failed_election() -> None:
    """As above, but node 3 raised its term in an election it could not win before the damage:
    its hard state's term is above every log's last term. Its repair mark takes the term of
    the newest entry it ever held instead (HardState.entry_term_max), or no candidate could
    ever satisfy it."""
    c = new_cluster(4, config=replace(CONFIG, pre_vote=False, check_quorum=False))
    c.elect(4)
    for i in range(4):
        c.propose(4, b"v%d" % i)
    c.settle()
    log_term = c.nodes[4].term
    c.crash(4)
    c.crash(1)
    c.nodes[3].campaign()  # nodes 2 and 3 alone: two votes of four, it loses
    c.settle()
    assert c.nodes[3].role is not Role.LEADER and c.nodes[3].term == log_term + 1
    node = restart_damaged(c, 3, keep=2)
    assert node.repair_mark == (log_term, 5)
    c.start(1)
    leader = c.tick_until_leader()
    assert leader in (1, 2)
    assert c.propose(leader, b"after") is ACCEPTED
    c.settle()
    for n in (1, 2, 3):
        assert c.data_applied(n) == [b"v0", b"v1", b"v2", b"v3", b"after"]


@pytest.mark.parametrize("marked", [True, False])
def test_leader_with_nothing_new_repairs_a_follower_that_lost_matched_entries(
    marked: bool,
) -> None:
    """Node 2 acknowledged every entry, then lost its tail across a restart (damage storage
    marked, or a cut it could not see) while node 1 stays leader of the same term. No more
    proposals arrive, so only heartbeats reach node 2; they carry a commit index above its
    last entry, which tells it the leader counts entries it no longer holds. It says so, the
    leader probes down, and node 2 catches up and applies everything. Before, the leader held
    its old match index and, with nothing new to send, never appended again."""
    c = new_cluster(3)
    c.elect(1)
    for i in range(8):
        c.propose(1, b"v%d" % i)
    c.settle()
    assert c.nodes[1].commit_index == c.storages[2].last_index() == 9
    if marked:
        restart_damaged(c, 2, keep=3)
    else:
        c.crash(2)
        st = c.storages[2]
        hard = st.initial_state()
        assert hard is not None
        del st._entries[3:]
        st.set_hard_state(replace(hard, commit=3))
        assert not c.start(2).repairing
    c.tick(5)
    assert c.leader() == 1
    assert c.storages[2].last_index() == 9 and c.nodes[2].commit_index == 9
    assert c.data_applied(2) == [b"v%d" % i for i in range(8)]
    assert not c.nodes[2].repairing
    pr = c.nodes[1].progress(2)
    assert pr is not None and pr.match == 9


def test_whole_cluster_restart_keeps_committed_entries() -> None:
    c = new_cluster(3)
    c.elect(1)
    for i in range(5):
        c.propose(1, b"%d" % i)
    c.settle()
    for n in (1, 2, 3):
        c.crash(n)
    for n in (1, 2, 3):
        c.start(n, applied=c.storages[n].initial_state().commit)  # type: ignore[union-attr]
    leader = c.tick_until_leader()
    assert c.propose(leader, b"more") is ACCEPTED
    c.settle()
    for n in (1, 2, 3):
        assert c.data_applied(n) == [b"%d" % i for i in range(5)] + [b"more"]


def _random_run(seed: int, steps: int, *, membership: bool = False) -> None:
    """One randomized run; with `membership`, nodes 4 and 5 start outside a group of three
    and random membership changes and retention (prefix deletion) happen along the way."""
    rng = random.Random(seed)
    cfg = replace(
        CONFIG,
        heartbeat_ticks=rng.choice([1, 2, 3]),
        message_bytes_max=rng.choice([1, 16, 1 << 20]),
        inflight_messages_max=rng.choice([1, 4, 64]),
        inflight_bytes_max=rng.choice([30, 1 << 20]),
        uncommitted_bytes_max=rng.choice([50, 1 << 20]),
        pre_vote=rng.random() < 0.7,
        check_quorum=rng.random() < 0.7,
    )
    if membership:
        c = Cluster(range(1, 6), conf=conf_of([1, 2, 3]), config=cfg, seed=seed)
    else:
        c = new_cluster(rng.choice([3, 5]), config=cfg, seed=seed)
    ids = sorted(c.nodes)
    loss = rng.choice([0.0, 0.05, 0.2])
    c.filter = lambda m: None if rng.random() < loss else m

    def restart(n: int) -> None:
        # The state machine resumes from what it applied, or replays everything.
        done = c.applied[n][-1].index if c.applied[n] else 0
        c.start(n, applied=rng.choice([0, done]))

    for step in range(steps):
        r = rng.random()
        leaders = [n for n in c.alive() if c.nodes[n].role is Role.LEADER]
        if r < 0.04:
            c.isolate(rng.choice(ids))
        elif r < 0.08:
            c.heal()
        elif r < 0.11:
            n = rng.choice(ids)
            if n in c.down:
                restart(n)
            elif len(c.down) < 1:
                c.crash(n)
        elif r < 0.13 and leaders:
            c.nodes[leaders[0]].transfer_leadership(rng.choice(ids))
            c.check()
        elif r < 0.15 and leaders:
            c.nodes[leaders[0]].report_unreachable(rng.choice(ids))
            c.check()
        elif r < 0.20 and len(c.queue) > 1:
            rng.shuffle(c.queue)  # reordering
            c.deliver(lambda m: rng.random() < 0.5)
        elif r < 0.23 and membership and leaders:
            kind = rng.choice(list(ConfChangeKind))
            try:
                c.conf_change(leaders[0], kind, rng.choice(ids))
            except ValueError:
                pass  # does not apply to the current membership
        elif r < 0.25 and membership:
            n = rng.choice(c.alive())
            st = c.storages[n]
            if c.nodes[n].applied_index >= st.first_index():
                st.delete_prefix(rng.randint(st.first_index(), c.nodes[n].applied_index))
        elif r < 0.55:
            for n in leaders:
                c.propose(n, b"s%d-%d" % (seed, step))
            for n in c.alive():
                c.process(n)
            c.deliver(lambda m: rng.random() < 0.7)
        else:
            c.tick()
    c.filter = None
    c.heal()
    for n in list(c.down):
        restart(n)
    for _ in range(20):  # until a leader is settled, its transfers done or abandoned
        c.tick(cfg.election_ticks + 1)
        leaders = [n for n in c.alive() if c.nodes[n].role is Role.LEADER]
        if len(leaders) == 1 and c.nodes[leaders[0]].lead_transferee == 0:
            break
    leader = c.leader()
    members = sorted(c.nodes[leader].conf.voters | c.nodes[leader].conf.learners)
    assert c.propose(leader, b"final") is ACCEPTED
    # Removed nodes may still hold a higher term and depose the leader once more (without
    # pre-vote and check-quorum they disrupt): allow a few more elections.
    for _ in range(20):
        c.tick(5)
        leaders = [n for n in c.alive() if c.nodes[n].role is Role.LEADER]
        if len(leaders) == 1 and all(
            c.data_applied(n)[-1:] == [b"final"]
            and c.nodes[n].applied_index == c.nodes[leaders[0]].commit_index
            for n in members
        ):
            break
    leader = c.leader()
    c.assert_logs_agree(members)
    for n in members:
        assert c.data_applied(n)[-1] == b"final", n
        assert c.nodes[n].applied_index == c.nodes[leader].commit_index
        assert c.nodes[n].conf == c.nodes[leader].conf


@pytest.mark.parametrize("seed", range(12))
def test_randomized_runs_keep_safety(seed: int) -> None:
    """Short runs with random partitions, crashes, loss, reordering, transfers and proposals:
    the cluster-wide checks (one leader per term, one entry per applied index) and every
    node's invariants hold throughout, and the healed cluster converges."""
    try:
        _random_run(seed, 400)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from exc


@pytest.mark.parametrize("seed", range(12))
def test_randomized_membership_and_retention(seed: int) -> None:
    """As above, plus random membership changes and retention deleting log prefixes."""
    try:
        _random_run(seed, 400, membership=True)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: {exc}") from exc
