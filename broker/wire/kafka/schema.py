"""How message schemas are declared: frozen dataclasses whose fields carry Kafka's JSON attributes.

Kafka describes each message in JSON (clients/src/main/resources/common/message/*.json): an
ordered list of fields, each with a type, the `versions` it exists in, the `nullableVersions`
where it may be null, an optional `tag` with its `taggedVersions`, and a `default`. We write the
same table as a frozen, slotted, keyword-only dataclass per message and per nested struct:

    @dataclass(frozen=True, slots=True, kw_only=True)
    class PartitionProduceData:
        index: int = kf(INT32)
        records: Records | None = kf(RECORDS, nullable="0+")

Field order is wire order. Field names are Kafka's in snake_case. Only fields that exist in a
version we serve are declared. The codec (`broker.wire.kafka.codegen`) compiles each class, once
per version, into a reader and a writer. Building a message needs only the fields that matter:
the rest take Kafka's default for their type (0, False, "", b"", empty array) or the schema's
`default`. Decoded arrays are tuples; encoders accept any sequence.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from broker.wire.errors import LocalProtocolError

__all__ = [
    "Kind",
    "ArrayOf",
    "FieldType",
    "FieldSpec",
    "Versions",
    "Records",
    "VERSION_MAX",
    "kf",
    "parse_versions",
    "in_versions",
    "struct_fields",
    "is_struct",
    "coerce",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT16",
    "UINT32",
    "VARINT",
    "VARLONG",
    "FLOAT64",
    "BOOL",
    "UUID",
    "STRING",
    "BYTES",
    "RECORDS",
]

VERSION_MAX = 0x7FFF  # api_version is an int16: "3+" means 3..32767

Versions: TypeAlias = tuple[int, int]  # inclusive range; (1, 0) is empty ("none")

# A RecordBatch payload: kept opaque. Decoded as a memoryview into the received frame (zero
# copy); encoded from one buffer or from a sequence of buffers sent back to back.
Records: TypeAlias = "bytes | bytearray | memoryview | Sequence[bytes | bytearray | memoryview]"


class Kind(enum.Enum):
    """Kafka's primitive wire types."""

    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT16 = "uint16"
    UINT32 = "uint32"
    VARINT = "varint"  # zigzag int32
    VARLONG = "varlong"  # zigzag int64
    FLOAT64 = "float64"
    BOOL = "bool"
    UUID = "uuid"
    STRING = "string"  # int16 length (compact: uvarint length + 1) then UTF-8
    BYTES = "bytes"  # int32 length (compact: uvarint length + 1), decoded as bytes
    RECORDS = "records"  # like bytes, decoded as a memoryview and never parsed


INT8, INT16, INT32, INT64 = Kind.INT8, Kind.INT16, Kind.INT32, Kind.INT64
UINT16, UINT32, VARINT, VARLONG = Kind.UINT16, Kind.UINT32, Kind.VARINT, Kind.VARLONG
FLOAT64, BOOL, UUID = Kind.FLOAT64, Kind.BOOL, Kind.UUID
STRING, BYTES, RECORDS = Kind.STRING, Kind.BYTES, Kind.RECORDS


@dataclasses.dataclass(frozen=True, slots=True)
class ArrayOf:
    """`[]T` in Kafka's JSON: T is a primitive Kind or a struct class."""

    item: Kind | type


FieldType: TypeAlias = "Kind | ArrayOf | type"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    name: str
    type: FieldType
    versions: Versions
    nullable: Versions
    tag: int | None  # None: a regular field; else its tag in the tagged-field section
    tagged: Versions  # versions in which the field travels tagged (only with a tag)
    default: Any


_SPEC_KEY = "kafka"
_UNSET: Any = object()


def parse_versions(text: str) -> Versions:
    """Kafka's version-range syntax: "none", "3", "3+", "2-4"."""
    if text == "none":
        return (1, 0)
    if text.endswith("+"):
        return (int(text[:-1]), VERSION_MAX)
    low, _, high = text.partition("-")
    return (int(low), int(high or low))


def in_versions(version: int, versions: Versions) -> bool:
    return versions[0] <= version <= versions[1]


def is_struct(t: object) -> bool:
    return isinstance(t, type) and dataclasses.is_dataclass(t)


def _type_default(t: FieldType) -> Any:
    if isinstance(t, ArrayOf):
        return ()
    if is_struct(t):
        assert isinstance(t, type)
        return t()
    match t:
        case Kind.BOOL:
            return False
        case Kind.FLOAT64:
            return 0.0
        case Kind.UUID:
            return uuid.UUID(int=0)
        case Kind.STRING:
            return ""
        case Kind.BYTES:
            return b""
        case Kind.RECORDS:
            return None
        case _:
            return 0


def kf(
    t: FieldType,
    versions: str = "0+",
    *,
    nullable: str = "none",
    tag: int | None = None,
    tagged: str | None = None,
    default: Any = _UNSET,
) -> Any:
    """A schema field: Kafka's `type`, `versions`, `nullableVersions`, `tag`, `taggedVersions`
    and `default`, as a dataclass field whose default is the schema default."""
    ver = parse_versions(versions)
    null = parse_versions(nullable)
    if tag is None:
        tagged_ver = parse_versions("none")
    else:
        tagged_ver = parse_versions(tagged if tagged is not None else versions)
    value = _type_default(t) if default is _UNSET else default
    assert not (is_struct(t) and null[0] <= null[1]), "nullable struct fields are not supported"
    meta = {_SPEC_KEY: (t, ver, null, tag, tagged_ver)}
    return dataclasses.field(default=value, metadata=meta)


def struct_fields(cls: type) -> tuple[FieldSpec, ...]:
    """The schema of a message or struct class, in wire order."""
    specs = []
    for f in dataclasses.fields(cls):
        t, ver, null, tag, tagged_ver = f.metadata[_SPEC_KEY]
        specs.append(
            FieldSpec(
                name=f.name, type=t, versions=ver, nullable=null, tag=tag, tagged=tagged_ver,
                default=f.default,
            )
        )
    return tuple(specs)


def coerce(cls: type, value: Any) -> Any:
    """An instance of `cls` from an instance or from nested plain dicts (keys = field names);
    lists of dicts become tuples of struct instances. Unknown keys raise LocalProtocolError."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise LocalProtocolError(f"expected {cls.__name__} or a mapping, got {type(value).__name__}")
    specs = {s.name: s for s in struct_fields(cls)}
    unknown = set(value) - set(specs)
    if unknown:
        raise LocalProtocolError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    kwargs = {}
    for name, v in value.items():
        t = specs[name].type
        if isinstance(t, ArrayOf) and is_struct(t.item) and v is not None:
            assert isinstance(t.item, type)
            v = tuple(coerce(t.item, item) for item in v)
        elif isinstance(t, ArrayOf) and v is not None:
            v = tuple(v)
        elif is_struct(t):
            assert isinstance(t, type)
            v = coerce(t, v)
        kwargs[name] = v
    return cls(**kwargs)
