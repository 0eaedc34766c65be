"""The nemesis: a seeded schedule of faults and the executor that applies and heals them.

A schedule is pure data drawn from `random.Random(seed)`: steps (at_s, kind, targets,
duration_s) written as JSON and replayed exactly. Broker ids are drawn from the seed; where a
kind aims at a role ("leader:<partition>", "controller"), the broker holding that role is
looked up when the step runs, and the concrete choice goes into the history as a "fault" op.

Overlap rule (so a run stays easy to reason about): steps run one after another with a quiet
gap in between, except a "combined" step, which starts while the previous one is active and
hits the same broker (for example: isolate a leader, then SIGKILL it while it is isolated).
So at most a minority of brokers is ever down at once, except during kill-majority and
full-restart, which take a majority down on purpose and then heal it. Every requested kind
appears at least once (in turn, shuffled), so a very short run lasts as long as one of each.

The kinds: kill-leader / kill-random / kill-majority (SIGKILL, restart at the heal); pause
(SIGSTOP, SIGCONT at the heal); partition-majority (a majority and a minority group),
partition-leader (isolate the controller's or a partition's leader), partition-one-way (drop
what a leader sends to one peer) through the netns fabric; rolling-restart (SIGTERM and
restart each broker in turn, each rejoining before the next goes); full-restart (SIGKILL
every broker, start them all at the heal); disk-full (fill the small disk under one broker's
data dir); corrupt-segment (SIGKILL a broker, damage a segment of one of its replicas, restart
it at the heal).

Heals reconcile each broker with the steps still holding it: a broker is restarted or
resumed only when no active step keeps it down, and a broker whose disk was full is SIGKILLed
and restarted once freed (a failed log dir needs a restart, as in Kafka). Actions that take
time (a restart waits for the broker to rejoin) shift every later event, so each fault keeps
its scheduled duration and the quiet gap after it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.integration.cluster import BrokerDied

__all__ = [
    "COMBINABLE_KINDS",
    "DISK_KINDS",
    "DOWN_KINDS",
    "EXCLUSIVE_KINDS",
    "FAULT_KINDS",
    "NETWORK_KINDS",
    "Executor",
    "Schedule",
    "ScheduleError",
    "Step",
    "generate",
    "parse_kinds",
]

FAULT_KINDS = (
    "kill-leader", "kill-random", "kill-majority", "pause",
    "partition-majority", "partition-leader", "partition-one-way",
    "rolling-restart", "full-restart", "disk-full", "corrupt-segment",
)
NETWORK_KINDS = frozenset({"partition-majority", "partition-leader", "partition-one-way"})
DISK_KINDS = frozenset({"disk-full"})  # need a size-limited mount under one broker's data dir
EXCLUSIVE_KINDS = frozenset({"kill-majority", "rolling-restart", "full-restart"})
# A combined step may start while one of these is active and hit the same broker with one of
# the second kinds: SIGKILL or SIGSTOP a broker that is isolated, paused or out of disk.
COMBINABLE_KINDS = frozenset({"pause", "partition-leader", "disk-full"})
_SECOND_OF_COMBINATION = {"pause": ("kill-random",), "partition-leader": ("kill-random", "pause"),
                          "disk-full": ("kill-random", "pause")}

SCHEDULE_VERSION = 1
WARMUP_S = 3.0  # the workload runs unharmed this long first
# A pause or partition outlasts the default election timeout (10..20 ticks of 50 ms) and
# check-quorum's lease, whatever the time scale, so leadership really moves.
HOLD_S_MIN = 2.0
_HELD_KINDS = frozenset({"pause"}) | NETWORK_KINDS
GAP_S = (2.0, 4.0)  # quiet time between steps: the cluster recovers
DURATION_S = {  # (min, max) fault duration per kind
    "kill-leader": (1.0, 4.0), "kill-random": (1.0, 4.0), "kill-majority": (2.0, 4.0),
    "pause": (HOLD_S_MIN, 4.0),
    "partition-majority": (2.0, 5.0), "partition-leader": (2.0, 5.0),
    "partition-one-way": (2.0, 5.0), "rolling-restart": (0.0, 0.0),
    "full-restart": (1.0, 3.0), "disk-full": (2.0, 4.0), "corrupt-segment": (0.5, 2.0),
}
COMBINE_PROBABILITY = 0.3
CORRUPT_MODES = ("flip", "truncate")


class ScheduleError(ValueError):
    """A schedule file or a requested fault kind is invalid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    at_s: float  # seconds after the workload started at which the fault begins
    kind: str  # one of FAULT_KINDS
    duration_s: float  # the fault lasts this long, then its heal runs
    targets: tuple[int, ...] = ()  # broker ids drawn from the seed (ordered where it matters)
    role: str = ""  # "leader:<p>" / "controller": target looked up at run time; "" otherwise
    pick: int = 0  # a seeded number for choices made at run time (a peer, a partition)
    mode: str = ""  # corrupt-segment: "flip" | "truncate"
    combined_with: int = -1  # index of the active step whose broker this one also hits

    @property
    def heal_at_s(self) -> float:
        return self.at_s + self.duration_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    seed: int
    brokers: int
    voters: int
    partitions: int
    kinds: tuple[str, ...]
    steps: tuple[Step, ...]
    disk_broker: int = 0  # the broker whose data dir is a SmallDisk (0: none)
    time_scale: float = 1.0  # durations and gaps were drawn scaled by this

    @property
    def end_s(self) -> float:
        return max((s.heal_at_s for s in self.steps), default=0.0)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.kind] = out.get(s.kind, 0) + 1
        return out

    def to_json(self) -> str:
        data = asdict(self)
        data["version"] = SCHEDULE_VERSION
        return json.dumps(data, indent=1)

    @staticmethod
    def from_json(text: str) -> Schedule:
        try:
            data = json.loads(text)
            if data.pop("version", None) != SCHEDULE_VERSION:
                raise ScheduleError(f"unknown schedule version in {text[:80]!r}")
            steps = tuple(Step(**{**s, "targets": tuple(s["targets"])}) for s in data.pop("steps"))
            schedule = Schedule(**{**data, "kinds": tuple(data["kinds"]), "steps": steps})
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ScheduleError(f"not a schedule: {e}") from None
        unknown = {s.kind for s in schedule.steps} - set(FAULT_KINDS)
        if unknown:
            raise ScheduleError(f"unknown fault kinds {sorted(unknown)}")
        return schedule

    def write(self, path: Path) -> None:
        path.write_text(self.to_json())

    @staticmethod
    def read(path: Path) -> Schedule:
        return Schedule.from_json(path.read_text())


