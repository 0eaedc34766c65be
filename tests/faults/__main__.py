"""`python -m tests.faults`: one seeded fault-injection run against real broker processes.

    python -m tests.faults --minutes 5 --seed 42                # every available fault kind
    python -m tests.faults --brokers 5 --faults kill-leader,pause
    python -m tests.faults --replay /tmp/faults-xyz             # the same schedule again
    python -m tests.faults --seed 42 --dry-run                  # print the schedule only

Partition kinds need network namespaces and disk-full needs tmpfs mounts (root); when this
machine cannot make them, a line says so and those kinds are left out. Exit status 0 when the
run passes, 1 when it fails (the artifacts and the replay command are printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.faults.nemesis import (
    DISK_KINDS,
    FAULT_KINDS,
    NETWORK_KINDS,
    Schedule,
    ScheduleError,
    parse_kinds,
)
from tests.faults.runner import RunConfig, make_schedule, run

__all__ = ["build_parser", "config_from_args", "main", "unavailable_kinds"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=1.0,
                   help="schedule faults over this long (each kind runs at least once)")
    p.add_argument("--seed", type=int, default=None, help="default: a random seed, printed")
    p.add_argument("--brokers", type=int, choices=(3, 5), default=3,
                   help="5 = three controller voters and two non-voters")
    p.add_argument("--faults", default=",".join(FAULT_KINDS),
                   help="comma list of fault kinds (default: all available): "
                        + ", ".join(FAULT_KINDS))
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=300.0, help="records per second to produce")
    p.add_argument("--liveness-s", type=float, default=30.0,
                   help="after the heal, every partition must be led and written within this")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="scale fault durations and gaps (0.5: twice as many faults per minute)")
    p.add_argument("--out", type=Path, default=None,
                   help="artifact directory (default: a new temp dir)")
    p.add_argument("--replay", type=Path, default=None, metavar="DIR",
                   help="run the schedule (seed, brokers, steps) of an earlier run's directory")
    p.add_argument("--dry-run", action="store_true", help="print the schedule as JSON and exit")
    return p


def unavailable_kinds(kinds: Sequence[str]) -> dict[str, str]:
    """Kinds this machine cannot inject -> why."""
    out: dict[str, str] = {}
    if NETWORK_KINDS & set(kinds):
        from tests.faults.netns import netns_unavailable
        reason = netns_unavailable()
        if reason:
            out.update({k: f"network namespaces unavailable: {reason}"
                        for k in kinds if k in NETWORK_KINDS})
    if DISK_KINDS & set(kinds):
        from tests.faults.disk import mounts_unavailable
        reason = mounts_unavailable()
        if reason:
            out.update({k: f"tmpfs mounts unavailable: {reason}" for k in kinds if k in DISK_KINDS})
    return out


def config_from_args(args: argparse.Namespace,
                     log: Callable[[str], None] = print) -> RunConfig:
    """The run the parsed command line asks for. Raises ScheduleError for bad input."""
    common: dict[str, Any] = {"partitions": args.partitions, "rate_per_s": args.rate,
                              "liveness_bound_s": args.liveness_s}
    if args.replay is not None:
        schedule = Schedule.read(args.replay / "schedule.json")
        missing = unavailable_kinds(sorted({s.kind for s in schedule.steps}))
        if missing:
            raise ScheduleError(f"cannot replay here: {'; '.join(sorted(set(missing.values())))}")
        log(f"replaying {args.replay}: seed {schedule.seed}, {len(schedule.steps)} steps")
        return RunConfig(seed=schedule.seed, duration_s=schedule.end_s, kinds=schedule.kinds,
                         brokers=schedule.brokers, schedule=schedule, out_dir=_out_dir(args),
                         **{**common, "partitions": schedule.partitions})
    kinds = parse_kinds(args.faults)
    for kind, reason in sorted(unavailable_kinds(kinds).items()):
        log(f"skipping {kind}: {reason}")
        kinds = tuple(k for k in kinds if k != kind)
    if not kinds:
        raise ScheduleError("no fault kind left to inject")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    return RunConfig(seed=seed, duration_s=args.minutes * 60.0, kinds=kinds,
                     brokers=args.brokers, time_scale=args.time_scale,
                     out_dir=_out_dir(args), **common)


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    if args.dry_run:  # nothing is written
        return Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="faults-"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ScheduleError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(make_schedule(config).to_json())
        return 0
    result = run(config, log=lambda line: print(line, flush=True))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
