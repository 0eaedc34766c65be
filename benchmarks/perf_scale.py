"""`raftlog bench scale`: how the broker copes with many partitions (Raft groups).

    raftlog bench scale [--partitions 1000,3000] [--replication-factor 3] [--idle-seconds 30]
                        [--wait-seconds 300] [--json PATH] [--data-dir DIR] [--no-term] [--quiet]

For each partition count a fresh local 3-broker cluster is started (so one count's memory and
CPU do not leak into the next), and then:
1. baseline: idle CPU and RSS of every broker before any topic exists;
2. create: one topic with that many partitions (several topics of at most
   TOPIC_PARTITIONS_MAX when more), timed until every partition has a leader, and then until
   leadership is balanced (every partition led by its preferred leader, replicas[0]);
3. idle: CPU of every broker over `--idle-seconds` with nothing to do, and RSS at its end;
4. SIGKILL the broker leading the most partitions: time until every partition has a leader
   on another broker; restart it: time until it answers, and until leadership is balanced back;
5. the same with SIGTERM (a graceful shutdown hands leaderships off first), unless `--no-term`.

Who leads what is asked of each broker with one Metadata request for the topics, and only its
claims about itself are believed (a broker reports a partition as its own only while it leads
it and has committed in its term), so a dead or deposed leader is never counted. That is three
requests per look whatever the partition count; nothing is asked during the idle windows.
CPU is utime + stime from /proc/<pid>/stat over the window, as % of one core; memory is VmRSS
from /proc/<pid>/status. Every wait is bounded by `--wait-seconds`; a wait that runs out is
reported as null with the state reached, and the exit status is 1.

JSON (`--json PATH`; durations in seconds, null = not reached within --wait-seconds):
- `tool`, `started_at` (UTC), `config` {partitions: [int], replication_factor, idle_seconds,
  wait_seconds, brokers, term_restart}, `host` {cpus, loadavg_start, loadavg_end: [1, 5, 15 min]}
- `runs`: one per partition count:
  - `partitions`, `replication_factor`, `topics` [str], `ok` (every wait reached), `errors` [str],
    `log_tail` {broker id: last lines of its log} (only when something failed)
  - `baseline` {idle_seconds, cpu_percent {broker: %}, rss_bytes {broker: bytes}}
  - `create` {request_s (until the controller accepted), all_led_s, balanced_s (both from the
    request), cpu_seconds {broker: CPU spent from the request to all_led (or to the end of
    the wait)}, leaders {broker: partitions led then}, rss_bytes {broker: RSS at the end}}
  - `idle` {seconds, cpu_percent {broker: %}, cpu_percent_total, leaders {broker: n}}
  - `memory` {broker: {baseline_rss_bytes, rss_bytes, replicas (partition replicas it hosts),
    memory_per_partition_bytes ((rss - baseline) / replicas)}}, `memory_per_partition_bytes_mean`
  - `restarts` [{signal, broker, partitions_led (by it before the signal), all_led_s (signal
    until every partition is led by another broker), leaderless_max (partitions no broker
    claimed at the worst look), exit_s (signal to process exit), forced (it had to be SIGKILLed
    after EXIT_WAIT_S), ready_s (restart until it answers Metadata), balanced_s (restart until
    balanced), balanced_from_signal_s, rss_bytes_after (its RSS once balanced)}]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.failover import _spawn
from benchmarks.perf import PORT_ATTEMPTS, free_base_port
from broker.client import (
    BrokerConnection,
    ClientError,
    ClusterClient,
    KafkaError,
    error_code,
    parse_address,
)
from broker.controller.records import TOPIC_PARTITIONS_MAX
from broker.wire.errors import ErrorCode
from broker.wire.kafka.messages import (
    CreatableTopic,
    CreateTopicsRequest,
    MetadataRequest,
    MetadataRequestTopic,
)

__all__ = ["ScaleConfig", "Leadership", "main", "run_scale", "format_report"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BROKERS = 3
POLL_S = 0.5  # between looks at who leads what, at first
POLL_S_MAX = 2.0  # a long wait looks less often: each look costs the brokers a Metadata answer
PROGRESS_S = 2.0  # between progress lines
LOOK_TIMEOUT_MS = 3_000  # one Metadata request
CREATE_TIMEOUT_MS = 120_000  # the controller's CreateTopics wait
EXIT_WAIT_S = 30.0  # for a signalled broker to exit (shutdown_timeout_ms is 10 s)
LOG_TAIL_LINES = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleConfig:
    partitions: tuple[int, ...]
    replication_factor: int
    idle_seconds: float
    wait_seconds: float
    term_restart: bool = True
    data_dir: Path | None = None  # None: a temporary directory, removed afterwards
    quiet: bool = False


# ---- /proc ----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # stat fields 14 and 15


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


# ---- who leads what -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Leadership:
    """One look at every partition of the run's topics."""
    partitions: int  # how many the topics have in all
    leaders: dict[tuple[str, int], int]  # partition -> the broker that claims to lead it
    replicas: dict[tuple[str, int], tuple[int, ...]]  # as assigned; [0] is the preferred leader
    answered: frozenset[int]  # brokers that answered this look

    def led(self, *, besides: int | None = None) -> int:
        return sum(1 for node in self.leaders.values() if node != besides)

    def preferred(self) -> int:
        return sum(1 for key, node in self.leaders.items() if self.replicas[key][0] == node)

    def per_broker(self) -> dict[int, int]:
        counts = dict.fromkeys(range(1, BROKERS + 1), 0)
        for node in self.leaders.values():
            counts[node] = counts.get(node, 0) + 1
        return counts

    def hosted(self, node: int) -> int:
        return sum(1 for r in self.replicas.values() if node in r)


