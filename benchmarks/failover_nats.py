"""`raftlog bench failover --peer nats`: the failover scenario against NATS JetStream R3.

The same schedule and load shape as benchmarks.failover, against a local 3-server NATS
cluster (benchmarks.peer_nats, `sync_interval: always`, matching our fsync_policy=always) with
one stream of 3 replicas and subjects `<stream>.<partition>`: every `batch_records` records of
a partition are published together (one publish each, awaited together), two writers per
partition, at `--rate` records/s in all. At the same fractions of the run as ours it SIGKILLs
the nats-server that leads the stream (found through JetStream's stream info: cluster leader),
restarts it, stops the then-leader with SIGTERM and restarts it.

A stream is one Raft group, so every subject is unavailable while it has no leader; the
window per fault is measured as ours is: from the signal to the first acknowledged publish
sent after it. A publish that gets no answer fails after PUBLISH_TIMEOUT_S and the writer
moves on, so the window is not inflated by a long client timeout; the client reconnects to a
surviving server at once (reconnect_time_wait) when its own server is the victim.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks.failover import (SCHEDULE, WRITERS_PER_PARTITION, FailoverConfig, History,
                                 PacedWriters,
                                 timeline_rows, unavailability_windows)
from benchmarks.peer_nats import SYNC_ALWAYS, NatsCluster, create_stream, nats_cluster
from benchmarks.perf_stats import Timeline, latency_summary_ms

__all__ = ["run_nats_failover", "format_nats_report", "plot_path_for_peer"]

PUBLISH_TIMEOUT_S = 1.0
RETRY_BACKOFF_S = 0.02
LEADER_QUERY_S = 2.0
RECONNECT_WAIT_S = 0.05


class _NatsLoad(PacedWriters):
    """The same writers as benchmarks.failover's, publishing to the NATS stream."""

    def __init__(self, js: Any, stream: str, config: FailoverConfig, history: History,
                 stop_wall_s: float) -> None:
        super().__init__(config, history, stop_wall_s)
        self.js, self.stream = js, stream

    async def _send_once(self, partition: int, values: list[bytes]) -> None:
        subject = f"{self.stream}.{partition}"
        sent_wall = time.time()
        try:
            await asyncio.gather(*(self.js.publish(subject, v, timeout=PUBLISH_TIMEOUT_S)
                                   for v in values))
            ok = True
        except Exception:  # timeout, no responders, disconnected: the outcome is unknown
            ok = False
        now_wall = time.time()
        bucket = self.history.timeline.bucket(now_wall)
        if not ok:
            self.history.errors += 1
            bucket.errors += 1
            await asyncio.sleep(RETRY_BACKOFF_S)
            return
        self.history.acks.append((partition, sent_wall, now_wall))
        bucket.records += len(values)
        bucket.bytes += len(values) * self.config.record_bytes
        bucket.latency.record(now_wall - sent_wall)
        self.history.latency.record(now_wall - sent_wall)


async def _quiet(_error: Exception) -> None:
    """The client's server was killed: expected here; the client reconnects on its own."""


async def _stream_leader(js: Any, stream: str) -> str | None:
    try:
        info = await asyncio.wait_for(js.stream_info(stream), LEADER_QUERY_S)
    except Exception:  # no leader at the moment, or no answer in time
        return None
    return info.cluster.leader if info.cluster is not None else None


async def _faults(cluster: NatsCluster, js: Any, stream: str, config: FailoverConfig,
                  history: History) -> None:
    down: str | None = None
    for action, fraction in SCHEDULE:
        at_wall = history.start_wall_s + fraction * config.seconds
        await asyncio.sleep(max(0.0, at_wall - time.time()))
        if action == "restart":
            if down is not None:
                await asyncio.to_thread(cluster.wait_exit, down)
                cluster.spawn(down)
                history.events.append({"action": "restart", "broker": down,
                                       "at_s": round(time.time() - history.start_wall_s, 3)})
                down = None
            continue
        victim = await _stream_leader(js, stream)
        if victim is None or victim not in cluster.procs:
            history.events.append({"action": action, "broker": None, "skipped": "no leader"})
            continue
        cluster.signal(victim, signal.SIGKILL if action == "kill" else signal.SIGTERM)
        history.events.append({"action": action, "broker": victim, "wall_s": time.time(),
                               "at_s": round(time.time() - history.start_wall_s, 3),
                               "partitions": list(range(config.partitions))})
        down = victim


async def _scenario(cluster: NatsCluster, config: FailoverConfig) -> dict[str, Any]:
    import nats

    stream = f"FAILOVER{int(time.time() * 1000)}"
    await create_stream(cluster.urls, stream, config.partitions)
    nc = await nats.connect(cluster.urls.split(","), reconnect_time_wait=RECONNECT_WAIT_S,
                            max_reconnect_attempts=-1, connect_timeout=2, error_cb=_quiet)
    try:
        js = nc.jetstream()
        start = time.time()
        history = History(start_wall_s=start, timeline=Timeline(
            start_wall_s=start, seconds_max=int(config.seconds) + 30))
        load = _NatsLoad(js, stream, config, history, start + config.seconds)
        period_s = config.batch_records * config.partitions * WRITERS_PER_PARTITION / config.rate_per_s
        writers = [load.writer(p, period_s) for p in range(config.partitions)
                   for _ in range(WRITERS_PER_PARTITION)]
        await asyncio.gather(_faults(cluster, js, stream, config, history), *writers)
    finally:
        await nc.close()
    acked = sum(config.batch_records for _ in history.acks)
    return {
        "tool": "raftlog bench failover (peer: NATS JetStream R3, sync_interval always)",
        "stream": stream, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "config": {k: getattr(config, k) for k in config.__slots__},
        "produce": {"acked_records": acked, "sent_records": len(history.sent),
                    "failed_requests": history.errors,
                    "records_per_s": round(acked / max(1e-3, config.seconds), 1),
                    "latency_ms": latency_summary_ms(history.latency)},
        "faults": unavailability_windows(history),
        "events": [{k: v for k, v in e.items() if k != "wall_s"} for e in history.events],
        "timeline": timeline_rows(history.timeline),
    }


def run_nats_failover(config: FailoverConfig) -> dict[str, Any]:
    """The scenario on a fresh local NATS cluster (stopped afterwards, restarted servers too)."""
    with nats_cluster(sync=SYNC_ALWAYS) as cluster:
        return asyncio.run(_scenario(cluster, config))


def format_nats_report(r: dict[str, Any]) -> str:
    p = r["produce"]
    lines = [f"NATS JetStream R3 failover: {r['config']['partitions']} subjects, "
             f"{r['config']['seconds']} s, {p['acked_records']:,} records acknowledged "
             f"({p['records_per_s']:,.0f}/s), {p['failed_requests']} failed publishes, "
             f"publish p99 {p['latency_ms']['p99']:.1f} ms"]
    for f in r["faults"]:
        window = f["unavailable_s_max"]
        lines.append(f"  {f['action']} server {f['broker']} (stream leader) at {f['at_s']:.1f} s: "
                     f"unavailable {'never answered' if window is None else f'{window:.2f} s'}")
    return "\n".join(lines)


def plot_path_for_peer(path: str) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}-nats{p.suffix}"))
