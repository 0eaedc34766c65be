"""One simulated broker process: a disk shared by its groups, and the driver that executes each
group's `Ready` in the contract's order (persist, send, apply, advance), with group commit.

A turn drives the touched groups: each group with work hands over a `Ready`; its writes go to
the volatile view, its `messages` leave at once; groups that need durability wait for one shared
sync, then send `messages_after_persist`, apply `committed` and `advance`. With an instantaneous
disk the sync happens within the turn; with a slow disk it is an event, and writes made while a
sync is in flight wait for the next one. Every promise leaving the node is checked against the
durable view (persist-before-send), and every applied entry must be durable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from broker.raft.core import RaftConfig, RaftNode
from broker.raft.messages import (
    AppendResponse,
    ConfState,
    EntryKind,
    Message,
    Ready,
    Role,
    VoteResponse,
)
from broker.raft.storage import CompactedError, UnavailableError
from tests.sim.checker import COMPACTED, Checker, Violation
from tests.sim.client import ClientPool
from tests.sim.disk import CrashStorage, Disk, SyncTicket
from tests.sim.events import SYNC_DONE, EventQueue

__all__ = [
    "Replica", "SimNode", "PERSIST_BEFORE_SEND", "NodeFactory", "core_term_at", "written_term_at",
]
PERSIST_BEFORE_SEND = "persist-before-send"
_ROUNDS_MAX = 64  # Ready rounds per turn; then the driver yields, as an event loop would
_YIELDS_MAX = 10_000  # turns in a row that yield: a core whose Readies never end is a bug

NodeFactory = Callable[..., RaftNode]


class Host(Protocol):
    """What a node needs from the simulation around it."""

    queue: EventQueue
    checker: Checker
    clients: ClientPool
    raft_config: RaftConfig
    sync_instant: bool  # syncs take no simulated time

    def sync_latency_us(self) -> int: ...
    def continue_turn(self, node: SimNode) -> None: ...
    def log_summaries(
        self, group: int, index: int, term: int, voters: frozenset[int]
    ) -> list[tuple[int, bool, int, int, bool]]: ...
    def membership_changed(self, group: int, old: ConfState, new: ConfState) -> None: ...
    def trace(self, a: int, b: int, c: int) -> None: ...


class Replica:
    """One node's member of one group, and what the driver tracks about it."""

    __slots__ = (
        "group", "storage", "raft", "outstanding", "applied", "led_term", "commit_marked",
        "durable_reported", "conf_seen", "retired",
    )

    def __init__(self, group: int, storage: CrashStorage) -> None:
        self.group = group
        self.storage = storage
        self.raft: RaftNode | None = None  # None while the node is down
        self.outstanding: Ready | None = None  # handed out, waiting for a sync
        self.applied = 0  # last index applied to the state machine
        self.led_term = 0  # last term this replica was seen leading in
        self.commit_marked = -1  # last leader commit index reported to the checker
        self.durable_reported: Any = None  # last durable hard state reported to the checker
        self.conf_seen: ConfState | None = None  # as leader, membership at the last look
        self.retired = False  # removed from the group and destroyed: never runs again


def written_term_at(rep: Replica, index: int) -> int | None:
    """Term of `index` in the replica's written log; None beyond it, COMPACTED below it."""
    try:
        return rep.storage.term_at(index)
    except CompactedError:
        return COMPACTED
    except UnavailableError:
        return None


def core_term_at(raft: RaftNode, index: int) -> int | None:
    """Term of `index` in the core's log (written or not); None beyond it, COMPACTED below."""
    if index > raft.last_index:
        return None
    try:
        return raft.term_at(index)
    except CompactedError:
        return COMPACTED


