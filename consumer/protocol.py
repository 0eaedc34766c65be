"""Kafka's consumer protocol: what members of a "consumer" group put in JoinGroup (their
subscription) and what the leader hands out in SyncGroup (each member's assignment). Pure.

Layouts (big-endian; string = int16 length + UTF-8; bytes = int32 length, -1 null;
array = int32 count):

    Subscription  version int16, topics [string], user_data nullable bytes,
                  v1+: owned_partitions [topic string, partitions [int32]],
                  v2+: generation_id int32, v3+: rack_id nullable string
    Assignment    version int16, assigned_partitions [topic string, partitions [int32]],
                  user_data nullable bytes      (the same layout in v0-v3)

As Kafka's ConsumerProtocol does, a reader takes any version and reads the fields it knows,
ignoring what follows (later versions only append fields). We write Subscription v1 and
Assignment v1, which every Kafka client since 2.4 (and kafka-python) reads. Malformed bytes
raise ProtocolDecodeError.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from broker.wire.kafka.primitives import (
    DecodeError,
    read_array_length,
    read_bytes,
    read_string,
    write_bytes,
    write_string,
)
from consumer.structs import TopicPartition

__all__ = [
    "PROTOCOL_TYPE",
    "ProtocolDecodeError",
    "Subscription",
    "Assignment",
    "encode_subscription",
    "decode_subscription",
    "encode_assignment",
    "decode_assignment",
    "assignment_by_member",
]

PROTOCOL_TYPE = "consumer"
SUBSCRIPTION_VERSION = 1
ASSIGNMENT_VERSION = 1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class ProtocolDecodeError(ValueError):
    """Subscription or assignment bytes that do not follow the consumer protocol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation_id: int = -1
    rack_id: str | None = None
    version: int = SUBSCRIPTION_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    partitions: tuple[TopicPartition, ...] = field(default=())
    user_data: bytes | None = None
    version: int = ASSIGNMENT_VERSION


def _write_partitions(out: list[bytes], partitions: Sequence[TopicPartition]) -> None:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    out.append(_I32.pack(len(by_topic)))
    for topic, numbers in by_topic.items():
        write_string(out.append, topic, False, "topic")
        out.append(_I32.pack(len(numbers)))
        out.extend(_I32.pack(n) for n in numbers)


def encode_subscription(s: Subscription) -> bytes:
    out: list[bytes] = [_I16.pack(SUBSCRIPTION_VERSION), _I32.pack(len(s.topics))]
    for topic in s.topics:
        write_string(out.append, topic, False, "topic")
    write_bytes(out.append, s.user_data, True, "user_data")
    _write_partitions(out, s.owned_partitions)
    return b"".join(out)


def encode_assignment(a: Assignment) -> bytes:
    out: list[bytes] = [_I16.pack(ASSIGNMENT_VERSION)]
    _write_partitions(out, a.partitions)
    write_bytes(out.append, a.user_data, True, "user_data")
    return b"".join(out)


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, data: bytes) -> None:
        self.buf = memoryview(data)
        self.pos = 0
        self.end = len(self.buf)

    @property
    def done(self) -> bool:
        return self.pos >= self.end

    def number(self, s: struct.Struct, name: str) -> int:
        if self.end - self.pos < s.size:
            raise ProtocolDecodeError(f"truncated {name} at byte {self.pos}")
        (value,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return int(value)

    def string(self, name: str, nullable: bool = False) -> str | None:
        try:
            value, self.pos = read_string(self.buf, self.pos, self.end, nullable, name)
        except DecodeError as e:
            raise ProtocolDecodeError(e.message) from None
        return value

    def blob(self, name: str) -> bytes | None:
        try:
            value, self.pos = read_bytes(self.buf, self.pos, self.end, True, name)
        except DecodeError as e:
            raise ProtocolDecodeError(e.message) from None
        return value

    def count(self, name: str, item_bytes_min: int) -> int:
        try:
            n, self.pos = read_array_length(self.buf, self.pos, self.end, True,
                                            item_bytes_min, name)
        except DecodeError as e:
            raise ProtocolDecodeError(e.message) from None
        return max(n, 0)

    def partitions(self, name: str) -> tuple[TopicPartition, ...]:
        out: list[TopicPartition] = []
        for _ in range(self.count(name, 6)):
            topic = self.string("topic")
            assert topic is not None
            out.extend(TopicPartition(topic, self.number(_I32, "partition"))
                       for _ in range(self.count("partitions", 4)))
        return tuple(out)


def decode_subscription(data: bytes) -> Subscription:
    r = _Reader(data)
    version = r.number(_I16, "version")
    if version < 0:
        raise ProtocolDecodeError(f"subscription version {version} is negative")
    topics = []
    for _ in range(r.count("topics", 2)):
        topic = r.string("topic")
        assert topic is not None
        topics.append(topic)
    user_data = r.blob("user_data")
    owned: tuple[TopicPartition, ...] = ()
    generation, rack = -1, None
    if version >= 1 and not r.done:
        owned = r.partitions("owned_partitions")
    if version >= 2 and not r.done:
        generation = r.number(_I32, "generation_id")
    if version >= 3 and not r.done:
        rack = r.string("rack_id", nullable=True)
    return Subscription(topics=tuple(topics), user_data=user_data, owned_partitions=owned,
                        generation_id=generation, rack_id=rack, version=version)


def decode_assignment(data: bytes) -> Assignment:
    """An assignment; empty bytes (what the coordinator hands a member the leader left out)
    are an empty assignment."""
    if not data:
        return Assignment()
    r = _Reader(data)
    version = r.number(_I16, "version")
    if version < 0:
        raise ProtocolDecodeError(f"assignment version {version} is negative")
    partitions = r.partitions("assigned_partitions")
    user_data = r.blob("user_data") if not r.done else None
    return Assignment(partitions=partitions, user_data=user_data, version=version)


def assignment_by_member(assignments: Mapping[str, Sequence[TopicPartition]]
                         ) -> dict[str, bytes]:
    """Encoded assignments for SyncGroup, by member id."""
    return {member: encode_assignment(Assignment(partitions=tuple(tps)))
            for member, tps in assignments.items()}
