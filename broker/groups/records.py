"""The records of `__consumer_offsets`, byte for byte as Kafka writes them. Pure.

Each record of a RecordBatch in an offsets partition is one of (big-endian; string = int16
length + UTF-8, -1 null; bytes = int32 length, -1 null; array = int32 count):

    offset commit   key:   int16 version = 1, group string, topic string, partition int32
                    value: int16 version = 3, offset int64, leader_epoch int32,
                           metadata string, commit_timestamp int64
                    (a null value deletes the committed offset)
    group metadata  key:   int16 version = 2, group string
                    value: int16 version = 3, protocol_type string, generation int32,
                           protocol nullable string, leader nullable string,
                           current_state_timestamp int64,
                           members array of: member_id string, group_instance_id nullable
                           string, client_id string, client_host string,
                           rebalance_timeout int32, session_timeout int32,
                           subscription bytes, assignment bytes
                    (a null value deletes the group)

These are Kafka's OffsetCommitKey/Value v3 and GroupMetadataKey/Value v3 (the last
non-flexible versions). Decoding also reads offset values v0-v3 and group values v0-v3 so a
log written by an older writer loads. Records of other key versions are skipped (Kafka's newer
group types): `decode_record` returns None for them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.groups.state import GroupSnapshot, MemberSnapshot
from broker.wire.kafka.primitives import (
    DecodeError,
    read_array_length,
    read_bytes,
    read_string,
    write_bytes,
    write_string,
)

__all__ = [
    "OffsetRecordError",
    "OffsetKey",
    "OffsetValue",
    "OffsetCommit",
    "GroupMetadata",
    "encode_offset_commit",
    "encode_group_metadata",
    "decode_record",
    "METADATA_CHARS_MAX",
]

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3
METADATA_CHARS_MAX = 4096  # Kafka's offset.metadata.max.bytes

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class OffsetRecordError(ValueError):
    """A record of an offsets partition that cannot be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommit:
    key: OffsetKey
    value: OffsetValue | None  # None: the offset was deleted


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMetadata:
    group_id: str
    snapshot: GroupSnapshot | None  # None: the group was deleted


# ---- encoding ------------------------------------------------------------------------------

def encode_offset_commit(key: OffsetKey, value: OffsetValue | None) -> tuple[bytes, bytes | None]:
    """(key bytes, value bytes or None) of one offset-commit record."""
    k: list[bytes] = [_I16.pack(OFFSET_KEY_VERSION)]
    write_string(k.append, key.group_id, False, "group")
    write_string(k.append, key.topic, False, "topic")
    k.append(_I32.pack(key.partition))
    if value is None:
        return b"".join(k), None
    v: list[bytes] = [_I16.pack(OFFSET_VALUE_VERSION), _I64.pack(value.offset),
                      _I32.pack(value.leader_epoch)]
    write_string(v.append, value.metadata, False, "metadata")
    v.append(_I64.pack(value.commit_timestamp_ms))
    return b"".join(k), b"".join(v)


def encode_group_metadata(group_id: str, snapshot: GroupSnapshot | None
                          ) -> tuple[bytes, bytes | None]:
    k: list[bytes] = [_I16.pack(GROUP_KEY_VERSION)]
    write_string(k.append, group_id, False, "group")
    if snapshot is None:
        return b"".join(k), None
    v: list[bytes] = [_I16.pack(GROUP_VALUE_VERSION)]
    write_string(v.append, snapshot.protocol_type, False, "protocol_type")
    v.append(_I32.pack(snapshot.generation))
    write_string(v.append, snapshot.protocol, True, "protocol")
    write_string(v.append, snapshot.leader, True, "leader")
    v.append(_I64.pack(snapshot.state_timestamp_ms))
    v.append(_I32.pack(len(snapshot.members)))
    for m in snapshot.members:
        write_string(v.append, m.member_id, False, "member_id")
        write_string(v.append, m.group_instance_id, True, "group_instance_id")
        write_string(v.append, m.client_id, False, "client_id")
        write_string(v.append, m.client_host, False, "client_host")
        v.append(_I32.pack(m.rebalance_timeout_ms))
        v.append(_I32.pack(m.session_timeout_ms))
        write_bytes(v.append, m.subscription, False, "subscription")
        write_bytes(v.append, m.assignment, False, "assignment")
    return b"".join(k), b"".join(v)


# ---- decoding ------------------------------------------------------------------------------

