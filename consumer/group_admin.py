"""Looking at consumer groups from outside: list them, describe one (members, assignments,
committed offsets and lag per partition). Used by `raftlog group list|describe`.

- list_groups asks every broker (ListGroups: each broker lists the groups it coordinates) and
  merges the answers; then asks each group's coordinator for its state (DescribeGroups).
- describe_group asks the group's coordinator (FindCoordinator) for its members
  (DescribeGroups, assignments decoded with the consumer protocol) and committed offsets
  (OffsetFetch, all partitions), and each partition's leader for its high watermark
  (ListOffsets); lag = high watermark - committed offset.
A group that has neither members nor committed offsets does not exist (GROUP_ID_NOT_FOUND).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.client import ClientError, ClusterClient, RequestTimedOutError
from broker.client.errors import error_code
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka.messages import (
    DescribeGroupsRequest,
    FindCoordinatorRequest,
    ListGroupsRequest,
    OffsetFetchRequest,
)
from consumer.offsets import LATEST, list_offsets
from consumer.protocol import PROTOCOL_TYPE, ProtocolDecodeError, decode_assignment
from consumer.structs import TopicPartition

__all__ = ["GroupListing", "GroupMemberDescription", "PartitionLag", "GroupDescription",
           "list_groups", "describe_group"]

_RETRY_PAUSE_S = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str  # Kafka's names: Empty, Stable, PreparingRebalance, ... ("" if unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMemberDescription:
    member_id: str
    client_id: str
    client_host: str
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionLag:
    partition: TopicPartition
    committed: int | None  # None: nothing committed
    log_end: int | None  # the high watermark (None: no leader answered)
    member_id: str | None  # who it is assigned to now

    @property
    def lag(self) -> int | None:
        if self.log_end is None:
            return None
        return self.log_end - (self.committed if self.committed is not None else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    coordinator: int
    members: tuple[GroupMemberDescription, ...]
    partitions: tuple[PartitionLag, ...]


async def _coordinator(cluster: ClusterClient, group_id: str, deadline: float) -> int:
    loop = asyncio.get_running_loop()
    while True:
        try:
            r = await cluster.send_any(FindCoordinatorRequest(key=group_id, key_type=0))
            code = error_code(r.error_code)
            if code == ErrorCode.NONE:
                if cluster.metadata.broker(r.node_id) is None:
                    await cluster.refresh_metadata(())
                if cluster.metadata.broker(r.node_id) is not None:
                    return int(r.node_id)
                code = ErrorCode.COORDINATOR_NOT_AVAILABLE
            if code not in RETRIABLE:
                raise KafkaError(code, f"group {group_id!r}: {r.error_message or code.name}")
        except ClientError as e:
            if not e.retriable:
                raise
        if loop.time() >= deadline:
            raise RequestTimedOutError(f"no coordinator found for group {group_id!r}")
        await asyncio.sleep(_RETRY_PAUSE_S)


async def _to_coordinator(cluster: ClusterClient, group_id: str, request: Any,
                          deadline: float, code_of: Callable[[Any], int]) -> Any:
    """Send to the group's coordinator, retrying while it moves or loads."""
    loop = asyncio.get_running_loop()
    while True:
        node = await _coordinator(cluster, group_id, deadline)
        try:
            response = await cluster.send(node, request)
            code = error_code(code_of(response))
            if code not in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                            ErrorCode.COORDINATOR_LOAD_IN_PROGRESS):
                return response
        except ClientError as e:
            if not e.retriable:
                raise
        if loop.time() >= deadline:
            raise RequestTimedOutError(f"the coordinator of group {group_id!r} did not answer")
        await asyncio.sleep(_RETRY_PAUSE_S)


async def list_groups(cluster: ClusterClient, *, timeout_ms: int) -> list[GroupListing]:
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    await cluster.refresh_metadata(())
    found: dict[str, str] = {}
    for node in sorted(cluster.metadata.brokers):
        try:
            r = await cluster.send(node, ListGroupsRequest())
        except ClientError:
            continue  # a broker that cannot answer coordinates nothing we can see
        for g in r.groups:
            found[g.group_id] = g.protocol_type
    out = []
    for group_id in sorted(found):
        try:
            d = await _describe(cluster, group_id, deadline)
            state = d.group_state
        except (ClientError, KafkaError):
            state = ""
        out.append(GroupListing(group_id=group_id, protocol_type=found[group_id], state=state))
    return out


async def _describe(cluster: ClusterClient, group_id: str, deadline: float) -> Any:
    r = await _to_coordinator(cluster, group_id,
                              DescribeGroupsRequest(groups=[group_id],
                                                    include_authorized_operations=False),
                              deadline, lambda resp: resp.groups[0].error_code)
    (group,) = r.groups
    code = error_code(group.error_code)
    if code != ErrorCode.NONE:
        raise KafkaError(code, f"describing group {group_id!r}: {code.name}")
    return group


async def describe_group(cluster: ClusterClient, group_id: str, *, timeout_ms: int
                         ) -> GroupDescription:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    group = await _describe(cluster, group_id, deadline)
    fetched = await _to_coordinator(cluster, group_id,
                                    OffsetFetchRequest(group_id=group_id, topics=None),
                                    deadline, lambda resp: resp.error_code)
    committed: dict[TopicPartition, int] = {}
    for t in fetched.topics:
        for p in t.partitions:
            if p.error_code == 0 and p.committed_offset >= 0:
                committed[TopicPartition(t.name, p.partition_index)] = p.committed_offset
    members = _members(group)
    if group.group_state == "Dead" and not committed:
        raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group_id!r} does not exist")
    owner = {tp: m.member_id for m in members for tp in m.assignment}
    tps = sorted(set(committed) | set(owner))
    ends: dict[TopicPartition, tuple[int, int]] = {}
    if tps:
        budget_ms = max(1, int((deadline - loop.time()) * 1000))
        try:
            ends = await list_offsets(cluster, {tp: LATEST for tp in tps},
                                      timeout_ms=budget_ms, retry_backoff_ms=100)
        except (ClientError, KafkaError):
            ends = {}
    partitions = tuple(PartitionLag(partition=tp, committed=committed.get(tp),
                                    log_end=ends[tp][0] if tp in ends else None,
                                    member_id=owner.get(tp)) for tp in tps)
    return GroupDescription(
        group_id=group_id, state=group.group_state, protocol_type=group.protocol_type,
        protocol=group.protocol_data,
        coordinator=await _coordinator(cluster, group_id, deadline),
        members=members, partitions=partitions)


def _members(group: Any) -> tuple[GroupMemberDescription, ...]:
    out = []
    consumer_group = group.protocol_type in (PROTOCOL_TYPE, "")
    for m in group.members:
        assignment: Sequence[TopicPartition] = ()
        if consumer_group and m.member_assignment:
            try:
                assignment = decode_assignment(bytes(m.member_assignment)).partitions
            except ProtocolDecodeError:
                assignment = ()
        out.append(GroupMemberDescription(member_id=m.member_id, client_id=m.client_id,
                                          client_host=m.client_host,
                                          assignment=tuple(sorted(assignment))))
    return tuple(out)
