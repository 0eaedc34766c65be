"""The bound on bytes of records a producer holds: `buffer_memory`.

`send()` reserves a record's estimated size before queueing it; the reservation is given back
when the record's batch completes (acknowledged, failed or expired). When the budget is spent,
`send()` waits up to `max_block_ms` for room, then fails with BufferFullError: the sync
producer's callers wait on a threading.Condition, the async producer's on loop futures.
Releases happen on the producer's event loop. While anyone waits, the sender treats every
batch as ready (`waiting`), so a full buffer drains at once rather than after linger_ms.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["MemoryBudget"]


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        assert limit_bytes > 0, limit_bytes
        self.limit_bytes = limit_bytes
        self._used_bytes = 0  # 0 <= used <= limit
        self._cond = threading.Condition(threading.Lock())
        self._thread_waiters = 0
        # Loop-side waiters, woken (all) on every release; at most one per blocked send().
        self._loop_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    @property
    def waiting(self) -> bool:
        """Someone is blocked in send() for want of room."""
        return bool(self._thread_waiters or self._loop_waiters)

    def try_reserve(self, n: int) -> bool:
        assert 0 <= n <= self.limit_bytes, n
        with self._cond:
            if self._used_bytes + n > self.limit_bytes:
                return False
            self._used_bytes += n
            return True

    def reserve_blocking(self, n: int, timeout_s: float) -> bool:
        """Reserve `n` bytes, waiting up to `timeout_s` (for threads other than the loop's)."""
        assert 0 <= n <= self.limit_bytes, n
        with self._cond:
            if self._used_bytes + n > self.limit_bytes:
                self._thread_waiters += 1
                try:
                    if not self._cond.wait_for(
                            lambda: self._used_bytes + n <= self.limit_bytes, timeout_s):
                        return False
                finally:
                    self._thread_waiters -= 1
            self._used_bytes += n
            return True

    async def reserve(self, n: int, timeout_s: float) -> bool:
        """Reserve `n` bytes, waiting up to `timeout_s` (on the producer's loop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.try_reserve(n):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._loop_waiters.append(waiter)
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in self._loop_waiters:
                    self._loop_waiters.remove(waiter)
        return True

    def release(self, n: int) -> None:
        """Give back `n` reserved bytes (on the producer's loop) and wake every waiter."""
        if n == 0:
            return
        with self._cond:
            self._used_bytes -= n
            assert self._used_bytes >= 0, self._used_bytes
            if self._thread_waiters:
                self._cond.notify_all()
        waiters, self._loop_waiters = self._loop_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
