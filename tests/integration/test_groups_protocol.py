"""The group coordinator on the wire, request by request (our cluster client speaking Kafka's
group APIs to real brokers): the JoinGroup v4+ member-id handshake, generations, refused
commits and heartbeats, coordinator routing, describe/list and batched leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from broker.client import ClusterClient
from broker.wire.errors import ErrorCode as E
from broker.wire.kafka.messages import (
    DescribeGroupsRequest,
    FindCoordinatorRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    JoinGroupRequestProtocol,
    LeaveGroupRequest,
    ListGroupsRequest,
    MemberIdentity,
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from consumer.protocol import Subscription, encode_subscription
from tests.integration.clients import create_topic
from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)

T = TypeVar("T")
TOPIC = "gp-topic"
METADATA = encode_subscription(Subscription(topics=(TOPIC,)))


def _run(cluster: LocalCluster, body: Callable[[ClusterClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ClusterClient(cluster.bootstrap, request_timeout_ms=15_000) as client:
            return await body(client)

    return asyncio.run(main())


async def _coordinator(client: ClusterClient, group: str) -> int:
    for _ in range(300):  # __consumer_offsets is made on first use: retry while it is
        r = await client.send_any(FindCoordinatorRequest(key=group, key_type=0))
        if r.error_code == E.NONE:
            await client.refresh_metadata(())
            return int(r.node_id)
        assert r.error_code == E.COORDINATOR_NOT_AVAILABLE, r
        await asyncio.sleep(0.1)
    raise AssertionError(f"no coordinator for {group!r}")


def _join(group: str, member_id: str = "") -> JoinGroupRequest:
    return JoinGroupRequest(group_id=group, session_timeout_ms=10_000,
                            rebalance_timeout_ms=10_000, member_id=member_id,
                            group_instance_id=None, protocol_type="consumer",
                            protocols=[JoinGroupRequestProtocol(name="range", metadata=METADATA)])


def _commit(group: str, generation: int, member_id: str, topic: str = TOPIC,
            offset: int = 7) -> OffsetCommitRequest:
    return OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
        group_instance_id=None, retention_time_ms=-1,
        topics=[OffsetCommitRequestTopic(name=topic, partitions=[OffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
            commit_timestamp=-1, committed_metadata="note")])])


def _commit_code(response: Any) -> int:
    (topic,) = response.topics
    (partition,) = topic.partitions
    return int(partition.error_code)


@pytest.fixture(scope="module", autouse=True)
def _topic(cluster: LocalCluster) -> None:
    create_topic(cluster.bootstrap, TOPIC, 2, 3)


def test_member_id_handshake_generations_and_refused_commits(cluster: LocalCluster) -> None:
    group = "gp-handshake"

    async def body(client: ClusterClient) -> None:
        node = await _coordinator(client, group)
        first = await client.send(node, _join(group), version=5)
        assert first.error_code == E.MEMBER_ID_REQUIRED and first.member_id
        member = first.member_id
        joined = await client.send(node, _join(group, member), version=5)
        assert (joined.error_code, joined.leader, joined.member_id) == (E.NONE, member, member)
        generation = joined.generation_id
        assert [m.member_id for m in joined.members] == [member]
        synced = await client.send(node, SyncGroupRequest(
            group_id=group, generation_id=generation, member_id=member, group_instance_id=None,
            assignments=[SyncGroupRequestAssignment(member_id=member, assignment=b"mine")]))
        assert (synced.error_code, bytes(synced.assignment)) == (E.NONE, b"mine")

        def heartbeat(gen: int, who: str) -> HeartbeatRequest:
            return HeartbeatRequest(group_id=group, generation_id=gen, member_id=who,
                                    group_instance_id=None)

        assert (await client.send(node, heartbeat(generation, member))).error_code == E.NONE
        assert (await client.send(node, heartbeat(generation - 1, member))).error_code == \
            E.ILLEGAL_GENERATION
        assert (await client.send(node, heartbeat(generation, "ghost"))).error_code == \
            E.UNKNOWN_MEMBER_ID

        ok = await client.send(node, _commit(group, generation, member))
        assert _commit_code(ok) == E.NONE
        assert _commit_code(await client.send(node, _commit(group, generation - 1, member))) \
            == E.ILLEGAL_GENERATION
        assert _commit_code(await client.send(node, _commit(group, generation, "ghost"))) \
            == E.UNKNOWN_MEMBER_ID
        assert _commit_code(await client.send(node, _commit(group, -1, ""))) == \
            E.UNKNOWN_MEMBER_ID, "a group with members refuses simple commits"
        assert _commit_code(await client.send(node, _commit(group, generation, member,
                                                            topic="gp-no-such-topic"))) == \
            E.UNKNOWN_TOPIC_OR_PARTITION

        fetched = await client.send(node, OffsetFetchRequest(group_id=group, topics=[
            OffsetFetchRequestTopic(name=TOPIC, partition_indexes=[0, 1])]))
        offsets = {p.partition_index: (p.committed_offset, p.metadata)
                   for t in fetched.topics for p in t.partitions}
        assert offsets == {0: (7, "note"), 1: (-1, "")}

        described = await client.send(node, DescribeGroupsRequest(
            groups=[group], include_authorized_operations=False))
        (g,) = described.groups
        assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (
            E.NONE, "Stable", "consumer", "range")
        assert [(m.member_id, bytes(m.member_assignment)) for m in g.members] == [
            (member, b"mine")]
        listed = await client.send(node, ListGroupsRequest())
        assert (group, "consumer") in {(x.group_id, x.protocol_type) for x in listed.groups}

        left = await client.send(node, LeaveGroupRequest(
            group_id=group, member_id="", members=[
                MemberIdentity(member_id=member, group_instance_id=None),
                MemberIdentity(member_id="ghost", group_instance_id=None)]), version=3)
        assert left.error_code == E.NONE
        assert [(m.member_id, m.error_code) for m in left.members] == [
            (member, E.NONE), ("ghost", E.UNKNOWN_MEMBER_ID)]
        assert _commit_code(await client.send(node, _commit(group, -1, "", offset=9))) == \
            E.NONE, "an empty group takes simple commits"

    _run(cluster, body)


def test_old_join_versions_admit_members_at_once(cluster: LocalCluster) -> None:
    group = "gp-v3"

    async def body(client: ClusterClient) -> None:
        node = await _coordinator(client, group)
        joined = await client.send(node, _join(group), version=3)
        assert joined.error_code == E.NONE and joined.member_id
        assert joined.leader == joined.member_id

    _run(cluster, body)


def test_only_the_coordinator_serves_a_group(cluster: LocalCluster) -> None:
    group = "gp-routing"

    async def body(client: ClusterClient) -> None:
        node = await _coordinator(client, group)
        others = [n for n in client.metadata.brokers if n != node]
        assert others
        for other in others:
            r = await client.send(other, _join(group), version=5)
            assert r.error_code == E.NOT_COORDINATOR
            fetched = await client.send(other, OffsetFetchRequest(group_id=group, topics=None))
            assert fetched.error_code == E.NOT_COORDINATOR
        bad = await client.send_any(FindCoordinatorRequest(key="", key_type=0))
        assert bad.error_code == E.INVALID_GROUP_ID
        txn = await client.send_any(FindCoordinatorRequest(key="t", key_type=1))
        assert txn.error_code == E.COORDINATOR_NOT_AVAILABLE
        unknown = await client.send(node, DescribeGroupsRequest(
            groups=[group], include_authorized_operations=False))
        assert unknown.groups[0].group_state == "Dead"

    _run(cluster, body)
