"""Kafka's consumer protocol bytes: our encodings, kafka-python's, and every version."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.protocol import (
    Assignment,
    ProtocolDecodeError,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from consumer.structs import TopicPartition as TP


def test_subscription_v1_layout() -> None:
    data = encode_subscription(Subscription(topics=("a",), owned_partitions=(TP("a", 2),)))
    assert data == (struct.pack(">hi", 1, 1) + struct.pack(">h1s", 1, b"a")
                    + struct.pack(">i", -1)  # null user data
                    + struct.pack(">ih1sii", 1, 1, b"a", 1, 2))
    assert decode_subscription(data).owned_partitions == (TP("a", 2),)


def test_versions_0_and_3_decode() -> None:
    v0 = struct.pack(">hih1si", 0, 1, 1, b"t", 0)  # user data: empty bytes
    assert decode_subscription(v0) == Subscription(topics=("t",), user_data=b"", version=0)
    v3 = (struct.pack(">hih1si", 3, 1, 1, b"t", -1) + struct.pack(">i", 0)
          + struct.pack(">i", 5) + struct.pack(">h2s", 2, b"r1") + b"future fields")
    s = decode_subscription(v3)
    assert (s.topics, s.generation_id, s.rack_id, s.version) == (("t",), 5, "r1", 3)


def test_assignment_round_trip_and_empty_bytes() -> None:
    a = Assignment(partitions=(TP("t", 1), TP("t", 0), TP("u", 4)), user_data=b"x")
    decoded = decode_assignment(encode_assignment(a))
    assert sorted(decoded.partitions) == sorted(a.partitions) and decoded.user_data == b"x"
    assert decode_assignment(b"") == Assignment()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python's resource loading
def test_kafka_python_reads_ours_and_we_read_theirs() -> None:
    from kafka.protocol.consumer.metadata import (
        ConsumerProtocolAssignment,
        ConsumerProtocolSubscription,
    )

    ours = encode_subscription(Subscription(topics=("orders", "refunds")))
    assert list(ConsumerProtocolSubscription.decode(ours).topics) == ["orders", "refunds"]
    theirs = ConsumerProtocolAssignment(
        version=0, assigned_partitions=[("orders", [0, 2])], user_data=b"").encode()
    assert decode_assignment(bytes(theirs)).partitions == (TP("orders", 0), TP("orders", 2))


@given(st.binary(max_size=80))
def test_any_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    for decode in (decode_subscription, decode_assignment):
        try:
            decode(data)
        except ProtocolDecodeError:
            pass


def test_negative_version_is_refused() -> None:
    with pytest.raises(ProtocolDecodeError):
        decode_subscription(struct.pack(">hi", -1, 0))
