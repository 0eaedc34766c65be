"""One task that drains one ZeroMQ socket whenever the socket may hold input.

A ZeroMQ socket's FD is not a data FD: it signals (edge-triggered) that the socket's state
*may* have changed, and any call on the socket (recv, send, reading ZMQ_EVENTS) can consume
that signal. So a reader must drain with NOBLOCK until `zmq.Again` and then re-check
ZMQ_EVENTS before it waits on the FD again; `drain` callables here follow that rule.

The task never awaits a receive: it awaits only an Event set by the loop's FD watcher, and
every receive is non-blocking. Stopping is therefore a flag plus a wake-up, and the task is
never cancelled in the middle of reading a multipart message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

import zmq

__all__ = ["SocketReader", "has_input"]

log = logging.getLogger(__name__)


def has_input(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message is waiting; call after zmq.Again, before waiting on the FD again."""
    return bool(cast(int, sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)


class SocketReader:
    """Owns the FD watcher and the task of one socket; `start()` and `stop()` pair up.

    `drain()` handles what is available, up to its own budget, and returns True when it stopped
    because of the budget (more may be waiting: the task yields one loop turn and drains
    again), False when the socket is empty (the task waits for the FD).
    """

    __slots__ = ("_sock", "_drain", "_name", "_wake", "_closing", "_task", "_fd", "_loop")

    def __init__(self, sock: zmq.Socket[bytes], drain: Callable[[], bool], *, name: str) -> None:
        self._sock = sock
        self._drain = drain
        self._name = name
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._fd = cast(int, self._sock.getsockopt(zmq.FD))
        self._loop.add_reader(self._fd, self._wake.set)
        self._task = self._loop.create_task(self._run(), name=self._name)
        self._task.add_done_callback(self._on_done)

    async def stop(self) -> None:
        """Ask the task to finish at its next check, wait for it, unwatch the FD."""
        if self._task is None:
            return
        assert self._wake is not None and self._loop is not None
        self._closing = True
        self._wake.set()
        try:
            await asyncio.shield(self._task)
        except Exception:  # already logged by _on_done
            pass
        finally:
            self._loop.remove_reader(self._fd)
            self._task = None

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._closing:
            wake.clear()  # before draining: an edge during the drain must wake us again
            if self._drain():
                await asyncio.sleep(0)
            else:
                await wake.wait()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s stopped by an error", self._name, exc_info=exc)
