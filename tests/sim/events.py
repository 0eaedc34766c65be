"""The simulator's clock: a priority queue of timed events.

Events are plain tuples `(time_us, seq, kind, a, b, c)`; `seq` is a counter, so events due at
the same time run in the order they were scheduled and the order never depends on comparing the
payloads. Time is simulated, in integer microseconds; nothing here reads a clock.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = [
    "EventQueue", "Event", "KIND_NAMES", "TICK", "DELIVER", "SYNC_DONE", "CLIENT", "FAULT", "HEAL",
    "RESTART", "PROBE", "RETIRE", "TURN", "NOTE",
]

Event = tuple[int, int, int, int, int, Any]

# Event kinds, (kind, a, b, c) as pushed:
TICK = 0  # (TICK, node, incarnation)
DELIVER = 1  # (DELIVER, src, dst, envelope: tuple[(group, message), ...])
SYNC_DONE = 2  # (SYNC_DONE, node, incarnation, SyncTicket)
CLIENT = 3  # (CLIENT, group, client index, attempt)
FAULT = 4  # (FAULT, index into injector.SCHEDULED_FAULTS)
HEAL = 5  # (HEAL, partition id)
RESTART = 6  # (RESTART, node, incarnation)
PROBE = 7  # healing phase: has every group settled?
RETIRE = 8  # (RETIRE, group, node): the replica of a node removed from the group is deleted
TURN = 9  # (TURN, node, incarnation): the driver continues work it yielded (a long replay)
NOTE = 10  # never queued: a line in the trace tail saying what a fault did
KIND_NAMES = (
    "tick", "deliver", "sync-done", "client", "fault", "heal", "restart", "probe", "retire",
    "turn", "note",
)


class EventQueue:
    __slots__ = ("_heap", "_seq", "now_us")

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0
        self.now_us = 0  # time of the event last popped

    def push(self, at_us: int, kind: int, a: int = 0, b: int = 0, c: Any = None) -> None:
        assert at_us >= self.now_us, (at_us, self.now_us)
        self._seq += 1
        heapq.heappush(self._heap, (at_us, self._seq, kind, a, b, c))

    def pop(self) -> Event:
        event = heapq.heappop(self._heap)
        self.now_us = event[0]
        return event

    def __len__(self) -> int:
        return len(self._heap)
