"""ClusterClient against a scripted three-broker cluster over real sockets: bootstrap, the
metadata cache and its one refresher, routing to leaders and the controller, reconnection
and closing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker.client import (
    ClientClosedError,
    ClusterClient,
    KafkaConnectionError,
    KafkaError,
    NoBrokersAvailableError,
    UnknownNodeError,
)
from broker.wire.errors import ErrorCode
from broker.wire.kafka import SUPPORTED_VERSIONS, ApiKey
from broker.wire.kafka.messages import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
    MetadataRequest,
    RaftlogDescribeClusterRequest,
)
from tests.unit.test_client_peer import FakeCluster, run


@pytest.fixture
def closed_port() -> Iterator[Callable[[], int]]:
    """Ports that refuse connections: bound, never listening, closed after the test."""
    parked: list[socket.socket] = []

    def make() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        parked.append(s)
        return int(s.getsockname()[1])

    yield make
    for s in parked:
        s.close()


def _metadata_requests(cluster: FakeCluster) -> int:
    return sum(b.count(ApiKey.METADATA) for b in cluster.brokers.values())


async def _deadline_poll(predicate: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def _high_watermark_request(topic: str, partition: int) -> ListOffsetsRequest:
    return ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsTopic(name=topic, partitions=[
        ListOffsetsPartition(partition_index=partition, timestamp=-1)])])


def test_bootstrap_skips_unreachable_servers_and_fills_the_cache(
        closed_port: Callable[[], int]) -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 3, 3)
        client = ClusterClient(f"127.0.0.1:{closed_port()},{cluster.brokers[2].address}")
        await client.start()
        assert set(client.metadata.brokers) == {1, 2, 3}
        assert client.metadata.controller_id == 1
        assert client.partitions_for("orders") == frozenset({0, 1, 2})
        assert [client.leader_for("orders", p) for p in range(3)] == [1, 2, 3]
        assert cluster.brokers[2].count(ApiKey.METADATA) == 1
        await client.close()
        await cluster.stop()

    run(scenario())


def test_no_reachable_bootstrap_server_is_one_clear_error(closed_port: Callable[[], int]) -> None:
    async def scenario() -> None:
        servers = f"127.0.0.1:{closed_port()},127.0.0.1:{closed_port()}"
        client = ClusterClient(servers)
        with pytest.raises(NoBrokersAvailableError) as info:
            await client.start()
        assert str(info.value).startswith(f"cannot reach any broker at {servers} (")
        assert "connection refused" in str(info.value)
        await client.close()

    run(scenario())


def test_requests_go_to_the_node_asked_for() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 3, 3)
        cluster.topics["orders"][1].high_watermark = 42
        async with ClusterClient(cluster.bootstrap) as client:
            leader = client.leader_for("orders", 1)
            assert leader == 2
            response = await client.send(leader, _high_watermark_request("orders", 1))
            assert response.topics[0].partitions[0].offset == 42
            assert cluster.brokers[2].count(ApiKey.LIST_OFFSETS) == 1
            with pytest.raises(UnknownNodeError):
                await client.send(99, MetadataRequest())
            assert await client.api_version(3, ApiKey.METADATA) == \
                SUPPORTED_VERSIONS[ApiKey.METADATA][1]
        await cluster.stop()

    run(scenario())


def test_send_any_prefers_the_broker_already_connected() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        async with ClusterClient(cluster.brokers[3].address) as client:
            for _ in range(3):
                await client.send_any(RaftlogDescribeClusterRequest())
            assert cluster.brokers[3].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 3
        await cluster.stop()

    run(scenario())


def test_send_to_controller_follows_the_metadata() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.controller = 3
        async with ClusterClient(cluster.bootstrap, retry_backoff_ms=0) as client:
            await client.send_to_controller(RaftlogDescribeClusterRequest())
            assert cluster.brokers[3].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 1
            cluster.controller = None
            await client.refresh_metadata()
            with pytest.raises(KafkaError) as info:
                await client.send_to_controller(RaftlogDescribeClusterRequest())
            assert info.value.code is ErrorCode.NOT_CONTROLLER and info.value.retriable
        await cluster.stop()

    run(scenario())


def test_concurrent_refreshes_share_one_request() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        async with ClusterClient(cluster.bootstrap, retry_backoff_ms=0) as client:
            before = _metadata_requests(cluster)
            await asyncio.gather(*(client.refresh_metadata() for _ in range(10)))
            assert _metadata_requests(cluster) == before + 1
        await cluster.stop()

    run(scenario())


def test_refreshing_named_topics_asks_for_those_only() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        async with ClusterClient(cluster.bootstrap, retry_backoff_ms=0) as client:
            cluster.add_topic("late", 2, 2)
            assert client.partitions_for("late") is None
            await asyncio.gather(client.refresh_metadata(["late"]),
                                 client.refresh_metadata(["other"]))
            asked = [body for b in cluster.brokers.values() for h, body in b.received
                     if h.api_key == ApiKey.METADATA and body.topics]
            assert sorted(t.name for t in asked[-1].topics) == ["late", "other"]
            assert client.partitions_for("late") == frozenset({0, 1})
            other = client.metadata.topic("other")
            assert other is not None and other.error_code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            del cluster.topics["late"]
            await client.refresh_metadata()  # all topics: forgets what is gone
            assert client.metadata.topic("late") is None and client.metadata.topic("other") is None
        await cluster.stop()

    run(scenario())


def test_metadata_is_refreshed_when_it_gets_old() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        async with ClusterClient(cluster.bootstrap, metadata_max_age_ms=10, retry_backoff_ms=0):
            await _deadline_poll(lambda: _metadata_requests(cluster) >= 4)
        await cluster.stop()

    run(scenario())


def test_a_dropped_connection_is_reopened_and_asks_for_fresh_metadata() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        async with ClusterClient(cluster.bootstrap, retry_backoff_ms=0) as client:
            b = cluster.brokers[1]
            b.drop_connections()
            await _deadline_poll(lambda: not any(c.is_open for c in client._connections.values()))
            before = b.count(ApiKey.METADATA)
            await client.send(1, MetadataRequest(topics=[]))
            assert b.connections == 2
            await _deadline_poll(lambda: b.count(ApiKey.METADATA) >= before + 1)
        await cluster.stop()

    run(scenario())


def test_a_failed_connect_is_not_retried_within_the_backoff() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(2)
        client = ClusterClient(cluster.brokers[1].address, reconnect_backoff_ms=60_000)
        await client.start()
        await cluster.brokers[2].stop()
        with pytest.raises(KafkaConnectionError, match="cannot connect"):
            await client.send(2, MetadataRequest())
        with pytest.raises(KafkaConnectionError, match="not retried for 60000 ms"):
            await client.send(2, MetadataRequest())
        await client.close()
        await cluster.stop()

    run(scenario())


def test_a_refresh_moves_on_when_the_connected_broker_dies() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        async with ClusterClient(cluster.brokers[1].address, retry_backoff_ms=0,
                                 reconnect_backoff_ms=0) as client:
            await cluster.brokers[1].stop()
            cluster.dead.add(1)
            cluster.add_topic("after", 1, 1)
            await client.refresh_metadata()
            assert client.partitions_for("after") == frozenset({0})
            assert set(client.metadata.brokers) == {2, 3}
        await cluster.stop()

    run(scenario())


def test_metadata_v0_asks_for_all_topics_with_an_empty_list() -> None:
    async def scenario() -> None:
        versions = dict(SUPPORTED_VERSIONS)
        versions[ApiKey.METADATA] = (0, 0)
        cluster = await FakeCluster().start(1, versions=versions)
        cluster.add_topic("orders", 1, 1)
        async with ClusterClient(cluster.bootstrap) as client:
            (header, body), = [(h, b) for h, b in cluster.brokers[1].received
                               if h.api_key == ApiKey.METADATA]
            assert header.api_version == 0 and list(body.topics) == []
            assert client.partitions_for("orders") == frozenset({0})
            assert client.metadata.controller_id is None  # v0 has no controller
        await cluster.stop()

    run(scenario())


def test_wait_for_topic() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(2)
        async with ClusterClient(cluster.bootstrap, retry_backoff_ms=1) as client:
            async def create_later() -> None:
                await asyncio.sleep(0.05)
                cluster.add_topic("soon", 2, 1)
            maker = asyncio.create_task(create_later())
            t = await client.wait_for_topic("soon", timeout_ms=10_000)
            await maker
            assert set(t.partitions) == {0, 1} and t.all_led

            cluster.add_topic("headless", 1, 1)
            cluster.topics["headless"][0].leader = None
            with pytest.raises(KafkaError) as info:
                await client.wait_for_topic("headless", timeout_ms=50)
            assert info.value.code is ErrorCode.LEADER_NOT_AVAILABLE
            t = await client.wait_for_topic("headless", timeout_ms=50, leaders=False)
            assert t.partitions[0].leader is None

            with pytest.raises(KafkaError) as info:
                await client.wait_for_topic("never", timeout_ms=50)
            assert info.value.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        await cluster.stop()

    run(scenario())


def test_close_ends_every_task_and_fails_waiters() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        b = cluster.brokers[1]
        client = ClusterClient(cluster.bootstrap, retry_backoff_ms=0)
        await client.start()
        from tests.unit.test_client_peer import NO_ANSWER
        b.script[ApiKey.METADATA] = lambda *_: NO_ANSWER
        waiter = asyncio.create_task(client.refresh_metadata())
        await _deadline_poll(lambda: b.count(ApiKey.METADATA) >= 2)
        mine = asyncio.current_task()
        await client.close()
        with pytest.raises(ClientClosedError):
            await waiter
        others = [t for t in asyncio.all_tasks() if t is not mine and not t.done()
                  and "_serve" not in repr(t.get_coro())]
        assert others == []
        with pytest.raises(ClientClosedError):
            await client.send(1, MetadataRequest())
        with pytest.raises(ClientClosedError):
            await client.start()
        await client.close()  # idempotent
        await cluster.stop()

    run(scenario())


def test_using_a_client_before_start_is_a_typed_error() -> None:
    async def scenario() -> None:
        client = ClusterClient("127.0.0.1:9")
        with pytest.raises(ClientClosedError, match="start"):
            await client.refresh_metadata()

    run(scenario())
