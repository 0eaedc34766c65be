"""One broker process: ports, launching, signalling only the PID we started, log tails.

Brokers are started through a tiny launcher that asks Linux to SIGKILL them if the test process
dies (PR_SET_PDEATHSIG) and then execs `python -m <module>`, so the PID we hold is the broker
itself and an aborted test run leaves no brokers behind holding ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HOST",
    "REPO_ROOT",
    "BrokerProcess",
    "pick_free_ports",
    "repo_env",
    "tail_file",
]

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES_MAX = 64 << 10  # read at most this much from the end of a log to tail it

# Runs as `python -c` with argv [parent_pid, module, args...]: arm the parent-death signal, make
# sure the parent did not die before it was armed, then become `python -m module args` (same PID).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "if parent:\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG\n"
    "    if os.getppid() != parent:\n"
    "        sys.exit(70)\n"
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])\n"
)



def repo_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without RAFTLOG_* (an operator's settings must not leak into a test),
    with this repository first on PYTHONPATH, then `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTLOG_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(overrides or {})
    return env


def pick_free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports that were free a moment ago.

    Every socket stays bound until all are picked, so no port repeats; they are never
    listened on or connected, so closing them leaves nothing in TIME_WAIT.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(s.getsockname()[1])
        return ports


def tail_file(path: Path, lines: int = LOG_TAIL_LINES, start_byte: int = 0) -> str:
    """The last `lines` lines of a text file from `start_byte` on ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start_byte, size - LOG_TAIL_BYTES_MAX))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass(slots=True, kw_only=True)
class BrokerProcess:
    """One broker's fixed identity (id, ports, paths) and its current process, if any."""

    node_id: int
    client_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    expected_running: bool = False  # False once we kill/terminate it: its exit is no surprise
    paused: bool = False
    starts: int = 0
    log_start_byte: int = 0  # where this incarnation's output begins in log_path

    @property
    def client_address(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def raft_address(self) -> str:
        return f"{HOST}:{self.raft_port}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def signal(self, signum: int) -> bool:
        """Send `signum` to the process we started, if it still runs; True if sent."""
        if not self.is_running():
            return False
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signum)
            return True
        return False

    def spawn(self, module: str, args: Sequence[str], env: dict[str, str]) -> None:
        """Start `python -m module args` with output appended to the log, in a session of
        its own (a Ctrl-C at the terminal reaches the test, which then stops its brokers)."""
        assert not self.is_running(), self.status_line()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        # The parent-death signal follows the forking thread: arm it only from the main thread.
        on_main = threading.current_thread() is threading.main_thread()
        parent = os.getpid() if sys.platform.startswith("linux") and on_main else 0
        with open(self.log_path, "ab") as log:
            self.log_start_byte = log.seek(0, os.SEEK_END)
            banner = (f"==== harness: start #{self.starts} of broker {self.node_id} at "
                      f"{time.strftime('%H:%M:%S')}: python -m {module} {' '.join(args)}\n")
            log.write(banner.encode())
            log.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(parent), module, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=REPO_ROOT, env=env, start_new_session=True,
            )
        self.expected_running = True
        self.paused = False

    def log_since_start(self, lines: int = 200) -> str:
        """The tail of what this incarnation has written."""
        return tail_file(self.log_path, lines, start_byte=self.log_start_byte)

    def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if the process still runs after `timeout_s`."""
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def status_line(self) -> str:
        if self.popen is None:
            state = "never started"
        elif self.popen.poll() is None:
            state = "paused" if self.paused else "running"
        else:
            state = f"exited with {_describe_exit(self.popen.returncode)}"
        return (f"broker {self.node_id} pid={self.pid} {state}; client {self.client_address}, "
                f"raft {self.raft_address}, start #{self.starts}, log {self.log_path}")


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
