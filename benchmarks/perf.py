"""`raftlog bench`: produce/consume throughput and latency, like kafka-producer-perf-test and OMB.

    raftlog bench [WORKLOAD] [--records N] [--rate R|max] [--record-bytes B] [--partitions P]
                  [--acks all|1|0] [--producers N] [--consumers N] [--seconds S]
                  [--client raftlog|kafka-python|raw] [--durability always|interval|both]
                  [--bootstrap H:P,...] [--json PATH] [--plot PATH] [--peer nats [--peer-only]]
    raftlog bench failover ...        (benchmarks.failover: leader kills under load)

Workloads are named after OpenMessaging Benchmark's (one topic, replication factor 3):
1-topic-1-partition-1kb, 1-topic-16-partitions-1kb, 1-topic-100-partitions-1kb,
1-topic-16-partitions-100b; flags override their values. Without `--bootstrap` a local 3-broker
cluster is started on free ports and stopped afterwards.

Producers and consumers are separate processes. Producers go through `--client`: `raftlog`
(the project's producer library, the default) or `kafka-python` (benchmarks.perf_clients), or
`raw` (pre-built batches through ClusterClient: the brokers without client cost; perf_load).
Reported: produce throughput, publish latency (due time to acknowledgement), end-to-end latency
(due time to receipt by a consumer), consume throughput, and a per-second timeline (JSON, PNG).
A progress line goes to stderr every second; the run ends when every record is acknowledged
and consumed, or at `--seconds` (plus a drain allowance for consumers), whichever is first.

`--durability` picks the local cluster's fsync policy: `always` (fsync before acknowledging) or
`interval` (fsync every second). With `--peer nats` each raftlog run is followed by the same
workload against a local NATS JetStream R3 cluster (benchmarks.peer_nats) at the matching
durability: fsync_policy=always against `sync_interval: always`, fsync_policy=interval against
NATS's default (an fsync every 2 minutes); `--durability both` (the default with --peer) runs
both pairs, and the report adds raftlog/NATS ratios per pair. With `--bootstrap` the cluster's
policy is whatever it was started with: `--durability` only labels it (one value).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.perf_clients import CLIENTS, kafka_python_producer_main, library_producer_main
from benchmarks.perf_load import HEADER_BYTES, WorkerSpec, consumer_main, producer_main
from benchmarks.perf_plot import plot_timeline
from benchmarks.perf_stats import Histogram, SecondBucket, Timeline, latency_summary_ms

__all__ = ["WORKLOADS", "Workload", "main", "run_bench", "local_cluster", "free_base_port"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DURABILITIES = ("always", "interval")
# the NATS sync setting that matches each raftlog fsync policy (benchmarks.peer_nats)
NATS_SYNC = {"always": "always", "interval": "default"}
PRODUCERS = {"raw": producer_main, "raftlog": library_producer_main,
             "kafka-python": kafka_python_producer_main}
DRAIN_S = 15.0  # consumers' allowance to catch up after the producers stop
STRAGGLER_S = 30.0  # then workers still running are terminated
QUEUE_MAX = 10_000
PORT_ATTEMPTS = 10
READY_TIMEOUT_S = 90.0  # brokers start slowly on a busy machine
JOIN_S = 15.0  # for workers to exit once they have reported


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    partitions: int
    record_bytes: int


WORKLOADS = {
    "1-topic-1-partition-1kb": Workload(partitions=1, record_bytes=1024),
    "1-topic-16-partitions-1kb": Workload(partitions=16, record_bytes=1024),
    "1-topic-100-partitions-1kb": Workload(partitions=100, record_bytes=1024),
    "1-topic-16-partitions-100b": Workload(partitions=16, record_bytes=100),
}


def _rate(text: str) -> float:
    if text == "max":
        return 0.0
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--rate must be positive (or 'max')")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftlog bench", description=__doc__.split("\n")[0])
    p.add_argument("workload", nargs="?", default="1-topic-16-partitions-1kb",
                   choices=sorted(WORKLOADS))
    p.add_argument("--bootstrap", help="an existing cluster (default: start a local one)")
    p.add_argument("--partitions", type=int, help="override the workload's partition count")
    p.add_argument("--record-bytes", type=int, help="override the workload's record size")
    p.add_argument("--records", type=int, default=200_000, help="records to produce in all")
    p.add_argument("--rate", type=_rate, default=0.0, help="records/s in all, or 'max' (default)")
    p.add_argument("--acks", choices=("all", "-1", "1", "0"), default="all")
    p.add_argument("--producers", type=int, default=1, help="producer processes")
    p.add_argument("--consumers", type=int, default=1, help="consumer processes (0: none)")
    p.add_argument("--seconds", type=float, default=60.0, help="bound on the produce phase")
    p.add_argument("--batch-bytes", type=int, default=65536)
    p.add_argument("--inflight", type=int, default=5, help="batches in flight per partition")
    p.add_argument("--compression", choices=("none", "lz4"), default="none")
    p.add_argument("--client", choices=CLIENTS, default="raftlog",
                   help="the producers' client: raftlog's producer library (default), "
                        "kafka-python, or raw pre-built batches (the brokers alone)")
    p.add_argument("--linger-ms", type=int, default=5, help="client batching delay (not raw)")
    p.add_argument("--durability", choices=DURABILITIES + ("both",),
                   help="raftlog fsync policy (and the NATS peer's matching sync): always, "
                        "interval, or both (default: both with --peer, else always)")
    p.add_argument("--replication-factor", type=int, default=3)
    p.add_argument("--json", dest="json_path", metavar="PATH", help="write the results here")
    p.add_argument("--plot", dest="plot_path", metavar="PATH", help="write a PNG timeline here")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--peer", choices=("nats",),
                   help="also run the workload against this peer (local, R3) and print ratios")
    p.add_argument("--peer-only", action="store_true", help="run only the peer (with --peer)")
    return p


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    workload: str
    partitions: int
    record_bytes: int
    records: int
    rate_per_s: float
    acks: int
    producers: int
    consumers: int
    seconds: float
    batch_bytes: int
    inflight: int
    compression: str
    replication_factor: int
    client: str = "raftlog"
    linger_ms: int = 5
    quiet: bool = False

    def describe(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "quiet"}
        d["rate_per_s"] = self.rate_per_s or "max"
        return d


def _config(args: argparse.Namespace) -> BenchConfig:
    w = WORKLOADS[args.workload]
    config = BenchConfig(
        workload=args.workload, partitions=args.partitions or w.partitions,
        record_bytes=args.record_bytes or w.record_bytes, records=args.records,
        rate_per_s=args.rate, acks={"all": -1, "-1": -1, "1": 1, "0": 0}[args.acks],
        producers=args.producers, consumers=args.consumers, seconds=args.seconds,
        batch_bytes=args.batch_bytes, inflight=args.inflight, compression=args.compression,
        replication_factor=args.replication_factor, client=args.client,
        linger_ms=args.linger_ms, quiet=args.quiet)
    problems = [
        (config.partitions < 1, "--partitions must be at least 1"),
        (config.record_bytes < HEADER_BYTES, f"--record-bytes must be at least {HEADER_BYTES}"),
        (config.records < 1, "--records must be at least 1"),
        (not 1 <= config.producers <= min(64, config.partitions),
         "--producers must be between 1 and min(64, partitions)"),
        (not 0 <= config.consumers <= min(64, config.partitions),
         "--consumers must be between 0 and min(64, partitions)"),
        (not 0 < config.seconds <= 86_400, "--seconds must be in (0, 86400]"),
        (config.inflight < 1, "--inflight must be at least 1"),
        (config.batch_bytes < config.record_bytes, "--batch-bytes must hold one record"),
        (not 0 <= config.linger_ms <= 60_000, "--linger-ms must be in [0, 60000]"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(message)
    return config


# ---- cluster --------------------------------------------------------------------------------
def free_base_port() -> int:
    """A base port whose client and Raft port ranges are probably free (checked by DevCluster)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1]) % 20000 + 30000


