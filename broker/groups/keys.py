"""Which `__consumer_offsets` partition coordinates a group: Kafka's formula, so a group
lands where Kafka would put it given the same partition count. Pure."""

from __future__ import annotations

__all__ = ["java_string_hashcode", "offsets_partition_for"]

_INT32_MIN = -(1 << 31)


def java_string_hashcode(text: str) -> int:
    """Java's String.hashCode(): s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units, as a
    signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def offsets_partition_for(group_id: str, partitions: int) -> int:
    """Kafka's `Utils.abs(groupId.hashCode) % partitions` (Utils.abs maps MIN_VALUE to 0)."""
    assert partitions > 0, partitions
    h = java_string_hashcode(group_id)
    return (0 if h == _INT32_MIN else abs(h)) % partitions
