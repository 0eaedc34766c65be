"""AsyncAdminClient and the sync AdminClient against a scripted three-broker cluster."""

from __future__ import annotations

import socket
import threading

import pytest

from broker.client import (
    AdminClient,
    AsyncAdminClient,
    KafkaError,
    NoBrokersAvailableError,
    RequestTimedOutError,
)
from broker.wire.errors import ErrorCode
from broker.wire.kafka import SUPPORTED_VERSIONS, ApiKey
from tests.unit.test_client_peer import (
    NO_ANSWER,
    FakeCluster,
    cluster_in_thread,
    on_loop,
    run,
)


def test_create_topic_goes_to_the_controller_and_waits_for_leaders() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.controller = 2
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            await admin.create_topic("orders", 6, 3, config={"retention.ms": "1000"})
            assert admin.cluster.partitions_for("orders") == frozenset(range(6))
            (header, body), = [(h, b) for h, b in cluster.brokers[2].received
                               if h.api_key == ApiKey.CREATE_TOPICS]
            (topic,) = body.topics
            assert (topic.name, topic.num_partitions, topic.replication_factor) == ("orders", 6, 3)
            assert [(c.name, c.value) for c in topic.configs] == [("retention.ms", "1000")]
            assert 0 < body.timeout_ms <= 30000
        await cluster.stop()

    run(scenario())


def test_not_controller_is_retried_after_a_metadata_refresh() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.acting_controller = 3  # metadata still names broker 1

        def moved(*_: object) -> dict[str, object]:
            cluster.controller = 3  # the next metadata names the real one
            return cluster.create_topics(*_)  # type: ignore[arg-type]

        cluster.brokers[1].script[ApiKey.CREATE_TOPICS] = moved
        async with AsyncAdminClient(cluster.bootstrap, retry_backoff_ms=1) as admin:
            await admin.create_topic("orders", 1, 1)
        assert cluster.brokers[1].count(ApiKey.CREATE_TOPICS) == 1
        assert cluster.brokers[3].count(ApiKey.CREATE_TOPICS) == 1
        assert "orders" in cluster.topics
        await cluster.stop()

    run(scenario())


@pytest.mark.parametrize("partitions, rf, code, words", [
    (1, 4, ErrorCode.INVALID_REPLICATION_FACTOR, "replication factor 4 exceeds the 3 live"),
    (0, 1, ErrorCode.INVALID_PARTITIONS, "at least 1"),
    (2, 1, ErrorCode.TOPIC_ALREADY_EXISTS, "topic 'taken' already exists"),
])
def test_create_topic_failures_carry_the_brokers_code_and_message(
        partitions: int, rf: int, code: ErrorCode, words: str) -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("taken", 1, 1)
        name = "taken" if code is ErrorCode.TOPIC_ALREADY_EXISTS else "new"
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            with pytest.raises(KafkaError) as info:
                await admin.create_topic(name, partitions, rf)
        assert info.value.code is code
        assert words in info.value.message
        await cluster.stop()

    run(scenario())


def test_create_topic_without_a_broker_message_gets_ours() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.brokers[1].script[ApiKey.CREATE_TOPICS] = lambda _b, h, body: {"topics": [
            {"name": "x", "error_code": ErrorCode.INVALID_REPLICATION_FACTOR,
             "error_message": None}]}
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            with pytest.raises(KafkaError, match="replication factor 5 is not possible with 3 "
                                                 "live brokers"):
                await admin.create_topic("x", 1, 5)
        await cluster.stop()

    run(scenario())


def test_create_topic_is_bounded_by_its_timeout() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        cluster.brokers[1].script[ApiKey.CREATE_TOPICS] = lambda *_: NO_ANSWER
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            with pytest.raises(RequestTimedOutError):
                await admin.create_topic("slow", 1, 1, timeout_ms=100)
        await cluster.stop()

    run(scenario())


def test_describe_topic_asks_each_leader_for_its_high_watermark() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 4, 2)
        for p, hw in enumerate((10, 20, 30, 40)):
            cluster.topics["orders"][p].high_watermark = hw
        cluster.topics["orders"][3].leader = None
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            d = await admin.describe_topic("orders")
        assert d.name == "orders"
        assert [(p.partition, p.leader, p.replicas, p.high_watermark) for p in d.partitions] == [
            (0, 1, (1, 2), 10), (1, 2, (2, 3), 20), (2, 3, (3, 1), 30), (3, None, (1, 2), -1)]
        assert [b.count(ApiKey.LIST_OFFSETS) for b in cluster.brokers.values()][:3] >= [1, 1, 1]
        await cluster.stop()

    run(scenario())


