"""raftlog's private API RaftlogDescribeCluster (key 10000): advertised by ApiVersions, v0 only,
not flexible, and its request and response round-trip byte for byte through the codec."""

from __future__ import annotations

import struct

from broker.wire.kafka import (
    PRIVATE_API_KEY_MIN,
    SUPPORTED_VERSIONS,
    ApiKey,
    RequestHeader,
    api_versions_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    is_flexible,
)
from broker.wire.kafka.messages import (
    RaftlogDescribeClusterBroker,
    RaftlogDescribeClusterPartition,
    RaftlogDescribeClusterRequest,
    RaftlogDescribeClusterResponse,
)

KEY = ApiKey.RAFTLOG_DESCRIBE_CLUSTER


def _header(correlation_id: int = 42) -> RequestHeader:
    return RequestHeader(api_key=KEY, api_version=0, correlation_id=correlation_id,
                         client_id="raftlog-cli")


def test_key_is_private_served_at_v0_only_and_not_flexible() -> None:
    assert int(KEY) == 10000 >= PRIVATE_API_KEY_MIN
    assert SUPPORTED_VERSIONS[KEY] == (0, 0)
    assert not is_flexible(KEY, 0)


def test_api_versions_advertises_it() -> None:
    ranges = {k.api_key: (k.min_version, k.max_version) for k in api_versions_response().api_keys}
    assert ranges[10000] == (0, 0)


def test_request_is_a_bare_v1_header() -> None:
    frame = encode_request(_header(), RaftlogDescribeClusterRequest())
    # size, api_key 10000, version 0, correlation id, client_id (int16 length): no body at all
    assert frame == struct.pack(">ihhih", 8 + 2 + 11, 10000, 0, 42, 11) + b"raftlog-cli"
    header, body = decode_request(frame[4:])
    assert header == _header() and body == RaftlogDescribeClusterRequest()


def _response() -> RaftlogDescribeClusterResponse:
    return RaftlogDescribeClusterResponse(
        throttle_time_ms=0, error_code=0, controller_id=2,
        brokers=(RaftlogDescribeClusterBroker(node_id=1, host="10.0.0.1", port=9092, alive=True),
                 RaftlogDescribeClusterBroker(node_id=2, host="10.0.0.2", port=9093, alive=False)),
        partitions=(RaftlogDescribeClusterPartition(topic="orders", partition=0, leader=1,
                                                    replicas=(1, 2, 3), isr=(1, 3)),
                    RaftlogDescribeClusterPartition(topic="orders", partition=1, leader=-1,
                                                    replicas=(2,), isr=())))


def test_response_round_trips() -> None:
    body = _response()
    frame = encode_response(_header(7), body)
    header, got = decode_response(KEY, 0, frame[4:])
    assert header.correlation_id == 7
    assert got == body


def test_response_layout() -> None:
    """The wire layout the broker and every client agree on (documented in messages/raftlog.py):
    response header v0, int32/int16/int32, then int32-counted arrays of plain structs."""
    body = RaftlogDescribeClusterResponse(
        controller_id=-1,
        brokers=(RaftlogDescribeClusterBroker(node_id=3, host="h", port=1, alive=True),),
        partitions=(RaftlogDescribeClusterPartition(topic="t", partition=5, leader=3,
                                                    replicas=(3,), isr=(3,)),))
    frame = encode_response(_header(1), body, framed=False)
    expected = (struct.pack(">i", 1)                      # correlation id, no tagged fields
                + struct.pack(">ihi", 0, 0, -1)           # throttle, error, controller
                + struct.pack(">i", 1) + struct.pack(">ih", 3, 1) + b"h" + struct.pack(">i?", 1, True)
                + struct.pack(">i", 1) + struct.pack(">h", 1) + b"t" + struct.pack(">ii", 5, 3)
                + struct.pack(">ii", 1, 3) + struct.pack(">ii", 1, 3))
    assert frame == expected


def test_defaults_say_none_known() -> None:
    assert RaftlogDescribeClusterResponse().controller_id == -1
    assert RaftlogDescribeClusterPartition().leader == -1
