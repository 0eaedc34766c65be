"""The simulation: N nodes running the real `RaftNode` for G groups, driven by one event queue.

Phases: boot every node; run `steps` events with the seed's faults on (ticks with per-node
skew, message deliveries through the faulty network, syncs, client proposals, fault injections);
then heal (faults stop, partitions heal, crashed nodes restart, paused nodes resume, clients
finish what they started) and require every group to settle (one leader, every pending value
acknowledged, every node applied up to the leader's commit) within a bounded number of ticks.
The checker runs on every observation; whole logs are cross-checked every K events and at the
end.

Determinism: every random choice comes from a `random.Random` seeded from the seed; events at
the same time run in scheduling order; the trace hash folds in every event and every Ready.
"""

from __future__ import annotations

import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from broker.raft.core import RaftNode
from broker.raft.messages import ConfState, ProposeResult, Role
from tests.sim.checker import COMPACTED, LIVENESS, Checker, LogView, Violation
from tests.sim.client import ClientPool
from tests.sim.events import (
    CLIENT, DELIVER, FAULT, KIND_NAMES, NOTE, PROBE, RESTART, RETIRE, SYNC_DONE, TICK, TURN,
    EventQueue,
)
from tests.sim.injector import SCHEDULED_FAULTS, FaultInjector
from tests.sim.network import Network
from tests.sim.node import NodeFactory, Replica, SimNode, core_term_at
from tests.sim.scenario import TICK_US, Scenario

__all__ = ["Simulation", "SimResult"]

_RETIRE_AFTER_US = 2 * TICK_US * 10  # the controller deletes a removed replica after a while
TRACE_TAIL = 40


@dataclass(slots=True, kw_only=True)
class SimResult:
    seed: int
    events: int = 0
    sim_time_us: int = 0
    trace_hash: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    proposals: int = 0
    settle_us: int = 0  # from healing to every group settled
    failure: str | None = None  # the broken invariant, or "exception"
    detail: str = ""
    trace_tail: list[str] = field(default_factory=list)


