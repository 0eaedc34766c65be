"""A local cluster of real `raftlog serve` processes on 127.0.0.1, for integration tests.

Each broker is `python -m broker serve ...` with its own data directory and log file (stdout and
stderr) under the cluster's data root; every broker is a controller voter. The harness only ever
signals the PIDs it started, and every wait is a bounded poll with a deadline (waiting.py).
Every failure names what was awaited, the last thing observed and the tail of every broker's
log; a broker that dies unexpectedly fails the wait at once instead of at its deadline.

Ports: every broker needs a client port and a Raft port, picked by binding port 0 and releasing
it. Another process can take a released port before the broker binds it, so the first start
re-picks ports and retries when a broker dies of "address already in use".
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from tests.integration import kafka_wire
from tests.integration.cli_calls import (
    IN_PROCESS_COMMANDS,
    CliHung,
    in_process_usable,
    run_in_process,
)
from tests.integration.processes import (
    HOST,
    LOG_TAIL_LINES,
    REPO_ROOT,
    BrokerProcess,
    pick_free_ports,
    repo_env,
    tail_file,
)
from tests.integration.waiting import (
    POLL_INTERVAL_S,
    BrokerDied,
    CliUnavailable,
    ClusterError,
    FatalClusterError,
    NotYet,
    shorten,
    wait_until,
)

__all__ = [
    "CLI_UNAVAILABLE",
    "HOST",
    "REPO_ROOT",
    "BrokerDied",
    "BrokerProcess",
    "CliUnavailable",
    "ClusterError",
    "ClusterFactory",
    "FatalClusterError",
    "LocalCluster",
    "NotYet",
    "pick_free_ports",
    "tail_file",
    "wait_until",
]

CLI_IN_PROCESS_GRACE_S = 5.0  # beyond the command's own --timeout-ms
START_ATTEMPTS_MAX = 3  # fresh port picks when a broker loses a port race at first start
RESTART_ATTEMPTS_MAX = 5  # same ports: a just-killed broker's port may linger briefly
READY_TIMEOUT_S = 60.0
CLI_UNAVAILABLE = "not available yet"
ADDRESS_IN_USE = "address already in use"

T = TypeVar("T")


class LocalCluster:
    """N broker processes on 127.0.0.1 sharing one controller quorum (every broker a voter).

    Use as a context manager, or call stop_all() in teardown: it always runs, and it only
    signals processes this object started.
    """

    module = "broker"  # each broker runs `python -m <module> <serve_command(node_id)>`

    def __init__(self, n: int = 3, *, data_root: Path,
                 env_overrides: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = (), voters: int | None = None) -> None:
        assert n >= 1, n
        assert voters is None or 1 <= voters <= n, voters
        self.n = n
        self.voters = voters or n  # the first `voters` brokers form the controller quorum
        self.data_root = Path(data_root)
        self.env_overrides = dict(env_overrides or {})
        self.extra_args = list(extra_args)
        self.brokers: dict[int, BrokerProcess] = {}

    # ---- addresses ------------------------------------------------------------------------
    @property
    def node_ids(self) -> list[int]:
        return sorted(self.brokers) or list(range(1, self.n + 1))

    @property
    def bootstrap(self) -> str:
        """Every broker's client address, comma-separated."""
        return ",".join(self.brokers[i].client_address for i in self.node_ids)

    @property
    def live_bootstrap(self) -> str:
        """Client addresses of the brokers we expect to be running (all, if none are)."""
        live = [b.client_address for b in self._ordered() if b.expected_running]
        return ",".join(live) if live else self.bootstrap

    def bootstrap_of(self, node_ids: Iterable[int]) -> str:
        return ",".join(self.brokers[i].client_address for i in node_ids)

    def address(self, node_id: int) -> str:
        return self.brokers[node_id].client_address

    @property
    def controller_voters(self) -> str:
        return ",".join(f"{b.node_id}@{b.raft_address}" for b in self._ordered()[:self.voters])

    def _ordered(self) -> list[BrokerProcess]:
        return [self.brokers[i] for i in sorted(self.brokers)]

    # ---- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every broker that is not running and wait until each listens on its client
        port. A broker that dies of "address already in use" is retried: at the first start
        on freshly picked ports (nothing is stored yet), later on its own ports after a pause."""
        first_start = not self.brokers
        attempts = START_ATTEMPTS_MAX if first_start else RESTART_ATTEMPTS_MAX
        for attempt in range(1, attempts + 1):
            if first_start:
                self._assign_ports()
            for b in self._ordered():
                if not b.is_running():
                    self._spawn(b)
            try:
                self._wait_listening(self.node_ids, timeout_s)
                return
            except _AddressInUse as e:
                if attempt == attempts:
                    self.stop_all()
                    raise ClusterError(f"{e} ({attempt} attempts)\n{self.diagnostics()}") from None
                if first_start:
                    self.stop_all()
                    for b in self._ordered():  # nothing of value yet: start clean on new ports
                        shutil.rmtree(b.data_dir, ignore_errors=True)
                else:
                    time.sleep(0.5 * attempt)

    def _assign_ports(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        ports = pick_free_ports(2 * self.n)
        self.brokers = {
            i: BrokerProcess(
                node_id=i,
                client_port=ports[2 * (i - 1)],
                raft_port=ports[2 * (i - 1) + 1],
                data_dir=self.data_root / f"broker-{i}",
                log_path=self.data_root / f"broker-{i}.log",
            )
            for i in range(1, self.n + 1)
        }

    def serve_command(self, node_id: int) -> list[str]:
        """The `raftlog serve` arguments of one broker (what follows `python -m broker`)."""
        b = self.brokers[node_id]
        return [
            "serve",
            "--node-id", str(b.node_id),
            "--data-dir", str(b.data_dir),
            "--listen", b.client_address,
            "--raft-listen", b.raft_address,
            "--controller-voters", self.controller_voters,
            *self.extra_args,
        ]

    def broker_env(self) -> dict[str, str]:
        """The environment of broker processes (see repo_env) plus the overrides."""
        env = repo_env({
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",  # SIGABRT (sent to a hung broker) dumps every thread
        })
        env.update(self.env_overrides)
        return env

    def _spawn(self, b: BrokerProcess) -> None:
        b.spawn(self.module, self.serve_command(b.node_id), self.broker_env())

    def _wait_listening(self, node_ids: Sequence[int], timeout_s: float) -> None:
        pending = set(node_ids)

        def all_listening() -> bool:
            for i in sorted(pending):
                b = self.brokers[i]
                if not b.is_running():
                    if ADDRESS_IN_USE in b.log_since_start().lower():
                        raise _AddressInUse(f"broker {i} lost a port race: {b.status_line()}")
                    b.expected_running = False
                    raise BrokerDied(f"broker {i} exited while starting\n{self.diagnostics()}")
                with contextlib.suppress(OSError):
                    socket.create_connection((HOST, b.client_port), timeout=1.0).close()
                    pending.discard(i)
            if pending:
                raise NotYet(f"brokers {sorted(pending)} not listening on their client ports")
            return True

        wait_until(all_listening, timeout_s=timeout_s,
                   what=f"brokers {list(node_ids)} to listen on their client ports",
                   describe_failure=self.diagnostics)

    def wait_ready(self, timeout_s: float = 60.0, node_ids: Iterable[int] | None = None) -> dict:
        """Wait until every broker in `node_ids` (default: all) answers a Kafka ApiVersions
        request and `raftlog cluster status` shows them alive with a controller elected.
        Returns the last cluster status."""
        expected = sorted(node_ids if node_ids is not None else self.node_ids)

        def ready() -> dict:
            for i in expected:
                kafka_wire.check_api_versions(self.address(i), timeout_s=5.0)
            status = self.cluster_status(bootstrap=self.bootstrap_of(expected))
            alive = {b.get("id") for b in status.get("brokers", []) if b.get("alive")}
            if status.get("controller") is None or not set(expected) <= alive:
                raise NotYet(f"cluster status: {status}")
            return status

        return self.wait_until(ready, timeout_s=timeout_s,
                               what=f"brokers {expected} to be ready (ApiVersions answered, "
                                    "cluster status: all alive, controller elected)")

    def kill(self, node_id: int) -> int:
        """SIGKILL one broker; returns its exit code once reaped."""
        b = self.brokers[node_id]
        b.expected_running = False
        b.signal(signal.SIGKILL)
        code = b.wait_exit(30.0)
        if code is None:  # a SIGKILLed process always dies; not reaping it means trouble
            raise ClusterError(f"broker {node_id} survived SIGKILL\n{self.diagnostics()}")
        b.paused = False
        return code

    def terminate(self, node_id: int, timeout_s: float = 30.0) -> int:
        """SIGTERM one broker (graceful shutdown) and wait for it to exit; returns the exit code.
        A broker still running at the deadline gets SIGABRT (a traceback of every thread in its
        log), then SIGKILL, and the call fails."""
        self.send_sigterm(node_id)
        return self.wait_exit(node_id, timeout_s)

    def send_sigterm(self, node_id: int) -> None:
        """SIGTERM one broker without waiting (to watch what happens while it shuts down)."""
        b = self.brokers[node_id]
        b.expected_running = False
        if b.paused:
            self.resume(node_id)
        b.signal(signal.SIGTERM)

    def wait_exit(self, node_id: int, timeout_s: float = 30.0) -> int:
        """Wait for a broker we signalled to exit; on timeout, SIGABRT + SIGKILL it and fail."""
        b = self.brokers[node_id]
        code = b.wait_exit(timeout_s)
        if code is None:
            self._force_stop(b)
            raise ClusterError(f"broker {node_id} did not exit within {timeout_s:g} s of SIGTERM "
                               f"(SIGABRT sent for a traceback, then SIGKILL)\n"
                               f"{self.diagnostics()}")
        return code

    def _force_stop(self, b: BrokerProcess) -> None:
        if b.signal(signal.SIGABRT) and b.wait_exit(5.0) is not None:
            return
        b.signal(signal.SIGKILL)
        b.wait_exit(30.0)

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the process stays alive but does nothing (a hung or partitioned broker)."""
        b = self.brokers[node_id]
        if b.signal(signal.SIGSTOP):
            b.paused = True

    def resume(self, node_id: int) -> None:
        b = self.brokers[node_id]
        b.signal(signal.SIGCONT)
        b.paused = False

    def restart(self, node_id: int, timeout_s: float = 60.0) -> None:
        """Start one broker again on the same ports and data directory (SIGTERM first if it is
        still running) and wait until it listens on its client port."""
        b = self.brokers[node_id]
        if b.is_running():
            self.terminate(node_id)
        for attempt in range(1, RESTART_ATTEMPTS_MAX + 1):
            self._spawn(b)
            try:
                self._wait_listening([node_id], timeout_s)
                return
            except _AddressInUse:
                if attempt == RESTART_ATTEMPTS_MAX:
                    raise ClusterError(f"broker {node_id} could not bind its ports after "
                                       f"{attempt} attempts\n{self.diagnostics()}") from None
                time.sleep(0.5 * attempt)

    def stop_all(self, timeout_s: float = 30.0) -> dict[int, int | None]:
        """SIGTERM every broker we started, SIGKILL (after SIGABRT) whatever is left at the
        deadline. Never raises: it runs in teardown. Returns each broker's exit code."""
        for b in self._ordered():
            b.expected_running = False
            if b.paused:
                self.resume(b.node_id)
            b.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        codes: dict[int, int | None] = {}
        for b in self._ordered():
            codes[b.node_id] = b.wait_exit(max(0.0, deadline - time.monotonic()))
            if codes[b.node_id] is None and b.popen is not None:
                self._force_stop(b)
                codes[b.node_id] = None
        return codes

    # ---- observation ------------------------------------------------------------------------
    def check_alive(self) -> None:
        """Raise BrokerDied if a broker we expect to be running has exited."""
        for b in self._ordered():
            if b.expected_running and not b.is_running():
                b.expected_running = False
                raise BrokerDied(f"broker {b.node_id} exited unexpectedly "
                                 f"({b.status_line()})\n{self.diagnostics()}")

    def wait_until(self, predicate: Callable[[], T], timeout_s: float, what: str,
                   interval_s: float = POLL_INTERVAL_S) -> T:
        """`wait_until` that also fails at once if a broker dies, with the logs on timeout."""
        __tracebackhide__ = True
        return wait_until(predicate, timeout_s=timeout_s, what=what, interval_s=interval_s,
                          on_poll=self.check_alive, describe_failure=self.diagnostics)

    def log_tail(self, node_id: int, lines: int = LOG_TAIL_LINES) -> str:
        return tail_file(self.brokers[node_id].log_path, lines)

    def diagnostics(self, lines: int = LOG_TAIL_LINES) -> str:
        """Every broker's state and the tail of its log."""
        if not self.brokers:
            return "(no brokers started)"
        parts = []
        for b in self._ordered():
            tail = tail_file(b.log_path, lines) or "(empty log)"
            parts.append(f"--- {b.status_line()}\n{tail}")
        return "\n".join(parts)

    # ---- the command line ------------------------------------------------------------------
    def run_cli(self, *args: str, input: str | None = None,  # noqa: A002 - subprocess's name
                timeout_s: float = 30.0, bootstrap: str | None = None
                ) -> subprocess.CompletedProcess[str]:
        """Run `python -m broker ARGS --bootstrap B` (B: the running brokers by default)."""
        cmd = [sys.executable, "-m", "broker", *args]
        if "--bootstrap" not in args:
            cmd += ["--bootstrap", bootstrap or self.live_bootstrap]
        try:
            return subprocess.run(cmd, input=input, capture_output=True, text=True,
                                  timeout=timeout_s, cwd=REPO_ROOT, env=repo_env())
        except subprocess.TimeoutExpired as e:
            out = shorten(_text(e.stdout)) + shorten(_text(e.stderr))
            raise ClusterError(f"`{' '.join(cmd[2:])}` did not finish within {timeout_s:g} s; "
                               f"output so far: {out!r}") from None

    def call_cli(self, *args: str, timeout_s: float = 30.0, bootstrap: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """`run_cli` for the harness's own looks: the commands in IN_PROCESS_COMMANDS run in
        this process (cli_calls says why), bounded by `--timeout-ms` of `timeout_s`; any other
        command runs as a process."""
        if tuple(args[:2]) not in IN_PROCESS_COMMANDS or not in_process_usable():
            return self.run_cli(*args, timeout_s=timeout_s, bootstrap=bootstrap)
        argv = list(args)
        if "--bootstrap" not in args:
            argv += ["--bootstrap", bootstrap or self.live_bootstrap]
        if "--timeout-ms" not in args:
            argv += ["--timeout-ms", str(max(1, round(timeout_s * 1000)))]
        try:
            return run_in_process(argv, timeout_s + CLI_IN_PROCESS_GRACE_S)
        except CliHung as e:
            raise ClusterError(f"`raftlog {' '.join(argv)}` did not return within "
                               f"{timeout_s + CLI_IN_PROCESS_GRACE_S:g} s; {e}") from None

    def cli_json(self, *args: str, timeout_s: float = 30.0, bootstrap: str | None = None) -> Any:
        """Run a command with `--json` (call_cli); its parsed output. Fails on a non-zero
        exit."""
        r = self.call_cli(*args, "--json", timeout_s=timeout_s, bootstrap=bootstrap)
        command = " ".join(args)
        if r.returncode != 0:
            message = (f"`raftlog {command} --json` exited {r.returncode}: "
                       f"stderr {r.stderr.strip()!r}, stdout {shorten(r.stdout.strip())!r}")
            if CLI_UNAVAILABLE in r.stderr:
                raise CliUnavailable(message)
            raise ClusterError(message)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise ClusterError(f"`raftlog {command} --json` printed invalid JSON ({e}): "
                               f"{shorten(r.stdout)!r}") from None

    def cluster_status(self, bootstrap: str | None = None) -> dict:
        return self.cli_json("cluster", "status", bootstrap=bootstrap)

    def describe(self, topic: str, bootstrap: str | None = None,
                 timeout_s: float = 30.0) -> dict:
        return self.cli_json("topic", "describe", topic, bootstrap=bootstrap, timeout_s=timeout_s)

    def topic_list(self, bootstrap: str | None = None) -> list:
        return self.cli_json("topic", "list", bootstrap=bootstrap)

    def leader_of(self, topic: str, partition: int, bootstrap: str | None = None) -> int | None:
        for p in self.describe(topic, bootstrap=bootstrap)["partitions"]:
            if p["partition"] == partition:
                return p["leader"]
        raise ClusterError(f"topic {topic!r} has no partition {partition}")

    def leaders(self, topic: str, bootstrap: str | None = None,
                timeout_s: float = 30.0) -> dict[int, int | None]:
        """partition -> leader (None while a partition has none)."""
        return {p["partition"]: p["leader"]
                for p in self.describe(topic, bootstrap, timeout_s)["partitions"]}

    def create_topic(self, name: str, partitions: int, replication_factor: int = 3,
                     timeout_s: float = 60.0) -> dict:
        """Create a topic with the CLI and wait until every partition has a leader; returns
        the last describe output."""
        r = self.call_cli("topic", "create", name, "--partitions", str(partitions),
                          "--replication-factor", str(replication_factor))
        if r.returncode != 0:
            error = CliUnavailable if CLI_UNAVAILABLE in r.stderr else ClusterError
            raise error(f"`raftlog topic create {name}` exited {r.returncode}: "
                        f"{r.stderr.strip()!r}")
        return self.wait_topic_leaders(name, partitions, timeout_s=timeout_s)

    def wait_topic_leaders(self, topic: str, partitions: int, timeout_s: float = 60.0,
                           excluded: Iterable[int] = (), bootstrap: str | None = None) -> dict:
        """Wait until describe shows `partitions` partitions, each led by a broker not in
        `excluded`; returns that describe output."""
        banned = set(excluded)

        def led() -> dict:
            d = self.describe(topic, bootstrap=bootstrap)
            leaders = {p["partition"]: p["leader"] for p in d["partitions"]}
            if len(leaders) != partitions or any(v is None or v in banned
                                                 for v in leaders.values()):
                raise NotYet(f"leaders {leaders}")
            return d

        what = f"every partition of {topic!r} to have a leader"
        if banned:
            what += f" other than {sorted(banned)}"
        return self.wait_until(led, timeout_s=timeout_s, what=what)


class ClusterFactory:
    """Makes clusters under one directory and stops them all on close()."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clusters: list[LocalCluster] = []

    def __call__(self, n: int = 3, *, env_overrides: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = (), ready: bool = True,
                 ready_timeout_s: float = READY_TIMEOUT_S,
                 voters: int | None = None) -> LocalCluster:
        """A started cluster, ready (brokers alive, controller elected) unless ready=False."""
        cluster = LocalCluster(n, data_root=self.root / f"cluster-{len(self.clusters) + 1}",
                               env_overrides=env_overrides, extra_args=extra_args,
                               voters=voters)
        self.clusters.append(cluster)
        cluster.start()
        if ready:
            cluster.wait_ready(ready_timeout_s)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            cluster.stop_all()


class _AddressInUse(FatalClusterError):
    """A broker exited at start because one of its ports was taken (start() retries)."""


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
