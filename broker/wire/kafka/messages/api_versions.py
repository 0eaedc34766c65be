"""ApiVersions (key 18): served v0-v3; v3 is the one flexible version we serve (KIP-511).

v1 adds throttle_time_ms; v3 adds the client's software name/version and, in the response,
tagged fields for feature flags. The response header is always v0, even for v3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from broker.wire.kafka.api_keys import ApiKey
from broker.wire.kafka.schema import BOOL, INT16, INT32, INT64, STRING, ArrayOf, kf

__all__ = [
    "ApiVersionsRequest",
    "ApiVersionsResponse",
    "ApiVersion",
    "SupportedFeatureKey",
    "FinalizedFeatureKey",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsRequest:
    API_KEY: ClassVar[ApiKey] = ApiKey.API_VERSIONS
    client_software_name: str = kf(STRING, "3+")
    client_software_version: str = kf(STRING, "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersion:
    api_key: int = kf(INT16)
    min_version: int = kf(INT16)
    max_version: int = kf(INT16)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupportedFeatureKey:
    name: str = kf(STRING, "3+")
    min_version: int = kf(INT16, "3+")
    max_version: int = kf(INT16, "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalizedFeatureKey:
    name: str = kf(STRING, "3+")
    max_version_level: int = kf(INT16, "3+")
    min_version_level: int = kf(INT16, "3+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsResponse:
    API_KEY: ClassVar[ApiKey] = ApiKey.API_VERSIONS
    error_code: int = kf(INT16)
    api_keys: Sequence[ApiVersion] = kf(ArrayOf(ApiVersion))
    throttle_time_ms: int = kf(INT32, "1+")
    supported_features: Sequence[SupportedFeatureKey] = kf(
        ArrayOf(SupportedFeatureKey), "3+", tag=0)
    finalized_features_epoch: int = kf(INT64, "3+", tag=1, default=-1)
    finalized_features: Sequence[FinalizedFeatureKey] = kf(
        ArrayOf(FinalizedFeatureKey), "3+", tag=2)
    zk_migration_ready: bool = kf(BOOL, "3+", tag=3, default=False)
