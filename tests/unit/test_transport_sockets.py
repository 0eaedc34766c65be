"""The bus's ZeroMQ sockets against peers that stop and fail: a stopped receiver must not be
aborted by libzmq when it resumes, and a sender must notice a peer that stopped answering.

Peers are real processes (SIGSTOP/SIGCONT), since a stopped process is what the kernel and
libzmq see during a GC pause, a VM freeze or `kill -STOP`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from broker.transport.config import TransportConfig
from broker.transport.sockets import make_dealer, make_router

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEALER_ID = b"\x00\x02"
ENVELOPE = b"x" * 4000
FLOOD_ENVELOPES_MAX = 10_000

# The receiving process: a ROUTER with a tiny receive HWM whose owner does not read until told
# to, so its input is stopped by the HWM while the connection fails.
_ROUTER_PROCESS = """
import sys, zmq
from broker.transport.config import TransportConfig
from broker.transport.sockets import make_router
config = TransportConfig(node_id=1, listen="127.0.0.1:0", recv_hwm_envelopes=4)
router, address = make_router(zmq.Context(), "127.0.0.1", 0, config)
print(address.rpartition(":")[2], flush=True)
sys.stdin.readline()
received = 0
while router.poll(500):
    router.recv_multipart()
    received += 1
print(received, flush=True)
"""


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def router_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _ROUTER_PROCESS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env=env)
    try:
        assert proc.stdout is not None
        yield proc, int(proc.stdout.readline())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _send_first(dealer: zmq.Socket[bytes], deadline_s: float = 20.0) -> None:
    """Send one envelope once the connection is up (IMMEDIATE refuses it before that)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            dealer.send(b"hello", zmq.NOBLOCK)
            return
        except zmq.Again:
            assert time.monotonic() < end, "the DEALER never connected"
            time.sleep(0.01)


def _flood(dealer: zmq.Socket[bytes]) -> int:
    """Send until ZeroMQ refuses (kernel buffers and SNDHWM full); returns how many went."""
    for sent in range(FLOOD_ENVELOPES_MAX):
        try:
            dealer.send(ENVELOPE, zmq.NOBLOCK)
        except zmq.Again:
            return sent
    return FLOOD_ENVELOPES_MAX


def test_stopped_router_survives_its_peer_leaving(
    context: zmq.Context[zmq.Socket[bytes]],
    router_process: tuple[subprocess.Popen[str], int],
) -> None:
    # With ZMTP heartbeats on, libzmq 4.3.5 aborted the resumed process here in
    # stream_engine_base.cpp (`!_io_error`): the input is stopped by the HWM, the peer's
    # connection fails, and a heartbeat timer then writes on the failed connection.
    proc, port = router_process
    config = TransportConfig(node_id=2, listen="127.0.0.1:0")
    dealer = make_dealer(context, "127.0.0.1", port, DEALER_ID, config)
    _send_first(dealer)
    time.sleep(0.2)  # let the ROUTER's engine run (and arm its timers) before the stop
    proc.send_signal(signal.SIGSTOP)
    assert _flood(dealer) > 0
    time.sleep(0.5)
    dealer.close(linger=0)  # the peer leaves while the receiver is stopped
    time.sleep(1.0)  # timers of the stopped process expire
    proc.send_signal(signal.SIGCONT)
    time.sleep(2.5)  # the receiver's I/O thread runs with its input stopped at the HWM
    out, err = proc.communicate("drain\n", timeout=30)
    assert proc.returncode == 0, f"receiver exited {proc.returncode}: {err.strip()[-2000:]}"
    assert int(out) >= 1  # at least the envelope sent before the stop arrived


def test_sender_drops_a_connection_to_a_stopped_peer(
    context: zmq.Context[zmq.Socket[bytes]],
    router_process: tuple[subprocess.Popen[str], int],
) -> None:
    # Without ZMTP heartbeats, TCP_USER_TIMEOUT is what closes a connection whose peer stopped
    # acknowledging; then IMMEDIATE refuses sends at once instead of queueing them.
    proc, port = router_process
    config = TransportConfig(node_id=2, listen="127.0.0.1:0", tcp_user_timeout_ms=500)
    dealer = make_dealer(context, "127.0.0.1", port, DEALER_ID, config)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        _send_first(dealer)
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while not monitor.poll(0):
            assert time.monotonic() < deadline, "the connection to the stopped peer stayed open"
            _flood(dealer)
            time.sleep(0.05)
        with pytest.raises(zmq.Again):  # not reconnected: the peer is still stopped
            dealer.send(ENVELOPE, zmq.NOBLOCK)
    finally:
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)


@pytest.mark.parametrize("kind", ["router", "dealer"])
def test_sockets_use_tcp_dead_peer_detection_not_zmtp_heartbeats(
    context: zmq.Context[zmq.Socket[bytes]], kind: str
) -> None:
    config = TransportConfig(node_id=2, listen="127.0.0.1:0", tcp_keepalive_idle_s=7,
                             tcp_keepalive_interval_s=2, tcp_keepalive_probes=5,
                             tcp_user_timeout_ms=4500)
    if kind == "router":
        sock, _ = make_router(context, "127.0.0.1", 0, config)
    else:
        sock = make_dealer(context, "127.0.0.1", 1, DEALER_ID, config)
    try:
        assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 0
        assert sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) <= 0  # libzmq reports -1 for "unset"
        assert sock.getsockopt(zmq.HEARTBEAT_TTL) == 0
        assert sock.getsockopt(zmq.TCP_KEEPALIVE) == 1
        assert sock.getsockopt(zmq.TCP_KEEPALIVE_IDLE) == 7
        assert sock.getsockopt(zmq.TCP_KEEPALIVE_INTVL) == 2
        assert sock.getsockopt(zmq.TCP_KEEPALIVE_CNT) == 5
        assert sock.getsockopt(zmq.TCP_MAXRT) == 4500
    finally:
        sock.close(linger=0)
