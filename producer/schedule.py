"""Which partitions a drain must look at, so that a sender turn costs what there is to send
rather than the number of partitions written to.

A partition is looked at when something happened to it (`touch`: a batch was begun or
filled, an answer came, a retry was decided) or when the time it gave (`schedule`: a linger
or retry backoff running out) has come. A look that finds nothing to do costs one entry.
`everything()` is for the rare turns that must look at every partition with work (flush,
close, a full buffer, a new producer id).

Timers live in a heap with at most one live entry per partition (`_timer_of`); an entry
replaced by an earlier one stays in the heap until its time, and is then skipped. The heap
is rebuilt from the live entries when stale ones outnumber them (bounded by the partitions).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Schedule"]

P = TypeVar("P", bound=Hashable)

_STALE_SLACK = 64  # stale heap entries tolerated beyond the live ones before a rebuild


class Schedule(Generic[P]):
    def __init__(self) -> None:
        # Partitions with work (queued, retrying or resetting batches), a superset: those
        # found idle are dropped with forget(). Ordered: looks follow first-touch order.
        self._pending: dict[P, None] = {}
        self._touched: dict[P, None] = {}  # to look at in the next drain
        self._timers: list[tuple[float, int, P]] = []  # (at_s, tie-breaker, partition)
        self._timer_of: dict[P, float] = {}  # the live heap entry of each partition
        self._seq = 0

    def touch(self, p: P) -> None:
        """Something happened to `p`: look at it in the next drain."""
        self._pending[p] = None
        self._touched[p] = None

    def touch_all(self) -> None:
        self._touched.update(self._pending)

    def due(self, now_s: float) -> list[P]:
        """The partitions to look at now (touched ones, timers run out); consumes them."""
        out = self._touched
        self._touched = {}
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            at_s, _, p = heapq.heappop(timers)
            if self._timer_of.get(p) == at_s:
                del self._timer_of[p]
                out[p] = None
        return list(out)

    def everything(self) -> list[P]:
        """Every partition with work; the touched ones are consumed (their timers stay)."""
        self._touched = {}
        return list(self._pending)

    def schedule(self, p: P, at_s: float | None) -> None:
        """Look at `p` at `at_s` (None: only an event will make it worth a look)."""
        if at_s is None:
            return
        current = self._timer_of.get(p)
        if current is not None and current <= at_s:
            return  # an earlier look is due anyway; it will schedule again
        self._timer_of[p] = at_s
        self._seq += 1
        heapq.heappush(self._timers, (at_s, self._seq, p))
        if len(self._timers) > 2 * len(self._timer_of) + _STALE_SLACK:
            self._timers = [(t, s, q) for t, s, q in self._timers if self._timer_of.get(q) == t]
            heapq.heapify(self._timers)

    def forget(self, p: P) -> None:
        """`p` has no work left (it is touched again when it gets some)."""
        self._pending.pop(p, None)
        self._touched.pop(p, None)
        self._timer_of.pop(p, None)

    def next_s(self) -> float | None:
        """When the earliest timer runs out (None: none is set)."""
        timers = self._timers
        while timers and self._timer_of.get(timers[0][2]) != timers[0][0]:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def __contains__(self, p: object) -> bool:
        return p in self._pending

    def check_invariants(self) -> None:
        assert set(self._touched) <= set(self._pending)
        assert set(self._timer_of) <= set(self._pending)
        live = {(t, p) for t, _, p in self._timers if self._timer_of.get(p) == t}
        assert {(t, p) for p, t in self._timer_of.items()} <= live
        assert len(self._timers) <= 2 * len(self._timer_of) + _STALE_SLACK + 1
