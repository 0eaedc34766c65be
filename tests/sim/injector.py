"""Injecting the seed's faults into a running simulation, at exponential intervals.

Network loss, duplication and delay live in the network itself (network.py) and slow syncs in
the disk model; this module schedules the discrete faults: partitions, crashes, pauses,
leadership transfers, retention and membership changes, and what heals or restarts them later.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from broker.raft.messages import ConfChange, ConfChangeKind, ProposeResult, Role
from tests.sim.events import FAULT, HEAL, RESTART
from tests.sim.faults import FAULT_KINDS, FaultPlan
from tests.sim.node import Replica, SimNode

if TYPE_CHECKING:
    from tests.sim.cluster import Simulation

__all__ = ["FaultInjector", "SCHEDULED_FAULTS"]

SCHEDULED_FAULTS = (
    "partition", "one-way", "crash", "crash-leader", "isolate-leader", "pause", "transfer",
    "retention", "reconfigure",
)
_RETAIN_MAX = 8  # retention keeps up to this many applied entries
_VOTERS_MIN = 3  # membership changes never shrink a group below this


class FaultInjector:
    """Schedules and injects the discrete faults of a `FaultPlan`; counts them by kind."""

    __slots__ = ("_sim", "_plan", "_rng", "_disk_rng", "on", "counts")

    def __init__(self, sim: Simulation, rng: random.Random, disk_rng: random.Random) -> None:
        self._sim = sim
        self._plan: FaultPlan = sim.scenario.faults
        self._rng = rng
        self._disk_rng = disk_rng
        self.on = True  # False once faults stop: scheduled faults are skipped
        self.counts = dict.fromkeys(FAULT_KINDS, 0)

    def start(self) -> None:
        for i, kind in enumerate(SCHEDULED_FAULTS):
            if self._every_us(kind):
                self._schedule(i)

    def on_fault(self, i: int) -> None:
        if not self.on:
            return
        kind = SCHEDULED_FAULTS[i]
        inject = {
            "partition": self._partition,
            "one-way": self._one_way,
            "crash": self._crash_any,
            "crash-leader": self._crash_leader,
            "isolate-leader": self._isolate_leader,
            "pause": self._pause,
            "transfer": self._transfer,
            "retention": self._retention,
            "reconfigure": self._reconfigure,
        }[kind]
        if inject():
            self.counts[kind] += 1
        self._schedule(i)

    def _every_us(self, kind: str) -> int:
        plan = self._plan
        return {
            "partition": plan.partition_every_us,
            "one-way": plan.one_way_every_us,
            "crash": plan.crash_every_us,
            "crash-leader": plan.crash_leader_every_us,
            "isolate-leader": plan.isolate_leader_every_us,
            "pause": plan.pause_every_us,
            "transfer": plan.transfer_every_us,
            "retention": plan.retention_every_us,
            "reconfigure": plan.reconfigure_every_us,
        }[kind]

    def _schedule(self, i: int) -> None:
        mean_us = self._every_us(SCHEDULED_FAULTS[i])
        gap_us = int(self._rng.expovariate(1.0 / mean_us)) + 1
        q = self._sim.queue
        q.push(q.now_us + gap_us, FAULT, i)

    # ---- the network ----
    def _heal_later(self, pid: int) -> None:
        q = self._sim.queue
        q.push(q.now_us + 1 + self._rng.randrange(self._plan.partition_us_max), HEAL, pid)

    def _partition(self) -> bool:
        sim = self._sim
        ids = list(sim.nodes)
        self._rng.shuffle(ids)
        k = self._rng.randrange(1, len(ids))
        side, others = sorted(ids[:k]), sorted(ids[k:])
        sim.note(f"partition {side} | {others}")
        self._heal_later(sim.network.partition(side, others))
        return True

    def _one_way(self) -> bool:
        sim = self._sim
        links = [(a, b) for a in sim.nodes for b in sim.nodes if a != b]
        cut = self._rng.sample(links, self._rng.randrange(1, len(sim.nodes) + 1))
        sim.note(f"cut links {sorted(cut)}")
        self._heal_later(sim.network.cut(cut))
        return True

    def _isolate_leader(self) -> bool:
        _, node = self._leader_of_random_group()
        if node is None:
            return False
        sim = self._sim
        others = [n for n in sim.nodes if n != node.node_id]
        sim.note(f"isolate leader {node.node_id}")
        self._heal_later(sim.network.partition([node.node_id], others))
        return True

    # ---- processes ----
    def _leader_of_random_group(self) -> tuple[int, SimNode | None]:
        """A random group and the node leading it (the one with the highest term if several
        think they lead, among those not paused), or None if it has no such leader."""
        sim = self._sim
        g = self._rng.randrange(sim.scenario.groups)
        now = sim.queue.now_us
        best: tuple[int, int] | None = None
        for n, node in sim.nodes.items():
            raft = node.replicas[g].raft
            if raft is None or raft.role is not Role.LEADER or node.paused_until_us > now:
                continue
            if best is None or raft.term > best[0]:
                best = (raft.term, n)
        return g, None if best is None else sim.nodes[best[1]]

    def _crash_any(self) -> bool:
        up = [n for n in self._sim.nodes.values() if n.up]
        return bool(up) and self._crash(self._rng.choice(up))

    def _crash_leader(self) -> bool:
        _, node = self._leader_of_random_group()
        return node is not None and self._crash(node)

    def _crash(self, node: SimNode) -> bool:
        torn = node.crash(self._disk_rng, self._plan.torn_probability)
        self.counts["torn-write"] += torn
        sim = self._sim
        sim.note(f"crash node {node.node_id} ({torn} groups torn)")
        if self._plan.damage_probability and self._rng.random() < self._plan.damage_probability:
            self._damage(node)
        cut_p = self._plan.cut_tail_probability
        if cut_p and self._rng.random() < cut_p:
            self._cut_tail(node)
        downtime_us = 1 + self._rng.randrange(self._plan.downtime_us_max)
        sim.queue.push(sim.queue.now_us + downtime_us, RESTART, node.node_id, node.incarnation)
        return True

    def _damage(self, node: SimNode) -> None:
        """Damage one group's log on the crashed `node`, only where no other replica of that
        group is repairing: damage on a majority can lose committed entries whatever the
        protocol does (the fault tests damage a minority too)."""
        sim = self._sim
        groups = [g for g, rep in node.replicas.items() if not rep.retired
                  and not any(_repairing(other.replicas[g]) for other in sim.nodes.values()
                              if other is not node)]
        if not groups:
            return
        g = self._rng.choice(groups)
        keep = node.replicas[g].storage.damage(self._disk_rng)
        if keep is None:
            return
        sim.checker.damaged(g, node.node_id)
        self.counts["damage"] += 1
        sim.note(f"group {g}: node {node.node_id} finds damage and keeps its log up to {keep}")

    def _cut_tail(self, node: SimNode) -> None:
        """Cut synced entries off one group's log on the crashed `node`, as storage would take
        its newest segment cut short (see CrashStorage.cut_tail); only where no other replica
        of that group is repairing, as for damage."""
        sim = self._sim
        groups = [g for g, rep in node.replicas.items() if not rep.retired
                  and not any(_repairing(other.replicas[g]) for other in sim.nodes.values()
                              if other is not node)]
        if not groups:
            return
        g = self._rng.choice(groups)
        storage = node.replicas[g].storage
        before = storage.durable.hard_state
        keep = storage.cut_tail(self._disk_rng)
        if keep is None:
            return
        if storage.durable.hard_state is not before:
            sim.checker.damaged(g, node.node_id)  # its durable commit went down
        self.counts["cut-tail"] += 1
        sim.note(f"group {g}: node {node.node_id} lost its log after {keep} unnoticed")

    def _pause(self) -> bool:
        sim = self._sim
        now = sim.queue.now_us
        running = [n for n in sim.nodes.values() if n.up and n.paused_until_us <= now]
        if not running:
            return False
        node = self._rng.choice(running)
        pause_us = 1 + self._rng.randrange(self._plan.pause_us_max)
        node.paused_until_us = now + pause_us
        sim.note(f"pause node {node.node_id} for {pause_us / 1000:.1f}ms")
        return True

    # ---- operations ----
    def _transfer(self) -> bool:
        g, node = self._leader_of_random_group()
        if node is None:
            return False
        raft = node.replicas[g].raft
        assert raft is not None
        others = sorted(raft.conf.voters - {node.node_id})
        if not others:
            return False
        target = self._rng.choice(others)
        self._sim.note(f"group {g}: transfer leadership {node.node_id} -> {target}")
        raft.transfer_leadership(target)
        self._sim.after_input(node, g)
        return True

    def _reconfigure(self) -> bool:
        """One single-server membership change on a random group's leader: promote a learner,
        add a node never in the group as a learner, or remove a voter (never below three).
        A removed node's replica is deleted (see Simulation.membership_changed) and its id is
        never added back: a fresh replica under an old id could vote twice in a term."""
        g, node = self._leader_of_random_group()
        if node is None:
            return False
        raft = node.replicas[g].raft
        assert raft is not None
        if raft.has_pending_conf_change or not raft.has_committed_in_term:
            return False
        sim = self._sim
        conf = raft.conf
        spares = [n for n in sim.nodes if n not in conf.voters and n not in conf.learners
                  and not sim.ever_removed(g, n)]
        changes = [ConfChange(kind=ConfChangeKind.PROMOTE, node=n) for n in sorted(conf.learners)]
        if spares and not conf.learners:
            changes.append(ConfChange(kind=ConfChangeKind.ADD_LEARNER, node=spares[0]))
        if len(conf.voters) > _VOTERS_MIN:
            changes += [
                ConfChange(kind=ConfChangeKind.REMOVE, node=n) for n in sorted(conf.voters)
            ]
        if not changes:
            return False
        change = self._rng.choice(changes)
        sim.note(f"group {g}: leader {node.node_id} proposes {change.kind.name} {change.node}")
        accepted = raft.propose_conf_change(change) is ProposeResult.ACCEPTED
        sim.after_input(node, g)
        return accepted

    def _retention(self) -> bool:
        """Delete a prefix of one replica's applied log, as retention does: peers that lag
        behind it can only continue from its new log start."""
        sim = self._sim
        node = self._rng.choice(list(sim.nodes.values()))
        rep = node.replicas[self._rng.randrange(sim.scenario.groups)]
        if not node.up or rep.raft is None:
            return False
        index = rep.applied - self._rng.randrange(_RETAIN_MAX)
        if index < rep.storage.first_index():
            return False
        sim.note(f"group {rep.group}: node {node.node_id} deletes its log up to {index}")
        rep.storage.delete_prefix(index)
        return True


def _repairing(rep: Replica) -> bool:
    """Repairing now, or would be after a restart (the end of a repair not yet durable)."""
    if rep.retired:
        return False
    hs = rep.storage.durable.hard_state
    return (rep.raft is not None and rep.raft.repairing) or (hs is not None and hs.repairing)
