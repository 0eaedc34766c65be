"""One fault-injection run: cluster, topic, recorded workload, nemesis schedule, heal, liveness
check, final read, checker; a summary, and on failure the artifacts that replay it.

    result = run(RunConfig(seed=7, duration_s=60, kinds=FAULT_KINDS, out_dir=Path("out")))

The out directory always holds schedule.json (seed, brokers, steps), seed, history.jsonl
(streamed while the run goes on), summary.txt, client.log (the producer and consumer libraries'
own log: retries, resets, rebalances) and logs/ (the brokers' logs). When the run fails
(a checker violation, a liveness miss or a harness error) it also holds verdict.json and the
brokers' data directories, and the summary ends with the command that replays the run; a
passing run's broker data is deleted (it can be large).

Liveness: after the last heal every partition must have a leader and an acknowledged write
within `liveness_bound_s`. The worst unavailability window is the longest time between two
consecutive acknowledgements (any partition) over the whole run: a figure, never a verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.client.admin import AdminClient
from tests.faults.checker import Verdict, check
from tests.faults.disk import SmallDisk, damage_segment
from tests.faults.history import History
from tests.faults.nemesis import (
    DISK_KINDS,
    NETWORK_KINDS,
    Executor,
    Schedule,
    generate,
)
from tests.faults.netns import Fabric, NetnsCluster
from tests.faults.workload import Workload
from tests.integration.cluster import ClusterError, LocalCluster, NotYet, wait_until

__all__ = ["RunConfig", "RunResult", "finish", "replay_command", "run", "worst_gap_s"]

TOPIC = "faults"
GROUP = "faults"
SEGMENT_BYTES_MAX = 256 << 10  # small segments: corrupt-segment finds sealed ones to damage
DISK_BYTES_MIN = 96 << 20  # the small disk under one broker's data dir (disk-full) ...
DISK_BYTES_PER_RECORD = 512  # ... grows with the run: a replica stores ~100 B per record ...
DISK_BYTES_MAX = 2 << 30  # ... up to this (tmpfs: filling it takes as much memory)
CLIENT_LOGGERS = ("producer", "consumer", "broker.client")
REJOIN_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0
FINAL_READ_TIMEOUT_S = 90.0
ADMIN_TIMEOUT_MS = 3000
OTHER_VIOLATIONS = ("ack_mismatch", "unordered", "commit_backwards", "unexpected")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    seed: int
    duration_s: float  # the nemesis schedules faults over this long (each kind at least once)
    kinds: tuple[str, ...]
    out_dir: Path
    brokers: int = 3  # 5: three controller voters and two non-voters
    partitions: int = 6
    replication_factor: int = 3
    rate_per_s: float = 300.0
    liveness_bound_s: float = 30.0
    time_scale: float = 1.0  # fault durations and gaps drawn scaled by this (CI: shorter)
    schedule: Schedule | None = None  # a replay: run exactly these steps

    @property
    def voters(self) -> int:
        return min(self.brokers, 3)

    @property
    def disk_bytes(self) -> int:
        """The disk-full broker's tmpfs: room for everything the run writes (with margin), so
        only the injected fault fills it; a long run outgrew a fixed size."""
        written = self.rate_per_s * self.duration_s * DISK_BYTES_PER_RECORD
        return min(max(DISK_BYTES_MIN, int(written)), DISK_BYTES_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    ok: bool
    verdict: Verdict
    liveness_ok: bool
    liveness: str  # what the liveness check saw
    errors: tuple[str, ...]  # harness errors (a broker did not come back, ...)
    faults: Mapping[str, int]  # injected per kind
    worst_gap_s: float
    out_dir: Path
    summary: str


def replay_command(out_dir: Path) -> str:
    return f"python -m tests.faults --replay {out_dir}"


def make_schedule(config: RunConfig) -> Schedule:
    if config.schedule is not None:
        return config.schedule
    disk_broker = 0
    if DISK_KINDS & set(config.kinds):  # a seeded choice, so a replay mounts the same broker
        disk_broker = random.Random(config.seed).randrange(config.brokers) + 1
    return generate(seed=config.seed, duration_s=config.duration_s, kinds=config.kinds,
                    brokers=config.brokers, voters=config.voters,
                    partitions=config.partitions, disk_broker=disk_broker,
                    time_scale=config.time_scale)


def run(config: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    """Run once; never raises for what the cluster does (that goes into the result)."""
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    schedule = make_schedule(config)
    schedule.write(out / "schedule.json")
    (out / "seed").write_text(f"{schedule.seed}\n")
    log(f"fault run: seed {schedule.seed}, {schedule.brokers} brokers, {len(schedule.steps)} "
        f"steps over {schedule.end_s:.0f} s ({', '.join(schedule.kinds)}); out {out}")
    state = _RunState(config=config, schedule=schedule, log=log,
                      history=History(out / "history.jsonl"))
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_client_log(out / "client.log"))
            state.execute(stack)
        except Exception as e:  # noqa: BLE001 - the boundary: every harness error is a result
            state.errors.append(f"{type(e).__name__}: {e}")
            log(f"run error: {traceback.format_exc(limit=6)}")
        finally:
            state.closing()
    faults = dict(state.executor.applied) if state.executor is not None else {}
    return finish(out, liveness_ok=state.liveness_ok, liveness=state.liveness,
                  errors=tuple(state.errors), faults=faults, log=log)


@dataclass(slots=True, kw_only=True)
class _RunState:
    config: RunConfig
    schedule: Schedule
    log: Callable[[str], None]
    history: History
    cluster: LocalCluster | None = None
    workload: Workload | None = None
    executor: Executor | None = None
    errors: list[str] = field(default_factory=list)
    liveness_ok: bool = False
    liveness: str = "not checked"
    replicas: dict[int, tuple[int, ...]] = field(default_factory=dict)  # partition -> brokers
    final_read: bool = False
    started_s: float = field(default_factory=time.monotonic)

    # ---- the run --------------------------------------------------------------------------
    def phase(self, text: str) -> None:
        self.history.record("note", what="phase", text=text)
        self.log(f"{time.strftime('%H:%M:%S')} {text} ({time.monotonic() - self.started_s:.1f} s "
                 "into the run)")

    def execute(self, stack: contextlib.ExitStack) -> None:
        cluster, fabric, disks = self._make_cluster(stack)
        self.cluster = cluster
        stack.callback(cluster.stop_all)
        cluster.start()
        cluster.wait_ready(READY_TIMEOUT_S)
        described = cluster.create_topic(TOPIC, self.config.partitions,
                                         self.config.replication_factor)
        self.phase(f"cluster of {len(cluster.node_ids)} ready, topic {TOPIC!r} created")
        self.replicas = {p["partition"]: tuple(p["replicas"]) for p in described["partitions"]}
        workload = Workload(cluster.bootstrap, self.history, topic=TOPIC,
                            partitions=self.config.partitions,
                            rate_per_s=self.config.rate_per_s, group_id=GROUP)
        self.workload = workload
        self.executor = Executor(
            cluster=cluster, history=self.history, locate=self._locate,
            replica_partitions=lambda b: [p for p, rs in self.replicas.items() if b in rs],
            damage=_damage_function(), wait_alive=self._wait_alive, fabric=fabric,
            disks=disks, log=self.log)
        workload.start()
        self.phase("workload started")
        self.executor.run(self.schedule, time.monotonic())
        self._heal_and_check_liveness()
        self._stop_and_read()
        self.phase("final read done")

    def _make_cluster(self, stack: contextlib.ExitStack) -> tuple[LocalCluster, Any, dict]:
        data_root = self.config.out_dir / "cluster"
        kinds = {s.kind for s in self.schedule.steps}
        env = {"RAFTLOG_SEGMENT_BYTES_MAX": str(SEGMENT_BYTES_MAX)}
        fabric = None
        if kinds & NETWORK_KINDS:
            fabric = stack.enter_context(Fabric(self.schedule.brokers))
            cluster: LocalCluster = NetnsCluster(fabric, self.schedule.brokers,
                                                 data_root=data_root, voters=self.schedule.voters,
                                                 env_overrides=env)
        else:
            cluster = LocalCluster(self.schedule.brokers, data_root=data_root,
                                   voters=self.schedule.voters, env_overrides=env)
        disks = {}
        if kinds & DISK_KINDS:
            b = self.schedule.disk_broker
            path = data_root / f"broker-{b}"  # LocalCluster's data dir naming
            path.mkdir(parents=True, exist_ok=True)
            disks[b] = stack.enter_context(SmallDisk(path, self.config.disk_bytes))
        return cluster, fabric, disks

    def _admin(self) -> AdminClient:
        assert self.cluster is not None
        return AdminClient(self.cluster.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_MS)

    def _locate(self, role: str) -> int | None:
        try:
            with self._admin() as admin:
                if role == "controller":
                    return admin.describe_cluster().controller
                partition = int(role.removeprefix("leader:"))
                return admin.describe_topic(TOPIC).partitions[partition].leader
        except Exception as e:  # noqa: BLE001 - no answer now: the executor falls back
            self.history.record("note", what="nemesis", text=f"locate {role}: {e!r}")
            return None

    def _wait_alive(self, node_id: int) -> None:
        def alive() -> bool:
            with self._admin() as admin:
                brokers = {b.node_id: b.alive for b in admin.describe_cluster().brokers}
            if not brokers.get(node_id):
                raise NotYet(f"brokers alive: {brokers}")
            return True

        assert self.cluster is not None
        self.cluster.wait_until(alive, timeout_s=REJOIN_TIMEOUT_S,
                                what=f"broker {node_id} to rejoin the cluster")

    def _heal_and_check_liveness(self) -> None:
        assert self.executor is not None and self.cluster is not None
        self.executor.heal_all()
        watch = _AckWatch(self.history)  # from here on: the history before is not read again
        self.phase("healed")
        start_s = time.monotonic()
        try:
            wait_until(lambda: self._live(watch), timeout_s=self.config.liveness_bound_s,
                       what="every partition to have a leader and an acknowledged write "
                            "after the heal", interval_s=0.5)
        except ClusterError as e:
            self.liveness = str(e).splitlines()[0] + f"; {self._live_detail(watch)}"
            self.phase(f"liveness FAILED: {self.liveness}")
            return
        self.liveness_ok = True
        self.liveness = f"every partition led and written {time.monotonic() - start_s:.1f} s " \
                        f"after the heal"
        self.phase(f"liveness ok: {self.liveness}")

    def _live(self, watch: _AckWatch) -> bool:
        watch.poll()
        waiting = set(range(self.config.partitions)) - watch.acked_after_heal
        if waiting:
            raise NotYet(f"no acknowledged write since the heal on partitions {sorted(waiting)}")
        with self._admin() as admin:
            leaderless = [p.partition for p in admin.describe_topic(TOPIC).partitions
                          if p.leader is None]
        if leaderless:
            raise NotYet(f"partitions without a leader: {leaderless}")
        return True

    def _live_detail(self, watch: _AckWatch) -> str:
        waiting = set(range(self.config.partitions)) - watch.acked_after_heal
        return f"partitions without an acknowledged write since the heal: {sorted(waiting)}"

    def _stop_and_read(self) -> None:
        assert self.workload is not None
        self.workload.stop()
        self.phase("workload stopped")
        self.workload.drain_and_read_all(FINAL_READ_TIMEOUT_S)
        self.final_read = True

    def closing(self) -> None:
        """Stop the workload if it still runs and heal what is left (after an error)."""
        if self.workload is not None and not self.final_read:
            with contextlib.suppress(Exception):
                self.workload.stop()
        if self.executor is not None and self.executor.resolved:
            try:
                self.executor.heal_all()
            except Exception as e:  # noqa: BLE001 - teardown: report, go on
                self.errors.append(f"heal after error: {type(e).__name__}: {e}")
        if self.executor is not None:
            self.executor.note_exits()
            self.errors += [f"broker exited unexpectedly: {line}"
                            for line in self.executor.unexpected_exits]
        self.history.close()


class _AckWatch:
    """Reads the history file as it grows: which partitions were acknowledged after the
    "healed" note. Made just before that note, it starts at the file's end: a long run's
    history is millions of lines, and parsing them all again made the check take a minute."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.position = history.flushed_size()
        self.healed = False
        self.acked_after_heal: set[int] = set()

    def poll(self) -> None:
        self.history.flush()
        with open(self.history.path, "rb") as f:
            f.seek(self.position)
            for line in f:
                if not line.endswith(b"\n"):  # still being written
                    break
                self.position += len(line)
                op = json.loads(line)
                if op["kind"] == "note" and op.get("text") == "healed":
                    self.healed = True
                elif op["kind"] == "ack" and self.healed:
                    self.acked_after_heal.add(op["partition"])


