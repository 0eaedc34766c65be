"""Run raftlog's asyncio clients under gevent (Locust) without blocking the hub.

Locust monkey-patches threading, queues and sockets, so a `threading.Thread` there is a greenlet
and a concurrent.futures.Future's condition variable is a gevent lock: waiting on one from a
greenlet for a result set by a real thread can hang the hub. So the bridge

- starts a *native* thread with the unpatched `_thread.start_new_thread` and runs a uvloop
  event loop in it (libuv does its own I/O, untouched by the patching; plain asyncio as a
  fallback when uvloop is missing and nothing is patched);
- hands coroutines to it with `loop.call_soon_threadsafe` (never blocks);
- gets results back through the unpatched C `SimpleQueue`, which greenlets poll with
  `get_nowait` and a short `gevent.sleep` between polls, so other greenlets keep running.

Every call has a deadline; `pending_max` bounds the calls in flight (the caller gets
BridgeBusyError beyond it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["AsyncBridge", "BridgeBusyError", "BridgeTimeoutError"]

T = TypeVar("T")
POLL_S_MIN = 0.0005
POLL_S_MAX = 0.01
START_TIMEOUT_S = 10.0


class BridgeBusyError(RuntimeError):
    """More than `pending_max` calls in flight."""


class BridgeTimeoutError(TimeoutError):
    """A call's coroutine did not finish before its deadline (it is cancelled)."""


def _originals() -> tuple[Callable[..., Any], Any, Callable[[float], None]]:
    """(start_new_thread, SimpleQueue class, sleep) as they were before any gevent patching."""
    try:
        import gevent  # type: ignore[import-untyped]
        from gevent import monkey  # type: ignore[import-untyped]
    except ImportError:
        import _thread
        import queue

        return _thread.start_new_thread, queue.SimpleQueue, time.sleep
    return (monkey.get_original("_thread", "start_new_thread"),
            monkey.get_original("queue", "SimpleQueue"), gevent.sleep)


def _new_loop() -> asyncio.AbstractEventLoop:
    """A plain asyncio loop on the selector that existed before gevent patched `selectors`
    (the patched one would hand the waiting to a gevent hub in this thread)."""
    try:
        from gevent import monkey  # type: ignore[import-untyped]
    except ImportError:
        return asyncio.new_event_loop()
    selector_class = monkey.get_original("selectors", "DefaultSelector")
    return asyncio.SelectorEventLoop(selector_class())


class AsyncBridge:
    def __init__(self, *, name: str = "raftlog-bridge", pending_max: int = 10_000) -> None:
        start_new_thread, simple_queue, self._sleep = _originals()
        self.name, self.pending_max = name, pending_max
        self._results = simple_queue()  # (ticket, ok, value) from the loop thread
        self._done: dict[int, tuple[bool, Any]] = {}
        self._abandoned: set[int] = set()  # timed-out tickets: their late results are dropped
        self._pending = 0
        self._tickets = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = simple_queue()
        start_new_thread(self._main, ())
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._loop is None and time.monotonic() < deadline:
            self._sleep(POLL_S_MIN)
            try:
                self._loop = self._ready.get_nowait()
            except Exception:  # queue.Empty, from whichever queue class this is
                pass
        if self._loop is None:
            raise RuntimeError(f"{name}: the event loop thread did not start")

    def _main(self) -> None:
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self._ready.put(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def call(self, factory: Callable[[], Awaitable[T]], *, timeout_s: float) -> T:
        """Run `factory()` on the loop and return its result, yielding to other greenlets while
        waiting. Raises what it raised, or BridgeTimeoutError after `timeout_s`."""
        assert self._loop is not None
        if self._pending >= self.pending_max:
            raise BridgeBusyError(f"{self.name}: {self._pending} calls in flight")
        ticket = next(self._tickets)
        self._pending += 1
        try:
            self._loop.call_soon_threadsafe(self._start, ticket, factory, timeout_s)
            return self._wait(ticket, timeout_s + 1.0)
        finally:
            self._pending -= 1

    def _start(self, ticket: int, factory: Callable[[], Awaitable[Any]], timeout_s: float) -> None:
        async def run() -> None:
            try:
                value = await asyncio.wait_for(factory(), timeout_s)
            except TimeoutError:
                self._results.put((ticket, False, BridgeTimeoutError(f"no result in {timeout_s} s")))
            except BaseException as e:  # handed to the caller, who re-raises it
                self._results.put((ticket, False, e))
            else:
                self._results.put((ticket, True, value))

        asyncio.ensure_future(run())

    def _wait(self, ticket: int, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        pause = POLL_S_MIN
        while ticket not in self._done:
            while True:
                try:
                    t, ok, value = self._results.get_nowait()
                except Exception:  # empty
                    break
                if t in self._abandoned:
                    self._abandoned.discard(t)
                else:
                    self._done[t] = (ok, value)
            if ticket in self._done:
                break
            if time.monotonic() >= deadline:
                self._abandoned.add(ticket)
                raise BridgeTimeoutError(f"{self.name}: no answer in {timeout_s:.1f} s")
            self._sleep(pause)
            pause = min(pause * 2, POLL_S_MAX)
        ok, value = self._done.pop(ticket)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the loop (whoever owns the clients on it closes them first, through call)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
