"""Latency histograms and per-second timelines for the benchmarks, mergeable across processes.

A `Histogram` keeps counts in log-linear buckets of microseconds (32 sub-buckets per power of
two: about 3% relative error), so its size is bounded (at most ~1,300 buckets up to hours)
whatever the number of samples, and two histograms merge by adding counts. The exact maximum
is kept beside the buckets. Both classes travel between processes as plain dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Histogram", "Timeline", "SecondBucket", "latency_summary_ms"]

SUB_BUCKETS = 32
# Samples above this are clamped into the last bucket (the exact max is still kept).
LATENCY_US_MAX = 3_600_000_000


def _index(value_us: float) -> int:
    if value_us < 1:
        return 0
    value_us = min(value_us, LATENCY_US_MAX)
    exponent = int(math.log2(value_us))
    sub = int((value_us / (1 << exponent) - 1) * SUB_BUCKETS)
    return 1 + exponent * SUB_BUCKETS + min(sub, SUB_BUCKETS - 1)


def _midpoint_us(index: int) -> float:
    if index == 0:
        return 0.5
    exponent, sub = divmod(index - 1, SUB_BUCKETS)
    return (1 << exponent) * (1 + (sub + 0.5) / SUB_BUCKETS)


@dataclass(slots=True)
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_us: float = 0.0
    max_us: float = 0.0

    def record(self, value_s: float, times: int = 1) -> None:
        value_us = max(0.0, value_s * 1e6)
        i = _index(value_us)
        self.counts[i] = self.counts.get(i, 0) + times
        self.count += times
        self.total_us += value_us * times
        self.max_us = max(self.max_us, value_us)

    def merge(self, other: Histogram) -> None:
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n
        self.count += other.count
        self.total_us += other.total_us
        self.max_us = max(self.max_us, other.max_us)

    def percentile_ms(self, fraction: float) -> float:
        """The value at `fraction` (0..1) of the samples, in ms; 0.0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return min(_midpoint_us(i), self.max_us) / 1000
        return self.max_us / 1000

    def to_dict(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "count": self.count,
                "total_us": self.total_us, "max_us": self.max_us}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        return cls(counts={int(k): int(v) for k, v in d["counts"].items()}, count=int(d["count"]),
                   total_us=float(d["total_us"]), max_us=float(d["max_us"]))


def latency_summary_ms(h: Histogram) -> dict[str, float]:
    return {"p50": round(h.percentile_ms(0.50), 3), "p99": round(h.percentile_ms(0.99), 3),
            "p99_9": round(h.percentile_ms(0.999), 3), "max": round(h.max_us / 1000, 3),
            "mean": round(h.total_us / h.count / 1000, 3) if h.count else 0.0,
            "samples": h.count}


@dataclass(slots=True)
class SecondBucket:
    records: int = 0
    bytes: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)

    def merge(self, other: SecondBucket) -> None:
        self.records += other.records
        self.bytes += other.bytes
        self.errors += other.errors
        self.latency.merge(other.latency)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "errors": self.errors,
                "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SecondBucket:
        return cls(records=d["records"], bytes=d["bytes"], errors=d["errors"],
                   latency=Histogram.from_dict(d["latency"]))


class Timeline:
    """Counts and latencies per whole second since a shared start time (wall clock, so that
    processes agree on it). Bounded by `seconds_max` buckets: later samples land in the last."""

    def __init__(self, *, start_wall_s: float, seconds_max: int) -> None:
        self.start_wall_s = start_wall_s
        self.seconds_max = seconds_max
        self.buckets: dict[int, SecondBucket] = {}

    def bucket(self, wall_s: float) -> SecondBucket:
        second = min(max(0, int(wall_s - self.start_wall_s)), self.seconds_max - 1)
        b = self.buckets.get(second)
        if b is None:
            b = self.buckets[second] = SecondBucket()
        return b

    def drain(self) -> dict[int, SecondBucket]:
        """Hand over the buckets collected so far and start afresh (for shipping deltas)."""
        out, self.buckets = self.buckets, {}
        return out

    def merge(self, buckets: dict[int, SecondBucket]) -> None:
        for second, b in buckets.items():
            mine = self.buckets.get(second)
            if mine is None:
                self.buckets[second] = b
            else:
                mine.merge(b)
