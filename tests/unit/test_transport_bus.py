"""PeerBus over real ZeroMQ sockets on 127.0.0.1: delivery, batching, faults, lifecycle.

Every wait polls with a deadline; nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import struct
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
import zmq

from broker.transport import (
    BindError,
    MessageError,
    PeerBus,
    TransportConfig,
    TransportConfigError,
    TransportError,
)
from broker.transport.frames import encode_header, node_routing_id

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
DEADLINE_S = 15.0
PROBE = b"probe"


def run(coro: Coroutine[Any, Any, None], loop_name: str = "asyncio") -> None:
    """Run a test body on a fresh loop. Fail on any warning and on anything the loop reports
    (a task destroyed while pending, an exception nobody retrieved, a failing callback)."""
    reports: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.get_loop().set_exception_handler(lambda loop, context: reports.append(context))
            runner.run(coro)
            gc.collect()
        gc.collect()
    assert not reports, reports


async def wait_until(predicate: Callable[[], bool], what: str,
                     tick: Callable[[], object] | None = None) -> None:
    """Poll `predicate` (calling `tick` each round, e.g. to resend a probe) until a deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if tick is not None:
            tick()
        await asyncio.sleep(0.005)


def config(node_id: int, port: int = 0, **overrides: Any) -> TransportConfig:
    fields: dict[str, Any] = {"node_id": node_id, "listen": f"127.0.0.1:{port}",
                              "reconnect_ivl_ms": 20, "reconnect_ivl_max_ms": 100}
    fields.update(overrides)
    return TransportConfig(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """A bus plus what it received (probes aside) and whom it was told is unreachable."""

    def __init__(self, node_id: int, port: int = 0, **overrides: Any) -> None:
        self.received: dict[int, list[list[bytes]]] = {}
        self.kinds: list[type] = []
        self.probes: dict[int, int] = {}
        self.unreachable: list[int] = []
        self.bus = PeerBus(config(node_id, port, **overrides),
                           on_message=self._on_message, on_unreachable=self.unreachable.append)

    def _on_message(self, src: int, frames: list[bytes | memoryview]) -> None:
        if frames[0] == PROBE:
            self.probes[src] = self.probes.get(src, 0) + 1
            return
        self.kinds.extend(type(f) for f in frames)
        self.received.setdefault(src, []).append([bytes(f) for f in frames])

    def count(self, src: int) -> int:
        return len(self.received.get(src, []))


async def start_mesh(*nodes: Node) -> None:
    """Start every bus, tell each about the others, and wait until every pair has talked."""
    for n in nodes:
        await n.bus.start()
    addresses = {n.bus.node_id: n.bus.listen_address for n in nodes}
    for n in nodes:
        n.bus.set_peers(addresses)  # includes itself: ignored
    for a in nodes:
        for b in nodes:
            if a is not b:
                await connect(a, b)


async def connect(a: Node, b: Node) -> None:
    """Probe from a to b until one probe arrives (DEALERs drop while not yet connected)."""
    start = b.probes.get(a.bus.node_id, 0)
    await wait_until(lambda: b.probes.get(a.bus.node_id, 0) > start,
                     f"{a.bus.node_id} -> {b.bus.node_id} to connect",
                     tick=lambda: a.bus.send(b.bus.node_id, [PROBE]))


async def stop_all(*nodes: Node) -> None:
    for n in nodes:
        await n.bus.stop()


def message(src: int, seq: int) -> list[bytes]:
    """A message of 1-3 frames whose content says who sent it and its sequence number."""
    head = struct.pack(">II", src, seq)
    return [head] + [head * (k + 1) for k in range(seq % 3)]


async def send_in_turns(a: Node, b: Node, total: int, per_turn: int) -> None:
    """Send `total` messages a -> b, `per_turn` per loop turn, each turn's envelope acknowledged
    by arrival before the next leaves (so no HWM can drop any)."""
    src, dst = a.bus.node_id, b.bus.node_id
    base = b.count(src)
    for first in range(0, total, per_turn):
        for seq in range(first, min(total, first + per_turn)):
            assert a.bus.send(dst, message(src, seq))
        want = base + min(total, first + per_turn)
        await wait_until(lambda: b.count(src) >= want, f"{src} -> {dst} up to {want}")


# ---- delivery -------------------------------------------------------------------------------
@pytest.mark.parametrize("loop_name", LOOPS)
def test_two_buses_exchange_in_order(loop_name: str) -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        drops = a.bus.stats()["dropped_unreachable"]  # probes sent while connecting
        await asyncio.gather(send_in_turns(a, b, 3000, 300), send_in_turns(b, a, 3000, 250))
        assert b.received[1] == [message(1, s) for s in range(3000)]
        assert a.received[2] == [message(2, s) for s in range(3000)]
        assert a.bus.stats()["dropped_unreachable"] == drops
        await stop_all(a, b)

    run(body(), loop_name)


def test_three_buses_each_hear_both_others_in_order() -> None:
    async def body() -> None:
        nodes = [Node(i) for i in (1, 2, 3)]
        await start_mesh(*nodes)
        await asyncio.gather(*(send_in_turns(x, y, 500, 100)
                               for x in nodes for y in nodes if x is not y))
        for x in nodes:
            for y in nodes:
                if x is not y:
                    src = x.bus.node_id
                    assert y.received[src] == [message(src, s) for s in range(500)]
        await stop_all(*nodes)

    run(body())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_large_payloads_arrive_intact_and_uncopied(loop_name: str) -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        rng = random.Random(7)
        big = rng.randbytes(3 << 20)
        frames: list[Any] = [b"head", memoryview(bytearray(big)), rng.randbytes(64 << 10),
                             rng.randbytes((64 << 10) - 1), b""]
        assert a.bus.send(2, frames)
        await wait_until(lambda: b.count(1) == 1, "the large message")
        assert b.received[1][0] == [bytes(f) for f in frames]
        # at least 64 KiB: a view of the received ZeroMQ frame; smaller: bytes
        assert b.kinds == [bytes, memoryview, memoryview, bytes, bytes]
        await stop_all(a, b)

    run(body(), loop_name)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_sends_of_one_loop_turn_leave_as_one_envelope(loop_name: str) -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        sent0, recv0 = a.bus.stats(), b.bus.stats()
        for seq in range(500):  # one turn: no await in between
            assert a.bus.send(2, message(1, seq))
        await wait_until(lambda: b.count(1) == 500, "500 messages")
        sent, recv = a.bus.stats(), b.bus.stats()
        assert sent["envelopes_sent"] - sent0["envelopes_sent"] == 1
        assert sent["messages_sent"] - sent0["messages_sent"] == 500
        assert recv["envelopes_received"] - recv0["envelopes_received"] == 1
        assert recv["messages_received"] - recv0["messages_received"] == 500
        assert recv["bytes_received"] - recv0["bytes_received"] == sum(
            len(f) for s in range(500) for f in message(1, s))
        await stop_all(a, b)

    run(body(), loop_name)


def test_a_full_outbox_drops_the_newest_and_reports_the_peer() -> None:
    async def body() -> None:
        a, b = Node(1, outbox_messages_max=10), Node(2)
        await start_mesh(a, b)
        a.unreachable.clear()  # probes dropped while connecting
        accepted = [a.bus.send(2, message(1, seq)) for seq in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        await wait_until(lambda: b.count(1) == 10, "the first ten")
        assert b.received[1] == [message(1, s) for s in range(10)]
        assert a.bus.stats()["dropped_outbox_full"] == 5
        assert a.unreachable == [2]  # once per flush, not once per drop
        await stop_all(a, b)

    run(body())


def test_handler_errors_are_counted_and_delivery_goes_on() -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        seen: list[bytes] = []

        def on_message(src: int, frames: list[bytes | memoryview]) -> None:
            seen.append(bytes(frames[0]))
            if frames[0] == b"boom":
                raise RuntimeError("handler bug")

        await start_mesh(a, b)
        b.bus.set_handlers(on_message=on_message, on_unreachable=None)
        a.bus.send(2, [b"boom"])
        a.bus.send(2, [b"after"])
        await wait_until(lambda: b"after" in seen, "the message after the failing one")
        assert b.bus.stats()["handler_errors"] == 1
        await stop_all(a, b)

    run(body())


# ---- peers that are down, restart or move -----------------------------------------------------
@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_down_peer_drops_at_once_and_traffic_flows_when_it_comes_up(loop_name: str) -> None:
    async def body() -> None:
        port = free_port()
        a = Node(1)
        await a.bus.start()
        a.bus.set_peers({2: f"127.0.0.1:{port}"})
        for seq in range(5):
            assert a.bus.send(2, message(1, seq))  # queued; refused by ZeroMQ at the flush
        await wait_until(lambda: a.unreachable == [2], "on_unreachable(2)")
        stats = a.bus.stats()
        assert stats["dropped_unreachable"] == 5 and stats["envelopes_sent"] == 0
        b = Node(2, port)
        await b.bus.start()
        b.bus.set_peers({1: a.bus.listen_address})
        await connect(a, b)
        await send_in_turns(a, b, 100, 50)
        assert b.received[1] == [message(1, s) for s in range(100)]
        await stop_all(a, b)

    run(body(), loop_name)


def test_a_peer_restarting_on_the_same_port_is_reached_again() -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        port = int(b.bus.listen_address.rpartition(":")[2])
        await b.bus.stop()
        await wait_until(lambda: 2 in a.unreachable, "a to notice b is gone",
                         tick=lambda: a.bus.send(2, [b"lost"]))
        b2 = Node(2, port)
        await b2.bus.start()
        b2.bus.set_peers({1: a.bus.listen_address})
        await connect(a, b2)
        await connect(b2, a)
        await send_in_turns(a, b2, 50, 25)
        await send_in_turns(b2, a, 50, 25)
        assert b2.received[1] == [message(1, s) for s in range(50)]
        await stop_all(a, b2)

    run(body())


def test_reconnect_reaches_a_restarted_peer_without_waiting_out_the_backoff() -> None:
    """A reconnect backoff far longer than the test's deadline: only reconnect() can reach the
    restarted peer in time."""
    backoff_ms = int(DEADLINE_S * 1000) * 10

    async def body() -> None:
        a = Node(1, reconnect_ivl_ms=backoff_ms, reconnect_ivl_max_ms=backoff_ms)
        b = Node(2)
        await start_mesh(a, b)
        port = int(b.bus.listen_address.rpartition(":")[2])
        await b.bus.stop()
        await wait_until(lambda: 2 in a.unreachable, "a to notice b is gone",
                         tick=lambda: a.bus.send(2, [b"lost"]))
        b2 = Node(2, port)
        await b2.bus.start()
        b2.bus.set_peers({1: a.bus.listen_address})
        await connect(b2, a)  # b2 -> a is a fresh socket; a -> b2 waits on its backoff
        a.bus.reconnect(2)
        a.bus.reconnect(99)  # not a peer: nothing happens
        await connect(a, b2)
        await send_in_turns(a, b2, 20, 10)
        assert b2.received[1] == [message(1, s) for s in range(20)]
        await stop_all(a, b2)

    run(body())


def test_set_peers_adds_removes_and_readdresses_at_runtime() -> None:
    async def body() -> None:
        a, b, c = Node(1), Node(2), Node(3)
        await start_mesh(a, b)
        await c.bus.start()
        c.bus.set_peers({1: a.bus.listen_address})
        a.bus.set_peers({2: b.bus.listen_address, 3: c.bus.listen_address})
        await connect(a, c)
        a.bus.set_peers({3: c.bus.listen_address})  # 2 removed
        assert a.bus.peers() == {3: c.bus.listen_address}
        assert not a.bus.send(2, [b"to nobody"])
        await wait_until(lambda: 2 in a.unreachable, "unknown peer reported")
        assert a.bus.stats()["dropped_unknown_peer"] == 1
        # messages from a removed peer are refused too
        b.bus.send(1, [b"from a stranger"])
        await wait_until(lambda: a.bus.stats()["dropped_unknown_src"] >= 1, "b refused")
        # node 3 moves: a new bus with the same id on another port
        await c.bus.stop()
        c2 = Node(3)
        await c2.bus.start()
        c2.bus.set_peers({1: a.bus.listen_address})
        a.bus.set_peers({3: c2.bus.listen_address})
        await connect(a, c2)
        await send_in_turns(a, c2, 20, 20)
        assert c2.received[1] == [message(1, s) for s in range(20)]
        await stop_all(a, b, c2)

    run(body())


def test_bad_peer_lists_raise_and_change_nothing() -> None:
    async def body() -> None:
        a = Node(1)
        a.bus.set_peers({2: "127.0.0.1:9"})  # before start: remembered
        await a.bus.start()
        for bad in ({3: "nohost"}, {3: "127.0.0.1:0"}, {-1: "127.0.0.1:9"}, {3: "a b:1"}):
            with pytest.raises(TransportConfigError):
                a.bus.set_peers({2: "127.0.0.1:9", **bad})
        assert a.bus.peers() == {2: "127.0.0.1:9"}
        await a.bus.stop()
        with pytest.raises(TransportError):
            a.bus.set_peers({})

    run(body())


# ---- hostile input --------------------------------------------------------------------------
def raw_socket(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, address: str,
               routing_id: bytes | None = None) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(f"tcp://{address}")
    return sock


def unfinished_handshakes(stats: dict[str, int]) -> int:
    return stats["connections_accepted"] - stats["handshakes_succeeded"]


def test_garbage_from_zmq_sockets_is_dropped_and_counted() -> None:
    async def body() -> None:
        a = Node(1)
        b = Node(2, outbox_bytes_max=1 << 20, envelope_bytes_max=(1 << 20) + 100_000,
                 outbox_frames_max=100, envelope_frames_max=200)
        await start_mesh(a, b)
        # Node 3 is a peer of b that is not running; the raw sockets below wear its routing id.
        b.bus.set_peers({1: a.bus.listen_address, 3: f"127.0.0.1:{free_port()}"})
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        address = b.bus.listen_address
        as_3 = raw_socket(ctx, zmq.DEALER, address, node_routing_id(3))
        anonymous = raw_socket(ctx, zmq.DEALER, address)
        as_9 = raw_socket(ctx, zmq.DEALER, address, node_routing_id(9))
        req = raw_socket(ctx, zmq.REQ, address)
        push = raw_socket(ctx, zmq.PUSH, address)  # PUSH may not talk to a ROUTER
        good = encode_header(src=3, frame_counts=[1])
        expected = {
            "dropped_malformed": [
                (as_3, [b"garbage"]),
                (as_3, [b""]),
                (as_3, [good]),  # header without its frame
                (as_3, [good[:7], b"x"]),
                (as_3, [good, b"x", b"extra frame"]),
                (as_3, [good[:1] + b"\x01" + good[2:], b"x"]),  # reserved flags
                (req, [good, b"x"]),  # REQ adds an empty delimiter frame
            ],
            "dropped_bad_version": [(as_3, [b"\x09" + good[1:], b"x"])],
            "dropped_src_mismatch": [
                (as_3, [encode_header(src=1, frame_counts=[1]), b"x"]),  # 3 claims to be 1
                (anonymous, [good, b"x"]),  # ZeroMQ-assigned 5-byte routing id
            ],
            "dropped_unknown_src": [(as_9, [encode_header(src=9, frame_counts=[1]), b"x"])],
            "dropped_too_large": [
                (as_3, [encode_header(src=3, frame_counts=[3]), *[b"y" * 400_000] * 3]),
                (as_3, [encode_header(src=3, frame_counts=[1] * 40), *[b""] * 300]),
            ],
        }
        before = b.bus.stats()
        for sends in expected.values():
            for sock, frames in sends:
                sock.send_multipart(frames)
        push.send(b"never delivered")
        want = {k: before[k] + len(v) for k, v in expected.items()}
        await wait_until(lambda: all(b.bus.stats()[k] >= n for k, n in want.items())
                         and unfinished_handshakes(b.bus.stats()) > unfinished_handshakes(before),
                         "every drop counted, and the PUSH socket refused")
        after = b.bus.stats()
        assert {k: after[k] for k in want} == want
        assert after["messages_received"] == before["messages_received"]
        for sock in (as_3, anonymous, as_9, req, push):
            sock.close()
        ctx.term()
        await connect(a, b)  # the real node 1 takes its routing id back and is heard again
        await send_in_turns(a, b, 10, 10)
        await stop_all(a, b)

    run(body())


def test_random_bytes_from_raw_tcp_clients_never_reach_the_bus() -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        before = b.bus.stats()
        host, _, port = b.bus.listen_address.rpartition(":")
        rng = random.Random(1234)
        clients = 20
        loop = asyncio.get_running_loop()
        for i in range(clients):
            junk = rng.randbytes(rng.randrange(1, 4096))
            if i % 4 == 0:  # ZMTP signature first: fails later in the handshake
                junk = b"\xff" + bytes(8) + b"\x7f" + junk
            with socket.create_connection((host, int(port))) as s:
                s.setblocking(False)
                try:
                    await loop.sock_sendall(s, junk)
                except OSError:
                    pass  # the bus may close the connection first
        await wait_until(lambda: b.bus.stats()["disconnects"] >= before["disconnects"] + clients,
                         "every raw client to be disconnected")
        after = b.bus.stats()
        assert after["connections_accepted"] - before["connections_accepted"] == clients
        assert after["handshakes_succeeded"] == before["handshakes_succeeded"]
        assert after["handshakes_failed"] > before["handshakes_failed"]
        assert after["envelopes_received"] == before["envelopes_received"]
        assert after["messages_received"] == before["messages_received"]
        await send_in_turns(a, b, 10, 10)
        await stop_all(a, b)

    run(body())


# ---- API misuse -----------------------------------------------------------------------------
def test_messages_that_can_never_be_sent_raise() -> None:
    async def body() -> None:
        a = Node(1, outbox_bytes_max=1000)
        await a.bus.start()
        a.bus.set_peers({2: "127.0.0.1:9"})
        with pytest.raises(MessageError):
            a.bus.send(2, [])
        with pytest.raises(MessageError):
            a.bus.send(2, ["text"])  # type: ignore[list-item]
        with pytest.raises(MessageError):
            a.bus.send(2, [memoryview(bytes(10))[::2]])  # not contiguous
        with pytest.raises(MessageError):
            a.bus.send(2, [bytes(600), bytes(600)])
        await a.bus.stop()

    run(body())


# ---- lifecycle ------------------------------------------------------------------------------
@pytest.mark.parametrize("loop_name", LOOPS)
def test_stop_is_clean_and_idempotent(loop_name: str) -> None:
    async def body() -> None:
        a, b = Node(1), Node(2)
        await start_mesh(a, b)
        assert a.bus.send(2, [b"queued, never flushed"])
        await a.bus.stop()  # before the flush: the queued message is dropped and counted
        await a.bus.stop()
        assert a.bus.stats()["dropped_not_running"] == 1
        assert asyncio.all_tasks() == {asyncio.current_task()} | _tasks_of(b)
        assert not a.bus.send(2, [b"after stop"])
        assert a.bus.stats()["dropped_not_running"] == 2
        with pytest.raises(TransportError):
            await a.bus.start()
        await asyncio.gather(b.bus.stop(), b.bus.stop())  # concurrent stops: both return
        assert asyncio.all_tasks() == {asyncio.current_task()}

    run(body(), loop_name)


def _tasks_of(node: Node) -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith(f"peer-bus-{node.bus.node_id}-")}


def test_context_manager_shared_context_and_unstarted_stop() -> None:
    async def body() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        never_started = PeerBus(config(5))
        await never_started.stop()
        assert not never_started.send(1, [b"x"])
        async with PeerBus(config(1), context=ctx) as bus:
            assert bus.listen_address != "127.0.0.1:0"
        assert not ctx.closed  # a context we were given is the caller's to terminate
        ctx.term()

    run(body())


def test_a_taken_port_raises_bind_error() -> None:
    async def body() -> None:
        async with PeerBus(config(1)) as first:
            port = int(first.listen_address.rpartition(":")[2])
            second = PeerBus(config(2, port))
            with pytest.raises(BindError):
                await second.start()
            await second.stop()

    run(body())


def test_messages_sent_before_start_are_refused() -> None:
    bus = PeerBus(config(1))
    bus.set_peers({2: "127.0.0.1:9"})
    assert not bus.send(2, [b"x"])
    assert bus.stats()["dropped_not_running"] == 1

