"""Group inspection: DescribeGroups (15) served v0-v4, ListGroups (16) served v0-v2.

DescribeGroups: v1 throttle, v3 authorized operations, v4 group_instance_id. ListGroups: v1
throttle. Member metadata and assignments are the opaque bytes the members sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BOOL, BYTES, INT16, INT32, STRING, ArrayOf, kf

__all__ = [
    "DescribeGroupsRequest",
    "DescribeGroupsResponse",
    "DescribedGroup",
    "DescribedGroupMember",
    "ListGroupsRequest",
    "ListGroupsResponse",
    "ListedGroup",
]

INT32_MIN = -(1 << 31)  # "authorized operations not requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_GROUPS
    groups: Sequence[str] = kf(ArrayOf(STRING))
    include_authorized_operations: bool = kf(BOOL, "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroupMember:
    member_id: str = kf(STRING)
    group_instance_id: str | None = kf(STRING, "4+", nullable="4+", default=None)
    client_id: str = kf(STRING)
    client_host: str = kf(STRING)
    member_metadata: bytes = kf(BYTES)
    member_assignment: bytes = kf(BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroup:
    error_code: int = kf(INT16)
    group_id: str = kf(STRING)
    group_state: str = kf(STRING)
    protocol_type: str = kf(STRING)
    protocol_data: str = kf(STRING)
    members: Sequence[DescribedGroupMember] = kf(ArrayOf(DescribedGroupMember))
    authorized_operations: int = kf(INT32, "3+", default=INT32_MIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_GROUPS
    throttle_time_ms: int = kf(INT32, "1+")
    groups: Sequence[DescribedGroup] = kf(ArrayOf(DescribedGroup))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_GROUPS


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedGroup:
    group_id: str = kf(STRING)
    protocol_type: str = kf(STRING)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_GROUPS
    throttle_time_ms: int = kf(INT32, "1+")
    error_code: int = kf(INT16)
    groups: Sequence[ListedGroup] = kf(ArrayOf(ListedGroup))
