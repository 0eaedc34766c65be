"""A private asyncio event loop in a daemon thread: the engine of the sync facades.

    engine = LoopThread(name="raftlog-admin")
    result = engine.run(core.describe_topic("orders"), timeout_ms=35000)
    engine.close()

`run` submits a coroutine to the loop and blocks the calling thread for its result, which is
safe from any thread except the loop's own (that would deadlock, so it raises instead). The
loop is made when the LoopThread is, never at import. Whoever owns the async objects running
on the loop closes them (through `run`) before `close()` stops the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from broker.client.errors import ClientClosedError, ClientError, RequestTimedOutError

__all__ = ["LoopThread"]

T = TypeVar("T")

_JOIN_MS_MAX = 5000  # close() waits this long for the thread to leave the loop


class LoopThread:
    def __init__(self, *, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule `coro` on the loop; its concurrent.futures.Future, without waiting."""
        if self._closed:
            coro.close()
            raise ClientClosedError(f"{self._thread.name} is closed")
        if threading.get_ident() == self._thread.ident:
            coro.close()
            raise ClientError(f"blocking call on {self._thread.name}'s own event loop "
                              "(from a callback?) would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_ms: int | None = None) -> T:
        """Run `coro` on the loop and return its result (or raise its exception). After
        `timeout_ms` the coroutine is cancelled and RequestTimedOutError raised."""
        future = self.submit(coro)
        try:
            return future.result(None if timeout_ms is None else timeout_ms / 1000)
        except TimeoutError:
            if not future.done():
                future.cancel()
                raise RequestTimedOutError(f"no result within {timeout_ms} ms") from None
            raise  # the coroutine itself raised TimeoutError
        except BaseException:  # KeyboardInterrupt in the caller: stop the work too
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and its thread, then close the loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.get_ident() == self._thread.ident:
            return  # called from a callback on the loop: the loop stops after it returns
        self._thread.join(_JOIN_MS_MAX / 1000)
        if not self._thread.is_alive():
            self._loop.close()
