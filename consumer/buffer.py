"""One partition's fetched records waiting to be handed out. Pure (no I/O).

Fetch responses are kept as the raw bytes the broker sent and decoded a batch at a time when
records are taken, not when they arrive: the background fetcher then does almost no CPU work,
so the thread that hands records to the user (getmany, or poll() through the sync facade)
does the decoding itself instead of contending for the interpreter with a busy fetcher.
Control batches and records before the fetch offset (a batch may start before it) are skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from broker.wire.records import (
    CorruptBatchError,
    Record,
    RecordBatch,
    decode_batches,
    iter_batch_headers,
)

__all__ = ["PartitionBuffer", "scan"]


def scan(data: bytes | bytearray | memoryview, offset: int) -> tuple[int, bool]:
    """(the offset after the last complete batch, whether any record >= `offset` is in a
    non-control batch), from the batch headers only. Raises CorruptBatchError."""
    end, useful = offset, False
    for h in iter_batch_headers(data, allow_partial_tail=True):
        end = max(end, h.last_offset + 1)
        if not h.is_control and h.record_count > 0 and h.last_offset >= offset:
            useful = True
    return end, useful


class PartitionBuffer:
    __slots__ = ("epoch", "next_offset", "size_bytes", "_chunks", "_records", "_batches",
                 "_min_offset", "_chunk_bytes")

    def __init__(self, *, epoch: int, next_offset: int) -> None:
        self.epoch = epoch  # the partition's epoch when fetched; a seek since makes it stale
        self.next_offset = next_offset  # where the next fetch starts
        self.size_bytes = 0  # raw bytes not yet fully handed out (the prefetch bound)
        self._chunks: deque[tuple[bytes | bytearray | memoryview, int]] = deque()  # (raw, fetch offset)
        self._records: deque[Record] = deque()  # decoded, not handed out
        self._batches: Iterator[RecordBatch] | None = None  # the chunk being decoded
        self._min_offset = 0
        self._chunk_bytes = 0

    def add(self, data: bytes | bytearray | memoryview, offset: int, next_offset: int) -> None:
        """A fetch response's records for this partition, fetched from `offset`."""
        self._chunks.append((data, offset))
        self.size_bytes += len(data)
        self.next_offset = max(self.next_offset, next_offset)

    @property
    def empty(self) -> bool:
        return not self._records and self._batches is None and not self._chunks

    def take(self, count_max: int) -> list[Record]:
        """Up to `count_max` records in offset order. Raises CorruptBatchError for a bad
        batch (the rest of that response is dropped)."""
        records = self._records
        while len(records) < count_max and self._more():
            pass
        n = min(count_max, len(records))
        return [records.popleft() for _ in range(n)]

    def _more(self) -> bool:
        """Decode one more batch; False when nothing is left."""
        if self._batches is None:
            if not self._chunks:
                return False
            data, self._min_offset = self._chunks.popleft()
            self._chunk_bytes = len(data)
            self._batches = decode_batches(data, allow_partial_tail=True)
        try:
            batch = next(self._batches, None)
        except CorruptBatchError:
            self._finish_chunk()
            raise
        if batch is None:
            self._finish_chunk()
        elif not batch.is_control:
            low = self._min_offset
            if batch.base_offset >= low:
                self._records.extend(batch.records)
            else:
                self._records.extend(r for r in batch.records if r.offset >= low)
        return True

    def _finish_chunk(self) -> None:
        self._batches = None
        self.size_bytes -= self._chunk_bytes
        self._chunk_bytes = 0
