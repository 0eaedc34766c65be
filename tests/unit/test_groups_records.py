"""`__consumer_offsets` records (Kafka's byte layouts) and the group -> partition hash."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.groups.keys import java_string_hashcode, offsets_partition_for
from broker.groups.records import (
    GroupMetadata,
    OffsetCommit,
    OffsetKey,
    OffsetRecordError,
    OffsetValue,
    decode_record,
    encode_group_metadata,
    encode_offset_commit,
)
from broker.groups.state import GroupSnapshot, MemberSnapshot


def test_java_hash_codes_and_kafka_partitions() -> None:
    assert java_string_hashcode("") == 0
    assert java_string_hashcode("hello") == 99162322  # Java's "hello".hashCode()
    assert java_string_hashcode("polygenelubricants") == -(1 << 31)
    assert offsets_partition_for("polygenelubricants", 16) == 0  # Utils.abs(MIN_VALUE) = 0
    assert offsets_partition_for("my-group", 50) == 12  # as Kafka places it
    # UTF-16 code units, as Java counts them (a surrogate pair is two units)
    assert java_string_hashcode("\U0001F600") == 0xD83D * 31 + 0xDE00


def test_offset_commit_bytes_are_kafkas() -> None:
    key, value = encode_offset_commit(
        OffsetKey(group_id="g", topic="t", partition=3),
        OffsetValue(offset=42, leader_epoch=7, metadata="m", commit_timestamp_ms=99))
    assert key == struct.pack(">hh1sh1si", 1, 1, b"g", 1, b"t", 3)
    assert value == struct.pack(">hqih1sq", 3, 42, 7, 1, b"m", 99)
    decoded = decode_record(key, value)
    assert decoded == OffsetCommit(key=OffsetKey(group_id="g", topic="t", partition=3),
                                   value=OffsetValue(offset=42, leader_epoch=7, metadata="m",
                                                     commit_timestamp_ms=99))


def test_older_offset_values_and_tombstones_decode() -> None:
    key, _ = encode_offset_commit(OffsetKey(group_id="g", topic="t", partition=0), None)
    v1 = struct.pack(">hqh2sqq", 1, 5, 2, b"md", 10, 20)  # v1 has expire_timestamp
    assert decode_record(key, v1).value == OffsetValue(offset=5, metadata="md",
                                                       commit_timestamp_ms=10)
    assert decode_record(key, None).value is None


def test_group_metadata_round_trips() -> None:
    snapshot = GroupSnapshot(
        group_id="billing", protocol_type="consumer", generation=4, protocol="range",
        leader="m-1", state_timestamp_ms=123,
        members=(MemberSnapshot(member_id="m-1", group_instance_id=None, client_id="c",
                                client_host="/127.0.0.1", rebalance_timeout_ms=60000,
                                session_timeout_ms=10000, subscription=b"\x00\x01",
                                assignment=b""),
                 MemberSnapshot(member_id="m-2", group_instance_id="i-2", client_id="c2",
                                client_host="", rebalance_timeout_ms=1,
                                session_timeout_ms=2, subscription=b"",
                                assignment=b"xyz")))
    key, value = encode_group_metadata("billing", snapshot)
    assert decode_record(key, value) == GroupMetadata(group_id="billing", snapshot=snapshot)
    empty = GroupSnapshot(group_id="e", protocol_type="", generation=9, protocol=None,
                          leader=None, state_timestamp_ms=-1, members=())
    assert decode_record(*encode_group_metadata("e", empty)).snapshot == empty
    assert decode_record(*encode_group_metadata("e", None)).snapshot is None


def test_unknown_key_versions_are_skipped_and_garbage_is_refused() -> None:
    assert decode_record(struct.pack(">h", 7) + b"whatever", b"") is None
    with pytest.raises(OffsetRecordError):
        decode_record(None, b"")
    with pytest.raises(OffsetRecordError):
        decode_record(struct.pack(">hh", 1, 50), b"")
    key, _ = encode_offset_commit(OffsetKey(group_id="g", topic="t", partition=0), None)
    with pytest.raises(OffsetRecordError):
        decode_record(key, struct.pack(">hq", 3, 1))  # truncated value
    with pytest.raises(OffsetRecordError):
        decode_record(key, struct.pack(">h", 9) + bytes(30))  # unknown value version


@given(st.binary(max_size=64), st.one_of(st.none(), st.binary(max_size=64)))
def test_any_bytes_decode_or_raise_the_typed_error(key: bytes, value: bytes | None) -> None:
    try:
        decode_record(key, value)
    except OffsetRecordError:
        pass