class SimNode:
    """A broker process hosting replicas of several groups; see the module docstring."""

    __slots__ = (
        "node_id", "host", "up", "incarnation", "paused_until_us", "tick_us", "disk", "replicas",
        "_sync_ticket", "_sync_inflight", "_sync_waiting", "outbox", "_yields",
    )

    def __init__(self, node_id: int, host: Host, tick_us: int) -> None:
        self.node_id = node_id
        self.host = host
        self.up = False
        self.incarnation = 0  # bumped by every crash: events of a past life are ignored
        self.paused_until_us = 0
        self.tick_us = tick_us  # this node's (skewed) tick interval
        self.disk = Disk()
        self.replicas: dict[int, Replica] = {}  # by group id, in group order
        self._sync_ticket: SyncTicket | None = None  # the sync in flight
        self._sync_inflight: list[Replica] = []  # waiting on the sync in flight
        self._sync_waiting: list[Replica] = []  # waiting on the next sync
        self.outbox: dict[int, list[tuple[int, Message]]] = {}  # dst -> (group, message)
        self._yields = 0  # turns in a row that ended with work left

    # ---- life cycle ----
    def add_group(self, group: int, voters: tuple[int, ...]) -> None:
        storage = CrashStorage(ConfState(voters=frozenset(voters)))
        self.disk.storages[group] = storage
        self.replicas[group] = Replica(group, storage)

    def start(self, factory: NodeFactory, rng: random.Random) -> None:
        """Boot (or reboot) from what is durable: one RaftNode per group."""
        assert not self.up
        self.up = True
        config = self.host.raft_config
        checker = self.host.checker
        for g, rep in self.replicas.items():
            if rep.retired:
                continue
            storage = rep.storage
            rep.raft = factory(
                node_id=self.node_id,
                storage=storage,
                rng=random.Random(rng.getrandbits(64)),
                config=config,
                applied=0,
            )
            rep.raft.check_invariants()
            rep.applied = storage.first_index() - 1
            hs = storage.initial_state()
            assert hs is not None
            rep.durable_reported = hs
            rep.conf_seen = None
            checker.restarted(g, self.node_id, hs, rep.applied + 1)

    def retire(self, group: int) -> None:
        """The group removed this node and the controller deleted the replica: it never runs
        again (its storage stays, for the checks)."""
        rep = self.replicas[group]
        rep.retired = True
        rep.raft = None
        rep.outstanding = None
        rep.led_term = 0
        rep.commit_marked = -1

    def crash(self, rng: random.Random, torn_probability: float) -> int:
        """Stop at once, losing what is not durable; returns how many groups' writes tore."""
        assert self.up
        self.up = False
        self.incarnation += 1
        self.paused_until_us = 0
        for rep in self.replicas.values():
            rep.raft = None
            rep.outstanding = None
            rep.led_term = 0
            rep.commit_marked = -1
        self._sync_ticket = None
        self._sync_inflight = []
        self._sync_waiting = []
        self.outbox.clear()
        return self.disk.crash(rng, torn_probability)

    # ---- the driver ----
    def turn(self, reps: list[Replica]) -> None:
        """Execute the Readies of the touched replicas until none has more work."""
        for rep in reps:
            self._observe(rep)
        for _ in range(_ROUNDS_MAX):
            synced: list[Replica] = []
            finished: list[Replica] = []
            for rep in reps:
                raft = rep.raft
                if rep.outstanding is not None or raft is None or not raft.has_ready():
                    continue
                rd = raft.ready()
                self._persist(rep, rd)
                if rd.messages:
                    self._send(rep, rd.messages)
                if rd.must_sync:
                    rep.outstanding = rd
                    synced.append(rep)
                else:
                    self._finish(rep, rd)
                    finished.append(rep)
            if synced:
                self._sync_waiting.extend(synced)
                if self.host.sync_instant and self._sync_ticket is None:
                    finished += self._sync_now()
                else:
                    self._maybe_start_sync()
            if not finished:
                self._yields = 0
                return
            reps = finished
        # Still busy (say, replaying a long committed log one page per Ready): yield, and
        # continue in a later turn, so other events interleave as they would in a broker.
        self._yields += 1
        assert self._yields < _YIELDS_MAX, f"node {self.node_id}: Readies never stop coming"
        self.host.continue_turn(self)

    def on_sync_done(self, ticket: SyncTicket) -> None:
        assert ticket is self._sync_ticket
        self.disk.complete_sync(ticket)
        self._sync_ticket = None
        self._report_durable()
        reps, self._sync_inflight = self._sync_inflight, []
        for rep in reps:
            rd = rep.outstanding
            rep.outstanding = None
            if rd is not None:  # else retired meanwhile
                self._finish(rep, rd)
        self.turn(reps)
        self._maybe_start_sync()

    def _sync_now(self) -> list[Replica]:
        self.disk.sync_all()
        self._report_durable()
        reps, self._sync_waiting = self._sync_waiting, []
        for rep in reps:
            rd = rep.outstanding
            rep.outstanding = None
            if rd is not None:  # else retired meanwhile
                self._finish(rep, rd)
        return reps

    def _maybe_start_sync(self) -> None:
        if self._sync_ticket is not None or not self._sync_waiting:
            return
        ticket = self._sync_ticket = self.disk.begin_sync()
        self._sync_inflight, self._sync_waiting = self._sync_waiting, []
        q = self.host.queue
        q.push(q.now_us + self.host.sync_latency_us(), SYNC_DONE, self.node_id, self.incarnation,
               ticket)

    def _persist(self, rep: Replica, rd: Ready) -> None:
        storage = rep.storage
        checker = self.host.checker
        g = rep.group
        if rd.log_reset is not None:
            start_index, start_term = rd.log_reset
            storage.reset(start_index, start_term)
            checker.log_reset(g, self.node_id, start_index)
            rep.applied = max(rep.applied, start_index)
        if rd.entries:
            prev_term = storage.term_at(rd.entries[0].index - 1)
            storage.append(rd.entries)
            checker.written(g, self.node_id, prev_term, rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        self.host.trace(g, len(rd.entries), rd.hard_state.commit if rd.hard_state else -1)

    def _finish(self, rep: Replica, rd: Ready) -> None:
        """The Ready's writes are durable: send the promises, apply, advance."""
        if rep.raft is None:
            return  # retired while its writes were syncing
        if rd.messages_after_persist:
            self._send(rep, rd.messages_after_persist)
        if rd.committed:
            self._apply(rep, rd)
        raft = rep.raft
        assert raft is not None
        raft.advance(rd)
        raft.check_invariants()
        self._observe(rep)

    def _apply(self, rep: Replica, rd: Ready) -> None:
        checker = self.host.checker
        clients = self.host.clients
        g = rep.group
        nid = self.node_id
        durable = rep.storage.durable
        for e in rd.committed:
            checker.applied(g, nid, e)
            pos = e.index - durable.start_index - 1
            if pos >= len(durable.entries) or (pos >= 0 and durable.entries[pos].term != e.term):
                raise Violation(
                    PERSIST_BEFORE_SEND,
                    f"group {g} node {nid}: applied index {e.index} term {e.term}, not durable",
                )
            rep.applied = e.index
            if e.kind is EntryKind.DATA:
                clients.on_applied(g, nid, e)

    def _send(self, rep: Replica, messages: tuple[Message, ...]) -> None:
        g = rep.group
        outbox = self.outbox
        for m in messages:
            if isinstance(m, VoteResponse):
                if m.granted and not m.pre_vote:
                    self._check_vote_durable(rep, m)
            elif isinstance(m, AppendResponse) and m.success:
                self._check_append_durable(rep, m)
            box = outbox.get(m.dst)
            if box is None:
                outbox[m.dst] = [(g, m)]
            else:
                box.append((g, m))

    def _check_vote_durable(self, rep: Replica, m: VoteResponse) -> None:
        self.host.checker.vote_granted(rep.group, self.node_id, m.term, m.dst)
        hs = rep.storage.durable.hard_state
        assert hs is not None
        if hs.term < m.term or (hs.term == m.term and hs.vote != m.dst):
            raise Violation(
                PERSIST_BEFORE_SEND,
                f"group {rep.group} node {self.node_id}: vote for {m.dst} in term {m.term} "
                f"sent, durable term {hs.term} vote {hs.vote}",
            )

    def _check_append_durable(self, rep: Replica, m: AppendResponse) -> None:
        durable = rep.storage.durable
        hs = durable.hard_state
        assert hs is not None
        ok = hs.term >= m.term and m.index <= durable.last_index()
        written = written_term_at(rep, m.index)
        if ok and m.index >= durable.start_index and written != COMPACTED:
            ok = durable.term_at(m.index) == written
        if not ok:
            raise Violation(
                PERSIST_BEFORE_SEND,
                f"group {rep.group} node {self.node_id}: append ack of index {m.index} term "
                f"{m.term} sent, durable log ends at {durable.last_index()} term {hs.term}",
            )

    def _report_durable(self) -> None:
        checker = self.host.checker
        for rep in self.replicas.values():
            hs = rep.storage.durable.hard_state
            if hs is not rep.durable_reported:
                rep.durable_reported = hs
                assert hs is not None
                checker.durable_hard_state(rep.group, self.node_id, hs)

    def _observe(self, rep: Replica) -> None:
        """After the core moved: terms and commits never regress; leaders are unique per term
        and hold every entry committed before their term."""
        raft = rep.raft
        if raft is None:
            return
        term = raft.term
        commit = raft.commit_index
        checker = self.host.checker
        checker.observe(rep.group, self.node_id, term, commit)
        if raft.role is not Role.LEADER:
            return
        conf = raft.conf
        prev_conf = rep.conf_seen
        if rep.led_term != term:
            rep.led_term = term
            checker.leader(rep.group, self.node_id, term)
            checker.leader_log(rep.group, self.node_id, term, lambda i: core_term_at(raft, i))
            rep.commit_marked = -1
            prev_conf = None
        elif conf is not prev_conf and conf != prev_conf:
            # Only a leader's membership is trusted to move forward: it never resets its log,
            # while a follower moved to a log start may replay older CONFIG entries.
            assert prev_conf is not None
            self.host.membership_changed(rep.group, prev_conf, conf)
        rep.conf_seen = conf
        if commit != rep.commit_marked:
            first = rep.commit_marked < 0
            rep.commit_marked = commit
            entry_term = core_term_at(raft, commit)
            if entry_term != COMPACTED:
                assert entry_term is not None, (commit, raft.last_index)
                checker.leader_commit(rep.group, term, commit, entry_term)
                if not first:  # the leader itself moved its commit index
                    self._check_commit_safe(rep, commit, entry_term, prev_conf)

    def _check_commit_safe(
        self, rep: Replica, index: int, term: int, prev_conf: ConfState | None
    ) -> None:
        """The commit was counted under the leader's membership before or after this step
        (committing a CONFIG entry switches it): the entry must be safe under one of them."""
        raft = rep.raft
        assert raft is not None
        host = self.host
        checker = host.checker
        try:
            voters = raft.conf.voters
            checker.commit_safe(rep.group, index, term,
                                host.log_summaries(rep.group, index, term, voters))
        except Violation:
            if prev_conf is None or prev_conf.voters == voters:
                raise
            checker.commit_safe(rep.group, index, term,
                                host.log_summaries(rep.group, index, term, prev_conf.voters))
