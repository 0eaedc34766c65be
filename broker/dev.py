"""`raftlog dev`: a local cluster of N broker processes on 127.0.0.1, in the foreground.

Broker i (1-based) serves Kafka on base_port + i - 1 and Raft on base_port + 100 + i - 1; all
are controller voters. Ctrl-C (or SIGTERM) stops them gracefully (SIGTERM each, then SIGKILL
after the shutdown deadline); a second Ctrl-C kills them at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DevCluster", "run_dev"]

RAFT_PORT_OFFSET = 100
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DevBroker:
    node_id: int
    client_port: int
    raft_port: int
    data_dir: Path


class DevCluster:
    def __init__(self, *, brokers: int, data_dir: Path, base_port: int,
                 env: dict[str, str] | None = None) -> None:
        self.members = [
            DevBroker(node_id=i, client_port=base_port + i - 1,
                      raft_port=base_port + RAFT_PORT_OFFSET + i - 1, data_dir=data_dir / f"broker-{i}")
            for i in range(1, brokers + 1)
        ]
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def _command(self, m: DevBroker) -> list[str]:
        voters = ",".join(f"{x.node_id}@127.0.0.1:{x.raft_port}" for x in self.members)
        return [sys.executable, "-m", "broker", "serve", "--node-id", str(m.node_id),
                "--data-dir", str(m.data_dir), "--listen", f"127.0.0.1:{m.client_port}",
                "--raft-listen", f"127.0.0.1:{m.raft_port}", "--controller-voters", voters]

    def start(self) -> None:
        for m in self.members:
            for port in (m.client_port, m.raft_port):
                if not _port_free(port):
                    raise RuntimeError(f"port {port} on 127.0.0.1 is in use (try --base-port)")
        for m in self.members:
            m.data_dir.mkdir(parents=True, exist_ok=True)
            log = open(m.data_dir / "broker.log", "ab")
            self.procs[m.node_id] = subprocess.Popen(self._command(m), stdout=log, stderr=log,
                                                     env=self.env, start_new_session=True)
            log.close()

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Every broker accepts connections and the cluster has registered all of them."""
        from broker.client import AdminClient

        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            dead = [i for i, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"broker {dead[0]} exited; see {self.members[dead[0] - 1].data_dir}/broker.log")
            try:
                with AdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000) as admin:
                    cluster = admin.describe_cluster()
                    alive = [b for b in cluster.brokers if b.alive]
                    if cluster.controller is not None and len(alive) == len(self.members):
                        return
                    last_error = f"{len(alive)} of {len(self.members)} brokers registered"
            except Exception as e:  # not up yet
                last_error = str(e)
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not become ready in {timeout_s:.0f} s: {last_error}")

    def stop(self, *, force: bool = False) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL if force else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_dev(*, brokers: int, data_dir: str | None, base_port: int, demo: bool) -> int:
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="raftlog-dev-"))
    cluster = DevCluster(brokers=brokers, data_dir=root, base_port=base_port)
    interrupted = {"count": 0}

    def on_signal(_signum: int, _frame: object) -> None:
        interrupted["count"] += 1
        if interrupted["count"] > 1:
            cluster.stop(force=True)
            os._exit(1)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        cluster.wait_ready()
        print(f"raftlog dev: {brokers} brokers ready; data in {root}", file=sys.stderr)
        print(cluster.bootstrap, flush=True)
        if demo:
            from broker.demo import run_demo

            return run_demo(cluster.bootstrap)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"raftlog dev: {e}", file=sys.stderr)
        return 1
    finally:
        print("raftlog dev: stopping brokers", file=sys.stderr)
        cluster.stop()