def test_describe_topic_follows_a_moved_leader() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 1, 3)
        cluster.topics["orders"][0].high_watermark = 7
        async with AsyncAdminClient(cluster.bootstrap, retry_backoff_ms=1) as admin:
            await admin.cluster.refresh_metadata()
            cluster.topics["orders"][0].leader = 3  # the cache still says 1
            d = await admin.describe_topic("orders")
        assert d.partitions[0].leader == 3 and d.partitions[0].high_watermark == 7
        await cluster.stop()

    run(scenario())


def test_describe_an_unknown_topic() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            with pytest.raises(KafkaError) as info:
                await admin.describe_topic("nope")
        assert info.value.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert info.value.message == "topic 'nope' does not exist"
        await cluster.stop()

    run(scenario())


def test_list_topics_hides_internal_ones_unless_asked() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("b", 2, 3)
        cluster.add_topic("a", 1, 2)
        cluster.add_topic("__consumer_offsets", 3, 3, internal=True)
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            listed = await admin.list_topics()
            everything = await admin.list_topics(include_internal=True)
        assert [(t.name, t.partitions, t.replication_factor) for t in listed] == [
            ("a", 1, 2), ("b", 2, 3)]
        assert [t.name for t in everything] == ["__consumer_offsets", "a", "b"]
        await cluster.stop()

    run(scenario())


def test_delete_topic() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("doomed", 1, 1)
        cluster.controller = 2
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            await admin.delete_topic("doomed")
            assert "doomed" not in cluster.topics
            with pytest.raises(KafkaError) as info:
                await admin.delete_topic("doomed")
        assert info.value.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert info.value.message == "topic 'doomed' does not exist"
        await cluster.stop()

    run(scenario())


def test_describe_cluster_lists_dead_brokers_and_counts_under_replication() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(3)
        cluster.add_topic("orders", 3, 3)
        cluster.dead.add(3)
        cluster.topics["orders"][0].isr = [1, 2]
        cluster.controller = 2
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            c = await admin.describe_cluster()
        assert c.controller == 2 and c.complete
        assert [(b.node_id, b.alive) for b in c.brokers] == [(1, True), (2, True), (3, False)]
        assert c.brokers[0].address == cluster.brokers[1].address
        assert c.under_replicated == 1 and c.offline == 0
        assert [c.partitions_led(i) for i in (1, 2, 3)] == [1, 1, 1]
        await cluster.stop()

    run(scenario())


def test_describe_cluster_falls_back_to_metadata_without_the_private_api() -> None:
    async def scenario() -> None:
        versions = {k: v for k, v in SUPPORTED_VERSIONS.items()
                    if k != ApiKey.RAFTLOG_DESCRIBE_CLUSTER}
        cluster = await FakeCluster().start(2, versions=versions)
        cluster.add_topic("orders", 2, 2)
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            c = await admin.describe_cluster()
        assert not c.complete and c.controller == 1
        assert [(b.node_id, b.alive) for b in c.brokers] == [(1, True), (2, True)]
        assert len(c.partitions) == 2
        await cluster.stop()

    run(scenario())


def test_bad_arguments_raise_value_error_without_touching_the_cluster() -> None:
    async def scenario() -> None:
        cluster = await FakeCluster().start(1)
        async with AsyncAdminClient(cluster.bootstrap) as admin:
            for args in (("", 1, 1), ("t", "1", 1), ("t", 1, 1 << 20)):
                with pytest.raises(ValueError):
                    await admin.create_topic(*args)  # type: ignore[arg-type]
        assert cluster.brokers[1].count(ApiKey.CREATE_TOPICS) == 0
        await cluster.stop()

    run(scenario())


# ---- the sync facade ----------------------------------------------------------------------

def test_sync_admin_client_does_everything_and_leaves_no_thread() -> None:
    threads_before = set(threading.enumerate())
    with cluster_in_thread(3) as (cluster, engine):
        with AdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=5000) as a:
            a.create_topic("orders", partitions=6, replication_factor=3,
                           config={"retention.ms": "604800000"})
            assert [t.name for t in a.list_topics()] == ["orders"]
            d = a.describe_topic("orders")
            assert [p.partition for p in d.partitions] == list(range(6))
            assert all(p.high_watermark == 0 and p.leader in p.replicas for p in d.partitions)
            assert a.describe_cluster().controller == 1
            a.delete_topic("orders")
            on_loop(engine, lambda: None)
            assert "orders" not in cluster.topics
        a.close()  # idempotent
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert leftover == []


def test_sync_admin_client_raises_at_once_when_nothing_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        address = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(NoBrokersAvailableError, match=f"cannot reach any broker at {address}"):
            AdminClient(bootstrap_servers=address, request_timeout_ms=2000)
