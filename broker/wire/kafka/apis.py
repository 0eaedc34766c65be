"""The registry: API key -> request/response schemas, compiled once per served version.

`API_SPECS` lists every API we speak. `CODECS[api_key][version]` holds the compiled reader and
writer of the request and response bodies for each version in SUPPORTED_VERSIONS. Both are
read-only mappings built at import; nothing here changes afterwards. A raftlog-private API
(key >= PRIVATE_API_KEY_MIN) is added by writing its schema classes, naming its key in ApiKey
and listing it in SUPPORTED_VERSIONS, FIRST_FLEXIBLE_VERSIONS and `API_SPECS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.codegen import Compiler, Reader, Writer
from broker.wire.kafka.messages import (
    admin,
    api_versions,
    fetch,
    group,
    group_listing,
    list_offsets,
    metadata,
    offsets,
    produce,
    producer_id,
    raftlog,
    sasl,
)
from broker.wire.kafka.versions import SUPPORTED_VERSIONS, is_flexible

__all__ = ["ApiSpec", "VersionCodec", "API_SPECS", "CODECS", "api_spec"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSpec:
    key: ApiKey
    request: type
    response: type


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionCodec:
    """Everything needed to read or write one version of one API."""

    api_key: ApiKey
    version: int
    flexible: bool  # compact types and tagged fields in the body, header v2 / v1
    request_type: type
    response_type: type
    read_request: Reader
    write_request: Writer
    read_response: Reader
    write_response: Writer


def _spec(request: type, response: type) -> ApiSpec:
    key = request.API_KEY  # type: ignore[attr-defined]
    assert response.API_KEY == key, (request, response)  # type: ignore[attr-defined]
    return ApiSpec(key=key, request=request, response=response)


API_SPECS: tuple[ApiSpec, ...] = (
    _spec(api_versions.ApiVersionsRequest, api_versions.ApiVersionsResponse),
    _spec(metadata.MetadataRequest, metadata.MetadataResponse),
    _spec(produce.ProduceRequest, produce.ProduceResponse),
    _spec(fetch.FetchRequest, fetch.FetchResponse),
    _spec(list_offsets.ListOffsetsRequest, list_offsets.ListOffsetsResponse),
    _spec(group.FindCoordinatorRequest, group.FindCoordinatorResponse),
    _spec(group.JoinGroupRequest, group.JoinGroupResponse),
    _spec(group.SyncGroupRequest, group.SyncGroupResponse),
    _spec(group.HeartbeatRequest, group.HeartbeatResponse),
    _spec(group.LeaveGroupRequest, group.LeaveGroupResponse),
    _spec(offsets.OffsetCommitRequest, offsets.OffsetCommitResponse),
    _spec(offsets.OffsetFetchRequest, offsets.OffsetFetchResponse),
    _spec(group_listing.DescribeGroupsRequest, group_listing.DescribeGroupsResponse),
    _spec(group_listing.ListGroupsRequest, group_listing.ListGroupsResponse),
    _spec(producer_id.InitProducerIdRequest, producer_id.InitProducerIdResponse),
    _spec(admin.CreateTopicsRequest, admin.CreateTopicsResponse),
    _spec(admin.DeleteTopicsRequest, admin.DeleteTopicsResponse),
    _spec(admin.DescribeConfigsRequest, admin.DescribeConfigsResponse),
    _spec(sasl.SaslHandshakeRequest, sasl.SaslHandshakeResponse),
    _spec(sasl.SaslAuthenticateRequest, sasl.SaslAuthenticateResponse),
    _spec(raftlog.RaftlogDescribeClusterRequest, raftlog.RaftlogDescribeClusterResponse),
)


def _compile_all() -> Mapping[int, Mapping[int, VersionCodec]]:
    compiler = Compiler()
    table: dict[int, Mapping[int, VersionCodec]] = {}
    for spec in API_SPECS:
        low, high = SUPPORTED_VERSIONS[spec.key]
        per_version = {}
        for v in range(low, high + 1):
            flex = is_flexible(spec.key, v)
            per_version[v] = VersionCodec(
                api_key=spec.key, version=v, flexible=flex,
                request_type=spec.request, response_type=spec.response,
                read_request=compiler.reader(spec.request, v, flex),
                write_request=compiler.writer(spec.request, v, flex),
                read_response=compiler.reader(spec.response, v, flex),
                write_response=compiler.writer(spec.response, v, flex),
            )
        table[int(spec.key)] = MappingProxyType(per_version)
    assert set(table) == {int(k) for k in SUPPORTED_VERSIONS}, "an API lacks a schema"
    return MappingProxyType(table)


CODECS: Mapping[int, Mapping[int, VersionCodec]] = _compile_all()
_SPECS_BY_KEY: Mapping[int, ApiSpec] = MappingProxyType({int(s.key): s for s in API_SPECS})


def api_spec(api_key: int) -> ApiSpec | None:
    return _SPECS_BY_KEY.get(api_key)