def parse_kinds(text: str) -> tuple[str, ...]:
    """A comma list of fault kinds (CLI spelling) -> validated tuple, in FAULT_KINDS order."""
    asked = {k.strip() for k in text.split(",") if k.strip()}
    unknown = asked - set(FAULT_KINDS)
    if unknown:
        raise ScheduleError(f"unknown fault kinds {sorted(unknown)}; "
                            f"known: {', '.join(FAULT_KINDS)}")
    return tuple(k for k in FAULT_KINDS if k in asked)


# ---- generation (pure) ------------------------------------------------------------------------
def generate(*, seed: int, duration_s: float, kinds: Sequence[str], brokers: int,
             voters: int | None = None, partitions: int, disk_broker: int = 0,
             time_scale: float = 1.0) -> Schedule:
    """The schedule for `seed`: every kind once in a shuffled turn, then random kinds (some
    combined with the step before) until `duration_s` is used up. `time_scale` shortens (or
    stretches) fault durations and gaps; pauses and partitions still outlast the election
    timeout."""
    if not 0.1 <= time_scale <= 10:
        raise ScheduleError(f"time_scale {time_scale} outside [0.1, 10]")
    if not kinds:
        raise ScheduleError("no fault kinds to schedule")
    if "disk-full" in kinds and not 1 <= disk_broker <= brokers:
        raise ScheduleError("disk-full needs the broker whose data dir is a small disk")
    rng = random.Random(seed)
    gen = _Generator(rng=rng, brokers=brokers, partitions=partitions, disk_broker=disk_broker,
                     time_scale=time_scale)
    gap_s = (GAP_S[0] * time_scale, GAP_S[1] * time_scale)
    first_turn = list(kinds)
    rng.shuffle(first_turn)
    t = WARMUP_S * time_scale
    steps: list[Step] = []
    while first_turn or t < duration_s:
        kind = first_turn.pop() if first_turn else rng.choice(list(kinds))
        step = gen.step(kind, t)
        steps.append(step)
        t = step.heal_at_s + rng.uniform(*gap_s)
        if kind in COMBINABLE_KINDS and rng.random() < COMBINE_PROBABILITY:
            second = gen.combined(rng.choice(_SECOND_OF_COMBINATION[kind]), step, len(steps) - 1)
            steps.append(second)
            t = max(t, second.heal_at_s + rng.uniform(*gap_s))
    return Schedule(seed=seed, brokers=brokers, voters=voters or brokers, partitions=partitions,
                    kinds=tuple(kinds), steps=tuple(steps), disk_broker=disk_broker,
                    time_scale=time_scale)


