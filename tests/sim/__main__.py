"""`python -m tests.sim`: run the Raft simulator over seeds; see tests/sim/__init__.py."""

from __future__ import annotations

import argparse
import sys

from broker.raft.core import RaftNode
from tests.sim.broken import BrokenCommitNode
from tests.sim.cluster import SimResult
from tests.sim.faults import FAULT_KINDS
from tests.sim.node import NodeFactory
from tests.sim.runner import format_failure, run_seeds

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.sim",
        description="Seeded deterministic simulation of the Raft core under faults.",
    )
    p.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    p.add_argument("--start-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--seed", type=int, help="run exactly this seed (replay)")
    p.add_argument("--steps", type=int, default=3000, help="events per seed with faults on")
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--groups", type=int, default=3, help="Raft groups sharing the nodes")
    p.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    p.add_argument(
        "--faults", default="",
        help="fault kinds to enable in every seed, comma-separated (others stay random): "
        + ", ".join(FAULT_KINDS),
    )
    p.add_argument("--time-limit-s", type=float, help="stop starting seeds after this long")
    p.add_argument(
        "--broken-commit", action="store_true",
        help="self-test: run a core whose commit rule counts replicas of earlier terms",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.groups < 1 or args.steps < 0 or args.seeds < 1:
        print("error: --groups and --seeds must be positive, --steps not negative",
              file=sys.stderr)
        return 2
    force = [k for k in args.faults.split(",") if k]
    unknown = [k for k in force if k not in FAULT_KINDS]
    if unknown:
        print(f"error: unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}",
              file=sys.stderr)
        return 2
    seeds = [args.seed] if args.seed is not None else range(
        args.start_seed, args.start_seed + args.seeds)
    factory: NodeFactory = BrokenCommitNode if args.broken_commit else RaftNode
    flags = "--broken-commit" if args.broken_commit else ""

    def report(result: SimResult) -> None:
        if result.failure is not None:
            print(format_failure(result, steps=args.steps, nodes=args.nodes, groups=args.groups,
                                 force=force, flags=flags), flush=True)
        elif not args.quiet:
            print(f"seed {result.seed}: ok, {result.events} events, {result.acked} acked, "
                  f"trace {result.trace_hash:016x}", flush=True)

    summary = run_seeds(
        seeds, steps=args.steps, nodes=args.nodes, groups=args.groups, factory=factory,
        force=force, on_result=report, time_limit_s=args.time_limit_s,
    )
    print(summary.format())
    if summary.failures:
        print("failed seeds: " + " ".join(str(r.seed) for r in summary.failures))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
