"""Our schema classes say what Kafka's JSON message definitions say, for every version we serve.

The JSON files are Kafka's own (clients/src/main/resources/common/message/*.json); kafka-python
3 ships a copy of them, which is what we read here. For each served version we compare, field
by field and struct by struct: wire order, snake_case name, type, nullability, tag, default.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import warnings

import pytest

from broker.wire.kafka.api_keys import PRIVATE_API_KEY_MIN
from broker.wire.kafka.apis import CODECS
from broker.wire.kafka.codegen import Compiler
from broker.wire.kafka.schema import ArrayOf, Kind, in_versions, parse_versions, struct_fields
from tests.unit.test_kafka_strategies import served

# kafka-python's JSON loader uses importlib.resources.read_text, deprecated since 3.11
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.schemas import load_json
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_TYPE_DEFAULTS: dict[str, Any] = {
    "bool": False, "float64": 0.0, "string": "", "bytes": b"", "records": None,
    "uuid": uuid.UUID(int=0),
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _json_default(type_name: str, text: str | int | None) -> Any:
    if type_name.startswith("[]"):
        return None if text == "null" else ()
    if text is None:
        return _TYPE_DEFAULTS.get(type_name, 0)
    if type_name == "string":
        return None if text == "null" else text
    if type_name == "bool":
        return text == "true"
    return int(text, 0) if isinstance(text, str) else int(text)


def _kafka_layout(fields: list[dict[str, Any]], version: int, flexible: bool) -> list[Any]:
    out = []
    for f in fields:
        if not in_versions(version, parse_versions(f["versions"])):
            continue
        type_name: str = f["type"]
        inner = type_name[2:] if type_name.startswith("[]") else type_name
        if "fields" in f:
            desc: Any = (inner, _kafka_layout(f["fields"], version, flexible))
        else:
            desc = inner
        if type_name.startswith("[]"):
            desc = ("[]", desc)
        tagged = (flexible and "tag" in f
                  and in_versions(version, parse_versions(f.get("taggedVersions", "none"))))
        nullable = in_versions(version, parse_versions(f.get("nullableVersions", "none")))
        default: Any = "struct" if "fields" in f and not type_name.startswith("[]") else \
            _json_default(type_name, f.get("default"))
        out.append((_snake(f["name"]), desc, nullable, f["tag"] if tagged else None, default))
    return out


def _our_layout(cls: type, version: int, flexible: bool) -> list[Any]:
    regular, tagged = Compiler.split(cls, version, flexible)
    by_name = {s.name: s for s in regular + tagged}
    out = []
    # tagged fields sit in the JSON's field order: compare in declaration order
    for name in (s.name for s in struct_fields(cls) if s.name in by_name):
        s = by_name[name]
        desc = _type_desc(s.type, version, flexible)
        default = "struct" if isinstance(s.type, type) else s.default
        out.append((name, desc, in_versions(version, s.nullable),
                    s.tag if s in tagged else None, default))
    return out


def _type_desc(t: Any, version: int, flexible: bool) -> Any:
    if isinstance(t, Kind):
        return t.value
    if isinstance(t, ArrayOf):
        return ("[]", _type_desc(t.item, version, flexible))
    return (t.__name__, _our_layout(t, version, flexible))


@pytest.mark.parametrize("key, version", [(k, v) for k, v in served() if k < PRIVATE_API_KEY_MIN])
@pytest.mark.parametrize("side", ["Request", "Response"])
def test_schema_matches_kafka_json(key: int, version: int, side: str) -> None:
    codec = CODECS[key][version]
    cls = codec.request_type if side == "Request" else codec.response_type
    spec = load_json(f"{cls.__name__}")
    assert spec["apiKey"] == key and spec["type"] == side.lower()
    first_flexible = parse_versions(spec["flexibleVersions"])[0] \
        if spec["flexibleVersions"] != "none" else None
    assert codec.flexible == (first_flexible is not None and version >= first_flexible)
    assert _our_layout(cls, version, codec.flexible) == \
        _kafka_layout(spec["fields"], version, codec.flexible)
