"""Swarm testing: each seed enables a random subset of fault kinds with random intensities.

Testing every seed with every fault at once hides the bugs that only one fault at a given
intensity exposes (a partition that lasts, with no crash to reset it), so `draw_fault_plan`
switches each kind on with probability one half and draws its rate from a wide range.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Collection
from dataclasses import dataclass

from tests.sim.network import NetworkConfig

__all__ = ["FAULT_KINDS", "FaultPlan", "draw_fault_plan", "draw_cut_tail", "quiet_plan"]

FAULT_KINDS = (
    "drop",  # a message envelope is lost
    "duplicate",  # an envelope arrives twice
    "delay",  # an envelope takes far longer than usual (reorders)
    "partition",  # a symmetric partition: two sides cannot talk; heals
    "one-way",  # some directed links are cut; heals
    "crash",  # a node loses everything not synced; restarts later
    "crash-leader",  # the same, aimed at the leader of a random group
    "isolate-leader",  # the leader of a random group is cut off from everyone; heals
    "torn-write",  # a crash keeps a prefix of the unsynced writes
    "slow-disk",  # a sync takes simulated time; after-persist messages wait for it
    "pause",  # a node stops (as SIGSTOP or a long GC pause), then resumes with a backlog
    "transfer",  # leadership transfer to a random voter
    "retention",  # a node deletes a prefix of its applied log (lagging peers need a log start)
    "reconfigure",  # a single-server membership change (needs nodes outside the group)
    "damage",  # a crash also loses a synced suffix of one group's log (damage found and cut
    # on restart, as storage does); that replica repairs from the leader
    "cut-tail",  # a crash also cuts synced entries off one group's log unnoticed (its newest
    # segment cut short, taken for a torn write); only the leader can tell it. Drawn only
    # when forced (see draw_cut_tail)
)
_DRAWN_FIRST = FAULT_KINDS[:-2]  # "damage" and "cut-tail" come last: older seeds keep their plans


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Rates are mean gaps between occurrences (exponential); 0 disables a kind."""

    enabled: tuple[str, ...]
    network: NetworkConfig
    partition_every_us: int
    one_way_every_us: int
    partition_us_max: int  # a partition heals after a uniform time in [1, max)
    crash_every_us: int
    crash_leader_every_us: int
    isolate_leader_every_us: int
    downtime_us_max: int  # a crashed node restarts after a uniform time in [1, max)
    torn_probability: float  # chance a crash keeps a prefix of each group's unsynced writes
    damage_probability: float  # chance a crash also damages one group's log on that node
    sync_us_max: int  # a sync takes a uniform time in [0, max); 0: instantaneous
    pause_every_us: int
    pause_us_max: int
    transfer_every_us: int
    retention_every_us: int
    reconfigure_every_us: int
    tick_skew: float  # each node's tick interval is scaled by a factor in [1-skew, 1+skew]
    tick_jitter_us: int  # and each tick comes up to this late
    cut_tail_probability: float = 0.0  # chance a crash also cuts one group's synced tail


def quiet_plan(tick_us: int) -> FaultPlan:
    """No faults at all: the baseline a correct core must make steady progress under."""
    return FaultPlan(
        enabled=(),
        network=NetworkConfig(),
        partition_every_us=0,
        one_way_every_us=0,
        partition_us_max=1,
        crash_every_us=0,
        crash_leader_every_us=0,
        isolate_leader_every_us=0,
        downtime_us_max=1,
        torn_probability=0.0,
        damage_probability=0.0,
        sync_us_max=0,
        pause_every_us=0,
        pause_us_max=1,
        transfer_every_us=0,
        retention_every_us=0,
        reconfigure_every_us=0,
        tick_skew=0.0,
        tick_jitter_us=0,
    )


def draw_fault_plan(
    rng: random.Random, election_us: int, force: Collection[str] = ()
) -> FaultPlan:
    """A random subset of FAULT_KINDS at random intensities; times scale with `election_us`
    (the election timeout), so faults land at the pace elections happen. Kinds in `force` are
    on whatever the draw says (a forced run is its own scenario: replay it with the same
    `force`)."""
    on = {kind: rng.random() < 0.5 or kind in force for kind in _DRAWN_FIRST}
    on["torn-write"] = (on["crash"] or on["crash-leader"]) and on["torn-write"]
    e = election_us

    def span(lo: float, hi: float) -> int:
        """Log-uniform in [lo, hi) election timeouts: as many seeds at 0.1 as at 1."""
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))) * e)

    def every(kind: str, lo: float, hi: float) -> int:
        return span(lo, hi) if on[kind] else 0

    network = NetworkConfig(
        latency_us_min=rng.choice((50, 200, 500)),
        latency_us_jitter=rng.choice((100, 1_000, 5_000)),
        drop_probability=rng.uniform(0.01, 0.3) if on["drop"] else 0.0,
        duplicate_probability=rng.uniform(0.01, 0.2) if on["duplicate"] else 0.0,
        delay_probability=rng.uniform(0.01, 0.3) if on["delay"] else 0.0,
        delay_us_max=int(rng.uniform(0.1, 3.0) * e) if on["delay"] else 0,
    )
    on["damage"] = on["cut-tail"] = False  # drawn later, after every older kind's draws
    plan = FaultPlan(
        enabled=tuple(k for k in FAULT_KINDS if on[k]),
        network=network,
        partition_every_us=every("partition", 0.05, 4),
        one_way_every_us=every("one-way", 0.05, 4),
        partition_us_max=span(0.1, 4),
        crash_every_us=every("crash", 0.05, 4),
        crash_leader_every_us=every("crash-leader", 0.05, 4),
        isolate_leader_every_us=every("isolate-leader", 0.05, 4),
        downtime_us_max=span(0.05, 4),
        torn_probability=rng.uniform(0.2, 1.0) if on["torn-write"] else 0.0,
        damage_probability=0.0,
        sync_us_max=span(0.005, 0.3) if on["slow-disk"] else 0,
        pause_every_us=every("pause", 0.1, 5),
        pause_us_max=span(0.1, 3),
        transfer_every_us=every("transfer", 0.1, 4),
        retention_every_us=every("retention", 0.05, 2),
        reconfigure_every_us=every("reconfigure", 0.1, 3),
        tick_skew=rng.uniform(0.0, 0.3),
        tick_jitter_us=int(rng.uniform(0.0, 0.05) * e),
    )
    damage = rng.random() < 0.5 or "damage" in force
    if not (damage and (on["crash"] or on["crash-leader"])):
        return plan
    return dataclasses.replace(plan, enabled=plan.enabled + ("damage",),
                               damage_probability=rng.uniform(0.1, 0.7))


def draw_cut_tail(rng: random.Random, plan: FaultPlan, force: Collection[str]) -> FaultPlan:
    """Turn "cut-tail" on when forced (with crashes on). Random plans never draw it: a replica
    that lost acknowledged entries unnoticed votes by its cut log until its leader tells it
    (RepairMark), and no protocol closes that window if the leader is gone or a candidate is
    faster, so seeds would fail on a loss no replica could detect. Forced runs show what the
    leader's mark covers; their failures need reading (see FINDINGS.md). Drawn after every
    other draw of the scenario, so other seeds keep their runs."""
    if "cut-tail" not in force or not (plan.crash_every_us or plan.crash_leader_every_us):
        return plan
    return dataclasses.replace(plan, enabled=plan.enabled + ("cut-tail",),
                               cut_tail_probability=rng.uniform(0.1, 0.7))
