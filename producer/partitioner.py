"""Where a record goes: Kafka's partitioners, pure (no I/O, no clock, no randomness of its own).

- Keyed records: `partition = (murmur2(key) & 0x7fffffff) % partitions`, bit for bit what
  Kafka's Java client (Utils.murmur2 / toPositive, BuiltInPartitioner.partitionForKey) computes,
  so a key lands where Kafka, librdkafka's murmur2_random and kafka-python would put it. The
  count is the topic's partitions, not those with a leader now, so a key never moves while a
  leader is being elected.
- Keyless records: sticky partitioning (KIP-480): they all go to one partition until a new
  batch would be needed there (its batch is full or has been sent), then to another partition
  drawn at random among those with a leader. Fewer, fuller batches than round robin.

The random draw is an input (`draw(n)` returns an int in [0, n)) so tests can replay it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection

__all__ = ["murmur2", "partition_for_key", "next_sticky_partition"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of `data`, as the signed int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data) if words else ():
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    base = words << 2
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` in a topic of `partitions`."""
    assert partitions > 0, partitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def next_sticky_partition(*, partitions: int, available: Collection[int], previous: int | None,
                          draw: Callable[[int], int]) -> int:
    """The next sticky partition for keyless records: drawn among `available` (partitions
    with a leader; all of them when none has one), other than `previous` when there is a
    choice."""
    assert partitions > 0, partitions
    pool = sorted(p for p in available if 0 <= p < partitions) or list(range(partitions))
    if len(pool) > 1 and previous in pool:
        pool.remove(previous)
    index = draw(len(pool))
    assert 0 <= index < len(pool), (index, len(pool))
    return pool[index]
