"""Hostile and broken input on a broker's ports, each followed by proof that the broker still
works: its process is alive, it answers ApiVersions, and a kafka-python producer/consumer round
trip through it succeeds.

Client port (Kafka's rules): a size prefix beyond the limit or below a header closes the
connection; garbage, truncated requests and unknown API keys get an error response or a closed
connection, never a crash; a normal API at a version we do not serve closes the connection (as
Kafka does); ApiVersions at an unsupported version gets the v0-shaped error 35 answer; a batch
with a bad CRC gets CORRUPT_MESSAGE and one above the batch limit MESSAGE_TOO_LARGE, for that
partition. Raft port: raw bytes and ZeroMQ peers that send nonsense are dropped.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest
import zmq

from broker.wire.records import Record, encode_batch
from tests.integration import kafka_wire as wire
from tests.integration.clients import Outgoing, make_producer, read_all, send_all
from tests.integration.cluster import LocalCluster, NotYet

pytestmark = pytest.mark.timeout(180)

TOPIC = "bad-input"
PARTITIONS = 3
TARGET = 1  # the broker whose client port is attacked
REQUEST_BYTES_MAX = 100 << 20  # the broker's default request_bytes_max
BATCH_BYTES_MAX = 1 << 20  # the broker's default batch_bytes_max
CORRUPT_MESSAGE = 2
NOT_LEADER_OR_FOLLOWER = 6
MESSAGE_TOO_LARGE = 10

# What API.md and KAFKA_PROTOCOL.md promise ApiVersions advertises: every version below each
# API's first flexible one, from v0, and ApiVersions v0-v3.
ADVERTISED = {0: 8, 1: 11, 2: 5, 3: 8, 8: 7, 9: 5, 10: 2, 11: 5, 12: 3, 13: 3, 14: 3, 15: 4,
              16: 2, 18: 3, 19: 4, 20: 3, 22: 1, 32: 3}


@pytest.fixture(scope="module")
def topic(cluster: LocalCluster) -> str:
    cluster.create_topic(TOPIC, PARTITIONS, 3)
    return TOPIC


def _assert_healthy(cluster: LocalCluster, node_id: int) -> None:
    """Alive, answering, and a kafka-python write + read through this broker works (the write
    goes to a partition it leads, if it leads one)."""
    b = cluster.brokers[node_id]
    assert b.is_running(), f"broker {node_id} died\n{cluster.diagnostics()}"
    wire.check_api_versions(b.client_address, timeout_s=10)
    leaders = cluster.wait_topic_leaders(TOPIC, PARTITIONS)["partitions"]
    partition = next((p["partition"] for p in leaders if p["leader"] == node_id), 0)
    value = b"health-" + os.urandom(8).hex().encode()
    producer = make_producer(b.client_address)
    try:
        (acked,) = send_all(producer, TOPIC, [Outgoing(partition=partition, key=b"h",
                                                       value=value)], timeout_s=30)
    finally:
        producer.close(timeout=10)
    stored = read_all(b.client_address, TOPIC, [partition], timeout_s=30)
    assert stored[(partition, acked.offset)].value == value
    assert b.is_running(), f"broker {node_id} died\n{cluster.diagnostics()}"


def _connect(cluster: LocalCluster) -> wire.KafkaSocket:
    return wire.KafkaSocket(cluster.address(TARGET), timeout_s=15)


def _closed_or_answered(conn: wire.KafkaSocket, correlation_id: int) -> None:
    """Either the broker closes the connection, or it answers this request (matching
    correlation id) and then closes once we stop sending."""
    answer = conn.read_response()
    if isinstance(answer, wire.Closed):
        return
    (got,) = struct.unpack_from(">i", answer)
    assert got == correlation_id, f"a response to correlation id {got}, expected {correlation_id}"


@pytest.mark.parametrize("size", [REQUEST_BYTES_MAX + 1, 0x7FFFFFFF, -1, 0, 3])
def test_impossible_size_prefix_closes_the_connection(cluster: LocalCluster, topic: str,
                                                      size: int) -> None:
    with _connect(cluster) as conn:
        conn.send(struct.pack(">i", size) + b"\x00" * 16)
        conn.expect_closed()
    _assert_healthy(cluster, TARGET)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage(cluster: LocalCluster, topic: str, seed: int) -> None:
    rng = random.Random(seed)
    with _connect(cluster) as conn:
        conn.send(rng.randbytes(512))
        conn.shutdown_write()
        for _ in range(64):  # garbage may parse as a few frames; then EOF must close it
            if isinstance(conn.read_response(), wire.Closed):
                break
        else:
            pytest.fail("the broker kept answering garbage")
    _assert_healthy(cluster, TARGET)


def test_framed_garbage_body(cluster: LocalCluster, topic: str) -> None:
    rng = random.Random(4)
    header = wire.request_header(wire.METADATA, 1, 4242)
    with _connect(cluster) as conn:
        conn.send(wire.frame(header + b"\xff\xff\x00\x10" + rng.randbytes(200)))
        _closed_or_answered(conn, 4242)
    _assert_healthy(cluster, TARGET)


def test_truncated_frame_then_eof(cluster: LocalCluster, topic: str) -> None:
    request = wire.metadata_request(11, [TOPIC])
    with _connect(cluster) as conn:
        conn.send(request[: len(request) // 2])
        conn.shutdown_write()
        conn.expect_closed()
    _assert_healthy(cluster, TARGET)


def test_truncated_body_in_a_whole_frame(cluster: LocalCluster, topic: str) -> None:
    # Metadata v1 saying 5 topics follow, carrying one.
    body = struct.pack(">i", 5) + struct.pack(">h", len(TOPIC)) + TOPIC.encode()
    with _connect(cluster) as conn:
        conn.send(wire.frame(wire.request_header(wire.METADATA, 1, 12) + body))
        _closed_or_answered(conn, 12)
    _assert_healthy(cluster, TARGET)


def test_unknown_api_key(cluster: LocalCluster, topic: str) -> None:
    with _connect(cluster) as conn:
        conn.send(wire.frame(wire.request_header(999, 0, 13) + b"\x00" * 8))
        _closed_or_answered(conn, 13)
    _assert_healthy(cluster, TARGET)


@pytest.mark.parametrize(("api_key", "version", "flexible"), [
    (wire.METADATA, 13, True),  # a real Kafka version we do not serve (flexible)
    (wire.METADATA, 300, False),
    (wire.PRODUCE, 9, True),
])
def test_unsupported_version_closes_the_connection(cluster: LocalCluster, topic: str,
                                                   api_key: int, version: int,
                                                   flexible: bool) -> None:
    with _connect(cluster) as conn:
        conn.send(wire.frame(wire.request_header(api_key, version, 14, flexible=flexible)
                             + b"\x00" * 8))
        conn.expect_closed()
    _assert_healthy(cluster, TARGET)


def test_api_versions_v4_gets_v0_error_35_then_v3_works(cluster: LocalCluster,
                                                        topic: str) -> None:
    with _connect(cluster) as conn:
        conn.send(wire.api_versions_request(21, version=4))
        answer = wire.parse_api_versions_v0(conn.expect_response())
        assert answer.correlation_id == 21
        assert answer.error_code == wire.UNSUPPORTED_VERSION
        assert answer.ranges.get(wire.API_VERSIONS) == (0, 3), answer
        # the client steps down on the same connection, as librdkafka and kafka-python do
        conn.send(wire.api_versions_request(22, version=3))
        flexible = wire.parse_api_versions_flexible(conn.expect_response())
        assert (flexible.correlation_id, flexible.error_code) == (22, 0)
        conn.send(wire.api_versions_request(23, version=0))
        v0 = wire.parse_api_versions_v0(conn.expect_response())
        assert (v0.correlation_id, v0.error_code) == (23, 0)
    assert flexible.ranges == v0.ranges
    for key, high in ADVERTISED.items():
        assert v0.ranges.get(key) == (0, high), f"API {key}: advertised {v0.ranges.get(key)}"
    _assert_healthy(cluster, TARGET)


def _produce_raw(cluster: LocalCluster, partition: int, records: bytes) -> tuple[int, int]:
    """Produce v3 to the partition's leader; (error code, base offset). Retries while the
    leadership it looked up moves."""
    def attempt() -> tuple[int, int]:
        leader = cluster.leader_of(TOPIC, partition)
        if leader is None:
            raise NotYet(f"partition {partition} has no leader")
        with wire.KafkaSocket(cluster.address(leader), timeout_s=30) as conn:
            conn.send(wire.produce_v3_request(31, TOPIC, partition, records))
            answer = wire.parse_produce_v3(conn.expect_response())
        assert answer.correlation_id == 31
        error, base = answer.partitions[(TOPIC, partition)]
        if error == NOT_LEADER_OR_FOLLOWER:
            raise NotYet(f"broker {leader} is no longer the leader")
        return error, base

    return cluster.wait_until(attempt, timeout_s=60, what=f"a Produce answer for p{partition}")


def _high_watermark(cluster: LocalCluster, partition: int) -> int:
    d = cluster.describe(TOPIC)
    return next(p["high_watermark"] for p in d["partitions"] if p["partition"] == partition)


def test_valid_raw_produce_is_accepted(cluster: LocalCluster, topic: str) -> None:
    # The control for the two tests below: the same hand-built request, intact.
    batch = encode_batch([Record(b"raw", b"intact", [], int(time.time() * 1000))])
    error, base = _produce_raw(cluster, 0, batch)
    assert error == 0 and base >= 0
    stored = read_all(cluster.bootstrap, TOPIC, [0])
    assert stored[(0, base)].value == b"intact"


def test_corrupt_batch_crc_gets_corrupt_message(cluster: LocalCluster, topic: str) -> None:
    batch = bytearray(encode_batch([Record(b"bad", b"x" * 100, [], int(time.time() * 1000))]))
    batch[-5] ^= 0xFF  # inside the last record: covered by the CRC, lengths untouched
    before = _high_watermark(cluster, 1)
    error, _ = _produce_raw(cluster, 1, bytes(batch))
    assert error == CORRUPT_MESSAGE
    assert _high_watermark(cluster, 1) == before, "a corrupt batch was appended"
    _assert_healthy(cluster, TARGET)


def test_oversized_batch_gets_message_too_large(cluster: LocalCluster, topic: str) -> None:
    value = random.Random(5).randbytes(BATCH_BYTES_MAX + 1024)  # incompressible
    batch = encode_batch([Record(b"big", value, [], int(time.time() * 1000))])
    before = _high_watermark(cluster, 2)
    error, _ = _produce_raw(cluster, 2, batch)
    assert error == MESSAGE_TOO_LARGE
    assert _high_watermark(cluster, 2) == before, "an oversized batch was appended"
    _assert_healthy(cluster, TARGET)


def _raw_to_raft_port(address: str, payload: bytes) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):  # until libzmq drops us (or our timeout does)
                pass
        except OSError:
            pass  # reset or timeout: either way the connection is over


def _zmtp_greeting(mechanism: bytes = b"NULL") -> bytes:
    """ZMTP 3.0 greeting: signature, version 3.0, mechanism, as-server 0, filler."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") \
        + b"\x00" + b"\x00" * 31


