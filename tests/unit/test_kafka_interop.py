"""Golden vectors against an independent implementation: kafka-python 3.

kafka-python carries two codecs: its JSON-driven message classes (kafka.protocol.metadata,
.producer, .consumer, .admin, .sasl) and its older hand-written per-version classes
(kafka.protocol.old). For every API and version both sides know, a generated message is
encoded by us (header included) and decoded by kafka-python, and the fields must match; then
kafka-python encodes what it decoded, which must give the same bytes, and we decode those bytes
back to the original message.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.wire.kafka import (
    ApiKey,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from broker.wire.kafka.api_keys import PRIVATE_API_KEY_MIN
from broker.wire.kafka.apis import CODECS
from broker.wire.kafka.codegen import Compiler
from broker.wire.kafka.schema import Kind
from tests.unit.test_kafka_strategies import CASES, FAST, TEXT, case_id, message_strategy, plain

CASES = [c for c in CASES if c[0] < PRIVATE_API_KEY_MIN]  # private APIs have no kafka-python class

with warnings.catch_warnings():  # kafka-python reads its JSON with a deprecated importlib API
    warnings.simplefilter("ignore", DeprecationWarning)
    _NEW_MODULES = [importlib.import_module(f"kafka.protocol.{m}")
                    for m in ("metadata", "producer", "consumer", "admin", "sasl")]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_OLD_MODULES = {
    "ApiVersions": "api_versions", "Metadata": "metadata", "Produce": "produce",
    "Fetch": "fetch", "ListOffsets": "list_offsets", "FindCoordinator": "find_coordinator",
    "JoinGroup": "group", "SyncGroup": "group", "Heartbeat": "group", "LeaveGroup": "group",
    "OffsetCommit": "commit", "OffsetFetch": "commit", "DescribeGroups": "admin",
    "ListGroups": "admin", "CreateTopics": "admin", "DeleteTopics": "admin",
    "DescribeConfigs": "admin", "InitProducerId": "init_producer_id",
    "SaslHandshake": "sasl_handshake", "SaslAuthenticate": "sasl_authenticate",
}


def _kafka_python_class(name: str) -> Any:
    for module in _NEW_MODULES:
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise AssertionError(f"kafka-python has no {name}")


def _old_class(name: str, version: int) -> Any:
    api = name.removesuffix("Request").removesuffix("Response")
    module = importlib.import_module(f"kafka.protocol.old.{_OLD_MODULES[api]}")
    cls = getattr(module, f"{name}_v{version}", None)
    # kafka-python's old ListGroupsRequest_v2 says API_VERSION = 1: not a usable vector
    return cls if cls is not None and cls.API_VERSION == version else None


def _present(value: Any, version: int, flexible: bool) -> Any:
    """Our message as a plain dict holding only the fields that travel in `version`."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        if isinstance(value, (list, tuple)):
            return [_present(v, version, flexible) for v in value]
        return plain(value)
    regular, tagged = Compiler.split(type(value), version, flexible)
    return {s.name: _present(getattr(value, s.name), version, flexible)
            for s in regular + tagged}


