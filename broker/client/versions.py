"""Which version of each API to speak with a broker, from its ApiVersions answer. Pure.

Per API the highest version both sides serve (Kafka's clients do the same); an API whose
ranges do not overlap is absent, and sending it raises IncompatibleBrokerError. ApiVersions is
first tried at our highest version; a broker that does not serve it answers error 35 with a v0
body listing its own ApiVersions range, and we retry at min(tried - 1, its max), or at v0 when
it lists no range (librdkafka's rule, KAFKA_PROTOCOL.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.wire.kafka import ApiKey
from broker.wire.kafka.messages import ApiVersionsResponse

__all__ = ["negotiate", "broker_ranges", "api_versions_retry_version", "api_name"]


def broker_ranges(response: ApiVersionsResponse) -> Mapping[int, tuple[int, int]]:
    """api key -> (min, max) as the broker advertised them (later duplicates win)."""
    return MappingProxyType({int(k.api_key): (k.min_version, k.max_version)
                             for k in response.api_keys})


def negotiate(ours: Mapping[int, tuple[int, int]], theirs: Mapping[int, tuple[int, int]]
              ) -> Mapping[int, int]:
    """api key -> the highest version in both ranges, for every API both sides serve."""
    chosen: dict[int, int] = {}
    for key, (our_min, our_max) in ours.items():
        their = theirs.get(int(key))
        if their is None:
            continue
        low, high = max(our_min, their[0]), min(our_max, their[1])
        if low <= high:
            chosen[int(key)] = high
    return MappingProxyType(chosen)


def api_versions_retry_version(tried: int, response: ApiVersionsResponse) -> int | None:
    """After an UNSUPPORTED_VERSION answer to ApiVersions v`tried`: the version to try next,
    or None when there is nothing lower to try."""
    if tried <= 0:
        return None
    theirs = broker_ranges(response).get(int(ApiKey.API_VERSIONS))
    if theirs is None:
        return 0
    return max(0, min(tried - 1, theirs[1]))


def api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"API {api_key}"
