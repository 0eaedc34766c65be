"""The simulated network between nodes: per-link latency, drop, duplication, extra delay (which
reorders) and partitions (directed link cuts that heal).

`Network.fate` decides, from the seeded random stream, what becomes of one envelope sent on a
link: dropped (no delivery), or delivered after one or two (duplicate) latencies. The caller
schedules the deliveries and asks `is_cut` again at delivery time, so a partition also drops what
was in flight on a link it cuts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["NetworkConfig", "Network"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    latency_us_min: int = 200
    latency_us_jitter: int = 800  # uniform extra latency in [0, jitter)
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    delay_probability: float = 0.0  # chance of an extra delay in [0, delay_us_max)
    delay_us_max: int = 0


class Network:
    """Link state (cuts by partition id) and per-envelope fate; see the module docstring."""

    __slots__ = ("config", "_rng", "_cuts", "_partitions", "_next_partition_id", "faulty", "stats")

    def __init__(self, config: NetworkConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self._cuts: dict[tuple[int, int], int] = {}  # directed link -> partitions cutting it
        self._partitions: dict[int, tuple[tuple[int, int], ...]] = {}  # id -> links it cuts
        self._next_partition_id = 1
        self.faulty = True  # False once faults stop: no drops, duplicates or extra delays
        self.stats = {"dropped": 0, "duplicated": 0, "delayed": 0, "cut": 0}

    # ---- per-envelope fate ----
    def fate(self, src: int, dst: int) -> tuple[int, ...]:
        """Latencies (us) of the copies of one envelope to deliver; empty when it is lost."""
        if self._cuts and (src, dst) in self._cuts:
            self.stats["cut"] += 1
            return ()
        cfg = self.config
        rng = self._rng
        latency = cfg.latency_us_min + rng.randrange(cfg.latency_us_jitter)
        if not self.faulty:
            return (latency,)
        if cfg.drop_probability and rng.random() < cfg.drop_probability:
            self.stats["dropped"] += 1
            return ()
        if cfg.delay_probability and rng.random() < cfg.delay_probability:
            latency += rng.randrange(cfg.delay_us_max)
            self.stats["delayed"] += 1
        if cfg.duplicate_probability and rng.random() < cfg.duplicate_probability:
            self.stats["duplicated"] += 1
            again = cfg.latency_us_min + rng.randrange(cfg.latency_us_jitter + cfg.delay_us_max)
            return (latency, again)
        return (latency,)

    def is_cut(self, src: int, dst: int) -> bool:
        return bool(self._cuts) and (src, dst) in self._cuts

    # ---- partitions ----
    def cut(self, links: list[tuple[int, int]]) -> int:
        """Cut the given directed links until `heal(id)`; returns the partition id."""
        pid = self._next_partition_id
        self._next_partition_id += 1
        unique = tuple(sorted(set(links)))
        self._partitions[pid] = unique
        for link in unique:
            self._cuts[link] = self._cuts.get(link, 0) + 1
        return pid

    def partition(self, side: list[int], others: list[int]) -> int:
        """A symmetric partition: no traffic either way between `side` and `others`."""
        links = [(a, b) for a in side for b in others] + [(b, a) for a in side for b in others]
        return self.cut(links)

    def heal(self, pid: int) -> None:
        links = self._partitions.pop(pid, ())
        for link in links:
            left = self._cuts[link] - 1
            if left:
                self._cuts[link] = left
            else:
                del self._cuts[link]

    def heal_all(self) -> None:
        for pid in sorted(self._partitions):
            self.heal(pid)
        assert not self._cuts

    @property
    def partitions_active(self) -> int:
        return len(self._partitions)