def _comparable(value: Any) -> Any:
    """kafka-python patches Kafka's JSON for authorized-operations fields (renamed, decoded as
    sets of bits): those are left to the byte-for-byte comparison of the re-encoding."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if not k.endswith("authorized_operations")}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return plain(value)


def _encode(side: str, key: int, version: int, cid: int, client_id: str | None, body: Any
            ) -> bytes:
    header = RequestHeader(api_key=key, api_version=version, correlation_id=cid,
                           client_id=client_id)
    if side == "request":
        return encode_request(header, body, framed=False)
    return encode_response(header, body, framed=False)


def _decode(side: str, key: int, version: int, frame: bytes) -> tuple[int, Any]:
    if side == "request":
        header, body = decode_request(frame)
        return header.correlation_id, body
    response_header, body = decode_response(key, version, frame)
    return response_header.correlation_id, body


def _draw(data: st.DataObject, key: int, version: int, side: str) -> Any:
    body = data.draw(message_strategy(key, version, side))
    if key == ApiKey.API_VERSIONS and side == "response":
        # kafka-python reads any ApiVersions error response as v0 (as Kafka's clients do)
        body = dataclasses.replace(body, error_code=0)
    return body


INTEROP = settings(FAST, max_examples=6)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@INTEROP
@given(data=st.data(), cid=st.integers(-(1 << 31), (1 << 31) - 1), client_id=TEXT)
def test_kafka_python_json_classes(case: tuple[int, int, str], data: st.DataObject, cid: int,
                                   client_id: str) -> None:
    key, version, side = case
    codec = CODECS[key][version]
    body = _draw(data, key, version, side)
    ours = _encode(side, key, version, cid, client_id, body)

    theirs_cls = _kafka_python_class(type(body).__name__)
    theirs = theirs_cls.decode(ours, version=version, header=True)
    assert theirs.header.correlation_id == cid
    if side == "request":
        assert (theirs.header.request_api_key, theirs.header.client_id) == (key, client_id)
    assert _comparable(theirs.to_dict(json=False)) == \
        _comparable(_present(body, version, codec.flexible))

    again = bytes(theirs.encode(header=True))
    assert again == ours
    assert _decode(side, key, version, again) == (cid, body)


def _old_plain(value: Any) -> Any:
    """kafka-python's old classes: structs are tuples, arrays lists, one-field structs bare."""
    if isinstance(value, tuple):
        items = [_old_plain(v) for v in value]
        return items[0] if len(items) == 1 else items
    if isinstance(value, list):
        return [_old_plain(v) for v in value]
    return value


def _bits(value: int) -> set[int] | None:
    """kafka-python's old classes decode authorized operations as the set of bits set."""
    bits = {i for i in range(32) if (value >> i) & 1}
    return None if bits == {31} else bits


def _ours_positional(value: Any, version: int) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        regular, _ = Compiler.split(type(value), version, False)
        items = [_bits(getattr(value, s.name)) if s.name.endswith("authorized_operations")
                 and s.type is Kind.INT32
                 else _ours_positional(getattr(value, s.name), version) for s in regular]
        return items[0] if len(items) == 1 else items
    if isinstance(value, (list, tuple)):
        return [_ours_positional(v, version) for v in value]
    return plain(value)


def _has_old_class(case: tuple[int, int, str]) -> bool:
    key, version, side = case
    codec = CODECS[key][version]
    cls = codec.request_type if side == "request" else codec.response_type
    return not codec.flexible and _old_class(cls.__name__, version) is not None


# kafka-python's old classes stop at DescribeGroups v3, CreateTopics v3, DescribeConfigs v2,
# have no flexible versions, and mislabel ListGroupsRequest v2: the JSON classes cover those.
OLD_CASES = [c for c in CASES if _has_old_class(c)]


@pytest.mark.parametrize("case", OLD_CASES, ids=case_id)
@INTEROP
@given(data=st.data(), cid=st.integers(-(1 << 31), (1 << 31) - 1), client_id=TEXT)
def test_kafka_python_old_classes(case: tuple[int, int, str], data: st.DataObject, cid: int,
                                  client_id: str) -> None:
    key, version, side = case
    body = _draw(data, key, version, side)
    old_cls = _old_class(type(body).__name__, version)
    ours = _encode(side, key, version, cid, client_id, body)

    theirs = old_cls.decode(ours, header=True)
    assert theirs.header.correlation_id == cid
    fields = [_old_plain(getattr(theirs, name)) for name in old_cls.SCHEMA.names]
    expected = _ours_positional(body, version)
    assert (fields[0] if len(fields) == 1 else fields) == expected

    again = theirs.encode(header=True)
    assert again == ours
    assert _decode(side, key, version, again) == (cid, body)