@contextmanager
def local_cluster(brokers: int = 3, *, fsync_policy: str = "always") -> Iterator[Any]:
    """A DevCluster of `brokers` processes in a temporary directory, stopped on exit."""
    from broker.dev import DevCluster

    env = {"RAFTLOG_FSYNC_POLICY": fsync_policy}
    with tempfile.TemporaryDirectory(prefix="raftlog-bench-") as root:
        for attempt in range(PORT_ATTEMPTS):
            cluster = DevCluster(brokers=brokers, data_dir=Path(root), base_port=free_base_port(),
                                 env=env)
            try:
                cluster.start()
                break
            except RuntimeError:  # a port in the range is taken: another range
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        try:
            cluster.wait_ready(READY_TIMEOUT_S)
            yield cluster
        finally:
            cluster.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int) -> None:
    from broker.client import AsyncAdminClient, ClusterClient

    async with AsyncAdminClient(bootstrap_servers=bootstrap) as admin:
        await admin.create_topic(topic, partitions=partitions,
                                 replication_factor=replication_factor)
    async with ClusterClient(bootstrap) as cluster:
        await cluster.wait_for_topic(topic, timeout_ms=60_000)


# ---- the run --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Collector:
    """What the parent learns from its workers: merged timelines and final totals."""
    start_wall_s: float
    seconds_max: int
    produce: Timeline = field(init=False)
    consume: Timeline = field(init=False)
    totals: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    done: set[tuple[str, int]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.produce = Timeline(start_wall_s=self.start_wall_s, seconds_max=self.seconds_max)
        self.consume = Timeline(start_wall_s=self.start_wall_s, seconds_max=self.seconds_max)

    def take(self, message: tuple[str, str, int, Any, Any]) -> None:
        kind, role, worker, deltas, totals = message
        if kind == "error":
            self.errors.append(f"{role} {worker}: {deltas}")
            self.done.add((role, worker))
            return
        timeline = self.produce if role == "producer" else self.consume
        timeline.merge({int(s): SecondBucket.from_dict(b) for s, b in deltas.items()})
        self.totals[(role, worker)] = totals
        if kind == "done":
            self.done.add((role, worker))

    def role_total(self, role: str, key: str) -> int:
        return sum(t[key] for (r, _), t in self.totals.items() if r == role)

    def last_wall(self, role: str) -> float | None:
        walls = [t["last_wall_s"] for (r, _), t in self.totals.items()
                 if r == role and t["last_wall_s"] is not None]
        return max(walls) if walls else None


def _specs(config: BenchConfig, bootstrap: str, topic: str, start_wall_s: float) -> tuple[
        list[WorkerSpec], list[WorkerSpec]]:
    seconds_max = int(config.seconds + DRAIN_S + STRAGGLER_S) + 2

    def spec(i: int, n: int, role: str) -> WorkerSpec:
        partitions = tuple(p for p in range(config.partitions) if p % n == i)
        share = config.records // n + (1 if i < config.records % n else 0)
        deadline = start_wall_s + config.seconds + (DRAIN_S if role == "consumer" else 0.0)
        return WorkerSpec(worker_id=i, bootstrap=bootstrap, topic=topic, partitions=partitions,
                          records=share, rate_per_s=config.rate_per_s / n,
                          record_bytes=config.record_bytes, batch_bytes_max=config.batch_bytes,
                          acks=config.acks, inflight_max=config.inflight,
                          compression=config.compression, start_wall_s=start_wall_s,
                          deadline_wall_s=deadline, timeline_seconds_max=seconds_max,
                          linger_ms=config.linger_ms)

    return ([spec(i, config.producers, "producer") for i in range(config.producers)],
            [spec(i, config.consumers, "consumer") for i in range(config.consumers)])


class _Progress:
    """One stderr line a second: rates from the change in workers' running totals."""

    def __init__(self, collector: _Collector, config: BenchConfig) -> None:
        self.c, self.config = collector, config
        self.last_wall_s = time.time()
        self.last = (0, 0, 0)

    def line(self) -> str:
        c, now = self.c, time.time()
        totals = (c.role_total("producer", "records"), c.role_total("producer", "bytes"),
                  c.role_total("consumer", "records"))
        elapsed = max(1e-3, now - self.last_wall_s)
        rates = [(a - b) / elapsed for a, b in zip(totals, self.last)]
        self.last, self.last_wall_s = totals, now
        recent = max(c.produce.buckets, default=0)
        p99 = c.produce.buckets[recent].latency.percentile_ms(0.99) if c.produce.buckets else 0.0
        return (f"[{now - c.start_wall_s:5.1f}s] acked {totals[0]:,}/{self.config.records:,}  "
                f"{rates[0]:,.0f} rec/s {rates[1] / 1e6:.1f} MB/s  publish p99 {p99:.1f} ms  "
                f"| consumed {totals[2]:,} ({rates[2]:,.0f} rec/s)  "
                f"| errors {c.role_total('producer', 'errors')}")


def _supervise(config: BenchConfig, bootstrap: str, topic: str, *,
               producer_target: Any = producer_main,
               consumer_target: Any = consumer_main) -> _Collector:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue(QUEUE_MAX)
    start_wall_s = time.time() + 2.0  # time for the workers to start and connect
    producers, consumers = _specs(config, bootstrap, topic, start_wall_s)
    collector = _Collector(start_wall_s=start_wall_s, seconds_max=producers[0].timeline_seconds_max)
    controls = [ctx.Queue(4) for _ in consumers]
    procs = [ctx.Process(target=consumer_target, args=(s, out, c), daemon=True)
             for s, c in zip(consumers, controls)]
    procs += [ctx.Process(target=producer_target, args=(s, out), daemon=True) for s in producers]
    for proc in procs:
        proc.start()
    hard_deadline = start_wall_s + config.seconds + DRAIN_S + STRAGGLER_S
    expected = {("producer", s.worker_id) for s in producers} | {
        ("consumer", s.worker_id) for s in consumers}
    drained = False
    progress = _Progress(collector, config)
    try:
        while collector.done < expected and time.time() < hard_deadline:
            try:
                collector.take(out.get(timeout=0.2))
            except queue.Empty:
                pass
            if not drained and all(("producer", s.worker_id) in collector.done for s in producers):
                drained = True
                for c in controls:
                    c.put("drain", timeout=5)
            if not config.quiet and time.time() - progress.last_wall_s >= 1.0:
                print(progress.line(), file=sys.stderr, flush=True)
    finally:
        _reap(procs, [("consumer", s.worker_id) for s in consumers]
              + [("producer", s.worker_id) for s in producers], collector)
    return collector


def _reap(procs: list[Any], names: list[tuple[str, int]], collector: _Collector) -> None:
    """Join the workers; terminate stragglers. One that already sent its final report lost
    nothing by that; one that did not is an error of the run."""
    deadline = time.monotonic() + JOIN_S
    for proc, name in zip(procs, names):
        proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
            if name not in collector.done:
                collector.errors.append(f"{name[0]} {name[1]} did not finish in time; terminated")


def _timeline_rows(c: _Collector) -> list[dict[str, Any]]:
    seconds = sorted(set(c.produce.buckets) | set(c.consume.buckets))
    rows = []
    for s in range(seconds[-1] + 1 if seconds else 0):
        p = c.produce.buckets.get(s, SecondBucket())
        q = c.consume.buckets.get(s, SecondBucket())
        rows.append({"second": s, "produce_records": p.records, "produce_mb": round(p.bytes / 1e6, 3),
                     "produce_errors": p.errors,
                     "publish_p50_ms": round(p.latency.percentile_ms(0.5), 3),
                     "publish_p99_ms": round(p.latency.percentile_ms(0.99), 3),
                     "consume_records": q.records, "consume_mb": round(q.bytes / 1e6, 3),
                     "e2e_p99_ms": round(q.latency.percentile_ms(0.99), 3)})
    return rows


def _summary(c: _Collector, config: BenchConfig, topic: str) -> dict[str, Any]:
    publish, e2e = Histogram(), Histogram()
    for b in c.produce.buckets.values():
        publish.merge(b.latency)
    for b in c.consume.buckets.values():
        e2e.merge(b.latency)

    def rates(role: str) -> dict[str, Any]:
        records, nbytes = c.role_total(role, "records"), c.role_total(role, "bytes")
        last = c.last_wall(role)
        elapsed = max(1e-3, (last or c.start_wall_s) - c.start_wall_s)
        return {"records": records, "bytes": nbytes, "seconds": round(elapsed, 3),
                "records_per_s": round(records / elapsed, 1),
                "mb_per_s": round(nbytes / elapsed / 1e6, 3)}

    produce = rates("producer") | {"errors": c.role_total("producer", "errors"),
                                   "latency_ms": latency_summary_ms(publish)}
    return {"tool": "raftlog bench", "topic": topic,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c.start_wall_s)),
            "config": config.describe(), "produce": produce, "consume": rates("consumer"),
            "end_to_end_latency_ms": latency_summary_ms(e2e), "worker_errors": c.errors,
            "timeline": _timeline_rows(c)}


