"""The process harness itself, with stand-in processes instead of brokers: port picking,
start/kill/terminate/pause/resume/restart/stop of the PIDs it started, log tailing, and waits
that fail fast and say why (a dead process, a timeout) instead of hanging."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cluster import (
    HOST,
    REPO_ROOT,
    BrokerDied,
    ClusterError,
    LocalCluster,
    NotYet,
    pick_free_ports,
    tail_file,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

# A stand-in broker: listens on its client port and accepts-then-closes connections; the mode
# makes it misbehave the ways a broker can.
STANDIN = '''
import argparse, os, signal, socket, sys
p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", default="serve")
p.add_argument("--marker", required=True)
a = p.parse_args()
print(f"standin pid={os.getpid()} mode={a.mode}", flush=True)
if a.mode == "crash":
    print("boom: cannot start", file=sys.stderr)
    sys.exit(3)
if a.mode == "port-race" and not os.path.exists(a.marker):
    open(a.marker, "w").close()
    print("OSError: [Errno 98] Address already in use", file=sys.stderr)
    sys.exit(1)
if a.mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", a.port))
s.listen()
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    conn.close()
'''


class StandInCluster(LocalCluster):
    module = "standin"

    def __init__(self, n: int, *, data_root: Path, mode: str = "serve") -> None:
        data_root.mkdir(parents=True, exist_ok=True)
        (data_root / "standin.py").write_text(STANDIN)
        path = os.pathsep.join([str(data_root), str(REPO_ROOT)])
        super().__init__(n, data_root=data_root, env_overrides={"PYTHONPATH": path})
        self.mode = mode

    def serve_command(self, node_id: int) -> list[str]:
        b = self.brokers[node_id]
        # Only broker 1 loses the port race, once: the others may be stopped before they get
        # as far as their own marker, which would make the number of attempts a matter of luck.
        mode = "serve" if self.mode == "port-race" and node_id != 1 else self.mode
        return ["--port", str(b.client_port), "--mode", mode,
                "--marker", str(self.data_root / f"marker-{node_id}")]


class HttpServerCluster(LocalCluster):
    """`python -m http.server` on each client port: a process the harness did not write."""

    module = "http.server"

    def serve_command(self, node_id: int) -> list[str]:
        return ["--bind", HOST, str(self.brokers[node_id].client_port)]


def _state(pid: int) -> str:
    """The process state letter from /proc (T = stopped), or '' if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def test_pick_free_ports_are_distinct_and_bindable() -> None:
    ports = pick_free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as s:
            s.bind((HOST, port))


def test_tail_file_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_file(log, lines=3) == "line 97\nline 98\nline 99"
    assert tail_file(tmp_path / "missing.log") == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_lifecycle_of_real_processes(tmp_path: Path) -> None:
    with HttpServerCluster(3, data_root=tmp_path) as c:
        c.start(timeout_s=30)
        pids = {i: c.brokers[i].pid or 0 for i in c.node_ids}
        assert len(set(pids.values())) == 3
        assert c.bootstrap == ",".join(f"{HOST}:{c.brokers[i].client_port}" for i in (1, 2, 3))
        assert c.controller_voters.count("@") == 3

        c.pause(2)
        wait_until(lambda: _state(pids[2]) == "T", timeout_s=10, what="broker 2 stopped")
        c.resume(2)
        wait_until(lambda: _state(pids[2]) not in ("T", ""), timeout_s=10,
                   what="broker 2 running again")

        assert c.kill(1) == -signal.SIGKILL
        c.check_alive()  # a broker we killed is not a surprise
        assert c.live_bootstrap == c.bootstrap_of([2, 3])
        assert c.terminate(3) == -signal.SIGTERM  # http.server does not handle SIGTERM

        c.restart(1)
        assert c.brokers[1].pid != pids[1] and _listening(c.brokers[1].client_port)
        assert c.brokers[1].starts == 2
        log = c.log_tail(1, lines=200)
        assert log.count("==== harness: start #") == 2 and "Serving HTTP" in log

        c.pause(2)  # stop_all must also end a paused process
        codes = c.stop_all(timeout_s=30)
        assert codes[1] is not None and codes[2] is not None
        assert not any(c.brokers[i].is_running() for i in c.node_ids)
        assert c.stop_all() == codes  # idempotent


def test_whole_cluster_restarts_on_its_ports(tmp_path: Path) -> None:
    with StandInCluster(3, data_root=tmp_path) as c:
        c.start(timeout_s=30)
        ports = {i: c.brokers[i].client_port for i in c.node_ids}
        assert c.stop_all() == {1: 0, 2: 0, 3: 0}
        c.start(timeout_s=30)
        assert {i: c.brokers[i].client_port for i in c.node_ids} == ports
        assert all(c.brokers[i].starts == 2 and _listening(ports[i]) for i in c.node_ids)