class Simulation:
    """One seed's run; see the module docstring."""

    def __init__(self, scenario: Scenario, factory: NodeFactory = RaftNode) -> None:
        self.scenario = scenario
        self.factory = factory
        plan = scenario.faults
        master = random.Random(f"sim/{scenario.seed}")

        def stream() -> random.Random:
            return random.Random(master.getrandbits(64))

        self._net_rng, fault_rng, self._disk_rng = stream(), stream(), stream()
        self._raft_rng, self._tick_rng, client_rng = stream(), stream(), stream()
        self.queue = EventQueue()
        self.checker = Checker()
        self.network = Network(plan.network, self._net_rng)
        self.raft_config = scenario.raft_config
        self.sync_instant = plan.sync_us_max == 0
        self.nodes: dict[int, SimNode] = {}
        for n in range(1, scenario.nodes + 1):
            skew = 1.0 + self._tick_rng.uniform(-plan.tick_skew, plan.tick_skew)
            self.nodes[n] = SimNode(n, self, int(TICK_US * skew))
        # Every node hosts every group: a node outside the initial voters holds a passive
        # replica until a membership change adds it.
        for g, voters in enumerate(scenario.voters):
            for node in self.nodes.values():
                node.add_group(g, voters)
        # (group, node) removed, not yet deleted -> the voters that must first hold the removal
        self._retiring: dict[tuple[int, int], frozenset[int]] = {}
        self.clients = ClientPool(
            queue=self.queue,
            proposer=self,
            checker=self.checker,
            rng=client_rng,
            members=tuple(tuple(self.nodes) for _ in scenario.voters),
            per_group=scenario.clients_per_group,
            think_us_max=scenario.think_us_max,
            retry_us=scenario.retry_us,
            ack_timeout_us=scenario.ack_timeout_us,
        )
        self.injector = FaultInjector(self, fault_rng, self._disk_rng)
        self._syncs_slow = 0
        self._settled = False
        self._events = 0
        self._hash = 0
        self._tail: deque[tuple[int, int, int, int, Any]] = deque(maxlen=TRACE_TAIL)
        self._handlers: list[Callable[[int, int, Any], None]] = [
            self._on_tick, self._on_deliver, self._on_sync_done, self._on_client,
            self._on_fault, self._on_heal, self._on_restart, self._on_probe, self._on_retire,
            self._on_turn,
        ]
        assert len(self._handlers) == NOTE

    # ---- running ----
    def run(self) -> SimResult:
        result = SimResult(seed=self.scenario.seed)
        try:
            self._boot()
            self._run_events(self.scenario.steps)
            self._heal_everything()
            result.settle_us = self._settle()
            self._final_check()
        except Violation as v:
            result.failure, result.detail = v.invariant, v.detail
        except Exception as exc:  # a crash in the core or the simulator: report, with seed
            result.failure = "exception"
            result.detail = "".join(traceback.format_exception(exc)).rstrip()
        if result.failure is not None:
            result.trace_tail = [self._describe(e) for e in self._tail]
        result.events = self._events
        result.sim_time_us = self.queue.now_us
        result.trace_hash = self._hash & 0xFFFF_FFFF_FFFF_FFFF
        result.faults = self._fault_summary()
        result.acked = self.checker.acked_count()
        result.proposals = self.clients.proposals
        return result

    def _boot(self) -> None:
        for node in self.nodes.values():
            self._start_node(node)
        self.injector.start()
        self.clients.start()

    def _run_events(self, limit: int) -> None:
        q = self.queue
        handlers = self._handlers
        tail = self._tail
        every = self.scenario.full_check_every
        while self._events < limit and q:
            event = q.pop()
            t, _, kind, a, b, c = event
            self._events += 1
            self._hash = hash((self._hash, t, kind, a, b))
            tail.append((t, kind, a, b, c))
            handlers[kind](a, b, c)
            if self._events % every == 0:
                self._full_check()

    def _heal_everything(self) -> None:
        self.injector.on = False
        self.network.faulty = False
        self.network.heal_all()
        self.clients.stopping = True
        for g, n in list(self._retiring):
            self._on_retire(g, n, None)  # those still needed stay until they are not
        for node in self.nodes.values():
            node.paused_until_us = 0
            if not node.up:
                self._start_node(node)
        self.queue.push(self.queue.now_us, PROBE)

    def _settle(self) -> int:
        """Run until every group settles; returns how long that took (us)."""
        ticks = self.scenario.liveness_ticks
        healed_us = self.queue.now_us
        deadline_us = healed_us + ticks * TICK_US
        while not self._settled:
            if not self.queue or self.queue.now_us > deadline_us:
                raise Violation(LIVENESS, f"not settled {ticks} ticks after healing: "
                                f"{self._unsettled_reason()}")
            self._run_events(self._events + 1)
        return self.queue.now_us - healed_us

    # ---- event handlers ----
    def _on_tick(self, n: int, incarnation: int, _: Any) -> None:
        node = self.nodes[n]
        if not node.up or incarnation != node.incarnation:
            return
        now = self.queue.now_us
        if node.paused_until_us > now:
            self.queue.push(node.paused_until_us, TICK, n, incarnation)
            return
        reps = [r for r in node.replicas.values() if r.raft is not None]
        for rep in reps:
            raft = rep.raft
            raft.tick()  # type: ignore[union-attr]
            raft.check_invariants()  # type: ignore[union-attr]
        node.turn(reps)
        self._flush(node)
        jitter = self._tick_rng.randrange(self.scenario.faults.tick_jitter_us + 1)
        self.queue.push(now + node.tick_us + jitter, TICK, n, incarnation)

    def _on_deliver(self, src: int, dst: int, envelope: Any) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        if node.paused_until_us > self.queue.now_us:
            self.queue.push(node.paused_until_us, DELIVER, src, dst, envelope)
            return
        if self.network.is_cut(src, dst):
            return
        reps: list[Replica] = []
        for g, msg in envelope:
            rep = node.replicas[g]
            raft = rep.raft
            if raft is None:
                continue  # the replica was deleted
            raft.step(msg)
            raft.check_invariants()
            if rep not in reps:
                reps.append(rep)
        node.turn(reps)
        self._flush(node)

    def _on_sync_done(self, n: int, incarnation: int, ticket: Any) -> None:
        node = self.nodes[n]
        if not node.up or incarnation != node.incarnation:
            return  # the node crashed before the sync completed: nothing became durable
        if node.paused_until_us > self.queue.now_us:
            self.queue.push(node.paused_until_us, SYNC_DONE, n, incarnation, ticket)
            return
        node.on_sync_done(ticket)
        self._flush(node)

    def _on_turn(self, n: int, incarnation: int, _: Any) -> None:
        node = self.nodes[n]
        if not node.up or incarnation != node.incarnation:
            return
        if node.paused_until_us > self.queue.now_us:
            self.queue.push(node.paused_until_us, TURN, n, incarnation)
            return
        node.turn([r for r in node.replicas.values() if r.raft is not None])
        self._flush(node)

    def continue_turn(self, node: SimNode) -> None:
        """The node's driver yielded with work left: it carries on in its next turn."""
        self.queue.push(self.queue.now_us, TURN, node.node_id, node.incarnation)

    def _on_client(self, group: int, index: int, attempt: Any) -> None:
        self.clients.on_event(group, index, attempt)

    def _on_fault(self, i: int, _: int, __: Any) -> None:
        self.injector.on_fault(i)

    def _on_heal(self, pid: int, _: int, __: Any) -> None:
        self.network.heal(pid)

    def _on_restart(self, n: int, incarnation: int, _: Any) -> None:
        node = self.nodes[n]
        if not node.up and incarnation == node.incarnation:
            self._start_node(node)

    def _on_probe(self, _: int, __: int, ___: Any) -> None:
        if self._unsettled_reason() is None:
            self._settled = True
        else:
            self.queue.push(self.queue.now_us + TICK_US, PROBE)

    # ---- what nodes and clients call ----
    def propose_at(self, n: int, group: int, value: bytes) -> tuple[ProposeResult, int]:
        node = self.nodes[n]
        rep = node.replicas.get(group)
        if rep is None or rep.raft is None or node.paused_until_us > self.queue.now_us:
            return ProposeResult.DROPPED, 0
        raft = rep.raft
        result = raft.propose(value)
        raft.check_invariants()
        hint = raft.leader_id
        node.turn([rep])
        self._flush(node)
        return result, hint

    def sync_latency_us(self) -> int:
        top = self.scenario.faults.sync_us_max
        if top == 0:
            return 0
        self._syncs_slow += 1
        return self._disk_rng.randrange(top)

    def log_summaries(
        self, group: int, index: int, term: int, voters: frozenset[int]
    ) -> list[tuple[int, bool, int, int, bool]]:
        """For each of `voters`: (node, holds entry (index, term), last term and last index it
        votes by, repairing after damage), from the core's log on a running node and from the
        durable log on a crashed one. A repairing node votes by the larger of its log's last
        entry and its repair mark."""
        out = []
        for n in sorted(voters):
            rep = self.nodes[n].replicas[group]
            raft = rep.raft
            if raft is not None:
                last = raft.last_index
                have = core_term_at(raft, index)
                last_term = raft.term_at(last)
                mark = raft.repair_mark
            else:
                log = rep.storage.volatile  # after a crash: what survived
                last = log.last_index()
                have = None if index > last else COMPACTED if index < log.start_index \
                    else log.term_at(index)
                last_term = log.term_at(last)
                mark = log.hard_state.repair_mark if log.hard_state is not None else (0, 0)
            repairing = mark[1] > 0
            last_term, last = max((last_term, last), mark)
            out.append((n, have == term or have == COMPACTED, last_term, last, repairing))
        return out

    def membership_changed(self, group: int, old: ConfState, new: ConfState) -> None:
        """A committed membership change: nodes it removed get their replica deleted soon,
        as the controller would (a removed node never hears of its removal otherwise)."""
        gone = (old.voters | old.learners) - (new.voters | new.learners)
        for n in sorted(gone):
            if (group, n) not in self._retiring and not self.nodes[n].replicas[group].retired:
                self._retiring[(group, n)] = new.voters
                self.queue.push(self.queue.now_us + _RETIRE_AFTER_US, RETIRE, group, n)

    def _on_retire(self, group: int, n: int, _: Any) -> None:
        """Delete the removed replica once every voter of the membership that removed it holds
        that membership durably (its hard state's, which is as of its commit index). Until
        then such a voter still counts the removed replica in its own membership, as the core
        applies memberships at commit: deleting it takes a vote that membership's majorities
        need (seeds 600311 and 400047: the leader alone knew the removal committed, then lost
        its log tail to damage and votes by its repair mark, which the two voters left could
        not reach; without the removed replica they were two of four)."""
        voters = self._retiring.get((group, n))
        if voters is None:
            return
        if any(self._still_counts(group, v, n) for v in sorted(voters - {n})):
            self.queue.push(self.queue.now_us + _RETIRE_AFTER_US, RETIRE, group, n)
            return
        del self._retiring[(group, n)]
        self.note(f"group {group}: replica on node {n} deleted")
        self.nodes[n].retire(group)

    def _still_counts(self, group: int, voter: int, n: int) -> bool:
        """Does `voter`'s durable membership in `group` still include node `n`?"""
        rep = self.nodes[voter].replicas[group]
        if rep.retired:
            return False
        hard = rep.storage.durable.hard_state
        return hard is not None and n in hard.conf.voters | hard.conf.learners

    def ever_removed(self, group: int, n: int) -> bool:
        """Was `n` removed from `group` (its replica deleted, or about to be)?"""
        return (group, n) in self._retiring or self.nodes[n].replicas[group].retired

    def after_input(self, node: SimNode, group: int) -> None:
        """An input was given to one replica outside an event handler: check and drive it."""
        rep = node.replicas[group]
        assert rep.raft is not None
        rep.raft.check_invariants()
        node.turn([rep])
        self._flush(node)

    def trace(self, a: int, b: int, c: int) -> None:
        self._hash = hash((self._hash, a, b, c))

    # ---- helpers ----
    def _start_node(self, node: SimNode) -> None:
        node.start(self.factory, self._raft_rng)
        phase = self._tick_rng.randrange(node.tick_us)
        self.queue.push(self.queue.now_us + phase, TICK, node.node_id, node.incarnation)
        node.turn(list(node.replicas.values()))
        self._flush(node)

    def _flush(self, node: SimNode, report: bool = True) -> None:
        """Send what the node's turn produced: one envelope per peer, through the network."""
        outbox = node.outbox
        if not outbox:
            return
        q = self.queue
        now = q.now_us
        src = node.node_id
        fate = self.network.fate
        unreachable: list[tuple[int, int]] = []
        for dst in sorted(outbox):
            envelope = tuple(outbox[dst])
            if report and not self.nodes[dst].up and self._net_rng.random() < 0.5:
                unreachable.extend((g, dst) for g, _ in envelope)
            for latency in fate(src, dst):
                q.push(now + latency, DELIVER, src, dst, envelope)
        outbox.clear()
        if unreachable:
            self._report_unreachable(node, unreachable)

    def _report_unreachable(self, node: SimNode, pairs: list[tuple[int, int]]) -> None:
        """The transport could not hand these messages over: tell the groups (once per turn,
        so a core that re-sends at once cannot loop)."""
        reps: list[Replica] = []
        done: list[tuple[int, int]] = []
        for pair in pairs:
            if pair in done:
                continue
            done.append(pair)
            rep = node.replicas[pair[0]]
            if rep.raft is None:
                continue
            rep.raft.report_unreachable(pair[1])
            rep.raft.check_invariants()
            if rep not in reps:
                reps.append(rep)
        node.turn(reps)
        self._flush(node, report=False)

    def _full_check(self) -> None:
        checker = self.checker
        for g in range(self.scenario.groups):
            checker.full_check(g, self._views(g))
            for n, node in self.nodes.items():
                raft = node.replicas[g].raft
                if raft is not None:
                    checker.commit_covers(g, n, raft.commit_index, partial(core_term_at, raft))

    def _views(self, g: int) -> list[LogView]:
        views = []
        for n, node in self.nodes.items():
            rep = node.replicas[g]
            log = rep.storage.volatile
            applied = rep.applied if rep.raft is not None else log.start_index
            views.append(
                LogView(node=n, start_index=log.start_index, entries=log.entries, applied=applied)
            )
        return views

    def _final_check(self) -> None:
        self._full_check()
        for g in range(self.scenario.groups):
            leader = self._settled_leader(g)
            assert leader is not None
            members = leader.conf.voters | leader.conf.learners
            views = self._views(g)
            self.checker.final_check(g, [v for v in views if v.node in members])

    def _unsettled_reason(self) -> str | None:
        """None once every group has one leader whose log is all committed, applied everywhere,
        and no client waits; else what is still missing."""
        if not self.clients.idle():
            return f"values not acknowledged: {self.clients.pending_values()[:5]}"
        for g in range(self.scenario.groups):
            reason = self._group_unsettled(g)
            if reason is not None:
                return reason
        return None

    def _settled_leader(self, g: int) -> RaftNode | None:
        """The one live leader of the highest term among running replicas, if there is one."""
        rafts = [r for node in self.nodes.values() if (r := node.replicas[g].raft) is not None]
        top = max(r.term for r in rafts)
        leaders = [r for r in rafts if r.role is Role.LEADER and r.term == top]
        return leaders[0] if len(leaders) == 1 else None

    def _group_unsettled(self, g: int) -> str | None:
        leader = self._settled_leader(g)
        if leader is None:
            return f"group {g}: no single leader"
        if not leader.has_committed_in_term or leader.commit_index != leader.last_index:
            return f"group {g}: leader {leader.node_id} commit {leader.commit_index} of " \
                   f"{leader.last_index}"
        for n in sorted(leader.conf.voters | leader.conf.learners):
            rep = self.nodes[n].replicas[g]
            if rep.raft is None:
                return f"group {g}: member {n} is not running"
            if rep.applied != leader.commit_index or rep.outstanding is not None:
                return f"group {g}: node {n} applied {rep.applied} of {leader.commit_index}"
        return None

    def _fault_summary(self) -> dict[str, int]:
        out = dict(self.injector.counts)
        out["slow-disk"] = self._syncs_slow
        stats = self.network.stats
        out["drop"] = stats["dropped"]
        out["duplicate"] = stats["duplicated"]
        out["delay"] = stats["delayed"]
        return out

    # ---- reporting ----
    def _describe(self, event: tuple[int, int, int, int, Any]) -> str:
        t, kind, a, b, c = event
        head = f"{t / 1000:10.3f}ms {KIND_NAMES[kind]:9}"
        if kind == DELIVER:
            msgs = "; ".join(f"g{g} {str(m)[:300]}" for g, m in c)
            return f"{head} {a}->{b}: {msgs}"
        if kind in (TICK, SYNC_DONE, RESTART, TURN):
            return f"{head} node {a}"
        if kind == CLIENT:
            return f"{head} group {a} client {b}"
        if kind == FAULT:
            return f"{head} {SCHEDULED_FAULTS[a]}"
        if kind == NOTE:
            return f"{head} {c}"
        return f"{head} {a} {b}"

    def note(self, text: str) -> None:
        """A line for the trace tail (what a fault did), shown when the seed fails."""
        self._tail.append((self.queue.now_us, NOTE, 0, 0, text))

