"""`raftlog bench failover`: leader kills under a steady produce load, then a safety check.

    raftlog bench failover [--seconds 30] [--partitions 3] [--rate 2000] [--batch-records 10]
                           [--json PATH] [--plot PATH] [--peer nats [--peer-only]]

Starts a local 3-broker cluster, creates a topic (replication factor 3) and writes to every
partition at `--rate` records/s in all (acks=all, small batches, two requests in flight per
partition) for `--seconds`. At fixed fractions of the run it SIGKILLs the leader of partition 0
(15%), restarts it (35%), stops the then-leader of partition 0 gracefully with SIGTERM (55%) and
restarts it (75%). Afterwards it reads every partition back and checks (perf_history) that no
acknowledged record was lost or duplicated.

Reported: per kill, the unavailability of each partition the victim led (from the signal to the
first acknowledged write on that partition sent after it), produce throughput, p99 latency and
failed requests per second (JSON, and a PNG with the kills marked when matplotlib is there).

With `--peer nats` the same schedule then runs against NATS JetStream R3 (benchmarks.failover_nats,
which kills the stream leader's nats-server) and the report adds both windows and their ratio
(ours over NATS's: below 1 means raftlog recovers faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.perf import create_topic, local_cluster
from benchmarks.perf_history import Ack, check_history
from benchmarks.perf_plot import plot_timeline
from benchmarks.perf_stats import Histogram, SecondBucket, Timeline, latency_summary_ms
from broker.client import ClientError, ClusterClient, KafkaError
from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey
from broker.wire.records import Record, decode_batches, encode_batch

__all__ = ["main", "run_failover", "FailoverConfig", "History", "PacedWriters", "unavailability_windows",
           "timeline_rows", "SCHEDULE", "WRITERS_PER_PARTITION"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
WRITERS_PER_PARTITION = 2
REQUEST_TIMEOUT_MS = 5_000
RETRY_BACKOFF_S = 0.02
READ_BACK_S = 60.0
STOP_WAIT_S = 20.0
SCHEDULE = (("kill", 0.15), ("restart", 0.35), ("term", 0.55), ("restart", 0.75))


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverConfig:
    seconds: float
    partitions: int
    rate_per_s: float
    batch_records: int
    record_bytes: int


@dataclass(slots=True)
class History:
    start_wall_s: float
    timeline: Timeline
    acked: list[Ack] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)
    # (partition, send wall time, ack wall time) of every acknowledged request
    acks: list[tuple[int, float, float]] = field(default_factory=list)
    latency: Histogram = field(default_factory=Histogram)
    errors: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


class PacedWriters:
    """Writers that never re-send a value: a failed request's values are left as unknown.
    Subclasses send one request of `values` to a partition in `_send_once`."""

    def __init__(self, config: FailoverConfig, history: History, stop_wall_s: float) -> None:
        self.config, self.history = config, history
        self.stop_wall_s = stop_wall_s
        self.padding = b"x" * max(0, config.record_bytes - 24)
        self.sequence = 0

    async def writer(self, partition: int, period_s: float) -> None:
        next_s = time.monotonic()
        while time.time() < self.stop_wall_s:
            next_s += period_s
            values = []
            for _ in range(self.config.batch_records):
                self.sequence += 1
                values.append(f"{partition}:{self.sequence:012d}:".encode() + self.padding)
            self.history.sent.extend(values)
            await self._send_once(partition, values)
            await asyncio.sleep(max(0.0, next_s - time.monotonic()))

    async def _send_once(self, partition: int, values: list[bytes]) -> None:
        raise NotImplementedError


class _Load(PacedWriters):
    """Our brokers, through the cluster client."""

    def __init__(self, cluster: ClusterClient, topic: str, config: FailoverConfig,
                 history: History, stop_wall_s: float) -> None:
        super().__init__(config, history, stop_wall_s)
        self.cluster, self.topic = cluster, topic

    async def _send_once(self, partition: int, values: list[bytes]) -> None:
        sent_wall = time.time()
        batch = encode_batch([Record(key=None, value=v, headers=[],
                                     timestamp_ms=int(sent_wall * 1000)) for v in values],
                             compression="none")
        request = {"transactional_id": None, "acks": -1, "timeout_ms": REQUEST_TIMEOUT_MS,
                   "topic_data": [{"name": self.topic, "partition_data": [
                       {"index": partition, "records": batch}]}]}
        leader = self.cluster.leader_for(self.topic, partition)
        base_offset = None
        if leader is not None and leader >= 0:
            try:
                response = await self.cluster.send(leader, request, api_key=ApiKey.PRODUCE,
                                                   timeout_ms=REQUEST_TIMEOUT_MS)
                part = response.responses[0].partition_responses[0]
                if part.error_code == ErrorCode.NONE:
                    base_offset = int(part.base_offset)
            except ClientError:
                pass
        now_wall = time.time()
        bucket = self.history.timeline.bucket(now_wall)
        if base_offset is None:
            self.history.errors += 1
            bucket.errors += 1
            self.cluster.request_metadata_update()
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        self.history.acked.extend(Ack(partition=partition, offset=base_offset + i, value=v)
                                  for i, v in enumerate(values))
        self.history.acks.append((partition, sent_wall, now_wall))
        bucket.records += len(values)
        bucket.bytes += len(values) * self.config.record_bytes
        bucket.latency.record(now_wall - sent_wall)
        self.history.latency.record(now_wall - sent_wall)


# ---- faults ---------------------------------------------------------------------------------
def _spawn(dev: Any, node_id: int) -> None:
    """Start broker `node_id` again on its own data directory (DevCluster's command line)."""
    member = dev.members[node_id - 1]
    with open(member.data_dir / "broker.log", "ab") as log:
        dev.procs[node_id] = subprocess.Popen(dev._command(member), stdout=log, stderr=log,
                                              env=dev.env, start_new_session=True)


async def _leaders(cluster: ClusterClient, topic: str, partitions: int) -> dict[int, int | None]:
    try:
        await asyncio.wait_for(cluster.refresh_metadata([topic]), 2.0)
    except (TimeoutError, ClientError):
        pass  # the cached view will do
    return {p: cluster.leader_for(topic, p) for p in range(partitions)}


async def _faults(dev: Any, cluster: ClusterClient, topic: str, config: FailoverConfig,
                  history: History) -> None:
    down: int | None = None
    for action, fraction in SCHEDULE:
        at_wall = history.start_wall_s + fraction * config.seconds
        await asyncio.sleep(max(0.0, at_wall - time.time()))
        if action == "restart":
            if down is not None:
                proc = dev.procs[down]
                await asyncio.to_thread(_wait_exit, proc)
                _spawn(dev, down)
                history.events.append({"action": "restart", "broker": down,
                                       "at_s": round(time.time() - history.start_wall_s, 3)})
                down = None
            continue
        leaders = await _leaders(cluster, topic, config.partitions)
        victim = leaders.get(0)
        if victim is None or victim < 0 or victim not in dev.procs:
            history.events.append({"action": action, "broker": None, "skipped": "no leader"})
            continue
        dev.procs[victim].send_signal(signal.SIGKILL if action == "kill" else signal.SIGTERM)
        history.events.append({"action": action, "broker": victim, "wall_s": time.time(),
                               "at_s": round(time.time() - history.start_wall_s, 3),
                               "partitions": sorted(p for p, b in leaders.items() if b == victim)})
        down = victim


def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def unavailability_windows(history: History) -> list[dict[str, Any]]:
    """Per kill or stop: for each partition the victim led, the time from the signal to the
    first acknowledged write on it that was sent after the signal (None: none came)."""
    out = []
    for e in history.events:
        if e["action"] not in ("kill", "term") or e.get("broker") is None:
            continue
        windows: dict[str, float | None] = {}
        for p in e["partitions"]:
            after = [ack for part, sent, ack in history.acks if part == p and sent >= e["wall_s"]]
            windows[str(p)] = round(min(after) - e["wall_s"], 3) if after else None
        known = [w for w in windows.values() if w is not None]
        out.append({"action": e["action"], "broker": e["broker"], "at_s": e["at_s"],
                    "unavailable_s": windows, "unavailable_s_max": max(known) if known else None})
    return out


# ---- read back ------------------------------------------------------------------------------
async def _read_partition(cluster: ClusterClient, topic: str, partition: int,
                          deadline: float) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    offset, high_watermark = 0, -1
    while time.monotonic() < deadline and (high_watermark < 0 or offset < high_watermark):
        leader = cluster.leader_for(topic, partition)
        request = {"replica_id": -1, "max_wait_ms": 100, "min_bytes": 1, "max_bytes": 4 << 20,
                   "isolation_level": 1, "topics": [{"topic": topic, "partitions": [
                       {"partition": partition, "fetch_offset": offset,
                        "partition_max_bytes": 4 << 20}]}]}
        try:
            if leader is None or leader < 0:
                raise ClientError("no leader")
            response = await cluster.send(leader, request, api_key=ApiKey.FETCH, timeout_ms=5_000)
            data = response.responses[0].partitions[0]
            if data.error_code != ErrorCode.NONE:
                raise ClientError(ErrorCode(data.error_code).name)
        except ClientError:
            cluster.request_metadata_update()
            await asyncio.sleep(0.1)
            continue
        high_watermark = int(data.high_watermark)
        for batch in decode_batches(bytes(data.records or b"")):
            for r in batch.records:
                if r.offset >= offset:
                    out.append((r.offset, bytes(r.value or b"")))
                    offset = r.offset + 1
    if offset < high_watermark or high_watermark < 0:
        raise RuntimeError(f"partition {partition}: read {offset} of {high_watermark} records "
                           f"before the deadline")
    return out


async def _read_back(cluster: ClusterClient, topic: str, partitions: int) -> dict[int, list[
        tuple[int, bytes]]]:
    await cluster.wait_for_topic(topic, timeout_ms=30_000)
    deadline = time.monotonic() + READ_BACK_S
    results = await asyncio.gather(*(_read_partition(cluster, topic, p, deadline)
                                     for p in range(partitions)))
    return dict(enumerate(results))


# ---- the run --------------------------------------------------------------------------------
async def _scenario(dev: Any, config: FailoverConfig) -> dict[str, Any]:
    topic = f"failover-{int(time.time() * 1000)}"
    await create_topic(dev.bootstrap, topic, config.partitions, 3)
    async with ClusterClient(dev.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS) as cluster:
        await cluster.wait_for_topic(topic, timeout_ms=30_000)
        start = time.time()
        history = History(start_wall_s=start,
                          timeline=Timeline(start_wall_s=start, seconds_max=int(config.seconds) + 30))
        load = _Load(cluster, topic, config, history, start + config.seconds)
        period_s = config.batch_records * config.partitions * WRITERS_PER_PARTITION / config.rate_per_s
        writers = [load.writer(p, period_s) for p in range(config.partitions)
                   for _ in range(WRITERS_PER_PARTITION)]
        await asyncio.gather(_faults(dev, cluster, topic, config, history), *writers)
        read_back = await _read_back(cluster, topic, config.partitions)
    check = check_history(history.acked, read_back, sent=history.sent)
    elapsed = max(1e-3, config.seconds)
    return {
        "tool": "raftlog bench failover", "topic": topic,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "config": {k: getattr(config, k) for k in config.__slots__},
        "produce": {"acked_records": check.acked, "sent_records": len(history.sent),
                    "failed_requests": history.errors,
                    "records_per_s": round(check.acked / elapsed, 1),
                    "latency_ms": latency_summary_ms(history.latency)},
        "faults": unavailability_windows(history),
        "events": [{k: v for k, v in e.items() if k != "wall_s"} for e in history.events],
        "check": {"ok": check.ok, "acked": check.acked, "read": check.read, "lost": check.lost,
                  "duplicates": check.duplicates, "unexpected": check.unexpected,
                  "examples": list(check.examples)},
        "timeline": timeline_rows(history.timeline),
    }


def timeline_rows(timeline: Timeline) -> list[dict[str, Any]]:
    last = max(timeline.buckets, default=-1)
    rows = []
    for s in range(last + 1):
        b = timeline.buckets.get(s, SecondBucket())
        rows.append({"second": s, "produce_records": b.records, "produce_errors": b.errors,
                     "publish_p50_ms": round(b.latency.percentile_ms(0.5), 3),
                     "publish_p99_ms": round(b.latency.percentile_ms(0.99), 3)})
    return rows


def run_failover(config: FailoverConfig) -> dict[str, Any]:
    with local_cluster() as dev:  # stops every broker, restarted ones included
        return asyncio.run(_scenario(dev, config))


def format_report(r: dict[str, Any]) -> str:
    p, c = r["produce"], r["check"]
    lines = [f"failover: {r['config']['partitions']} partitions, {r['config']['seconds']} s, "
             f"{p['acked_records']:,} records acknowledged ({p['records_per_s']:,.0f}/s), "
             f"{p['failed_requests']} failed requests, publish p99 {p['latency_ms']['p99']:.1f} ms"]
    for f in r["faults"]:
        lines.append(f"  {f['action']} broker {f['broker']} at {f['at_s']:.1f} s: unavailable "
                     + ", ".join(f"p{p} {w if w is None else f'{w:.2f}'} s"
                                 for p, w in f["unavailable_s"].items()))
    verdict = "OK" if c["ok"] else "FAILED"
    lines.append(f"  check {verdict}: {c['acked']:,} acknowledged, {c['read']:,} read back, "
                 f"{c['lost']} lost, {c['duplicates']} duplicated, {c['unexpected']} unexpected")
    lines += [f"    {e}" for e in c["examples"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftlog bench failover", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rate", type=float, default=2000.0, help="records/s in all")
    p.add_argument("--batch-records", type=int, default=10)
    p.add_argument("--record-bytes", type=int, default=100)
    p.add_argument("--json", dest="json_path", metavar="PATH")
    p.add_argument("--plot", dest="plot_path", metavar="PATH")
    p.add_argument("--peer", choices=("nats",), help="also run the scenario against this peer")
    p.add_argument("--peer-only", action="store_true", help="run only the peer (with --peer)")
    return p


def window_ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Per fault kind (kill, term): our worst window over the peer's (None: one is missing)."""
    def worst(r: dict[str, Any], action: str) -> float | None:
        known = [f["unavailable_s_max"] for f in r["faults"]
                 if f["action"] == action and f["unavailable_s_max"] is not None]
        return max(known) if known else None

    out: dict[str, float | None] = {}
    for action in ("kill", "term"):
        a, b = worst(ours, action), worst(peer, action)
        out[f"{action}_unavailable_s"] = round(a / b, 3) if a is not None and b else None
    return out


def _plot(path: str, title: str, result: dict[str, Any]) -> None:
    marks = [(e["at_s"], f"{e['action']} {e['broker']}") for e in result["events"]
             if e.get("broker") is not None]
    problem = plot_timeline(path, f"{title} ({result['started_at']})", result["timeline"],
                            marks=marks)
    print(problem or f"chart written to {path}", file=sys.stderr if problem else sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (4 <= args.seconds <= 3600 and 1 <= args.partitions <= 100 and args.rate > 0
            and 1 <= args.batch_records <= 10_000 and 24 <= args.record_bytes <= 1 << 20):
        print("raftlog bench failover: need 4 <= --seconds <= 3600, 1 <= --partitions <= 100, "
              "--rate > 0, 1 <= --batch-records <= 10000, 24 <= --record-bytes", file=sys.stderr)
        return EXIT_USAGE
    if args.peer_only and not args.peer:
        print("raftlog bench failover: --peer-only needs --peer", file=sys.stderr)
        return EXIT_USAGE
    config = FailoverConfig(seconds=args.seconds, partitions=args.partitions, rate_per_s=args.rate,
                            batch_records=args.batch_records, record_bytes=args.record_bytes)
    try:
        result = None if args.peer_only else run_failover(config)
        peer = _run_peer(config) if args.peer else None
    except (OSError, RuntimeError, ClientError, KafkaError) as e:
        print(f"raftlog bench failover: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if result is not None:
        print(format_report(result))
    if peer is not None:
        from benchmarks.failover_nats import format_nats_report

        print(format_nats_report(peer))
    combined = _combine(result, peer)
    if "ratios" in combined:
        print("  raftlog / NATS unavailability (below 1 favours raftlog; target at most 0.5): "
              + ", ".join(f"{k} {'n/a' if v is None else v}"
                          for k, v in combined["ratios"].items()))
    _write(args, result, peer, combined)
    return EXIT_OK if result is None or result["check"]["ok"] else EXIT_FAILURE


def _run_peer(config: FailoverConfig) -> dict[str, Any]:
    from benchmarks.failover_nats import run_nats_failover
    from benchmarks.peer_nats import nats_missing

    problem = nats_missing()
    if problem:
        raise RuntimeError(f"--peer nats: {problem}")
    try:
        return run_nats_failover(config)
    except (OSError, RuntimeError):
        raise
    except Exception as e:  # a nats-py error: one line, no traceback
        raise RuntimeError(f"NATS failover: {type(e).__name__}: {e}") from e


def _combine(result: dict[str, Any] | None, peer: dict[str, Any] | None) -> dict[str, Any]:
    if result is None:
        assert peer is not None
        return peer
    if peer is None:
        return result
    return result | {"peer": {"nats": peer}, "ratios": window_ratios(result, peer)}


def _write(args: argparse.Namespace, result: dict[str, Any] | None, peer: dict[str, Any] | None,
           combined: dict[str, Any]) -> None:
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(combined, indent=2) + "\n")
        print(f"results written to {args.json_path}")
    if not args.plot_path:
        return
    if result is not None:
        _plot(args.plot_path, "raftlog failover", result)
    if peer is not None:
        from benchmarks.failover_nats import plot_path_for_peer

        path = args.plot_path if result is None else plot_path_for_peer(args.plot_path)
        _plot(path, "NATS JetStream R3 failover", peer)


if __name__ == "__main__":
    sys.exit(main())