def test_unexpected_death_fails_wait_at_once_with_log(tmp_path: Path) -> None:
    with StandInCluster(2, data_root=tmp_path) as c:
        c.start(timeout_s=30)
        victim = c.brokers[2]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)  # behind the harness's back
        started = time.monotonic()
        with pytest.raises(BrokerDied) as e:
            c.wait_until(lambda: False, timeout_s=60, what="something that never happens")
        assert time.monotonic() - started < 30  # did not sit out the 60 s deadline
        message = str(e.value)
        assert "broker 2 exited unexpectedly" in message and "signal SIGKILL" in message
        assert f"standin pid={victim.pid}" in message  # the log tail is in the message


def test_crash_at_start_fails_fast_with_log(tmp_path: Path) -> None:
    c = StandInCluster(3, data_root=tmp_path, mode="crash")
    try:
        with pytest.raises(BrokerDied) as e:
            c.start(timeout_s=60)
        assert "exited while starting" in str(e.value)
        assert "boom: cannot start" in str(e.value)
    finally:
        c.stop_all()


def test_lost_port_race_is_retried_on_fresh_ports(tmp_path: Path) -> None:
    with StandInCluster(3, data_root=tmp_path, mode="port-race") as c:
        c.start(timeout_s=30)
        assert all(_listening(c.brokers[i].client_port) for i in c.node_ids)
        banners = [line for line in c.log_tail(1, lines=200).splitlines()
                   if line.startswith("==== harness")]
        # Two attempts: the first lost the race, the second runs on the ports now in use.
        ports = [int(m.group(1)) for b in banners if (m := re.search(r"--port (\d+)", b))]
        assert len(ports) == 2 and ports[-1] == c.brokers[1].client_port, banners


def test_terminate_escalates_when_sigterm_is_ignored(tmp_path: Path) -> None:
    with StandInCluster(1, data_root=tmp_path, mode="ignore-term") as c:
        c.start(timeout_s=30)
        with pytest.raises(ClusterError, match="did not exit within 1 s of SIGTERM"):
            c.terminate(1, timeout_s=1)
        assert not c.brokers[1].is_running()
        assert "Fatal Python error: Aborted" in c.log_tail(1, lines=200)  # faulthandler dump


def test_graceful_terminate_reports_exit_status(tmp_path: Path) -> None:
    with StandInCluster(1, data_root=tmp_path) as c:
        c.start(timeout_s=30)
        assert c.terminate(1) == 0


def test_wait_ready_times_out_with_reason_and_logs(tmp_path: Path) -> None:
    with StandInCluster(1, data_root=tmp_path) as c:
        c.start(timeout_s=30)
        with pytest.raises(ClusterError) as e:
            c.wait_ready(timeout_s=1)
        message = str(e.value)
        assert "waiting for brokers [1] to be ready" in message
        assert "last error" in message and "listening" in message  # the stand-in's log


def test_wait_until_reports_last_observation() -> None:
    def probe() -> bool:
        raise NotYet("3 of 6 partitions led")

    with pytest.raises(ClusterError, match="3 of 6 partitions led"):
        wait_until(probe, timeout_s=0.3, what="leaders")
    assert wait_until(lambda: 42, timeout_s=1, what="a value") == 42


def test_cli_failure_is_reported_not_hung(tmp_path: Path) -> None:
    c = LocalCluster(1, data_root=tmp_path)
    (closed_port,) = pick_free_ports(1)
    with pytest.raises(ClusterError, match="topic list"):
        c.cli_json("topic", "list", bootstrap=f"{HOST}:{closed_port}", timeout_s=30)


@pytest.mark.parametrize("args", [
    ("topic", "list", "--json"),  # nothing listens there: exit 1, one line on stderr
    ("topic", "create", "t", "--partitions", "1"),  # --replication-factor missing: exit 2
])
def test_cli_in_process_answers_as_the_process_does(tmp_path: Path,
                                                    args: tuple[str, ...]) -> None:
    c = LocalCluster(1, data_root=tmp_path)
    (closed_port,) = pick_free_ports(1)
    argv = [*args, "--timeout-ms", "5000", "--bootstrap", f"{HOST}:{closed_port}"]
    as_process, in_process = c.run_cli(*argv), c.call_cli(*argv)
    assert as_process.returncode in (1, 2), as_process
    assert (in_process.returncode, in_process.stdout, in_process.stderr) == (
        as_process.returncode, as_process.stdout, as_process.stderr)