class _Probe:
    """A connection to each broker, asked for the topics' metadata."""

    def __init__(self, addresses: dict[int, str], topics: Sequence[tuple[str, int]]) -> None:
        self.addresses = addresses
        self.topics = list(topics)
        self.conns: dict[int, BrokerConnection] = {}

    async def look(self) -> Leadership:
        answers = await asyncio.gather(*(self._ask(n) for n in self.addresses))
        leaders: dict[tuple[str, int], tuple[int, int]] = {}  # -> (node, epoch)
        replicas: dict[tuple[str, int], tuple[int, ...]] = {}
        for node, response in zip(self.addresses, answers):
            for t in response.topics if response is not None else ():
                for p in t.partitions:
                    key = (t.name, p.partition_index)
                    replicas[key] = tuple(p.replica_nodes)
                    if p.leader_id == node and p.leader_epoch >= leaders.get(key, (0, -1))[1]:
                        leaders[key] = (node, p.leader_epoch)
        return Leadership(partitions=sum(n for _, n in self.topics),
                          leaders={k: node for k, (node, _) in leaders.items()},
                          replicas=replicas,
                          answered=frozenset(n for n, a in zip(self.addresses, answers) if a))

    async def _ask(self, node: int) -> Any:
        conn = self.conns.get(node)
        try:
            if conn is None or not conn.is_open:
                conn = self.conns[node] = await BrokerConnection.open(
                    parse_address(self.addresses[node]), client_id="raftlog-bench-scale",
                    request_timeout_ms=LOOK_TIMEOUT_MS, node_id=node)
            return await conn.send(MetadataRequest(
                topics=[MetadataRequestTopic(name=name) for name, _ in self.topics],
                allow_auto_topic_creation=False), timeout_ms=LOOK_TIMEOUT_MS)
        except ClientError:
            self.conns.pop(node, None)
            return None

    async def close(self) -> None:
        for conn in self.conns.values():
            await conn.close()
        self.conns.clear()


# ---- the cluster ----------------------------------------------------------------------------
@contextmanager
def _cluster(root: Path) -> Iterator[Any]:
    """A DevCluster of BROKERS processes under `root`, stopped (by their PIDs) on exit."""
    from broker.dev import DevCluster

    for attempt in range(PORT_ATTEMPTS):
        dev = DevCluster(brokers=BROKERS, data_dir=root, base_port=free_base_port())
        try:
            dev.start()
            break
        except RuntimeError:  # a port in the range is taken: another range
            if attempt == PORT_ATTEMPTS - 1:
                raise
    try:
        dev.wait_ready()
        yield dev
    finally:
        dev.stop()