class _Reader:
    __slots__ = ("buf", "pos", "end", "what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.buf = memoryview(data)
        self.pos = 0
        self.end = len(self.buf)
        self.what = what

    def _fixed(self, s: struct.Struct, name: str) -> int:
        if self.end - self.pos < s.size:
            raise OffsetRecordError(f"{self.what}: truncated {name} at byte {self.pos}")
        (value,) = s.unpack_from(self.buf, self.pos)
        self.pos += s.size
        return int(value)

    def i16(self, name: str) -> int:
        return self._fixed(_I16, name)

    def i32(self, name: str) -> int:
        return self._fixed(_I32, name)

    def i64(self, name: str) -> int:
        return self._fixed(_I64, name)

    def string(self, name: str, nullable: bool = False) -> str | None:
        try:
            value, self.pos = read_string(self.buf, self.pos, self.end, nullable, name)
        except DecodeError as e:
            raise OffsetRecordError(f"{self.what}: {e.message}") from None
        return value

    def text(self, name: str) -> str:
        value = self.string(name)
        assert value is not None
        return value

    def blob(self, name: str) -> bytes:
        try:
            value, self.pos = read_bytes(self.buf, self.pos, self.end, False, name)
        except DecodeError as e:
            raise OffsetRecordError(f"{self.what}: {e.message}") from None
        assert value is not None
        return value

    def count(self, name: str, item_bytes_min: int) -> int:
        try:
            n, self.pos = read_array_length(self.buf, self.pos, self.end, False,
                                            item_bytes_min, name)
        except DecodeError as e:
            raise OffsetRecordError(f"{self.what}: {e.message}") from None
        return n


def decode_record(key: bytes | None, value: bytes | None
                  ) -> OffsetCommit | GroupMetadata | None:
    """One record of an offsets partition; None for kinds we do not keep. Raises
    OffsetRecordError on malformed bytes."""
    if key is None:
        raise OffsetRecordError("offsets record without a key")
    r = _Reader(key, "offsets record key")
    version = r.i16("key version")
    if version in (0, 1):
        k = OffsetKey(group_id=r.text("group"), topic=r.text("topic"),
                      partition=r.i32("partition"))
        return OffsetCommit(key=k, value=None if value is None else _offset_value(value))
    if version == GROUP_KEY_VERSION:
        group_id = r.text("group")
        snapshot = None if value is None else _group_value(group_id, value)
        return GroupMetadata(group_id=group_id, snapshot=snapshot)
    return None


def _offset_value(data: bytes) -> OffsetValue:
    r = _Reader(data, "offset commit value")
    version = r.i16("version")
    if not 0 <= version <= 3:
        raise OffsetRecordError(f"offset commit value version {version} is unknown")
    offset = r.i64("offset")
    epoch = r.i32("leader_epoch") if version >= 3 else -1
    metadata = r.text("metadata")
    timestamp = r.i64("commit_timestamp")
    return OffsetValue(offset=offset, leader_epoch=epoch, metadata=metadata,
                       commit_timestamp_ms=timestamp)


def _group_value(group_id: str, data: bytes) -> GroupSnapshot:
    r = _Reader(data, f"group {group_id!r} metadata")
    version = r.i16("version")
    if not 0 <= version <= 3:
        raise OffsetRecordError(f"group metadata value version {version} is unknown")
    protocol_type = r.text("protocol_type")
    generation = r.i32("generation")
    protocol = r.string("protocol", nullable=True)
    leader = r.string("leader", nullable=True)
    timestamp = r.i64("current_state_timestamp") if version >= 2 else -1
    members = []
    for _ in range(r.count("members", 2 + 2 + 2 + 4 + 4 + 4)):
        member_id = r.text("member_id")
        instance = r.string("group_instance_id", nullable=True) if version >= 3 else None
        client_id = r.text("client_id")
        client_host = r.text("client_host")
        rebalance_ms = r.i32("rebalance_timeout") if version >= 1 else -1
        session_ms = r.i32("session_timeout")
        members.append(MemberSnapshot(
            member_id=member_id, group_instance_id=instance, client_id=client_id,
            client_host=client_host,
            rebalance_timeout_ms=rebalance_ms if rebalance_ms >= 0 else session_ms,
            session_timeout_ms=session_ms, subscription=r.blob("subscription"),
            assignment=r.blob("assignment")))
    return GroupSnapshot(group_id=group_id, protocol_type=protocol_type,
                         generation=generation, protocol=protocol, leader=leader,
                         state_timestamp_ms=timestamp, members=tuple(members))
