"""The ZeroMQ sockets of the peer bus, each made with every limit set where it is made.

- one ROUTER per node, bound on its raft address, that only receives;
- one DEALER per peer, connected to that peer's ROUTER, that only sends.
Since no socket both sends and receives, a send never consumes the FD edge a reader waits on.
"""

from __future__ import annotations

import zmq

from broker.transport.config import TransportConfig, zmq_endpoint
from broker.transport.errors import BindError

__all__ = ["make_router", "make_dealer", "make_monitor", "MONITOR_EVENTS"]

# We never read a DEALER or send on the ROUTER; tiny queues bound what a misbehaving peer or a
# bug could park there.
UNUSED_HWM_MESSAGES = 16
MONITOR_HWM_EVENTS = 4096

# Any ZAP domain makes libzmq refuse ZMTP 1.0 peers. Our peers all speak ZMTP 3; without this,
# random bytes sent to the port are parsed as ZMTP 1.0 frames (any routing id included) and
# reach the application. No ZAP handler runs, so ZMTP 3 peers are accepted unauthenticated.
ZAP_DOMAIN = b"raftlog"

MONITOR_EVENTS = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_DISCONNECTED
)


def _common(sock: zmq.Socket[bytes], host: str, config: TransportConfig) -> None:
    sock.setsockopt(zmq.LINGER, 0)  # closing never waits for unsent envelopes
    sock.setsockopt(zmq.HANDSHAKE_IVL, config.handshake_ivl_ms)
    _detect_dead_peers(sock, config)
    if host.startswith("["):
        sock.setsockopt(zmq.IPV6, 1)


def _detect_dead_peers(sock: zmq.Socket[bytes], config: TransportConfig) -> None:
    """Close connections to a peer that is gone without a FIN (host down, cable cut, process
    stopped), so IMMEDIATE stops queueing to it and the DEALER reconnects.

    This is done by the kernel, never by ZMTP heartbeats (ZMQ_HEARTBEAT_IVL/TTL/TIMEOUT stay
    0 on every socket of the bus, and no node sends PINGs). libzmq 4.3.5 aborts the whole
    process on them: once the ROUTER's receive HWM has stopped a connection's input and that
    connection then fails, the engine only marks it broken (`_io_error`) until the
    application drains the queue; a heartbeat timer firing meanwhile, or a PING still in its
    input buffer, calls `out_event()`, which asserts `!_io_error`
    (src/stream_engine_base.cpp:310). A broker resumed after a pause under load hit this in
    1-2 s. The kernel's timeouts close such connections through the read path, which defers
    the teardown to the drain correctly.

    Keepalive probes catch an idle connection whose peer is gone; TCP_USER_TIMEOUT (libzmq's
    ZMQ_TCP_MAXRT on Linux) catches one whose sent data or zero-window probes stay
    unanswered, which keepalive never probes. Peers that are up but silent are the owner's
    concern: the brokers' own heartbeats find them.
    """
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, config.tcp_keepalive_idle_s)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, config.tcp_keepalive_interval_s)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, config.tcp_keepalive_probes)
    sock.setsockopt(zmq.TCP_MAXRT, config.tcp_user_timeout_ms)


def make_router(ctx: zmq.Context[zmq.Socket[bytes]], host: str, port: int,
                config: TransportConfig) -> tuple[zmq.Socket[bytes], str]:
    """Bind the receiving ROUTER; returns it and the bound `host:port`. Raises BindError."""
    sock = ctx.socket(zmq.ROUTER)
    try:
        _common(sock, host, config)
        sock.setsockopt(zmq.RCVHWM, config.recv_hwm_envelopes)
        sock.setsockopt(zmq.SNDHWM, UNUSED_HWM_MESSAGES)
        sock.setsockopt(zmq.MAXMSGSIZE, config.envelope_bytes_max)  # per frame, before buffering
        # A restarted peer reconnects with the same routing id while its old connection may
        # still look alive (host crash, no FIN): the newest connection takes the id over.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.bind(zmq_endpoint(host, port))
        endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    except zmq.ZMQError as e:
        sock.close(linger=0)
        raise BindError(f"cannot bind the peer port {host}:{port}: {e.strerror}") from None
    bound_port = endpoint.rpartition(":")[2]
    return sock, f"{host}:{bound_port}"


def make_dealer(ctx: zmq.Context[zmq.Socket[bytes]], host: str, port: int,
                routing_id: bytes, config: TransportConfig) -> zmq.Socket[bytes]:
    """A DEALER that sends to the peer at host:port and never queues while disconnected."""
    sock = ctx.socket(zmq.DEALER)
    try:
        _common(sock, host, config)
        sock.setsockopt(zmq.SNDHWM, config.send_hwm_envelopes)
        sock.setsockopt(zmq.RCVHWM, UNUSED_HWM_MESSAGES)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # not connected -> zmq.Again at once, never a queue
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL, config.reconnect_ivl_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, config.reconnect_ivl_max_ms)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, config.connect_timeout_ms)
        sock.connect(zmq_endpoint(host, port))
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def make_monitor(ctx: zmq.Context[zmq.Socket[bytes]], router: zmq.Socket[bytes],
                 name: str) -> zmq.Socket[bytes]:
    """A PAIR socket receiving the ROUTER's connection events (for counters only).

    libzmq's side of a monitor blocks its sender when the pair is full, so this reader must
    keep up; MONITOR_HWM_EVENTS gives it room for bursts of connections.
    """
    address = f"inproc://{name}"
    router.monitor(address, MONITOR_EVENTS)
    sock = ctx.socket(zmq.PAIR)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, MONITOR_HWM_EVENTS)
        sock.setsockopt(zmq.SNDHWM, UNUSED_HWM_MESSAGES)
        sock.connect(address)
    except BaseException:
        sock.close(linger=0)
        router.disable_monitor()
        raise
    return sock