def test_garbage_to_the_raft_port(cluster: LocalCluster, topic: str) -> None:
    rng = random.Random(6)
    raft = cluster.brokers[TARGET].raft_address
    payloads = [
        rng.randbytes(4096),
        b"\x00" * 64,
        b"\x01\x00" + rng.randbytes(300),  # looks like a ZMTP 1.0 frame
        _zmtp_greeting() + rng.randbytes(512),  # a valid greeting, then nonsense
        _zmtp_greeting(b"CURVE") + rng.randbytes(64),
    ]
    for payload in payloads:
        _raw_to_raft_port(raft, payload)
    _assert_healthy(cluster, TARGET)
    cluster.wait_ready(timeout_s=60)


def test_zeromq_peer_sending_nonsense(cluster: LocalCluster, topic: str) -> None:
    """A real ZeroMQ DEALER speaks the handshake correctly, then sends envelopes that are
    garbage, claim another node's id, or come from a node that is not a peer."""
    rng = random.Random(7)
    header = struct.Struct(">BBIII")  # version, flags, src, count, frames of message 0
    envelopes = [
        [rng.randbytes(100)],
        [b""],
        [header.pack(1, 0, 2, 1, 1), rng.randbytes(200)],  # claims to be node 2
        [header.pack(1, 0, 77, 1, 1), rng.randbytes(200)],  # node 77 is nobody's peer
        [header.pack(9, 0, 77, 1, 1), b"x"],  # unknown format version
        [header.pack(1, 0, 77, 5, 1), b"x"],  # counts that do not match the frames
        [rng.randbytes(10) for _ in range(50)],
    ]
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 1000)
        dealer.setsockopt(zmq.SNDHWM, 100)
        dealer.setsockopt(zmq.ROUTING_ID, struct.pack(">I", 77))
        dealer.connect(f"tcp://{cluster.brokers[TARGET].raft_address}")
        for frames in envelopes:
            try:
                dealer.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:  # queue full before the handshake finished: send what fits
                break
        dealer.close()  # LINGER lets the queued envelopes leave first
    finally:
        ctx.term()
    _assert_healthy(cluster, TARGET)
    cluster.wait_ready(timeout_s=60)
