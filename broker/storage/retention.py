"""Which segments retention deletes. Pure: sizes, indexes and timestamps in, a count out.

Kafka's rules: by size, delete the oldest segments while what remains is still at least
`bytes_max`; by time, delete the oldest segments whose newest batch timestamp is older than
`now_ms - age_ms` (a segment with no data counts as old). Whole segments only, never the
active (last) one, never one holding an entry beyond the commit index, and only a prefix:
the first segment kept stops the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SegmentStats", "segments_to_delete"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentStats:
    size_bytes: int
    last_index: int
    max_timestamp_ms: int  # -1 when the segment holds no DATA entry


def segments_to_delete(
    segments: Sequence[SegmentStats],
    *,
    bytes_max: int | None,
    age_ms: int | None,
    now_ms: int,
    commit_index: int,
) -> int:
    """How many of the oldest `segments` (oldest first, the last being active) to delete."""
    deletable = 0
    for seg in segments[:-1]:
        if seg.last_index > commit_index:
            break
        deletable += 1
    by_size = 0
    if bytes_max is not None:
        remaining = sum(s.size_bytes for s in segments)
        while by_size < deletable and remaining - segments[by_size].size_bytes >= bytes_max:
            remaining -= segments[by_size].size_bytes
            by_size += 1
    by_age = 0
    if age_ms is not None:
        cutoff_ms = now_ms - age_ms
        while by_age < deletable and segments[by_age].max_timestamp_ms < cutoff_ms:
            by_age += 1
    return max(by_size, by_age)
