"""Kafka's group APIs on top of the coordinator: decoded request body in, response body out.

FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
DescribeGroups and ListGroups, at the versions `broker.wire.kafka` serves. The handlers in
`broker.api.handlers` delegate here. Version rules that matter:
- JoinGroup v4+: a member without an id gets MEMBER_ID_REQUIRED and an id to rejoin with;
  JoinGroup v0 has no rebalance timeout (the session timeout stands in, as in Kafka).
- LeaveGroup v0-v2 name one member; v3 a batch with per-member errors.
- OffsetCommit v0 has no generation or member (a "simple" commit).
- OffsetFetch v0-v1 report a coordinator error per partition; v2+ at the top too and accept
  null topics (every committed offset of the group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.groups.coordinator import CommitItem, FetchedOffset
from broker.groups.state import Group, GroupState, JoinRequest
from broker.wire.errors import ErrorCode
from broker.wire.kafka import RequestHeader

if TYPE_CHECKING:
    from broker.groups.coordinator import GroupCoordinator

__all__ = ["GroupApi"]

KEY_TYPE_GROUP = 0
GROUP_ID_CHARS_MAX = 255  # Kafka has no limit; ours keeps records and logs small


def _group_id_error(group_id: str | None) -> ErrorCode | None:
    if not group_id or len(group_id) > GROUP_ID_CHARS_MAX:
        return ErrorCode.INVALID_GROUP_ID
    return None


class GroupApi:
    def __init__(self, coordinator: GroupCoordinator) -> None:
        self.coordinator = coordinator

    async def find_coordinator(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"throttle_time_ms": 0, "node_id": -1, "host": "", "port": -1}
        if body.key_type != KEY_TYPE_GROUP:
            return {**out, "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    "error_message": "transactions are not supported"}
        error = _group_id_error(body.key)
        if error is not None:
            return {**out, "error_code": error, "error_message": f"bad group id {body.key!r}"}
        c = await self.coordinator.find_coordinator(body.key)
        return {"throttle_time_ms": 0, "error_code": c.error_code, "error_message": c.message,
                "node_id": c.node_id, "host": c.host, "port": c.port}

    async def join_group(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        error = _group_id_error(body.group_id)
        if error is None:
            rebalance_ms = body.rebalance_timeout_ms \
                if header.api_version >= 1 and body.rebalance_timeout_ms > 0 \
                else body.session_timeout_ms
            request = JoinRequest(
                waiter=0, member_id=body.member_id, new_member_id="",
                group_instance_id=body.group_instance_id, client_id=header.client_id or "",
                client_host="", session_timeout_ms=body.session_timeout_ms,
                rebalance_timeout_ms=rebalance_ms,
                protocol_type=body.protocol_type,
                protocols=tuple((p.name, bytes(p.metadata)) for p in body.protocols),
                require_known_member_id=header.api_version >= 4)
            result = await self.coordinator.join(body.group_id, request)
            return {"throttle_time_ms": 0, "error_code": result.error_code,
                    "generation_id": result.generation_id,
                    "protocol_name": result.protocol_name or "", "leader": result.leader,
                    "member_id": result.member_id,
                    "members": [{"member_id": m, "group_instance_id": i, "metadata": meta}
                                for m, i, meta in result.members]}
        return {"throttle_time_ms": 0, "error_code": error, "generation_id": -1,
                "protocol_name": "", "leader": "", "member_id": body.member_id, "members": []}

    async def sync_group(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        error = _group_id_error(body.group_id)
        if error is not None:
            return {"throttle_time_ms": 0, "error_code": error, "assignment": b""}
        result = await self.coordinator.sync(
            body.group_id, member_id=body.member_id, generation_id=body.generation_id,
            assignments={a.member_id: bytes(a.assignment) for a in body.assignments})
        return {"throttle_time_ms": 0, "error_code": result.error_code,
                "assignment": result.assignment}

    async def heartbeat(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        error = _group_id_error(body.group_id)
        if error is None:
            error = self.coordinator.heartbeat(body.group_id, member_id=body.member_id,
                                               generation_id=body.generation_id)
        return {"throttle_time_ms": 0, "error_code": error}

    async def leave_group(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        batched = header.api_version >= 3
        member_ids = [m.member_id for m in body.members] if batched else [body.member_id]
        error = _group_id_error(body.group_id)
        results: list[tuple[str, ErrorCode]] = []
        if error is None:
            error, results = self.coordinator.leave(body.group_id, member_ids)
        if not batched and error == ErrorCode.NONE and results:
            error = results[0][1]
        return {"throttle_time_ms": 0, "error_code": error,
                "members": [{"member_id": m, "group_instance_id": None, "error_code": code}
                            for m, code in results]}

    async def offset_commit(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        items = [CommitItem(topic=t.name, partition=p.partition_index,
                            offset=p.committed_offset, leader_epoch=p.committed_leader_epoch,
                            metadata=p.committed_metadata)
                 for t in body.topics for p in t.partitions]
        error = _group_id_error(body.group_id)
        if error is not None:
            results = [(i, error) for i in items]
        else:
            generation = body.generation_id_or_member_epoch if header.api_version >= 1 else -1
            member_id = body.member_id if header.api_version >= 1 else ""
            results = await self.coordinator.commit(body.group_id, member_id=member_id,
                                                    generation_id=generation, items=items)
        topics: dict[str, list[dict[str, Any]]] = {}
        for item, code in results:
            topics.setdefault(item.topic, []).append(
                {"partition_index": item.partition, "error_code": code})
        return {"throttle_time_ms": 0,
                "topics": [{"name": n, "partitions": ps} for n, ps in topics.items()]}

    async def offset_fetch(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        wanted = None if body.topics is None else [
            (t.name, p) for t in body.topics for p in t.partition_indexes]
        error = _group_id_error(body.group_id)
        fetched: list[FetchedOffset] = []
        if error is None:
            error, fetched = self.coordinator.fetch_offsets(body.group_id, wanted)
        topics: dict[str, list[dict[str, Any]]] = {}
        if error != ErrorCode.NONE and wanted is not None:
            for t, p in wanted:  # v0-v1 have no top-level error: report it per partition
                topics.setdefault(t, []).append(_fetched(p, None, error))
        for f in fetched:
            topics.setdefault(f.topic, []).append(_fetched(f.partition, f.value, ErrorCode.NONE))
        return {"throttle_time_ms": 0, "error_code": error,
                "topics": [{"name": n, "partitions": ps} for n, ps in topics.items()]}

    async def describe_groups(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        return {"throttle_time_ms": 0,
                "groups": [self._describe(group_id) for group_id in body.groups]}

    def _describe(self, group_id: str) -> dict[str, Any]:
        error = _group_id_error(group_id)
        group: Group | None = None
        if error is None:
            error, group = self.coordinator.describe(group_id)
        if group is None:
            return {"error_code": error, "group_id": group_id,
                    "group_state": GroupState.DEAD.value, "protocol_type": "",
                    "protocol_data": "", "members": []}
        stable = group.state is GroupState.STABLE
        members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id, "client_host": m.client_host,
                    "member_metadata": m.metadata(group.protocol) if stable else b"",
                    "member_assignment": m.assignment if stable else b""}
                   for m in group.members.values()]
        return {"error_code": ErrorCode.NONE, "group_id": group_id,
                "group_state": group.state.value, "protocol_type": group.protocol_type or "",
                "protocol_data": (group.protocol or "") if stable else "", "members": members}

    async def list_groups(self, header: RequestHeader, body: Any) -> dict[str, Any]:
        error, groups = self.coordinator.list_groups()
        return {"throttle_time_ms": 0, "error_code": error,
                "groups": [{"group_id": g.group_id, "protocol_type": g.protocol_type or ""}
                           for g in sorted(groups, key=lambda g: g.group_id)]}


def _fetched(partition: int, value: Any, error: ErrorCode) -> dict[str, Any]:
    if value is None:
        return {"partition_index": partition, "committed_offset": -1,
                "committed_leader_epoch": -1, "metadata": "", "error_code": error}
    return {"partition_index": partition, "committed_offset": value.offset,
            "committed_leader_epoch": value.leader_epoch, "metadata": value.metadata,
            "error_code": error}
