"""Counters of the peer bus and the reasons it drops traffic.

Send-side reasons count messages (the caller's unit); receive-side reasons count envelopes,
because nothing inside a refused envelope is trusted, not even its message count.
"""

from __future__ import annotations

import enum

__all__ = ["DropReason", "BusStats"]


class DropReason(enum.Enum):
    # send side: messages
    NOT_RUNNING = "not_running"  # sent before start() or after stop()
    UNKNOWN_PEER = "unknown_peer"  # no address for that node id (see PeerBus.set_peers)
    OUTBOX_FULL = "outbox_full"  # the peer's outbox for this loop turn is full: newest dropped
    UNREACHABLE = "unreachable"  # zmq.Again: peer not connected (IMMEDIATE) or SNDHWM reached
    PEER_REMOVED = "peer_removed"  # queued for a peer that set_peers removed before the flush
    # receive side: envelopes
    MALFORMED = "malformed"  # bad routing id, header or frame counts
    BAD_VERSION = "bad_version"  # an envelope format version we do not speak
    TOO_LARGE = "too_large"  # over envelope_bytes_max or envelope_frames_max
    SRC_MISMATCH = "src_mismatch"  # header src differs from the connection's routing id
    UNKNOWN_SRC = "unknown_src"  # src is not one of our peers (or claims to be us)


class BusStats:
    """Monotonic counters; `as_dict()` is what `PeerBus.stats()` returns."""

    __slots__ = (
        "envelopes_sent", "messages_sent", "bytes_sent",
        "envelopes_received", "messages_received", "bytes_received",
        "handler_errors", "unreachable_reports",
        "connections_accepted", "handshakes_succeeded", "handshakes_failed", "disconnects",
        "dropped",
    )

    def __init__(self) -> None:
        self.envelopes_sent = 0
        self.messages_sent = 0
        self.bytes_sent = 0  # payload bytes, envelope headers excluded
        self.envelopes_received = 0  # accepted envelopes only
        self.messages_received = 0
        self.bytes_received = 0
        self.handler_errors = 0  # on_message or on_unreachable raised; logged, bus kept running
        self.unreachable_reports = 0  # calls made to on_unreachable
        # From the ROUTER's socket monitor. connections_accepted - handshakes_succeeded counts
        # connections that never completed a ZMTP handshake (garbage, or still handshaking).
        self.connections_accepted = 0
        self.handshakes_succeeded = 0
        self.handshakes_failed = 0
        self.disconnects = 0
        self.dropped: dict[DropReason, int] = dict.fromkeys(DropReason, 0)

    def as_dict(self) -> dict[str, int]:
        out = {name: getattr(self, name) for name in self.__slots__ if name != "dropped"}
        out.update({f"dropped_{reason.value}": n for reason, n in self.dropped.items()})
        return out