@dataclass(slots=True, kw_only=True)
class _Generator:
    rng: random.Random
    brokers: int
    partitions: int
    disk_broker: int
    time_scale: float

    def duration_s(self, kind: str) -> float:
        low, high = DURATION_S[kind]
        drawn = self.rng.uniform(low, high) * self.time_scale
        return round(max(drawn, HOLD_S_MIN) if kind in _HELD_KINDS else drawn, 3)

    @property
    def ids(self) -> list[int]:
        return list(range(1, self.brokers + 1))

    def majority(self) -> tuple[int, ...]:
        return tuple(sorted(self.rng.sample(self.ids, self.brokers // 2 + 1)))

    def leader_role(self) -> str:
        if self.rng.random() < 0.25:
            return "controller"
        return f"leader:{self.rng.randrange(self.partitions)}"

    def step(self, kind: str, at_s: float) -> Step:
        base: dict[str, Any] = {"kind": kind, "at_s": round(at_s, 3),
                                "duration_s": self.duration_s(kind),
                                "pick": self.rng.randrange(1 << 30)}
        match kind:
            case "kill-leader" | "partition-leader":
                base["role"] = self.leader_role()
            case "kill-random" | "pause":
                base["targets"] = (self.rng.choice(self.ids),)
            case "kill-majority":
                base["targets"] = self.majority()
            case "partition-majority":
                majority = self.majority()
                base["targets"] = majority + tuple(i for i in self.ids if i not in majority)
            case "partition-one-way":
                base["role"] = self.leader_role()  # src; dst is another broker, by `pick`
            case "rolling-restart":
                order = self.ids
                self.rng.shuffle(order)
                base["targets"] = tuple(order)
            case "full-restart":
                base["targets"] = tuple(self.ids)
            case "disk-full":
                base["targets"] = (self.disk_broker,)
            case "corrupt-segment":
                base["targets"] = (self.rng.choice(self.ids),)
                base["mode"] = self.rng.choice(CORRUPT_MODES)
            case _:
                raise ScheduleError(f"unknown fault kind {kind!r}")
        return Step(**base)

    def combined(self, kind: str, previous: Step, index: int) -> Step:
        """`kind` on the broker `previous` hits, starting inside its window and healing
        no earlier than it would alone."""
        at_s = previous.at_s + self.rng.uniform(0.2, 0.8) * previous.duration_s
        return Step(kind=kind, at_s=round(at_s, 3), duration_s=self.duration_s(kind),
                    targets=previous.targets, role=previous.role, combined_with=index,
                    pick=self.rng.randrange(1 << 30))


# ---- execution ---------------------------------------------------------------------------------
class Recorder(Protocol):
    def record(self, kind: str, **fields: Any) -> None: ...


class Disk(Protocol):
    def fill(self, leave_bytes: int = 0) -> None: ...
    def unfill(self) -> None: ...


DOWN_KINDS = frozenset({"kill-leader", "kill-random", "kill-majority", "full-restart",
                        "corrupt-segment"})  # the broker process is dead while these hold it


@dataclass(slots=True, kw_only=True)
class Executor:
    """Applies and heals a schedule's steps on a running cluster, recording each as it goes.

    `cluster` is a LocalCluster (or NetnsCluster); `fabric` a netns Fabric (None: no network
    kinds); `disks` the SmallDisk of each broker that has one; `locate(role)` the broker holding
    a role now, or None; `replica_partitions(b)` the workload topic's partitions that broker b
    holds; `damage(data_dir, partition, mode, rng)` damages a stopped broker's segment;
    `wait_alive(b)` waits until a restarted broker has rejoined.
    """

    cluster: Any
    history: Recorder
    locate: Callable[[str], int | None]
    replica_partitions: Callable[[int], Sequence[int]]
    damage: Callable[[Path, int, str, random.Random], str] | None = None
    wait_alive: Callable[[int], None] = lambda _b: None
    fabric: Any = None
    disks: Mapping[int, Disk] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _line: None
    # state: which active steps hold each broker, what each step resolved to
    holds: dict[int, set[int]] = field(default_factory=dict)
    kinds_of: dict[int, str] = field(default_factory=dict)
    resolved: dict[int, tuple[int, ...]] = field(default_factory=dict)
    needs_restart: set[int] = field(default_factory=set)
    network_steps: set[int] = field(default_factory=set)
    applied: dict[str, int] = field(default_factory=dict)  # faults injected per kind
    unexpected_exits: list[str] = field(default_factory=list)  # brokers that died on their own

    def run(self, schedule: Schedule, start_s: float,
            should_stop: Callable[[], bool] = lambda: False) -> None:
        """Apply and heal every step at its time (monotonic clock, from `start_s`). Time spent
        in an action (a restart waits for the broker to rejoin) shifts every later event, so
        faults keep their scheduled durations and gaps. Returns after the last heal."""
        # At equal times heals go first (a gap may round to nothing), except a step's own heal,
        # which always follows its apply (rolling-restart lasts 0 s).
        events = sorted([(s.at_s, 1, i) for i, s in enumerate(schedule.steps)]
                        + [(s.heal_at_s, 0 if s.duration_s > 0 else 2, i)
                           for i, s in enumerate(schedule.steps)])
        lag_s = 0.0  # how far the schedule's clock is behind: actions that take time stop it
        for at_s, order, index in events:
            due_s = start_s + at_s + lag_s
            while (wait_s := due_s - time.monotonic()) > 0:
                if should_stop():
                    return
                time.sleep(min(wait_s, 0.2))
            if should_stop():
                return
            self.note_exits()
            step = schedule.steps[index]
            if order == 1:
                self.apply(index, step)
            else:
                self.heal(index, step.kind)
            lag_s += time.monotonic() - due_s

    def note_exits(self) -> None:
        """Record brokers that exited although no fault killed them (a crash is a finding;
        the next heal of that broker starts it again)."""
        for b in self.cluster.brokers.values():
            if b.expected_running and not b.is_running():
                b.expected_running = False
                self.unexpected_exits.append(b.status_line())
                self.history.record("note", what="nemesis", text=f"exited: {b.status_line()}")
                self.log(f"    broker exited unexpectedly: {b.status_line()}")

    # ---- apply ----------------------------------------------------------------------------
    def apply(self, index: int, step: Step) -> None:
        targets, detail = self._targets(index, step)
        self.resolved[index] = targets
        self.kinds_of[index] = step.kind
        self.history.record("fault", fault=step.kind, step=index, targets=list(targets),
                            role=step.role, detail=detail)
        self.log(f"{time.strftime('%H:%M:%S')} fault #{index} {step.kind} on {list(targets)}"
                 + (f" ({step.role})" if step.role else "") + (f": {detail}" if detail else ""))
        self.applied[step.kind] = self.applied.get(step.kind, 0) + 1
        getattr(self, "_apply_" + step.kind.replace("-", "_"))(index, step, targets)

    def _targets(self, index: int, step: Step) -> tuple[tuple[int, ...], str]:
        if step.combined_with >= 0:
            return self.resolved.get(step.combined_with, step.targets), ""
        if not step.role:
            return step.targets, ""
        ids = self.cluster.node_ids
        found = self.locate(step.role)
        detail = ""
        if found is None:  # no leader right now: fall back to a seeded broker, say so
            found = ids[step.pick % len(ids)]
            detail = f"{step.role} unknown, chose broker {found}"
        if step.kind == "partition-one-way":
            others = [i for i in ids if i != found]
            return (found, others[step.pick % len(others)]), detail
        return (found,), detail

    def _hold(self, index: int, brokers: Iterable[int]) -> None:
        for b in brokers:
            self.holds.setdefault(b, set()).add(index)

    def _kill(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        self._hold(index, targets)
        for b in targets:
            if self.cluster.brokers[b].is_running():
                self.cluster.kill(b)

    _apply_kill_leader = _apply_kill_random = _apply_kill_majority = _kill
    _apply_full_restart = _kill

    def _apply_pause(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        self._hold(index, targets)
        for b in targets:
            self.cluster.pause(b)

    def _apply_partition_majority(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        majority = targets[:len(targets) // 2 + 1]
        self._network(index, lambda: self.fabric.partition([majority, targets[len(majority):]]))

    def _apply_partition_leader(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        self._network(index, lambda: self.fabric.isolate(targets[0]))

    def _apply_partition_one_way(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        self._network(index, lambda: self.fabric.drop_one_way(targets[0], targets[1]))

    def _network(self, index: int, act: Callable[[], None]) -> None:
        assert self.fabric is not None, "a network fault was scheduled without a fabric"
        assert not self.network_steps, "network faults never overlap (see the generator)"
        self.network_steps.add(index)
        act()
        self.history.record("note", what="nemesis", text=f"network rules: {self.fabric.rules()}")

    def _apply_rolling_restart(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        for b in targets:  # graceful, one at a time, each rejoining before the next goes
            self.cluster.terminate(b)
            self.cluster.restart(b)
            self.wait_alive(b)

    def _apply_disk_full(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        self._hold(index, targets)
        for b in targets:
            self.disks[b].fill()

    def _apply_corrupt_segment(self, index: int, step: Step, targets: tuple[int, ...]) -> None:
        assert self.damage is not None, "corrupt-segment scheduled without a damage function"
        self._kill(index, step, targets)
        b = targets[0]
        held = sorted(self.replica_partitions(b))
        if not held:
            self.history.record("note", what="nemesis",
                                text=f"broker {b} holds no partition to damage")
            return
        partition = held[step.pick % len(held)]
        try:
            what = self.damage(self.cluster.brokers[b].data_dir, partition, step.mode,
                               random.Random(step.pick))
        except (OSError, ValueError, LookupError) as e:  # e.g. nothing written there yet
            what = f"nothing damaged: {type(e).__name__}: {e}"
        self.history.record("note", what="nemesis",
                            text=f"damaged broker {b} partition {partition}: {what}")
        self.log(f"    damaged broker {b} partition {partition}: {what}")

    # ---- heal -----------------------------------------------------------------------------
    def heal(self, index: int, kind: str) -> None:
        if index not in self.resolved:  # never applied (the run stopped early) or healed
            return
        targets = self.resolved.pop(index)
        self.history.record("heal", fault=kind, step=index, targets=list(targets))
        self.log(f"{time.strftime('%H:%M:%S')} heal  #{index} {kind} on {list(targets)}")
        if index in self.network_steps:
            self.network_steps.discard(index)
            self.fabric.heal()
        if kind == "disk-full":
            for b in targets:
                self.disks[b].unfill()
                self.needs_restart.add(b)
        for b in targets:
            self.holds.get(b, set()).discard(index)
        self._reconcile([b for b in targets if b in self.cluster.brokers])

    def heal_all(self) -> None:
        """Heal every active step (in the order they were applied), then make sure every
        broker runs unpaused with a free disk and the network has no rules."""
        self.note_exits()
        for index in sorted(self.resolved):
            self.heal(index, self.kinds_of[index])
        if self.fabric is not None:
            self.fabric.heal()
        for disk in self.disks.values():
            disk.unfill()
        self._reconcile(self.cluster.node_ids)

    def _reconcile(self, brokers: Sequence[int]) -> None:
        """Bring each broker to what its remaining holds allow: a dead broker starts again only
        when nothing holds it (a pause outliving the kill it was combined with keeps it down),
        a paused one resumes when no pause holds it, and a broker whose disk was freed is
        SIGKILLed and restarted once nothing holds it (a failed log dir needs a restart)."""
        to_start = []
        for b in brokers:
            kinds = {self.kinds_of[i] for i in self.holds.get(b, ())}
            proc = self.cluster.brokers[b]
            if not kinds and proc.is_running() and b in self.needs_restart:
                self.cluster.kill(b)
            if not proc.is_running():
                if not kinds & (DOWN_KINDS | {"pause"}):
                    self.needs_restart.discard(b)
                    to_start.append(b)
            elif proc.paused and "pause" not in kinds:
                self.cluster.resume(b)
        stopped = {b for b in self.cluster.node_ids if not self.cluster.brokers[b].is_running()}
        if len(to_start) > 1 and stopped == set(to_start):
            self.cluster.start()  # spawns every stopped broker at once, waits for all
        else:
            for b in to_start:
                self._restart(b)
        for b in to_start:
            if not self._disk_held(b):  # on a full disk it may never catch up: no wait
                self.wait_alive(b)

    def _disk_held(self, b: int) -> bool:
        return any(self.kinds_of[i] == "disk-full" for i in self.holds.get(b, ()))

    def _restart(self, b: int) -> None:
        """Restart one broker; on a disk that is still full it may refuse to start, which is
        recorded (the disk's heal restarts it again) rather than failing the run."""
        try:
            self.cluster.restart(b)
        except BrokerDied as e:
            if not self._disk_held(b):
                raise
            self.history.record("note", what="nemesis",
                                text=f"broker {b} exited at start on a full disk")
            self.log(f"    broker {b} exited at start on a full disk: {str(e).splitlines()[0]}")
