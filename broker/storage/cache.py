"""The newest entries of a log, kept in memory for replication and tailing consumers.

The cache is always a contiguous suffix of the log, `first_index .. last index`. Entries not
yet handed to the OS are never evicted (they can be read nowhere else), so the cache may
exceed `bytes_max` by the write buffer, which the log bounds separately.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from broker.raft.messages import Entry, EntryKind

__all__ = ["EntryCache"]

_COMPACT_AT = 1024  # evicted slots kept before the lists are shifted down


class EntryCache:
    __slots__ = ("entries", "positions", "ends", "head", "first_index", "prev_offset", "bytes",
                 "bytes_max")

    def __init__(self, first_index: int, prev_offset: int, bytes_max: int) -> None:
        self.entries: list[Entry] = []  # entries[head:] are live; entries[head].index == first_index
        self.positions: list[int] = []  # byte position of each entry in its segment
        self.ends: list[int] = []  # the log's next Kafka offset after each entry (-1 unknown)
        self.head = 0
        self.first_index = first_index  # == last index + 1 when empty
        self.prev_offset = prev_offset  # the log's next Kafka offset before entries[head]
        self.bytes = 0  # payload bytes of the live entries
        self.bytes_max = bytes_max

    def __len__(self) -> int:
        return len(self.entries) - self.head

    def reset(self, first_index: int, prev_offset: int) -> None:
        self.entries, self.positions, self.ends = [], [], []
        self.head, self.bytes = 0, 0
        self.first_index, self.prev_offset = first_index, prev_offset

    def append(self, entry: Entry, position: int, end: int) -> None:
        self.entries.append(entry)
        self.positions.append(position)
        self.ends.append(end)
        self.bytes += len(entry.data)

    def slot(self, index: int) -> int:
        """List slot of raft index `index` (which the caller knows is cached)."""
        return self.head + index - self.first_index

    def offset_before(self, index: int) -> int:
        k = self.slot(index)
        return self.prev_offset if k == self.head else self.ends[k - 1]

    def truncate_from(self, index: int) -> None:
        """Forget entries `index` and after."""
        k = max(self.slot(index), self.head)
        self.bytes -= sum(len(e.data) for e in self.entries[k:])
        del self.entries[k:], self.positions[k:], self.ends[k:]

    def evict(self, flushed_index: int, below_index: int = 0) -> None:
        """Drop the oldest entries while over budget (only those written to the OS), and every
        entry below `below_index` (deleted by retention)."""
        entries, k = self.entries, self.head
        while k < len(entries) and (
            entries[k].index < below_index
            or (self.bytes > self.bytes_max and entries[k].index <= flushed_index)
        ):
            self.bytes -= len(entries[k].data)
            self.prev_offset = self.ends[k]
            k += 1
        self.first_index += k - self.head
        self.head = k
        if k >= _COMPACT_AT and 2 * k >= len(entries):
            del self.entries[:k], self.positions[:k], self.ends[:k]
            self.head = 0

    def slice(self, lo: int, hi: int, bytes_max: int) -> list[Entry]:
        """Entries [lo, hi) (all cached), at most bytes_max of payload but at least one."""
        k, stop = self.slot(lo), self.slot(hi)
        out = self.entries[k:stop]
        size = 0
        for n, e in enumerate(out):
            size += len(e.data)
            if size > bytes_max and n > 0:
                return out[:n]
        return out

    def find_offset(self, offset: int) -> int:
        """Slot of the first entry whose end is beyond `offset` (len(entries) if none)."""
        return bisect_right(self.ends, offset, self.head)

    def iter_from(self, index: int) -> Iterator[tuple[int, int, int, bytes, int]]:
        """(index, term, kind, payload, position) from raft index `index` to the end."""
        positions = self.positions
        for k in range(max(self.slot(index), self.head), len(self.entries)):
            e = self.entries[k]
            yield e.index, e.term, int(e.kind), e.data, positions[k]

    def learn_offset(self, offset: int) -> None:
        if self.prev_offset < 0:
            self.prev_offset = offset
        ends = self.ends
        for k in range(self.head, len(ends)):
            if ends[k] >= 0:
                break
            ends[k] = offset

    def check_invariants(self, last_index: int) -> None:
        n = len(self.entries)
        assert len(self.positions) == len(self.ends) == n and 0 <= self.head <= n
        assert self.first_index + len(self) == last_index + 1, (self.first_index, len(self), last_index)
        for k in range(self.head, n):
            assert self.entries[k].index == self.first_index + k - self.head
        assert self.bytes == sum(len(e.data) for e in self.entries[self.head :])
        prev = self.prev_offset
        for k in range(self.head, n):
            assert self.ends[k] >= prev, (k, self.ends[k], prev)
            if self.entries[k].kind is not EntryKind.DATA:
                assert self.ends[k] == prev
            prev = self.ends[k]
