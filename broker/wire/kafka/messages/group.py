"""Consumer-group membership: FindCoordinator (10), JoinGroup (11), SyncGroup (14),
Heartbeat (12), LeaveGroup (13).

Served: FindCoordinator v0-v2 (v1 key_type 0 group / 1 transaction, throttle, error_message);
JoinGroup v0-v5 (v1 rebalance_timeout_ms, v2 throttle, v4 MEMBER_ID_REQUIRED handshake,
v5 group_instance_id); SyncGroup v0-v3, Heartbeat v0-v3 (v1 throttle, v3 group_instance_id);
LeaveGroup v0-v3 (v3 batches members). Protocol metadata and assignments are opaque bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BYTES, INT8, INT16, INT32, STRING, ArrayOf, kf

__all__ = [
    "FindCoordinatorRequest",
    "FindCoordinatorResponse",
    "JoinGroupRequest",
    "JoinGroupRequestProtocol",
    "JoinGroupResponse",
    "JoinGroupResponseMember",
    "SyncGroupRequest",
    "SyncGroupRequestAssignment",
    "SyncGroupResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "LeaveGroupRequest",
    "MemberIdentity",
    "LeaveGroupResponse",
    "MemberResponse",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.FIND_COORDINATOR
    key: str = kf(STRING, "0-3")
    key_type: int = kf(INT8, "1+", default=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.FIND_COORDINATOR
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16, "0-3")
    error_message: str | None = kf(STRING, "1-3", nullable="1-3")
    node_id: int = kf(INT32, "0-3")
    host: str = kf(STRING, "0-3")
    port: int = kf(INT32, "0-3")


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupRequestProtocol:
    name: str = kf(STRING)
    metadata: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.JOIN_GROUP
    group_id: str = kf(STRING)
    session_timeout_ms: int = kf(INT32)
    rebalance_timeout_ms: int = kf(INT32, "1+", default=-1)
    member_id: str = kf(STRING)
    group_instance_id: str | None = kf(STRING, "5+", nullable="5+", default=None)
    protocol_type: str = kf(STRING)
    protocols: Sequence[JoinGroupRequestProtocol] = kf(ArrayOf(JoinGroupRequestProtocol))


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponseMember:
    member_id: str = kf(STRING)
    group_instance_id: str | None = kf(STRING, "5+", nullable="5+", default=None)
    metadata: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.JOIN_GROUP
    throttle_time_ms: int = kf(INT32, "2+")
    error_code: int = kf(INT16)
    generation_id: int = kf(INT32, default=-1)
    protocol_name: str | None = kf(STRING, nullable="7+")
    leader: str = kf(STRING)
    member_id: str = kf(STRING)
    members: Sequence[JoinGroupResponseMember] = kf(ArrayOf(JoinGroupResponseMember))


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupRequestAssignment:
    member_id: str = kf(STRING)
    assignment: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.SYNC_GROUP
    group_id: str = kf(STRING)
    generation_id: int = kf(INT32)
    member_id: str = kf(STRING)
    group_instance_id: str | None = kf(STRING, "3+", nullable="3+", default=None)
    assignments: Sequence[SyncGroupRequestAssignment] = kf(ArrayOf(SyncGroupRequestAssignment))


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.SYNC_GROUP
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16)
    assignment: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.HEARTBEAT
    group_id: str = kf(STRING)
    generation_id: int = kf(INT32)
    member_id: str = kf(STRING)
    group_instance_id: str | None = kf(STRING, "3+", nullable="3+", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.HEARTBEAT
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberIdentity:
    member_id: str = kf(STRING, "3+")
    group_instance_id: str | None = kf(STRING, "3+", nullable="3+", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.LEAVE_GROUP
    group_id: str = kf(STRING)
    member_id: str = kf(STRING, "0-2")
    members: Sequence[MemberIdentity] = kf(ArrayOf(MemberIdentity), "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberResponse:
    member_id: str = kf(STRING, "3+")
    group_instance_id: str | None = kf(STRING, "3+", nullable="3+")
    error_code: int = kf(INT16, "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.LEAVE_GROUP
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16)
    members: Sequence[MemberResponse] = kf(ArrayOf(MemberResponse), "3+")
