"""Configuration of the peer bus: one frozen object, validated when made.

Every buffer the bus owns is bounded here. Two kinds of limits exist on purpose:
`outbox_*` bound what this node queues for one peer in one event-loop turn (which leaves as
one envelope), `envelope_*` bound what this node accepts from a peer. A node must accept what
it would send itself, so the receive limits are validated to be at least the send limits; run
every node of a cluster with the same values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from broker.transport.errors import TransportConfigError
from broker.transport.frames import NODE_ID_MAX, header_bytes

__all__ = ["TransportConfig", "parse_address", "zmq_endpoint"]

# A host name or IPv4 address, a bracketed IPv6 address, or `*` (every interface, to bind).
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]|\*")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    node_id: int  # 0 <= node_id <= NODE_ID_MAX; also the ZeroMQ routing id of our DEALERs
    listen: str  # host:port the ROUTER binds; port 0 picks a free port (see PeerBus.listen_address)
    # Send side, per peer and per loop turn (one envelope). When full, the newest message is
    # dropped and counted: the earlier ones stay a gap-free prefix for the peer.
    outbox_messages_max: int = 4096
    outbox_frames_max: int = 1 << 16
    outbox_bytes_max: int = 32 << 20  # payload bytes, headers excluded
    # Receive side, per envelope. Larger envelopes are dropped and counted.
    envelope_messages_max: int = 8192
    envelope_frames_max: int = 1 << 17
    envelope_bytes_max: int = 64 << 20  # all frames; also ZMQ_MAXMSGSIZE of any inbound frame
    # ZeroMQ queues, counted in envelopes (multipart messages). When a peer's send queue is
    # full, or the peer is not connected (IMMEDIATE), the envelope is dropped and counted.
    send_hwm_envelopes: int = 256  # SNDHWM of each peer DEALER
    recv_hwm_envelopes: int = 256  # RCVHWM of the ROUTER, per connected peer
    reconnect_ivl_ms: int = 100  # first reconnect delay of a DEALER
    reconnect_ivl_max_ms: int = 2000  # reconnect backoff doubles up to this
    connect_timeout_ms: int = 2000  # a TCP connect that hangs is abandoned and retried
    handshake_ivl_ms: int = 5000  # a connection that does not finish the ZMTP handshake is closed
    # Dead connections (peer host gone, no FIN) are found by TCP, not by ZMTP heartbeats (see
    # broker.transport.sockets for why): keepalive probes find an idle one, and a connection
    # whose sent data or zero-window probes stay unacknowledged this long is aborted.
    tcp_keepalive_idle_s: int = 1  # silence before the first keepalive probe
    tcp_keepalive_interval_s: int = 1  # between unanswered probes
    tcp_keepalive_probes: int = 3  # unanswered probes that close an idle connection
    tcp_user_timeout_ms: int = 3000  # TCP_USER_TIMEOUT (ZMQ_TCP_MAXRT)
    zero_copy_bytes_min: int = 64 << 10  # frames at least this large are sent and handed over uncopied
    recv_batch_envelopes_max: int = 64  # envelopes handled per reader wake-up before yielding
    # Deliver messages from node ids that are not peers (yet): a broker joining the cluster
    # announces itself before anyone knows its address. The owner decides what to accept.
    accept_unknown_senders: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.node_id, bool) or not isinstance(self.node_id, int) or not (
            0 <= self.node_id <= NODE_ID_MAX
        ):
            raise TransportConfigError(f"node_id: expected 0..{NODE_ID_MAX}, got {self.node_id!r}")
        parse_address(self.listen, "listen", listen=True)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("node_id", "listen"):
                continue
            if f.name == "accept_unknown_senders":
                if not isinstance(value, bool):
                    raise TransportConfigError(f"{f.name}: expected a bool, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TransportConfigError(f"{f.name}: expected an integer >= 0, got {value!r}")
            if value == 0:
                raise TransportConfigError(f"{f.name}: must be > 0 (0 would mean unbounded or "
                                          "the system default)")
        self._check_send_fits_receive()

    def _check_send_fits_receive(self) -> None:
        pairs = [
            ("envelope_messages_max", "outbox_messages_max", self.outbox_messages_max),
            ("envelope_frames_max", "outbox_frames_max", self.outbox_frames_max + 1),
            (
                "envelope_bytes_max",
                "outbox_bytes_max",
                self.outbox_bytes_max + header_bytes(self.outbox_messages_max),
            ),
        ]
        for receive_name, send_name, needed in pairs:
            if getattr(self, receive_name) < needed:
                raise TransportConfigError(
                    f"{receive_name}: must be at least {needed} to accept what "
                    f"{send_name} lets a peer send"
                )
        if self.reconnect_ivl_max_ms < self.reconnect_ivl_ms:
            raise TransportConfigError("reconnect_ivl_max_ms: must be >= reconnect_ivl_ms")


def parse_address(value: str, option: str, *, listen: bool = False) -> tuple[str, int]:
    """Split `host:port` (IPv6 hosts in brackets: `[::1]:9093`); raise TransportConfigError.

    A listen address may also use port 0 (any free port) and host `*` (every interface).
    """
    if not isinstance(value, str):
        raise TransportConfigError(f"{option}: expected HOST:PORT, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    low = 0 if listen else 1
    if not sep or not host or not port_text.isdigit() or not low <= int(port_text) <= 65535:
        raise TransportConfigError(f"{option}: expected HOST:PORT, got {value!r}")
    if not _HOST.fullmatch(host) or (host == "*" and not listen):
        raise TransportConfigError(f"{option}: bad host {host!r} in {value!r}")
    return host, int(port_text)


def zmq_endpoint(host: str, port: int) -> str:
    """The ZeroMQ TCP endpoint for a parsed address; port 0 binds a free port."""
    return f"tcp://{host}:{'*' if port == 0 else port}"
