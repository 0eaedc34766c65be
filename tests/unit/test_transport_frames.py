"""The pure pieces of the peer bus: envelope header codec, per-peer outbox, configuration."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.transport import TransportConfig, TransportConfigError
from broker.transport.config import parse_address, zmq_endpoint
from broker.transport.frames import (
    FORMAT_VERSION,
    HEADER_BYTES_MIN,
    NODE_ID_MAX,
    EnvelopeError,
    EnvelopeHeader,
    UnknownVersionError,
    decode_header,
    encode_header,
    header_bytes,
    node_routing_id,
)
from broker.transport.outbox import Outbox

node_ids = st.integers(min_value=0, max_value=NODE_ID_MAX)
frame_counts = st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=50)


# ---- envelope header ------------------------------------------------------------------------
@given(src=node_ids, counts=frame_counts)
def test_header_round_trips(src: int, counts: list[int]) -> None:
    data = encode_header(src=src, frame_counts=counts)
    assert len(data) == header_bytes(len(counts))
    decoded = decode_header(data, payload_frames=sum(counts), messages_max=len(counts))
    assert decoded == EnvelopeHeader(src=src, frame_counts=tuple(counts))


def test_header_layout_is_the_documented_one() -> None:
    data = encode_header(src=0x01020304, frame_counts=[1, 3])
    assert data == bytes([1, 0, 1, 2, 3, 4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3])
    assert HEADER_BYTES_MIN == 10 and FORMAT_VERSION == 1


def test_routing_id_is_the_node_id_big_endian() -> None:
    assert node_routing_id(1) == b"\x00\x00\x00\x01"
    assert node_routing_id(NODE_ID_MAX) == b"\xff\xff\xff\xff"


@given(data=st.binary(max_size=64), payload_frames=st.integers(min_value=0, max_value=20))
def test_any_bytes_decode_or_raise_envelope_error(data: bytes, payload_frames: int) -> None:
    try:
        header = decode_header(data, payload_frames=payload_frames, messages_max=16)
    except EnvelopeError:
        return
    assert sum(header.frame_counts) == payload_frames
    assert 1 <= len(header.frame_counts) <= 16


@given(src=node_ids, counts=frame_counts)
def test_every_truncation_and_extension_is_refused(src: int, counts: list[int]) -> None:
    data = encode_header(src=src, frame_counts=counts)
    for cut in range(len(data)):
        with pytest.raises(EnvelopeError):
            decode_header(data[:cut], payload_frames=sum(counts), messages_max=100)
    with pytest.raises(EnvelopeError):
        decode_header(data + b"\x00", payload_frames=sum(counts), messages_max=100)


def test_frame_counts_must_match_the_frames_that_followed() -> None:
    data = encode_header(src=7, frame_counts=[2, 1])
    for frames in (0, 2, 4):
        with pytest.raises(EnvelopeError, match="add up"):
            decode_header(data, payload_frames=frames, messages_max=10)


def test_unknown_version_has_its_own_error() -> None:
    data = bytearray(encode_header(src=7, frame_counts=[1]))
    data[0] = 2
    with pytest.raises(UnknownVersionError):
        decode_header(bytes(data), payload_frames=1, messages_max=10)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (struct.pack(">BBIII", 1, 1, 7, 1, 1), "flags"),
        (struct.pack(">BBII", 1, 0, 7, 0), "count"),
        (struct.pack(">BBIII", 1, 0, 7, 1, 0), "zero frames"),
        (struct.pack(">BBII", 1, 0, 7, 0xFFFFFFFF), "count"),
    ],
    ids=["empty", "flags", "no-messages", "empty-message", "huge-count"],
)
def test_malformed_headers(data: bytes, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match):
        decode_header(data, payload_frames=1, messages_max=1000)


def test_message_count_is_bounded_before_anything_is_unpacked() -> None:
    data = encode_header(src=1, frame_counts=[1] * 11)
    with pytest.raises(EnvelopeError, match="count"):
        decode_header(data, payload_frames=11, messages_max=10)


def test_memoryview_headers_decode() -> None:
    data = encode_header(src=9, frame_counts=[1, 1])
    header = decode_header(memoryview(data), payload_frames=2, messages_max=2)
    assert header.src == 9


# ---- outbox ---------------------------------------------------------------------------------
def test_outbox_refuses_the_message_that_would_pass_a_bound() -> None:
    box = Outbox(messages_max=3, frames_max=5, bytes_max=100)
    assert box.offer((b"a",), 1, False)
    assert box.offer((b"b", b"c"), 2, False)
    assert not box.offer((b"d", b"e", b"f"), 3, False)  # 6 frames > 5
    assert not box.offer((b"x" * 98,), 98, False)  # 101 bytes > 100
    assert box.offer((b"g",), 1, True)
    assert not box.offer((b"h",), 1, False)  # 4 messages > 3
    messages, size, large = box.take()
    assert messages == [(b"a",), (b"b", b"c"), (b"g",)] and size == 4 and large
    assert len(box) == 0 and box.frames == 0 and box.bytes == 0 and not box.has_large
    assert box.offer((b"x" * 100,), 100, False)


# ---- configuration --------------------------------------------------------------------------
def test_defaults_are_valid_and_send_fits_receive() -> None:
    cfg = TransportConfig(node_id=1, listen="127.0.0.1:0")
    assert cfg.envelope_bytes_max >= cfg.outbox_bytes_max + header_bytes(cfg.outbox_messages_max)


@pytest.mark.parametrize(
    "changes",
    [
        {"node_id": -1},
        {"node_id": NODE_ID_MAX + 1},
        {"node_id": True},
        {"listen": "nohost"},
        {"listen": "127.0.0.1:70000"},
        {"listen": "bad host:1"},
        {"send_hwm_envelopes": 0},
        {"recv_hwm_envelopes": -5},
        {"outbox_bytes_max": 1.5},
        {"outbox_messages_max": 10_000},  # more than envelope_messages_max accepts
        {"envelope_bytes_max": 1 << 20},  # less than outbox_bytes_max sends
        {"envelope_frames_max": 1 << 16},  # outbox frames + the header frame do not fit
        {"reconnect_ivl_ms": 5000, "reconnect_ivl_max_ms": 100},
    ],
)
def test_invalid_config_raises_a_typed_error(changes: dict[str, object]) -> None:
    fields = {"node_id": 1, "listen": "127.0.0.1:0", **changes}
    with pytest.raises(TransportConfigError):
        TransportConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["tcp_keepalive_idle_s", "tcp_keepalive_interval_s", "tcp_keepalive_probes",
             "tcp_user_timeout_ms"],
)
def test_dead_peer_detection_cannot_be_disabled(name: str) -> None:
    # 0 would leave a dead peer's connection open for the kernel default (minutes to hours).
    with pytest.raises(TransportConfigError):
        TransportConfig(node_id=1, listen="127.0.0.1:0", **{name: 0})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "listen", "expected"),
    [
        ("127.0.0.1:9093", False, ("127.0.0.1", 9093)),
        ("broker-1.example:9093", False, ("broker-1.example", 9093)),
        ("[::1]:9093", False, ("[::1]", 9093)),
        ("*:0", True, ("*", 0)),
    ],
)
def test_parse_address(value: str, listen: bool, expected: tuple[str, int]) -> None:
    assert parse_address(value, "x", listen=listen) == expected


@pytest.mark.parametrize("value", ["127.0.0.1:0", "*:9093", "h:", ":9", "h:-1", "h:9x", "[::1:9"])
def test_parse_address_refuses_what_a_peer_address_cannot_be(value: str) -> None:
    with pytest.raises(TransportConfigError):
        parse_address(value, "peer 2")


def test_zmq_endpoint() -> None:
    assert zmq_endpoint("127.0.0.1", 0) == "tcp://127.0.0.1:*"
    assert zmq_endpoint("[::1]", 5) == "tcp://[::1]:5"