def run_bench(config: BenchConfig, bootstrap: str, durability: str = "always") -> dict[str, Any]:
    """Create a fresh topic on `bootstrap`, run the load, and return the results."""
    topic = f"perf-{config.workload}-{int(time.time() * 1000)}"
    asyncio.run(create_topic(bootstrap, topic, config.partitions, config.replication_factor))
    collector = _supervise(config, bootstrap, topic, producer_target=PRODUCERS[config.client])
    result = _summary(collector, config, topic)
    result |= {"system": "raftlog", "client": config.client, "durability": durability,
               "fsync_policy": durability}
    return result


def run_peer_nats(config: BenchConfig, durability: str = "always") -> dict[str, Any]:
    """The same workload against a local 3-server NATS JetStream cluster (benchmarks.peer_nats)
    at the durability matching raftlog's fsync policy `durability`."""
    from benchmarks import peer_nats

    problem = peer_nats.nats_missing()
    if problem:
        raise RuntimeError(f"--peer nats: {problem}")
    stream = f"PERF{int(time.time() * 1000)}"
    sync = NATS_SYNC[durability]
    with peer_nats.nats_cluster(sync=sync) as cluster:
        asyncio.run(peer_nats.create_stream(cluster.urls, stream, config.partitions))
        collector = _supervise(config, cluster.urls, stream, producer_target=peer_nats.producer_main,
                               consumer_target=peer_nats.consumer_main)
    result = _summary(collector, config, stream)
    result |= {"tool": f"raftlog bench (peer: NATS JetStream R3, sync_interval {sync})",
               "system": "nats", "client": "nats-py", "durability": durability,
               "sync_interval": sync}
    return result


def ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Ours over the peer's: above 1 is better for throughput, below 1 for latency."""
    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "produce_records_per_s": ratio(ours["produce"]["records_per_s"],
                                       peer["produce"]["records_per_s"]),
        "consume_records_per_s": ratio(ours["consume"]["records_per_s"],
                                       peer["consume"]["records_per_s"]),
        "publish_p50_ms": ratio(ours["produce"]["latency_ms"]["p50"],
                                peer["produce"]["latency_ms"]["p50"]),
        "publish_p99_ms": ratio(ours["produce"]["latency_ms"]["p99"],
                                peer["produce"]["latency_ms"]["p99"]),
        "end_to_end_p99_ms": ratio(ours["end_to_end_latency_ms"]["p99"],
                                   peer["end_to_end_latency_ms"]["p99"]),
    }


def _pair(durability: str, ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    def figures(r: dict[str, Any]) -> dict[str, float]:
        return {"produce_records_per_s": r["produce"]["records_per_s"],
                "consume_records_per_s": r["consume"]["records_per_s"],
                "publish_p99_ms": r["produce"]["latency_ms"]["p99"]}

    return {"durability": durability, "raftlog_fsync_policy": durability,
            "nats_sync_interval": NATS_SYNC[durability], "raftlog": figures(ours),
            "nats": figures(peer), "ratios": ratios(ours, peer)}


def format_report(r: dict[str, Any]) -> str:
    c, p, q, e = r["config"], r["produce"], r["consume"], r["end_to_end_latency_ms"]
    lat = p["latency_ms"]
    return "\n".join([
        f"{c['workload']}: {c['partitions']} partitions, {c['record_bytes']} B records, "
        f"acks={c['acks']}, rate {c['rate_per_s']}, {c['producers']} producer(s), "
        f"{c['consumers']} consumer(s), client {r.get('client', c['client'])}",
        f"  produce  {p['records']:,} records in {p['seconds']:.1f} s: "
        f"{p['records_per_s']:,.0f} records/s, {p['mb_per_s']:.1f} MB/s, {p['errors']} errors",
        f"  publish latency  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
        f"p99.9 {lat['p99_9']:.2f} ms  max {lat['max']:.2f} ms",
        f"  consume  {q['records']:,} records: {q['records_per_s']:,.0f} records/s, "
        f"{q['mb_per_s']:.1f} MB/s",
        f"  end-to-end latency  p50 {e['p50']:.2f} ms  p99 {e['p99']:.2f} ms  "
        f"p99.9 {e['p99_9']:.2f} ms",
    ] + [f"  worker error: {m}" for m in r["worker_errors"]])


def format_pairs(pairs: list[dict[str, Any]]) -> str:
    """One line per durability: both systems' figures and raftlog/NATS ratios (throughput
    ratios above 1 and latency ratios below 1 favour raftlog)."""
    lines = ["raftlog / NATS JetStream R3, same run:",
             f"  {'raftlog fsync / NATS sync':<27}{'produce rec/s raftlog':>22}{'NATS':>9}"
             f"{'ratio':>8}{'consume ratio':>15}   publish p99 ms raftlog / NATS (ratio)"]
    for pr in pairs:
        ours, nats, x = pr["raftlog"], pr["nats"], pr["ratios"]
        lines.append(
            f"  {pr['raftlog_fsync_policy'] + ' / ' + pr['nats_sync_interval']:<27}"
            f"{ours['produce_records_per_s']:>22,.0f}{nats['produce_records_per_s']:>9,.0f}"
            f"{x['produce_records_per_s'] or 0:>7.2f}x{x['consume_records_per_s'] or 0:>14.2f}x"
            f"   {ours['publish_p99_ms']:,.1f} / {nats['publish_p99_ms']:,.1f} "
            f"({x['publish_p99_ms'] or 0:.2f})")
    return "\n".join(lines)


def _durabilities(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = args.durability or ("both" if args.peer and not args.bootstrap else "always")
    if args.bootstrap and chosen == "both":
        raise ValueError("with --bootstrap the cluster has one fsync policy: --durability "
                         "always or interval (it only labels the results)")
    return DURABILITIES if chosen == "both" else (chosen,)


def _run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        if args.peer_only and not args.peer:
            raise ValueError("--peer-only needs --peer")
        durabilities = _durabilities(args)
    except ValueError as e:
        print(f"raftlog bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    runs: dict[str, dict[str, Any]] = {}
    pairs: list[dict[str, Any]] = []
    for durability in durabilities:
        ours = None if args.peer_only else _run_ours(config, args.bootstrap, durability)
        if ours is not None:
            runs[f"raftlog-{durability}"] = ours
            print(f"raftlog, fsync_policy={durability}:\n{format_report(ours)}", flush=True)
        if args.peer == "nats":
            peer = run_peer_nats(config, durability)
            runs[f"nats-{NATS_SYNC[durability]}"] = peer
            print(f"NATS JetStream, 3 servers, R3, sync_interval {NATS_SYNC[durability]}:\n"
                  f"{format_report(peer)}", flush=True)
            if ours is not None:
                pairs.append(_pair(durability, ours, peer))
    result = dict(next(iter(runs.values())))
    if len(runs) > 1:
        result |= {"runs": runs, "pairs": pairs}
    if pairs:
        print(format_pairs(pairs))
    return _write_outputs(args, config, result)


def _run_ours(config: BenchConfig, bootstrap: str | None, durability: str) -> dict[str, Any]:
    if bootstrap:
        return run_bench(config, bootstrap, durability)
    with local_cluster(fsync_policy=durability) as cluster:
        return run_bench(config, cluster.bootstrap, durability)


def _write_outputs(args: argparse.Namespace, config: BenchConfig, result: dict[str, Any]) -> int:
    runs = result.get("runs") or {"": result}
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.json_path}")
    if args.plot_path:
        first = next(iter(runs))
        for name, run in runs.items():
            path = Path(args.plot_path)
            if name != first:
                path = path.with_name(f"{path.stem}-{name}{path.suffix}")
            title = f"{run['tool']} {config.workload} ({run['started_at']})"
            problem = plot_timeline(str(path), title, run["timeline"])
            print(problem or f"chart written to {path}",
                  file=sys.stderr if problem else sys.stdout)
    ok = all(not r["worker_errors"] and r["produce"]["records"] for r in runs.values())
    return EXIT_OK if ok else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "failover":
        from benchmarks.failover import main as failover_main

        return failover_main(argv[1:])
    if argv and argv[0] == "scale":
        from benchmarks.perf_scale import main as scale_main

        return scale_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (OSError, RuntimeError) as e:
        print(f"raftlog bench: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:  # a KafkaError from topic creation, say: one line, no traceback
        print(f"raftlog bench: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
