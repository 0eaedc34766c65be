"""The client's pure pieces: framing, version negotiation, options and the metadata cache."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.client import ClientConfig, ClusterMetadata, parse_address, parse_bootstrap
from broker.client.config import Address
from broker.client.errors import ClientConfigError, KafkaError, check_error, error_code
from broker.client.framing import FrameSplitter
from broker.client.versions import api_versions_retry_version, negotiate
from broker.wire.errors import ErrorCode, MalformedResponseError
from broker.wire.kafka.messages import (
    ApiVersion,
    ApiVersionsResponse,
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)

# ---- framing ------------------------------------------------------------------------------


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


@settings(max_examples=60, deadline=None)
@given(payloads=st.lists(st.binary(min_size=4, max_size=40), max_size=6),
       cuts=st.lists(st.integers(0, 300), max_size=8))
def test_frames_come_out_whole_however_the_bytes_are_cut(payloads: list[bytes],
                                                         cuts: list[int]) -> None:
    stream = b"".join(_framed(p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    splitter = FrameSplitter(frame_bytes_max=64)
    got: list[bytes] = []
    for a, b in zip(points, points[1:]):
        got += splitter.feed(stream[a:b])
        assert splitter.buffered_bytes < 4 + 64  # never more than one partial frame
    assert got == payloads
    assert splitter.buffered_bytes == 0


@pytest.mark.parametrize("size", [-1, 0, 3, 65])
def test_a_size_out_of_bounds_is_the_peers_fault(size: int) -> None:
    splitter = FrameSplitter(frame_bytes_max=64)
    with pytest.raises(MalformedResponseError, match="outside"):
        splitter.feed(struct.pack(">i", size) + b"\x00" * 8)


def test_the_largest_allowed_frame_passes() -> None:
    splitter = FrameSplitter(frame_bytes_max=64)
    assert splitter.feed(_framed(b"x" * 64)) == [b"x" * 64]


# ---- version negotiation ------------------------------------------------------------------


def test_negotiate_takes_the_highest_common_version_and_drops_disjoint_apis() -> None:
    ours = {3: (0, 8), 0: (0, 8), 1: (4, 11), 10000: (0, 0)}
    theirs = {3: (0, 12), 0: (3, 5), 1: (0, 3), 18: (0, 3)}
    assert dict(negotiate(ours, theirs)) == {3: 8, 0: 5}


def _unsupported(ranges: dict[int, tuple[int, int]]) -> ApiVersionsResponse:
    return ApiVersionsResponse(error_code=35, api_keys=tuple(
        ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in ranges.items()))


@pytest.mark.parametrize("tried, ranges, expected", [
    (3, {18: (0, 2)}, 2),      # the broker's max
    (3, {18: (0, 9)}, 2),      # never higher than tried - 1
    (3, {}, 0),                # no range listed: v0
    (2, {18: (0, 0)}, 0),
    (0, {18: (0, 2)}, None),   # nothing lower than v0
])
def test_api_versions_retry_follows_librdkafka(tried: int, ranges: dict[int, tuple[int, int]],
                                               expected: int | None) -> None:
    assert api_versions_retry_version(tried, _unsupported(ranges)) == expected


# ---- options and errors -------------------------------------------------------------------


def test_bootstrap_parsing() -> None:
    assert parse_bootstrap("a:1, b:2,,a:1") == (Address(host="a", port=1),
                                               Address(host="b", port=2))
    assert parse_bootstrap(["[::1]:9092"]) == (Address(host="::1", port=9092),)
    assert str(parse_address("[::1]:9092")) == "[::1]:9092"
    for bad in ("", "host", "host:", ":9092", "h:0", "h:70000", "h:x"):
        with pytest.raises(ClientConfigError):
            parse_bootstrap(bad)


@pytest.mark.parametrize("option", [{"request_timeout_ms": 0}, {"retry_backoff_ms": -1},
                                    {"inflight_requests_max": 0}, {"request_timeout_ms": 1.5},
                                    {"request_timeout_ms": True}, {"client_id": "x" * 300}])
def test_bad_options_raise_a_typed_error(option: dict[str, object]) -> None:
    with pytest.raises(ClientConfigError):
        ClientConfig(bootstrap=parse_bootstrap("a:1"), **option)  # type: ignore[arg-type]


def test_error_codes_from_the_wire() -> None:
    assert error_code(36) is ErrorCode.TOPIC_ALREADY_EXISTS
    assert error_code(30000) is ErrorCode.UNKNOWN_SERVER_ERROR  # a newer broker's code
    check_error(0)
    with pytest.raises(KafkaError) as info:
        check_error(6, "partition moved")
    assert info.value.code is ErrorCode.NOT_LEADER_OR_FOLLOWER and info.value.retriable
    assert info.value.message == "partition moved"


# ---- the metadata cache -------------------------------------------------------------------


def _partition(index: int, leader: int, replicas: tuple[int, ...] = (1, 2, 3),
               isr: tuple[int, ...] | None = None) -> MetadataResponsePartition:
    return MetadataResponsePartition(
        error_code=0 if leader >= 0 else 5, partition_index=index, leader_id=leader,
        leader_epoch=4, replica_nodes=replicas, isr_nodes=replicas if isr is None else isr)


def _response(topics: dict[str, list[MetadataResponsePartition]], *, controller: int = 1,
              brokers: tuple[int, ...] = (1, 2, 3),
              errors: dict[str, int] | None = None) -> MetadataResponse:
    listed = [MetadataResponseTopic(error_code=0, name=n, partitions=tuple(ps),
                                    is_internal=n.startswith("__")) for n, ps in topics.items()]
    listed += [MetadataResponseTopic(error_code=c, name=n) for n, c in (errors or {}).items()]
    return MetadataResponse(
        brokers=tuple(MetadataResponseBroker(node_id=i, host=f"h{i}", port=9090 + i)
                      for i in brokers), controller_id=controller, cluster_id="c1",
        topics=tuple(listed))


def test_full_update_fills_the_cache() -> None:
    md = ClusterMetadata()
    md.update(_response({"orders": [_partition(0, 2), _partition(1, -1)],
                         "__consumer_offsets": [_partition(0, 1)]}), topics=None, now_ms=0)
    assert md.controller_id == 1 and md.cluster_id == "c1"
    assert md.broker(2) is not None and str(md.broker(2).address) == "h2:9092"  # type: ignore[union-attr]
    assert md.leader_for("orders", 0) == 2
    assert md.leader_for("orders", 1) is None
    assert md.leader_for("orders", 7) is None and md.leader_for("nope", 0) is None
    assert md.partitions_for("orders") == frozenset({0, 1})
    assert md.available_partitions_for("orders") == frozenset({0})
    assert md.partitions_for("nope") is None
    orders = md.topic("orders")
    assert orders is not None and not orders.all_led and not orders.internal
    assert md.topic("__consumer_offsets").internal  # type: ignore[union-attr]
    p = md.partition("orders", 0)
    assert p is not None and p.leader_epoch == 4 and p.replicas == (1, 2, 3)


def test_no_controller_is_none() -> None:
    md = ClusterMetadata()
    md.update(_response({}, controller=-1), topics=None, now_ms=0)
    assert md.controller_id is None


def test_a_full_update_forgets_deleted_topics_a_partial_one_does_not() -> None:
    md = ClusterMetadata()
    md.update(_response({"a": [_partition(0, 1)], "b": [_partition(0, 2)]}), topics=None,
              now_ms=0)
    md.update(_response({"a": [_partition(0, 3)]}, errors={"x": 3}), topics=["a", "x"],
              now_ms=1)
    assert md.leader_for("a", 0) == 3 and md.leader_for("b", 0) == 2
    x = md.topic("x")
    assert x is not None and x.error_code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert md.partitions_for("x") is None
    md.update(_response({"a": [_partition(0, 3)]}), topics=None, now_ms=2)
    assert set(md.topics) == {"a"}
    assert md.version == 3


def test_brokers_are_replaced_on_each_update() -> None:
    md = ClusterMetadata()
    md.update(_response({}, brokers=(1, 2, 3)), topics=None, now_ms=0)
    md.update(_response({}, brokers=(1, 3)), topics=[], now_ms=1)
    assert set(md.brokers) == {1, 3}


def test_refresh_clock() -> None:
    md = ClusterMetadata()
    assert md.ms_until_refresh(0, max_age_ms=1000, backoff_ms=100) == 0  # nothing known yet
    md.update(_response({}), topics=None, now_ms=0)
    assert md.ms_until_refresh(10, 1000, 100) == 990  # max age
    md.request_update()
    assert md.ms_until_refresh(10, 1000, 100) == 90  # asked for, but backoff first
    assert md.ms_until_refresh(150, 1000, 100) == 0
    md.failed(150)
    assert md.ms_until_refresh(200, 1000, 100) == 50  # a failure also backs off
    md.update(_response({}), topics=["a"], now_ms=300)  # partial: still requested
    assert md.update_requested and md.ms_until_refresh(400, 1000, 100) == 0
    md.update(_response({}), topics=None, now_ms=500)
    assert not md.update_requested and md.ms_until_refresh(500, 1000, 100) == 1000
