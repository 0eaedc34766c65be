"""Peer-bus throughput: two PeerBus nodes in two processes on loopback.

The client keeps a window of messages outstanding; the echo node answers every message,
either with the whole message (`echo`: payload both ways, the forwarding path) or with its
8-byte sequence number (`ack`: payload one way, like Raft appends and their responses). Each
case runs for a bounded time and prints messages/s, payload MB/s (one direction) and the CPU
time both processes spent per message. A window of 1 gives the round-trip time.

    python -m benchmarks.transport_bench [--sizes 100,16384,65536] [--window 128]
                                         [--duration-ms 2000] [--mode both] [--loop uvloop]

A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from broker.transport import PeerBus, TransportConfig

__all__ = ["main"]

CLIENT_ID, ECHO_ID = 1, 2
_HEAD = struct.Struct(">cQ")  # b"E" echo everything / b"A" answer with the head only; sequence
STALL_S = 2.0  # a case whose window stops moving for this long ends early (drops are printed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    size_bytes: int
    window: int
    mode: str  # "echo" | "ack"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    case: Case
    messages: int
    elapsed_s: float
    cpu_s: float  # both processes
    rtt_us_p50: float
    dropped: int


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


# ---- the echo process -------------------------------------------------------------------------
def _echo_main(conn: Connection, loop_name: str) -> None:
    with asyncio.Runner(loop_factory=_loop_factory(loop_name)) as runner:
        runner.run(_echo(conn))


async def _echo(conn: Connection) -> None:
    """Answer every message; answer the control pipe with this process's CPU time until EOF."""
    bus: PeerBus

    def on_message(src: int, frames: list[bytes | memoryview]) -> None:
        bus.send(src, frames if frames[0][:1] == b"E" else frames[:1])

    bus = PeerBus(TransportConfig(node_id=ECHO_ID, listen="127.0.0.1:0"), on_message=on_message)
    async with bus:
        conn.send(bus.listen_address)
        bus.set_peers({CLIENT_ID: conn.recv()})
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_control() -> None:
            try:
                conn.recv()
            except EOFError:
                done.set()
                loop.remove_reader(conn.fileno())
                return
            conn.send(time.process_time())

        loop.add_reader(conn.fileno(), on_control)
        await done.wait()


# ---- the client -------------------------------------------------------------------------------
class Client:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.bus = PeerBus(TransportConfig(node_id=CLIENT_ID, listen="127.0.0.1:0"),
                           on_message=self._on_message)
        self.answered = 0
        self.sent_at: dict[int, float] = {}
        self.rtts: list[float] = []
        self.payload = b""
        self.kind = b"A"
        self.next_seq = 0
        self.stop_at = 0.0
        self.progress = asyncio.Event()

    def _send_one(self) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self.sent_at[seq] = time.perf_counter()
        self.bus.send(ECHO_ID, [_HEAD.pack(self.kind, seq), self.payload])

    def _on_message(self, src: int, frames: list[bytes | memoryview]) -> None:
        _, seq = _HEAD.unpack(frames[0])
        sent = self.sent_at.pop(seq, None)
        if sent is None:
            return  # a warm-up probe
        now = time.perf_counter()
        self.rtts.append(now - sent)
        self.answered += 1
        self.progress.set()
        if now < self.stop_at:
            self._send_one()

    async def connect(self) -> None:
        deadline = time.monotonic() + 10
        while not self.answered:
            if time.monotonic() > deadline:
                raise SystemExit("transport_bench: the echo node never answered")
            self.stop_at = 0.0
            self._send_one()
            await asyncio.sleep(0.01)
        self.sent_at.clear()

    def _echo_cpu_s(self) -> float:
        self.conn.send("cpu?")
        return float(self.conn.recv())

    async def run(self, case: Case, duration_s: float) -> Result:
        self.payload = bytes(case.size_bytes)
        self.kind = b"E" if case.mode == "echo" else b"A"
        self.answered, self.rtts = 0, []
        self.sent_at.clear()
        dropped0 = self.bus.stats()["dropped_unreachable"]
        cpu0 = time.process_time() + self._echo_cpu_s()
        start = time.perf_counter()
        self.stop_at = start + duration_s
        for _ in range(case.window):
            self._send_one()
        while self.sent_at:  # until every outstanding message is answered (or lost)
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), STALL_S)
            except TimeoutError:
                break
        elapsed = time.perf_counter() - start
        cpu = time.process_time() + self._echo_cpu_s() - cpu0
        return Result(case=case, messages=self.answered, elapsed_s=elapsed, cpu_s=cpu,
                      rtt_us_p50=statistics.median(self.rtts) * 1e6 if self.rtts else 0.0,
                      dropped=self.bus.stats()["dropped_unreachable"] - dropped0)


async def _client(conn: Connection, cases: list[Case], duration_s: float) -> list[Result]:
    client = Client(conn)
    async with client.bus:
        echo_address = conn.recv()
        conn.send(client.bus.listen_address)
        client.bus.set_peers({ECHO_ID: echo_address})
        await client.connect()
        results = []
        for case in cases:
            result = await client.run(case, duration_s)
            _print_row(result)
            results.append(result)
        return results


def _print_row(r: Result) -> None:
    rate = r.messages / r.elapsed_s
    mb_s = rate * r.case.size_bytes / 1e6
    cpu_us = r.cpu_s / r.messages * 1e6 if r.messages else 0.0
    print(f"{r.case.mode:>5} {r.case.size_bytes:>8} {r.case.window:>6} {rate:>12,.0f} "
          f"{mb_s:>9.1f} {cpu_us:>10.1f} {r.rtt_us_p50:>10.0f} {r.dropped:>7}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,16384,65536", help="payload bytes, comma-separated")
    p.add_argument("--window", type=int, default=128, help="messages outstanding")
    p.add_argument("--duration-ms", type=int, default=2000, help="per case")
    p.add_argument("--mode", choices=["ack", "echo", "both"], default="both")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = ["ack", "echo"] if args.mode == "both" else [args.mode]
    cases = [Case(size_bytes=s, window=args.window, mode=m) for m in modes for s in sizes]
    cases.append(Case(size_bytes=100, window=1, mode="ack"))  # round-trip time
    ours, theirs = multiprocessing.Pipe()
    echo = multiprocessing.get_context("spawn").Process(
        target=_echo_main, args=(theirs, args.loop), daemon=True)
    echo.start()
    print(f"peer bus, 2 processes on loopback, {args.loop}, {args.duration_ms} ms per case")
    print(f"{'mode':>5} {'bytes':>8} {'window':>6} {'msg/s':>12} {'MB/s':>9} "
          f"{'cpu us/msg':>10} {'rtt p50 us':>10} {'dropped':>7}")
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            runner.run(_client(ours, cases, args.duration_ms / 1000))
    finally:
        ours.close()
        echo.join(timeout=10)
        if echo.is_alive():
            echo.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
