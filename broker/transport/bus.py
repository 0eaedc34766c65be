"""PeerBus: opaque messages between broker nodes over ZeroMQ. It knows node ids and bytes only.

Sending never blocks the event loop. `send()` queues a message in the peer's bounded outbox;
the first send of a loop turn schedules one flush (`loop.call_soon`), and the flush sends each
peer's outbox as one envelope (`broker.transport.frames`) with non-blocking sends. Frames of at
least `zero_copy_bytes_min` leave without a copy; the bus holds them until ZeroMQ is done, so
callers must not mutate a buffer after handing it over. When ZeroMQ refuses an envelope
(`zmq.Again`: the peer is not connected, or its SNDHWM is reached) the whole envelope is
dropped, counted, and `on_unreachable(node_id)` is called; Raft then treats that peer as
unreachable and probes it again, the way etcd's raft reacts to a dropped MsgApp.

`on_unreachable` is only ever called from the flush, at most once per peer per flush, never
from inside `send()`, so Raft code is not re-entered while it is sending.

Receiving (`broker.transport.inbound`): one reader task drains the ROUTER, checks every
envelope (size, header, routing id vs declared sender, sender is a peer) and calls
`on_message(src, frames)` once per message, in the order the peer sent them. Anything wrong
is dropped and counted, never raised; an exception from `on_message` is logged and counted
and the bus goes on. Frames below the zero-copy threshold are handed over as bytes, larger
ones as memoryviews of the received ZeroMQ frame.

A restarted peer takes its routing id over at once (ROUTER_HANDOVER). The connection it
replaces, if still open, is cut off from the ROUTER and goes quiet until TCP keepalive
closes it; two live nodes configured with one id would take turns in this way.

Ordering: messages to one peer arrive in send order, minus drops (TCP, one connection, one
envelope per turn). There is no ordering between peers and no retransmission: Raft recovers.

Not thread-safe: use a bus from the thread running its event loop. Identity is not
authenticated: the routing id check catches misconfiguration and stray clients, not a
malicious peer (that would need CURVE).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

import zmq

from broker.transport.config import TransportConfig, parse_address
from broker.transport.errors import MessageError, TransportConfigError, TransportError
from broker.transport.frames import NODE_ID_MAX, encode_header, node_routing_id
from broker.transport.inbound import Inbound, MessageHandler, drain_monitor
from broker.transport.outbox import Buffer, Outbox
from broker.transport.reader import SocketReader
from broker.transport.sockets import make_dealer, make_monitor, make_router
from broker.transport.stats import BusStats, DropReason

__all__ = ["PeerBus", "MessageHandler", "UnreachableHandler"]

log = logging.getLogger(__name__)

UnreachableHandler = Callable[[int], None]

_SEND_MORE = zmq.SNDMORE | zmq.NOBLOCK


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Peer:
    __slots__ = ("node_id", "address", "socket", "outbox")

    def __init__(self, node_id: int, address: str, outbox: Outbox) -> None:
        self.node_id = node_id
        self.address = address  # host:port of the peer's ROUTER
        self.socket: zmq.Socket[bytes] | None = None  # set exactly while the bus runs
        self.outbox = outbox


def _ignore_message(src: int, frames: list[bytes | memoryview]) -> None:
    pass


def _ignore_unreachable(node_id: int) -> None:
    pass


class PeerBus:
    """The peer bus of one node. `await start()`, `send()`, `await stop()`; or `async with`."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        on_message: MessageHandler | None = None,
        on_unreachable: UnreachableHandler | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        """`context`: a shared zmq.Context (the caller terminates it); by default the bus
        makes its own at start() and terminates it at stop()."""
        self._config = config
        self._on_message = on_message or _ignore_message
        self._on_unreachable = on_unreachable or _ignore_unreachable
        self._given_context = context
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._state = _State.NEW
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._readers: list[SocketReader] = []
        self._peers: dict[int, _Peer] = {}
        self._pending: dict[int, _Peer] = {}  # peers whose outbox is non-empty, first-send order
        self._unreachable: dict[int, None] = {}  # ordered set, reported at the next flush
        self._flush_handle: asyncio.Handle | None = None  # set iff a flush is scheduled
        self._listen_address = config.listen
        self._routing_id = node_routing_id(config.node_id)
        self._stats = BusStats()

    # ---- properties and configuration -----------------------------------------------------
    @property
    def node_id(self) -> int:
        return self._config.node_id

    @property
    def listen_address(self) -> str:
        """`host:port` the ROUTER is bound to (the real port once started with port 0)."""
        return self._listen_address

    def set_handlers(
        self, *, on_message: MessageHandler | None, on_unreachable: UnreachableHandler | None
    ) -> None:
        """Install the callbacks (for owners built after the bus); None installs a no-op."""
        self._on_message = on_message or _ignore_message
        self._on_unreachable = on_unreachable or _ignore_unreachable

    def peers(self) -> dict[int, str]:
        return {node_id: peer.address for node_id, peer in self._peers.items()}

    def stats(self) -> dict[str, int]:
        return self._stats.as_dict()

    def set_peers(self, peers: Mapping[int, str]) -> None:
        """Make `peers` ({node_id: "host:port"}) the set of nodes this bus talks to.

        New peers are connected, removed ones closed (their queued messages are dropped and
        counted), re-addressed ones reconnected. An entry for this node itself is ignored, so
        a whole membership list can be passed. Everything is validated before anything
        changes: a bad entry raises TransportConfigError and leaves the peers as they were.
        """
        if self._state in (_State.STOPPING, _State.STOPPED):
            raise TransportError("set_peers() on a stopped bus")
        wanted: dict[int, str] = {}
        for node_id, address in peers.items():
            if isinstance(node_id, bool) or not isinstance(node_id, int) or not (
                0 <= node_id <= NODE_ID_MAX
            ):
                raise TransportConfigError(f"peer id: expected 0..{NODE_ID_MAX}, got {node_id!r}")
            parse_address(address, f"peer {node_id}")
            if node_id != self.node_id:
                wanted[node_id] = address
        for node_id in [n for n in self._peers if n not in wanted]:
            self._remove_peer(node_id)
        for node_id, address in wanted.items():
            self._put_peer(node_id, address)

    def reconnect(self, node_id: int) -> None:
        """Connect to a peer again now: it restarted (a new incarnation announced itself),
        while our connection to it may sit in ZeroMQ's reconnect backoff (up to
        reconnect_ivl_max_ms) after the old process went away. Messages still queued in the
        peer's outbox stay queued; those already handed to the old socket were bound for the
        old process and are dropped with it."""
        peer = self._peers.get(node_id)
        if peer is None or self._state is not _State.RUNNING:
            return
        self._close_dealer(peer)
        self._open_dealer(peer)

    def _put_peer(self, node_id: int, address: str) -> None:
        peer = self._peers.get(node_id)
        if peer is None:
            cfg = self._config
            outbox = Outbox(messages_max=cfg.outbox_messages_max,
                            frames_max=cfg.outbox_frames_max, bytes_max=cfg.outbox_bytes_max)
            peer = self._peers[node_id] = _Peer(node_id, address, outbox)
        elif peer.address == address:
            return
        else:
            self._close_dealer(peer)
            peer.address = address
        if self._state is _State.RUNNING:
            self._open_dealer(peer)

    def _remove_peer(self, node_id: int) -> None:
        peer = self._peers.pop(node_id)
        self._pending.pop(node_id, None)
        self._unreachable.pop(node_id, None)
        dropped = len(peer.outbox.take()[0])
        self._stats.dropped[DropReason.PEER_REMOVED] += dropped
        self._close_dealer(peer)

    def _open_dealer(self, peer: _Peer) -> None:
        assert peer.socket is None and self._context is not None
        host, port = parse_address(peer.address, f"peer {peer.node_id}")
        peer.socket = make_dealer(self._context, host, port, self._routing_id, self._config)

    def _close_dealer(self, peer: _Peer) -> None:
        if peer.socket is not None:
            peer.socket.close(linger=0)
            peer.socket = None

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the ROUTER, start the reader tasks, connect to the peers. Raises BindError."""
        if self._state is not _State.NEW:
            raise TransportError(f"start() on a bus that is {self._state.value}")
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._context = self._given_context or zmq.Context()
        host, port = parse_address(self._config.listen, "listen", listen=True)
        try:
            self._router, self._listen_address = make_router(
                self._context, host, port, self._config)
            self._monitor = make_monitor(
                self._context, self._router, f"raftlog-peer-bus-monitor-{id(self)}")
        except BaseException:
            self._close_sockets()
            self._state = _State.STOPPED
            raise
        inbound = Inbound(self._router, self._config, self._stats,
                          peers=self._peers.keys(), deliver=self._deliver)
        name = f"peer-bus-{self.node_id}"
        self._readers = [
            SocketReader(self._router, inbound.drain, name=f"{name}-router"),
            SocketReader(self._monitor, functools.partial(drain_monitor, self._monitor,
                                                          self._stats), name=f"{name}-monitor"),
        ]
        self._state = _State.RUNNING
        for reader in self._readers:
            reader.start()
        for peer in self._peers.values():
            self._open_dealer(peer)

    async def stop(self) -> None:
        """Drop what is queued, stop the readers, close every socket (linger 0). Idempotent."""
        if self._state is _State.NEW:
            self._state = _State.STOPPED
        if self._state is _State.STOPPED:
            return
        assert self._stopped is not None
        if self._state is _State.STOPPING:
            await self._stopped.wait()
            return
        self._state = _State.STOPPING
        try:
            self._discard_queued()
            for reader in self._readers:
                await reader.stop()
            self._close_sockets()
        finally:
            self._state = _State.STOPPED
            self._stopped.set()

    def _discard_queued(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for peer in self._pending.values():
            self._stats.dropped[DropReason.NOT_RUNNING] += len(peer.outbox.take()[0])
        self._pending.clear()
        self._unreachable.clear()

    def _close_sockets(self) -> None:
        self._readers = []
        for peer in self._peers.values():
            self._close_dealer(peer)
        if self._router is not None:
            self._router.disable_monitor()
        for sock in (self._monitor, self._router):
            if sock is not None:
                sock.close(linger=0)
        self._monitor = self._router = None
        if self._given_context is None and self._context is not None:
            self._context.term()  # every socket is closed with linger 0: returns at once
        self._context = None

    async def __aenter__(self) -> PeerBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- receiving: broker.transport.inbound does the work -----------------------------------
    def _deliver(self, src: int, frames: list[bytes | memoryview]) -> None:
        self._on_message(src, frames)  # looked up per call: set_handlers may replace it

    # ---- sending ----------------------------------------------------------------------------
    def send(self, node_id: int, frames: Sequence[Buffer]) -> bool:
        """Queue one message (>= 1 frame) for `node_id`; it leaves at the end of this loop turn.

        Never blocks. Returns False when the message was dropped at once (not running, unknown
        peer, outbox full: the newest message is the one dropped); later drops (peer not
        connected, SNDHWM) show in stats() and through on_unreachable. Raises MessageError
        for a message that could never be sent (no frames, a non-buffer frame, larger than
        an outbox).
        """
        message = tuple(frames)
        size, large = self._measure(message)
        if self._state is not _State.RUNNING:
            self._stats.dropped[DropReason.NOT_RUNNING] += 1
            return False
        peer = self._peers.get(node_id)
        if peer is None:
            self._drop_unsent(node_id, DropReason.UNKNOWN_PEER)
            return False
        outbox = peer.outbox
        if not outbox.offer(message, size, large):
            self._drop_unsent(node_id, DropReason.OUTBOX_FULL)
            return False
        if len(outbox) == 1:
            self._pending[node_id] = peer
        self._schedule_flush()
        return True

    def _measure(self, message: tuple[Buffer, ...]) -> tuple[int, bool]:
        """Payload bytes of a message and whether a frame reaches the zero-copy threshold."""
        if not message:
            raise MessageError("a message needs at least one frame")
        size = 0
        largest = 0
        for frame in message:
            if isinstance(frame, (bytes, bytearray)):
                n = len(frame)
            elif isinstance(frame, memoryview) and frame.contiguous:
                n = frame.nbytes
            else:
                raise MessageError(f"a frame must be bytes, bytearray or a contiguous "
                                   f"memoryview, not {type(frame).__name__}")
            size += n
            largest = max(largest, n)
        cfg = self._config
        if len(message) > cfg.outbox_frames_max or size > cfg.outbox_bytes_max:
            raise MessageError(f"a message of {len(message)} frames and {size} bytes exceeds "
                               "outbox_frames_max or outbox_bytes_max")
        return size, largest >= cfg.zero_copy_bytes_min

    def _drop_unsent(self, node_id: int, reason: DropReason) -> None:
        self._stats.dropped[reason] += 1
        self._unreachable[node_id] = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            assert self._loop is not None
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self._pending = self._pending, {}
        for peer in pending.values():
            self._send_envelope(peer)
        if not self._unreachable:
            return
        nodes, self._unreachable = self._unreachable, {}
        for node_id in nodes:
            self._stats.unreachable_reports += 1
            try:
                self._on_unreachable(node_id)
            except Exception:
                self._stats.handler_errors += 1
                log.exception("on_unreachable(%d) raised", node_id)

    def _send_envelope(self, peer: _Peer) -> None:
        messages, size, has_large = peer.outbox.take()
        sock = peer.socket
        assert sock is not None and messages
        header = encode_header(src=self.node_id, frame_counts=[len(m) for m in messages])
        try:
            sock.send(header, _SEND_MORE)
        except zmq.Again:
            self._stats.dropped[DropReason.UNREACHABLE] += len(messages)
            self._unreachable[peer.node_id] = None
            return
        frames = [frame for message in messages for frame in message]
        try:
            # ZeroMQ queues a multipart atomically: once the first frame is accepted, so are
            # the others, so nothing below meets zmq.Again.
            self._send_rest(sock, frames, has_large)
        except zmq.ZMQError:
            # Cannot happen unless libzmq breaks that promise; the socket may hold half an
            # envelope, so replace it rather than let the next envelope be glued to it.
            log.exception("send to node %d failed mid-envelope; reconnecting", peer.node_id)
            self._stats.dropped[DropReason.UNREACHABLE] += len(messages)
            self._unreachable[peer.node_id] = None
            self._close_dealer(peer)
            self._open_dealer(peer)
            return
        self._stats.envelopes_sent += 1
        self._stats.messages_sent += len(messages)
        self._stats.bytes_sent += size

    def _send_rest(self, sock: zmq.Socket[bytes], frames: list[Buffer], has_large: bool) -> None:
        send = sock.send
        last = frames.pop()
        if not has_large:
            for frame in frames:
                send(frame, _SEND_MORE)
            send(last, zmq.NOBLOCK)
            return
        threshold = self._config.zero_copy_bytes_min
        for frame in frames:
            send(frame, _SEND_MORE, copy=_nbytes(frame) < threshold)
        send(last, zmq.NOBLOCK, copy=_nbytes(last) < threshold)


def _nbytes(frame: Buffer) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)
