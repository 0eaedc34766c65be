"""The admin client and the cluster client facing a broker whose metadata log is offline: it
refuses RaftlogDescribeCluster with KAFKA_STORAGE_ERROR and closes the connection on Metadata
(broker.api.handlers.NEEDS_METADATA). The clients must find a broker that can answer, and say
clearly when none can. The peers are the scripted brokers of test_client_peer."""

from __future__ import annotations

from typing import Any

import pytest

from broker.client import AsyncAdminClient, KafkaError, NoBrokersAvailableError
from broker.wire.errors import ErrorCode
from broker.wire.kafka import ApiKey
from tests.unit.test_client_peer import CLOSE, FakeCluster, ScriptedBroker, run


def _storage_error(b: ScriptedBroker, h: Any, body: Any) -> dict[str, Any]:
    return {"error_code": ErrorCode.KAFKA_STORAGE_ERROR, "controller_id": -1, "brokers": [],
            "partitions": []}


def _offline(b: ScriptedBroker) -> None:
    b.script[ApiKey.METADATA] = lambda *_: CLOSE
    b.script[ApiKey.RAFTLOG_DESCRIBE_CLUSTER] = _storage_error


def test_describe_cluster_asks_another_broker_after_a_storage_error() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.controller = 2
        # Broker 1 answers Metadata (the client bootstraps from it and keeps using that
        # connection) but refuses to describe the cluster.
        cluster.brokers[1].script[ApiKey.RAFTLOG_DESCRIBE_CLUSTER] = _storage_error
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            c = await admin.describe_cluster()
        assert c.controller == 2 and c.complete
        assert [(b.node_id, b.alive) for b in c.brokers] == [(1, True), (2, True), (3, True)]
        # Broker 1 refused, then was asked again with the others (send_any hides who answered).
        assert cluster.brokers[1].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 2
        assert cluster.brokers[2].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 1
        assert cluster.brokers[3].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 0
        await cluster.stop()

    run(scenario())


def test_describe_cluster_raises_the_storage_error_when_no_broker_can_answer() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(2)
        for b in cluster.brokers.values():
            b.script[ApiKey.RAFTLOG_DESCRIBE_CLUSTER] = _storage_error
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            with pytest.raises(KafkaError, match="metadata log is offline") as caught:
                await admin.describe_cluster()
        assert caught.value.code == ErrorCode.KAFKA_STORAGE_ERROR and caught.value.retriable
        await cluster.stop()

    run(scenario())


def test_a_closed_metadata_request_sends_the_client_to_the_next_broker() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 3, 3)
        _offline(cluster.brokers[1])  # first in the bootstrap list
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            assert [t.name for t in await admin.list_topics()] == ["orders"]
            c = await admin.describe_cluster()
        assert c.complete and cluster.brokers[1].count(ApiKey.RAFTLOG_DESCRIBE_CLUSTER) == 0
        assert cluster.brokers[1].count(ApiKey.METADATA) >= 1
        await cluster.stop()

    run(scenario())


def test_a_client_bootstrapped_only_from_the_refusing_broker_fails_clearly() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        _offline(cluster.brokers[1])
        admin = AsyncAdminClient(cluster.bootstrap, request_timeout_ms=2000)
        with pytest.raises(NoBrokersAvailableError, match="cannot reach any broker"):
            await admin.start()
        await admin.close()
        await cluster.stop()

    run(scenario())
