"""Hypothesis strategies generated from the Kafka message schemas, shared by the test_kafka_*
files, plus checks that the schemas themselves are sound (every array item takes at least one
byte, every served version has schemas)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from broker.wire.kafka import SUPPORTED_VERSIONS
from broker.wire.kafka.apis import API_SPECS, CODECS
from broker.wire.kafka.codegen import Compiler
from broker.wire.kafka.schema import ArrayOf, Kind, in_versions

_INT_RANGES = {
    Kind.INT8: (-(1 << 7), (1 << 7) - 1),
    Kind.INT16: (-(1 << 15), (1 << 15) - 1),
    Kind.INT32: (-(1 << 31), (1 << 31) - 1),
    Kind.INT64: (-(1 << 63), (1 << 63) - 1),
    Kind.UINT16: (0, (1 << 16) - 1),
    Kind.UINT32: (0, (1 << 32) - 1),
    Kind.VARINT: (-(1 << 31), (1 << 31) - 1),
    Kind.VARLONG: (-(1 << 63), (1 << 63) - 1),
}
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)

FAST = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def _primitive(kind: Kind) -> st.SearchStrategy[Any]:
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        return st.integers(low, high)
    match kind:
        case Kind.BOOL:
            return st.booleans()
        case Kind.FLOAT64:
            return st.floats(allow_nan=False)
        case Kind.UUID:
            return st.uuids()
        case Kind.STRING:
            return TEXT
        case Kind.BYTES:
            return st.binary(max_size=16)
        case Kind.RECORDS:
            return st.binary(max_size=48)
    raise AssertionError(kind)


def value_strategy(t: Any, version: int, flexible: bool, nullable: bool) -> st.SearchStrategy[Any]:
    if isinstance(t, Kind):
        base = _primitive(t)
    elif isinstance(t, ArrayOf):
        item = value_strategy(t.item, version, flexible, False)
        base = st.lists(item, max_size=3).map(tuple)
    else:
        base = struct_strategy(t, version, flexible)
    return st.one_of(st.none(), base) if nullable else base


def struct_strategy(cls: type, version: int, flexible: bool) -> st.SearchStrategy[Any]:
    """Instances of `cls` with random values in every field present in `version`; absent
    fields keep their defaults (they do not travel, so they decode to the defaults)."""
    regular, tagged = Compiler.split(cls, version, flexible)
    fields = {
        s.name: value_strategy(s.type, version, flexible, in_versions(version, s.nullable))
        for s in regular + tagged
    }
    return st.builds(cls, **fields)


def served() -> Iterator[tuple[int, int]]:
    """Every (api_key, version) we serve."""
    for key, (low, high) in sorted(SUPPORTED_VERSIONS.items()):
        for v in range(low, high + 1):
            yield int(key), v


def message_strategy(api_key: int, version: int, side: str) -> st.SearchStrategy[Any]:
    codec = CODECS[api_key][version]
    cls = codec.request_type if side == "request" else codec.response_type
    return struct_strategy(cls, version, codec.flexible)


def plain(value: Any) -> Any:
    """A comparable plain form: dataclasses to dicts, sequences to lists, buffers to bytes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    return value


CASES = [(k, v, side) for k, v in served() for side in ("request", "response")]


def case_id(case: tuple[int, int, str]) -> str:
    key, version, side = case
    return f"{CODECS[key][version].api_key.name.lower()}-v{version}-{side}"


def test_every_api_in_the_table_has_schemas_for_every_served_version() -> None:
    assert {int(s.key) for s in API_SPECS} == {int(k) for k in SUPPORTED_VERSIONS}
    for key, version in served():
        assert version in CODECS[key]
