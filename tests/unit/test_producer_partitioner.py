"""The partitioner: Kafka's murmur2 bit for bit, keyed placement as Kafka's default
partitioner, and sticky partitioning for keyless records."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from producer.partitioner import murmur2, next_sticky_partition, partition_for_key

# From Kafka's own tests (clients/.../common/utils/UtilsTest.java, testMurmur2) and values
# printed by Kafka's Java Utils.murmur2 as quoted by other clients' test suites (kafkajs'
# Java-generated table, Akka's Murmur2Spec, librdkafka's rdmurmur2.c for "kafka").
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"0": 971027396,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
    b"128": -326012175,
    b"kafka": -798503068,
}


@pytest.mark.parametrize("key", sorted(KAFKA_VECTORS), ids=lambda k: k.decode())
def test_murmur2_matches_kafkas_java_values(key: bytes) -> None:
    assert murmur2(key) == KAFKA_VECTORS[key]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_murmur2_agrees_with_kafka_python(data: bytes) -> None:
    """kafka-python's murmur2 is an independent implementation (unsigned result)."""
    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data)
    assert -(1 << 31) <= murmur2(data) < 1 << 31


class _OneTopic:
    """The slice of kafka-python's ClusterMetadata its DefaultPartitioner reads."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.integers(min_value=1, max_value=200))
def test_keyed_partition_is_kafkas(key: bytes, partitions: int) -> None:
    assert partition_for_key(key, partitions) == DefaultPartitioner().partition(
        "t", None, key, None, None, _OneTopic(partitions))


def test_keyed_partition_of_known_keys() -> None:
    # toPositive(murmur2) % n, from the Java values above.
    assert partition_for_key(b"foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6 == 0
    assert partition_for_key(b"kafka", 3) == (-798503068 & 0x7FFFFFFF) % 3


def test_sticky_partition_changes_and_stays_among_available_ones() -> None:
    draw = random.Random(7).randrange
    seen = []
    previous = None
    for _ in range(200):
        previous = next_sticky_partition(partitions=6, available={1, 3, 4}, previous=previous,
                                         draw=draw)
        seen.append(previous)
    assert set(seen) == {1, 3, 4}
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False)), "never the same twice"


def test_sticky_partition_with_one_or_no_available_partition() -> None:
    draw = random.Random(1).randrange
    assert next_sticky_partition(partitions=4, available={2}, previous=2, draw=draw) == 2
    drawn = {next_sticky_partition(partitions=4, available=(), previous=None, draw=draw)
             for _ in range(100)}
    assert drawn == {0, 1, 2, 3}, "no leader anywhere: any partition"


def test_the_partitioner_is_pure() -> None:
    """STYLE.md rule 1: no I/O, clock or randomness of its own in the partitioner."""
    from tests.unit.test_layering import IO_MODULES, ROOT, _imports

    bad = [(n, m) for n, m in _imports(ROOT / "producer/partitioner.py")
           if m.split(".")[0] in IO_MODULES]
    assert not bad, bad
