"""Running seeds and reporting: one seed's replay command, failure report and a run summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from broker.raft.core import RaftNode
from tests.sim.cluster import SimResult, Simulation
from tests.sim.node import NodeFactory
from tests.sim.scenario import TICK_US, draw_scenario

__all__ = ["run_seed", "run_seeds", "replay_command", "format_failure", "Summary"]


def run_seed(
    seed: int,
    *,
    steps: int,
    nodes: int,
    groups: int,
    factory: NodeFactory = RaftNode,
    faults: bool = True,
    force: Sequence[str] = (),
) -> SimResult:
    scenario = draw_scenario(
        seed, nodes=nodes, groups=groups, steps=steps, faults=faults, force=force
    )
    return Simulation(scenario, factory).run()


def replay_command(
    seed: int, *, steps: int, nodes: int, groups: int, force: Sequence[str] = (), flags: str = ""
) -> str:
    """The command line that replays `seed`; `flags` are extra options it ran with."""
    cmd = f"python -m tests.sim --seed {seed} --steps {steps} --nodes {nodes} --groups {groups}"
    return cmd + (f" --faults {','.join(force)}" if force else "") + (f" {flags}" if flags else "")


def format_failure(
    result: SimResult,
    *,
    steps: int,
    nodes: int,
    groups: int,
    force: Sequence[str] = (),
    flags: str = "",
) -> str:
    scenario = draw_scenario(
        result.seed, nodes=nodes, groups=groups, steps=steps, force=force
    )
    lines = [
        f"FAILED seed {result.seed}: {result.failure}",
        f"  {result.detail}".replace("\n", "\n  "),
        f"  faults enabled: {', '.join(scenario.faults.enabled) or 'none'}",
        f"  after {result.events} events, {result.sim_time_us / 1e6:.3f} s simulated",
        "  replay: "
        + replay_command(
            result.seed, steps=steps, nodes=nodes, groups=groups, force=force, flags=flags
        ),
        "  trace tail:",
        *(f"    {line}" for line in result.trace_tail),
    ]
    return "\n".join(lines)


@dataclass(slots=True)
class Summary:
    seeds: int = 0
    events: int = 0
    elapsed_s: float = 0.0
    acked: int = 0
    settle_us_max: int = 0
    settle_seed: int = -1
    faults: Counter[str] = field(default_factory=Counter)
    failures: list[SimResult] = field(default_factory=list)

    def add(self, result: SimResult) -> None:
        self.seeds += 1
        self.events += result.events
        self.acked += result.acked
        self.faults.update(result.faults)
        if result.settle_us > self.settle_us_max:
            self.settle_us_max, self.settle_seed = result.settle_us, result.seed
        if result.failure is not None:
            self.failures.append(result)

    def format(self) -> str:
        rate = self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0
        faults = ", ".join(f"{k} {v:,}" for k, v in sorted(self.faults.items()) if v)
        lines = [
            f"seeds run: {self.seeds:,} (failed: {len(self.failures)})",
            f"events: {self.events:,} in {self.elapsed_s:.1f} s ({rate:,.0f} events/s)",
            f"faults injected: {faults or 'none'}",
            f"values acked: {self.acked:,}",
        ]
        if self.settle_seed >= 0:
            lines.append(f"slowest settling after healing: {self.settle_us_max / TICK_US:.0f} "
                         f"ticks (seed {self.settle_seed})")
        return "\n".join(lines)


def run_seeds(
    seeds: Iterable[int],
    *,
    steps: int,
    nodes: int,
    groups: int,
    factory: NodeFactory = RaftNode,
    force: Sequence[str] = (),
    on_result: Callable[[SimResult], None] | None = None,
    time_limit_s: float | None = None,
) -> Summary:
    """Run each seed (stopping early once `time_limit_s` of wall time is spent)."""
    summary = Summary()
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(
            seed, steps=steps, nodes=nodes, groups=groups, factory=factory, force=force
        )
        summary.add(result)
        if on_result is not None:
            on_result(result)
        summary.elapsed_s = time.perf_counter() - started
        if time_limit_s is not None and summary.elapsed_s > time_limit_s:
            break
    return summary
