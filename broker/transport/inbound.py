"""The receiving half of the peer bus: drain the ROUTER, check each envelope, deliver messages.

Everything a peer sends is untrusted. An envelope is delivered only if it is within the size
bounds, its header decodes and matches its frames (`broker.transport.frames`), its declared
sender equals the routing id of the connection it came on, and that sender is a current
peer. Anything else is dropped and counted under one `DropReason`; nothing here raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container

import zmq
from zmq.utils.monitor import recv_monitor_message

from broker.transport.config import TransportConfig
from broker.transport.frames import (
    EnvelopeError,
    UnknownVersionError,
    decode_header,
    node_routing_id,
)
from broker.transport.reader import has_input
from broker.transport.stats import BusStats, DropReason

__all__ = ["Inbound", "MessageHandler", "drain_monitor"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[int, list[bytes | memoryview]], None]

MONITOR_BATCH_EVENTS = 64


class Inbound:
    """Owns no task: `drain` is what the ROUTER's SocketReader calls."""

    __slots__ = ("_sock", "_config", "_stats", "_peers", "_deliver")

    def __init__(self, sock: zmq.Socket[bytes], config: TransportConfig, stats: BusStats, *,
                 peers: Container[int], deliver: MessageHandler) -> None:
        self._sock = sock
        self._config = config
        self._stats = stats
        self._peers = peers  # live view of the bus's peer ids
        self._deliver = deliver

    def drain(self) -> bool:
        """Handle up to recv_batch_envelopes_max envelopes; True if more may be waiting."""
        sock = self._sock
        for _ in range(self._config.recv_batch_envelopes_max):
            try:
                first = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return has_input(sock)
            parts = self._recv_rest(first)
            if parts is not None:
                self._handle(parts)
        return True

    def _recv_rest(self, first: zmq.Frame) -> list[zmq.Frame] | None:
        """The rest of a multipart whose first part is `first`; None if it is too large.

        An oversized multipart is still read to its end (ZeroMQ holds all of it already) so
        the next receive starts at a message boundary.
        """
        cfg = self._config
        sock = self._sock
        parts: list[zmq.Frame] | None = [first]
        frames_max = cfg.envelope_frames_max + 1  # + the routing id
        total = 0
        frame = first
        while frame.more:
            frame = sock.recv(zmq.NOBLOCK, copy=False)
            if parts is None:
                continue
            total += len(frame)
            parts.append(frame)
            if total > cfg.envelope_bytes_max or len(parts) > frames_max:
                parts = None
        if parts is None:
            self._stats.dropped[DropReason.TOO_LARGE] += 1
        return parts

    def _handle(self, parts: list[zmq.Frame]) -> None:
        """Check one envelope [routing id, header, payload...] and deliver its messages."""
        reason, src, counts = self._check(parts)
        if reason is not None:
            self._stats.dropped[reason] += 1
            log.debug("dropped an envelope from routing id %r: %s",
                      parts[0].bytes[:16], reason.value)
            return
        threshold = self._config.zero_copy_bytes_min
        deliver = self._deliver
        stats = self._stats
        i = 2
        for count in counts:
            # Small frames as bytes; large ones as views of the received ZeroMQ frame, so a
            # record batch can be written or forwarded without a copy.
            frames: list[bytes | memoryview] = [
                f.bytes if len(f) < threshold else f.buffer for f in parts[i:i + count]
            ]
            i += count
            try:
                deliver(src, frames)
            except Exception:
                stats.handler_errors += 1
                log.exception("on_message from node %d raised", src)
        stats.envelopes_received += 1
        stats.messages_received += len(counts)
        stats.bytes_received += sum(len(f) for f in parts[2:])

    def _check(self, parts: list[zmq.Frame]) -> tuple[DropReason | None, int, tuple[int, ...]]:
        if len(parts) < 3:
            return DropReason.MALFORMED, 0, ()
        try:
            header = decode_header(parts[1].bytes, payload_frames=len(parts) - 2,
                                   messages_max=self._config.envelope_messages_max)
        except UnknownVersionError:
            return DropReason.BAD_VERSION, 0, ()
        except EnvelopeError:
            return DropReason.MALFORMED, 0, ()
        if parts[0].bytes != node_routing_id(header.src):
            return DropReason.SRC_MISMATCH, 0, ()
        if header.src not in self._peers and not self._config.accept_unknown_senders:
            return DropReason.UNKNOWN_SRC, 0, ()
        return None, header.src, header.frame_counts


def drain_monitor(sock: zmq.Socket[bytes], stats: BusStats) -> bool:
    """Count the ROUTER's connection events; True if more may be waiting."""
    for _ in range(MONITOR_BATCH_EVENTS):
        try:
            event = recv_monitor_message(sock, zmq.NOBLOCK)["event"]
        except zmq.Again:
            return has_input(sock)
        if event == zmq.EVENT_ACCEPTED:
            stats.connections_accepted += 1
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            stats.handshakes_succeeded += 1
        elif event == zmq.EVENT_DISCONNECTED:
            stats.disconnects += 1
        else:
            stats.handshakes_failed += 1
    return True