def _log_tail(dev: Any) -> dict[str, list[str]]:
    out = {}
    for m in dev.members:
        try:
            lines = (m.data_dir / "broker.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        out[str(m.node_id)] = lines[-LOG_TAIL_LINES:]
    return out


async def _create_topics(bootstrap: str, topics: Sequence[tuple[str, int]],
                         replication_factor: int, deadline: float) -> None:
    """CreateTopics to the controller, one topic at a time (NOT_CONTROLLER: ask again)."""
    async with ClusterClient(bootstrap, request_timeout_ms=CREATE_TIMEOUT_MS) as cluster:
        for name, count in topics:
            while True:
                request = CreateTopicsRequest(topics=(CreatableTopic(
                    name=name, num_partitions=count, replication_factor=replication_factor,
                    configs=()),), timeout_ms=CREATE_TIMEOUT_MS - 1_000)
                try:
                    response = await cluster.send_to_controller(request)
                except (ClientError, KafkaError) as e:
                    if not e.retriable or time.monotonic() > deadline:
                        raise
                    code = ErrorCode.NOT_CONTROLLER
                else:
                    code, message = response.topics[0].error_code, response.topics[0].error_message
                    if code == ErrorCode.NONE:
                        break
                    if code != ErrorCode.NOT_CONTROLLER or time.monotonic() > deadline:
                        raise KafkaError(error_code(code), message or f"create topic {name}")
                await asyncio.sleep(0.2)
                try:
                    await cluster.refresh_metadata(())
                except ClientError:
                    pass  # the next attempt says whether the controller can be reached


class _Stop(Exception):
    """A broker this run did not signal has exited, or the topics could not be created."""


# ---- one partition count --------------------------------------------------------------------
class _Run:
    def __init__(self, dev: Any, config: ScaleConfig, partitions: int) -> None:
        self.dev, self.config, self.partitions = dev, config, partitions
        stamp = int(time.time() * 1000)
        chunks = [TOPIC_PARTITIONS_MAX] * (partitions // TOPIC_PARTITIONS_MAX)
        chunks += [partitions % TOPIC_PARTITIONS_MAX] if partitions % TOPIC_PARTITIONS_MAX else []
        self.topics = [(f"scale-{partitions}-{stamp}-{i}", n) for i, n in enumerate(chunks)]
        self.probe = _Probe({m.node_id: f"127.0.0.1:{m.client_port}" for m in dev.members},
                            self.topics)
        self.signalled: set[int] = set()  # brokers whose exit is ours
        self.replicas: dict[int, int] = {}  # broker -> partition replicas it hosts
        self.result: dict[str, Any] = {"partitions": partitions,
                                       "replication_factor": config.replication_factor,
                                       "topics": [t for t, _ in self.topics], "ok": True,
                                       "errors": [], "restarts": []}

    def pid(self, node: int) -> int:
        return int(self.dev.procs[node].pid)

    def say(self, text: str) -> None:
        if not self.config.quiet:
            print(f"[scale {self.partitions}] {text}", file=sys.stderr, flush=True)

    def fail(self, text: str) -> None:
        self.result["ok"] = False
        self.result["errors"].append(text)
        self.say(f"FAILED: {text}")

    def _check_alive(self) -> None:
        for node, proc in self.dev.procs.items():
            if node not in self.signalled and proc.poll() is not None:
                raise _Stop(f"broker {node} exited with status {proc.returncode}")

    async def wait(self, what: str, done: Callable[[Leadership], bool], started: float, *,
                   besides: int | None = None, also: Callable[[], bool] | None = None
                   ) -> tuple[float | None, Leadership, int]:
        """Look every POLL_S (less often as time goes by) until `done` (and `also`);
        (seconds since `started` or None when --wait-seconds ran out, the last look, most
        partitions seen without a leader)."""
        deadline = time.monotonic() + self.config.wait_seconds
        said, worst = 0.0, 0
        while True:
            self._check_alive()
            look = await self.probe.look()
            now = time.monotonic()
            worst = max(worst, look.partitions - look.led())
            if (also is None or also()) and done(look):
                return now - started, look, worst
            if now >= deadline:
                self.fail(f"{what}: not reached within {self.config.wait_seconds:.0f} s "
                          f"({look.led(besides=besides)}/{look.partitions} led, "
                          f"{look.preferred()} by their preferred leader)")
                return None, look, worst
            if now - said >= PROGRESS_S:
                said = now
                counts = " ".join(f"b{n} {c}" for n, c in sorted(look.per_broker().items()))
                self.say(f"{what} {now - started:5.1f} s: {look.led(besides=besides)}/"
                         f"{look.partitions} led ({counts}), {look.preferred()} preferred")
            await asyncio.sleep(min(POLL_S_MAX, POLL_S + (now - started) / 20))

    def all_led(self, besides: int | None = None) -> Callable[[Leadership], bool]:
        return lambda look: look.led(besides=besides) == look.partitions

    def balanced(self, target: int) -> Callable[[Leadership], bool]:
        return lambda look: look.led() == look.partitions and look.preferred() >= target

    # ---- phases ---------------------------------------------------------------------------
    async def idle(self, key: str) -> dict[str, Any]:
        """CPU of each broker over --idle-seconds with nothing asked of them; RSS at the end."""
        self.say(f"{key}: measuring idle CPU for {self.config.idle_seconds:g} s")
        nodes = sorted(self.dev.procs)
        before = {n: cpu_seconds(self.pid(n)) for n in nodes}
        started = time.monotonic()
        await asyncio.sleep(self.config.idle_seconds)
        self._check_alive()
        elapsed = time.monotonic() - started
        cpu = {n: (cpu_seconds(self.pid(n)) - before[n]) / elapsed * 100 for n in nodes}
        return {"seconds": round(elapsed, 3),
                "cpu_percent": {str(n): round(c, 2) for n, c in cpu.items()},
                "cpu_percent_total": round(sum(cpu.values()), 2),
                "rss_bytes": {str(n): rss_bytes(self.pid(n)) for n in nodes}}

    async def create(self) -> bool:
        rf = self.config.replication_factor
        self.say(f"creating {self.partitions} partitions (RF {rf}) in {len(self.topics)} topic(s)")
        nodes = sorted(self.dev.procs)
        cpu_before = {n: cpu_seconds(self.pid(n)) for n in nodes}
        started = time.monotonic()
        task = asyncio.create_task(_create_topics(
            self.dev.bootstrap, self.topics, rf, started + self.config.wait_seconds))
        accepted: dict[str, float] = {}
        task.add_done_callback(lambda _: accepted.setdefault("s", time.monotonic() - started))

        def created() -> bool:
            if task.done() and task.exception() is not None:
                raise _Stop(f"creating the topics failed: {task.exception()}")
            return task.done()

        try:
            all_led_s, look, _ = await self.wait("create", self.all_led(), started, also=created)
        finally:
            if not task.done():
                task.cancel()
        cpu = {str(n): round(cpu_seconds(self.pid(n)) - cpu_before[n], 2) for n in nodes}
        balanced_s = None
        if all_led_s is not None:
            balanced_s, _, _ = await self.wait("balance", self.balanced(self.partitions), started)
        self.result["create"] = {
            "request_s": _round(accepted.get("s")), "all_led_s": _round(all_led_s),
            "balanced_s": _round(balanced_s), "cpu_seconds": cpu,
            "leaders": {str(n): c for n, c in look.per_broker().items()},
            "rss_bytes": {str(n): rss_bytes(self.pid(n)) for n in nodes}}
        self.replicas = {n: look.hosted(n) for n in nodes}
        return all_led_s is not None

    async def restart(self, sig: signal.Signals) -> bool:
        """Signal the broker leading the most partitions, wait for the others to lead them
        all, restart it, wait for leadership to come back into balance."""
        before = await self.probe.look()
        victim = max(before.per_broker().items(), key=lambda kv: (kv[1], -kv[0]))[0]
        target = before.preferred()
        proc = self.dev.procs[victim]
        self.signalled.add(victim)
        self.say(f"{sig.name} broker {victim} (leads {before.per_broker()[victim]})")
        signalled_at = time.monotonic()
        proc.send_signal(sig)
        exited: dict[str, float] = {}
        exit_task = asyncio.create_task(asyncio.to_thread(_wait_exit, proc))
        exit_task.add_done_callback(lambda _: exited.setdefault(
            "s", time.monotonic() - signalled_at))
        all_led_s, _, worst = await self.wait(f"{sig.name} failover", self.all_led(victim),
                                              signalled_at, besides=victim)
        record: dict[str, Any] = {"signal": sig.name, "broker": victim,
                                  "partitions_led": before.per_broker()[victim],
                                  "all_led_s": _round(all_led_s), "leaderless_max": worst}
        self.result["restarts"].append(record)
        killed = await exit_task  # within EXIT_WAIT_S, then SIGKILL
        record["exit_s"] = _round(exited["s"])
        record["forced"] = killed
        _spawn(self.dev, victim)
        self.signalled.discard(victim)
        restarted_at = time.monotonic()
        ready_s, _, _ = await self.wait("restart", lambda look: victim in look.answered,
                                        restarted_at)
        balanced_s, _, _ = await self.wait("rebalance", self.balanced(target), restarted_at)
        record.update(ready_s=_round(ready_s), balanced_s=_round(balanced_s),
                      balanced_from_signal_s=_round(
                          None if balanced_s is None else restarted_at + balanced_s - signalled_at),
                      rss_bytes_after=rss_bytes(self.pid(victim)))
        return balanced_s is not None

    async def scenario(self) -> None:
        baseline = await self.idle("baseline")
        self.result["baseline"] = {"idle_seconds": baseline["seconds"],
                                   "cpu_percent": baseline["cpu_percent"],
                                   "rss_bytes": baseline["rss_bytes"]}
        if not await self.create():
            return
        idle = await self.idle("idle")
        look = await self.probe.look()
        self.result["idle"] = {k: idle[k] for k in ("seconds", "cpu_percent", "cpu_percent_total")}
        self.result["idle"]["leaders"] = {str(n): c for n, c in look.per_broker().items()}
        self.result["memory"] = _memory(baseline["rss_bytes"], idle["rss_bytes"], self.replicas)
        per = [m["memory_per_partition_bytes"] for m in self.result["memory"].values()
               if m["memory_per_partition_bytes"] is not None]
        self.result["memory_per_partition_bytes_mean"] = round(sum(per) / len(per)) if per else None
        if not await self.restart(signal.SIGKILL) or not self.config.term_restart:
            return
        await self.restart(signal.SIGTERM)

    async def run(self) -> dict[str, Any]:
        try:
            await self.scenario()
        except (_Stop, OSError, RuntimeError) as e:
            self.fail(str(e))
        finally:
            await self.probe.close()
        if not self.result["ok"]:
            self.result["log_tail"] = _log_tail(self.dev)
        return self.result


def _memory(baseline: dict[str, int], now: dict[str, int], replicas: dict[int, int]
            ) -> dict[str, dict[str, Any]]:
    out = {}
    for node, hosted in sorted(replicas.items()):
        base, rss = baseline[str(node)], now[str(node)]
        out[str(node)] = {"baseline_rss_bytes": base, "rss_bytes": rss, "replicas": hosted,
                          "memory_per_partition_bytes": round((rss - base) / hosted)
                          if hosted else None}
    return out


def _wait_exit(proc: subprocess.Popen[bytes]) -> bool:
    """Wait for the signalled broker to exit; whether it had to be SIGKILLed after all."""
    try:
        proc.wait(EXIT_WAIT_S)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- the whole run --------------------------------------------------------------------------
def _one_count(config: ScaleConfig, root: Path, partitions: int) -> dict[str, Any]:
    with _cluster(root / f"partitions-{partitions}") as dev:
        return asyncio.run(_Run(dev, config, partitions).run())


def run_scale(config: ScaleConfig) -> dict[str, Any]:
    started = time.time()
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="raftlog-scale-") as tmp:
        root = config.data_dir or Path(tmp)
        runs = [_one_count(config, root, n) for n in config.partitions]
    return {"tool": "raftlog bench scale",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "config": {"partitions": list(config.partitions),
                       "replication_factor": config.replication_factor,
                       "idle_seconds": config.idle_seconds, "wait_seconds": config.wait_seconds,
                       "brokers": BROKERS, "term_restart": config.term_restart},
            "host": {"cpus": os.cpu_count(), "loadavg_start": load_start,
                     "loadavg_end": list(os.getloadavg())},
            "runs": runs}


def _s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def _run_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"{r['partitions']} partitions, RF {r['replication_factor']}:"]
    b, c = r.get("baseline"), r.get("create")
    if b:
        lines.append("  no topic: idle CPU % " + " ".join(
            f"b{n} {v:.2f}" for n, v in b["cpu_percent"].items()) + ", RSS MiB " + " ".join(
            f"b{n} {v / 2**20:.1f}" for n, v in b["rss_bytes"].items()))
    if c:
        lines.append(f"  create: accepted {_s(c['request_s'])}, all led {_s(c['all_led_s'])}, "
                     f"balanced {_s(c['balanced_s'])}; CPU s " + " ".join(
                         f"b{n} {v:.1f}" for n, v in c["cpu_seconds"].items()))
    if "memory" in r:
        lines.append("  broker  leaders  idle CPU %  RSS MiB  replicas  KiB/partition")
        for node, m in r["memory"].items():
            per = m["memory_per_partition_bytes"]
            lines.append(
                f"  {node:>6}  {r['idle']['leaders'].get(node, 0):>7}  "
                f"{r['idle']['cpu_percent'][node]:>10.2f}  {m['rss_bytes'] / 2**20:>7.1f}  "
                f"{m['replicas']:>8}  {'-' if per is None else f'{per / 1024:.1f}':>13}")
    for x in r["restarts"]:
        lines.append(f"  {x['signal']} broker {x['broker']} (led {x['partitions_led']}): "
                     f"exited {_s(x.get('exit_s'))}, all led {_s(x['all_led_s'])} after the "
                     f"signal ({x['leaderless_max']} leaderless at worst); restarted: answers "
                     f"{_s(x.get('ready_s'))}, balanced {_s(x.get('balanced_s'))}")
    lines += [f"  error: {e}" for e in r["errors"]]
    return lines


