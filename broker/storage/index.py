"""The sparse in-memory index of one segment.

One point per `index_interval_bytes` of entries (and always one at the segment's first entry),
so a lookup by raft index, Kafka offset or timestamp lands at most one interval (plus one
entry) before its target and scans forward from there. Rebuilt by scanning on open; never
written to disk.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["SparseIndex"]


class SparseIndex:
    __slots__ = ("indexes", "offsets", "positions", "times")

    def __init__(self) -> None:
        self.indexes: list[int] = []  # raft index of the entry at positions[k]; increasing
        # Kafka offset the first DATA entry at or after the point takes (the log's next offset
        # just before it); non-decreasing; -1 while the log's offsets are not known yet.
        self.offsets: list[int] = []
        self.positions: list[int] = []  # byte position in the segment file; increasing
        # Largest max_timestamp of the segment's DATA entries before the point (-1: none);
        # non-decreasing, so the first batch reaching a timestamp is after the last point
        # below it.
        self.times: list[int] = []

    def __len__(self) -> int:
        return len(self.indexes)

    def add(self, index: int, offset: int, position: int, time: int) -> None:
        self.indexes.append(index)
        self.offsets.append(offset)
        self.positions.append(position)
        self.times.append(time)

    def last_position(self) -> int:
        return self.positions[-1] if self.positions else -1

    def floor_index(self, index: int) -> int:
        """The last point at or before raft index `index` (0 if it precedes every point)."""
        return max(bisect_right(self.indexes, index) - 1, 0)

    def floor_offset(self, offset: int) -> int:
        """The last point whose entries before it all end below `offset`."""
        return max(bisect_right(self.offsets, offset) - 1, 0)

    def floor_time(self, timestamp: int) -> int:
        """The last point before which no batch reaches `timestamp`."""
        return max(bisect_left(self.times, timestamp) - 1, 0)

    def truncate(self, index: int) -> None:
        """Forget the points at raft index `index` and after."""
        k = bisect_left(self.indexes, index)
        del self.indexes[k:], self.offsets[k:], self.positions[k:], self.times[k:]

    def learn_offset(self, offset: int) -> None:
        """The log's first DATA entry revealed where its offsets start: fill in the unknowns."""
        offsets = self.offsets
        for k, value in enumerate(offsets):
            if value >= 0:
                break
            offsets[k] = offset

    def check_invariants(self) -> None:
        n = len(self.indexes)
        assert len(self.offsets) == len(self.positions) == len(self.times) == n
        for k in range(1, n):
            assert self.indexes[k - 1] < self.indexes[k], (k, self.indexes)
            assert self.positions[k - 1] < self.positions[k], (k, self.positions)
            assert self.offsets[k - 1] <= self.offsets[k], (k, self.offsets)
            assert self.times[k - 1] <= self.times[k], (k, self.times)
