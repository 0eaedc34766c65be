"""BrokerConnection against a scripted broker over real sockets: ApiVersions negotiation,
framing and correlation with many requests in flight, timeouts, the in-flight bound, requests
without answers, and every way a connection ends."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from broker.client import (
    BrokerConnection,
    BrokerProtocolError,
    IncompatibleBrokerError,
    KafkaConnectionError,
    RequestTimedOutError,
    parse_address,
)
from broker.wire.kafka import SUPPORTED_VERSIONS, ApiKey, RequestHeader, encode_response
from broker.wire.kafka.messages import (
    ListOffsetsRequest,
    MetadataRequest,
    MetadataRequestTopic,
    MetadataResponse,
    ProduceRequest,
    RaftlogDescribeClusterRequest,
)
from tests.unit.test_client_peer import CLOSE, NO_ANSWER, FakeCluster, Raw, ScriptedBroker, run


async def _broker(**options: Any) -> ScriptedBroker:
    cluster = await FakeCluster().start(1, **options)
    return cluster.brokers[1]


async def _open(b: ScriptedBroker, **options: Any) -> BrokerConnection:
    return await BrokerConnection.open(parse_address(b.address), client_id="t", **options)


# ---- negotiation --------------------------------------------------------------------------

def test_negotiates_v3_and_the_highest_common_version_per_api() -> None:
    async def scenario() -> None:
        versions = dict(SUPPORTED_VERSIONS)
        versions[ApiKey.METADATA] = (0, 5)
        b = await _broker(versions=versions)
        conn = await _open(b)
        assert b.attempts[0] == (ApiKey.API_VERSIONS, 3)
        assert conn.api_version(ApiKey.METADATA) == 5
        assert conn.api_version(ApiKey.PRODUCE) == SUPPORTED_VERSIONS[ApiKey.PRODUCE][1]
        response = await conn.send(MetadataRequest(topics=None))
        assert isinstance(response, MetadataResponse) and response.cluster_id == "fake"
        assert b.headers(ApiKey.METADATA)[0].api_version == 5
        assert b.headers(ApiKey.METADATA)[0].client_id == "t"
        await conn.close()
        await b.stop()

    run(scenario())


@pytest.mark.parametrize("api_versions_max, lists_range, expected", [
    (2, True, [3, 2]), (0, True, [3, 0]), (1, False, [3, 0])])
def test_api_versions_steps_down_on_error_35(api_versions_max: int, lists_range: bool,
                                             expected: list[int]) -> None:
    async def scenario() -> None:
        b = await _broker(api_versions_max=api_versions_max, refusal_lists_range=lists_range)
        conn = await _open(b)
        assert [v for k, v in b.attempts if k == ApiKey.API_VERSIONS] == expected
        assert conn.api_version(ApiKey.METADATA) == SUPPORTED_VERSIONS[ApiKey.METADATA][1]
        await conn.close()
        await b.stop()

    run(scenario())


def test_an_api_the_broker_does_not_serve_is_refused_before_sending() -> None:
    async def scenario() -> None:
        versions = {k: v for k, v in SUPPORTED_VERSIONS.items()
                    if k != ApiKey.RAFTLOG_DESCRIBE_CLUSTER}
        b = await _broker(versions=versions)
        conn = await _open(b)
        assert not conn.supports(ApiKey.RAFTLOG_DESCRIBE_CLUSTER)
        with pytest.raises(IncompatibleBrokerError):
            await conn.send(RaftlogDescribeClusterRequest())
        with pytest.raises(IncompatibleBrokerError):
            await conn.send(MetadataRequest(), version=9)  # beyond what we speak
        assert b.count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 0
        assert conn.is_open  # refusing locally does not hurt the connection
        await conn.close()
        await b.stop()

    run(scenario())


# ---- many in flight -----------------------------------------------------------------------

def test_many_requests_in_flight_get_their_own_answers() -> None:
    async def scenario() -> None:
        b = await _broker()
        # Each Metadata answer names the topic asked for, so a mix-up would show.
        b.script[ApiKey.METADATA] = lambda _b, h, body: {
            "cluster_id": body.topics[0].name, "topics": []}
        conn = await _open(b, inflight_requests_max=8)
        names = [f"t{i}" for i in range(40)]
        answers = await asyncio.gather(*(
            conn.send(MetadataRequest(topics=[MetadataRequestTopic(name=n)])) for n in names))
        assert [a.cluster_id for a in answers] == names
        ids = [h.correlation_id for h in b.headers(ApiKey.METADATA)]
        assert len(set(ids)) == 40
        assert conn.in_flight == 0
        await conn.close()
        await b.stop()

    run(scenario())


def test_the_in_flight_bound_makes_senders_wait_then_time_out() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.METADATA] = lambda *_: NO_ANSWER
        conn = await _open(b, inflight_requests_max=2)
        first = [asyncio.create_task(conn.send(MetadataRequest(), timeout_ms=5000))
                 for _ in range(2)]
        while b.count(ApiKey.METADATA) < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(RequestTimedOutError, match="no free slot"):
            await conn.send(MetadataRequest(), timeout_ms=50)
        assert b.count(ApiKey.METADATA) == 2  # the third never left
        await conn.close()
        for task in first:
            with pytest.raises(KafkaConnectionError, match="closed"):
                await task
        await b.stop()

    run(scenario())


def test_a_request_without_answer_returns_none_and_keeps_order() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.PRODUCE] = lambda *_: NO_ANSWER  # acks=0
        conn = await _open(b)
        produce = ProduceRequest(acks=0, timeout_ms=1000, topic_data=[])
        assert await conn.send(produce, expect_response=False) is None
        response = await conn.send(MetadataRequest(topics=None))
        assert response.cluster_id == "fake"
        assert [k for k, _ in b.attempts][-2:] == [ApiKey.PRODUCE, ApiKey.METADATA]
        await conn.close()
        await b.stop()

    run(scenario())


# ---- timeouts and endings -----------------------------------------------------------------

def test_a_timeout_closes_the_connection_and_fails_the_others() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.METADATA] = lambda *_: NO_ANSWER
        conn = await _open(b)
        other = asyncio.create_task(conn.send(MetadataRequest(), timeout_ms=10_000))
        with pytest.raises(RequestTimedOutError, match="no answer within 50 ms"):
            await conn.send(MetadataRequest(), timeout_ms=50)
        with pytest.raises(KafkaConnectionError, match="timed out"):
            await other
        assert not conn.is_open
        with pytest.raises(KafkaConnectionError):
            await conn.send(MetadataRequest())
        await conn.close()
        await b.stop()

    run(scenario())


def test_the_broker_closing_fails_what_is_pending() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.METADATA] = lambda *_: CLOSE
        conn = await _open(b)
        with pytest.raises(KafkaConnectionError, match="lost"):
            await conn.send(MetadataRequest())
        assert not conn.is_open
        await conn.close()
        await b.stop()

    run(scenario())


def test_close_fails_pending_requests_with_a_connection_error() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.METADATA] = lambda *_: NO_ANSWER
        conn = await _open(b)
        pending = [asyncio.create_task(conn.send(MetadataRequest())) for _ in range(3)]
        while b.count(ApiKey.METADATA) < 3:
            await asyncio.sleep(0.001)
        await conn.close()
        for task in pending:
            with pytest.raises(KafkaConnectionError, match="closed"):
                await task
        await conn.close()  # idempotent
        await b.stop()

    run(scenario())


def _metadata_answer(correlation_id: int, **body: Any) -> bytes:
    header = RequestHeader(api_key=ApiKey.METADATA, api_version=8, correlation_id=correlation_id)
    return encode_response(header, MetadataResponse(**body))


@pytest.mark.parametrize("fault", ["wrong correlation id", "undecodable body", "huge frame"])
def test_protocol_violations_close_the_connection(fault: str) -> None:
    async def scenario() -> None:
        b = await _broker()

        def answer(_b: ScriptedBroker, h: RequestHeader, body: Any) -> Any:
            if fault == "wrong correlation id":
                return Raw(_metadata_answer(h.correlation_id + 1))
            if fault == "undecodable body":
                frame = _metadata_answer(h.correlation_id)[4:-3]  # the body cut short
                return Raw(struct.pack(">i", len(frame)) + frame)
            return Raw(struct.pack(">i", 1 << 30))

        b.script[ApiKey.METADATA] = answer
        conn = await _open(b, response_bytes_max=1 << 20)
        with pytest.raises(BrokerProtocolError):
            await conn.send(MetadataRequest())
        assert not conn.is_open
        await conn.close()
        await b.stop()

    run(scenario())


def test_connecting_to_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused

        async def scenario() -> None:
            with pytest.raises(KafkaConnectionError, match="cannot connect to 127.0.0.1"):
                await BrokerConnection.open(parse_address(f"127.0.0.1:{port}"))

        run(scenario())


def test_a_broker_that_never_answers_api_versions_times_out() -> None:
    async def scenario() -> None:
        b = await _broker()
        b.script[ApiKey.API_VERSIONS] = lambda *_: NO_ANSWER
        with pytest.raises(RequestTimedOutError, match="API_VERSIONS"):
            await _open(b, request_timeout_ms=50)
        await b.stop()

    run(scenario())


def test_a_body_that_is_not_a_request_is_refused_locally() -> None:
    async def scenario() -> None:
        b = await _broker()
        conn = await _open(b)
        from broker.wire.errors import LocalProtocolError
        with pytest.raises(LocalProtocolError):
            await conn.send(object())
        with pytest.raises(LocalProtocolError):  # a value the schema cannot carry
            await conn.send(ListOffsetsRequest(replica_id=1 << 40))
        response = await conn.send(MetadataRequest(topics=None))  # still usable
        assert response.cluster_id == "fake"
        await conn.close()
        await b.stop()

    run(scenario())