def format_report(result: dict[str, Any]) -> str:
    h = result["host"]
    lines = [f"raftlog bench scale: {BROKERS} brokers, idle windows of "
             f"{result['config']['idle_seconds']:g} s, {h['cpus']} CPUs, load "
             f"{h['loadavg_start'][0]:.2f} -> {h['loadavg_end'][0]:.2f}"]
    for r in result["runs"]:
        lines += _run_lines(r)
    return "\n".join(lines)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not counts or any(not 1 <= n <= 100_000 for n in counts):
        raise argparse.ArgumentTypeError("partition counts must be in 1..100000")
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftlog bench scale", description=__doc__.split("\n")[0])
    p.add_argument("--partitions", type=_counts, default=(1000, 3000),
                   help="comma-separated partition counts, one fresh cluster each")
    p.add_argument("--replication-factor", type=int, default=3)
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--wait-seconds", type=float, default=300.0, help="bound on every wait")
    p.add_argument("--json", dest="json_path", metavar="PATH")
    p.add_argument("--data-dir", type=Path, help="keep the brokers' data and logs here")
    p.add_argument("--no-term", action="store_true", help="skip the SIGTERM restart")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (1 <= args.replication_factor <= BROKERS and 0 < args.idle_seconds <= 3600
            and 1 <= args.wait_seconds <= 3600):
        print(f"raftlog bench scale: need 1 <= --replication-factor <= {BROKERS}, "
              "0 < --idle-seconds <= 3600, 1 <= --wait-seconds <= 3600", file=sys.stderr)
        return EXIT_USAGE
    if not Path("/proc/self/stat").exists():
        print("raftlog bench scale: needs /proc (Linux)", file=sys.stderr)
        return EXIT_FAILURE
    config = ScaleConfig(partitions=args.partitions, replication_factor=args.replication_factor,
                         idle_seconds=args.idle_seconds, wait_seconds=args.wait_seconds,
                         term_restart=not args.no_term, data_dir=args.data_dir, quiet=args.quiet)
    try:
        result = run_scale(config)
    except (OSError, RuntimeError, ClientError, KafkaError) as e:
        print(f"raftlog bench scale: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(format_report(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json_path}")
    return EXIT_OK if all(r["ok"] for r in result["runs"]) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