@contextlib.contextmanager
def _client_log(path: Path) -> Iterator[None]:
    """The client libraries' log lines (INFO and up) into `path` while the run lasts."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def _damage_function() -> Callable[[Path, int, str, random.Random], str]:
    def damage(data_dir: Path, partition: int, mode: str, rng: random.Random) -> str:
        assert mode in ("flip", "truncate"), mode
        return damage_segment(data_dir, TOPIC, partition,
                              mode="flip" if mode == "flip" else "truncate", rng=rng)

    return damage


# ---- the verdict, the summary, the artifacts --------------------------------------------------
def worst_gap_s(ack_times: list[float]) -> float:
    """The longest time between consecutive acknowledgements (any partition)."""
    times = sorted(ack_times)
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def _noting_ack_times(ops: Iterable[dict], ack_times: list[float]) -> Iterator[dict]:
    for op in ops:
        if op["kind"] == "ack":
            ack_times.append(op["t"])
        yield op


def finish(out: Path, *, liveness_ok: bool, liveness: str, errors: tuple[str, ...] = (),
           faults: Mapping[str, int], log: Callable[[str], None] = print) -> RunResult:
    """Check out/history.jsonl, print the summary, copy the brokers' logs to out/logs; for a
    failed run write verdict.json and keep the brokers' data (a passing run's is deleted)."""
    ack_times: list[float] = []  # one pass over the history, which is not held in memory
    verdict = check(_noting_ack_times(History.iter_ops(out / "history.jsonl"), ack_times))
    ok = verdict.ok and liveness_ok and not errors
    result = RunResult(ok=ok, verdict=verdict, liveness_ok=liveness_ok, liveness=liveness,
                       errors=errors, faults=dict(faults), worst_gap_s=worst_gap_s(ack_times),
                       out_dir=out, summary="")
    summary = summarize(result)
    (out / "summary.txt").write_text(summary + "\n")
    _copy_logs(out)
    if ok:
        shutil.rmtree(out / "cluster", ignore_errors=True)
    else:
        (out / "verdict.json").write_text(json.dumps(
            {**verdict.to_dict(), "liveness_ok": liveness_ok, "liveness": liveness,
             "errors": list(errors)}, indent=1))
    log(summary)
    return dataclasses.replace(result, summary=summary)


def summarize(r: RunResult) -> str:
    c = r.verdict.counts
    lines = [
        f"fault run {'PASSED' if r.ok else 'FAILED'} ({r.out_dir})",
        f"  acknowledged {c.get('acked', 0)} of {c.get('sent', 0)} sent; read "
        f"{c.get('reads', 0)} ({c.get('final_reads', 0)} by the final reader); "
        f"commits {c.get('commits_ok', 0)} ok",
        "  faults injected: " + (", ".join(f"{k} {n}" for k, n in sorted(r.faults.items()))
                                 or "none"),
        f"  lost {c.get('lost', 0)}, duplicates {c.get('duplicates', 0)}, inconsistent "
        f"{c.get('inconsistent', 0)}, unverified {c.get('unverified', 0)}, other violations "
        f"{sum(c.get(k, 0) for k in OTHER_VIOLATIONS)}",
        f"  worst unavailability window {r.worst_gap_s:.2f} s",
        f"  liveness: {'ok' if r.liveness_ok else 'FAILED'}: {r.liveness}",
    ]
    lines += [f"  problem: {p}" for p in r.verdict.problems]
    lines += [f"  error: {e.splitlines()[0]}" for e in r.errors]
    if not r.ok:
        lines.append(f"  replay: {replay_command(r.out_dir)}")
    return "\n".join(lines)


def _copy_logs(out: Path) -> None:
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for path in sorted((out / "cluster").glob("broker-*.log")):
        shutil.copy2(path, logs / path.name)
