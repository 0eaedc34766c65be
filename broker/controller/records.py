"""The metadata log's records and their encoding (pure: stdlib only).

Every entry of the controller's Raft log (group 0) holds one record, encoded as one JSON object
with sorted keys and no spaces, so equal records encode to equal bytes on every node:

    {"type": <tag>, "v": 1, <field>: <value>, ...}

    type    the record's tag (see `RECORD_TYPES`), e.g. "create_topic"
    v       FORMAT_VERSION; a decoder refuses a version it does not know, so the version moves
            only when every broker already reads the new one
    fields  exactly the dataclass's fields, every one present, nothing else. Integers are JSON
            integers (never booleans or floats), strings are strings, an optional value is null
            when absent, a tuple is an array, and a nested value object (PartitionAssignment) is
            an array of its fields in declaration order, which keeps a 1,000-partition topic small.

A record object is valid by construction: `__post_init__` checks the shape (ids in range,
addresses of the form host:port, partitions numbered 0..n-1 with distinct replicas, bounded
sizes) and raises `MetadataRecordError`, so a decoded record is as trustworthy as one built
here. Checks that depend on the cluster's state (does the topic exist, are there enough
brokers) are not made here: they belong to the validation the controller leader runs before
proposing (`broker.controller.metadata`).

Counters are not carried by records: a topic's Raft group ids and a producer-id block's start are
assigned when the record is applied, from counters in the state machine, so two proposals that
race can never be handed the same ids.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar

__all__ = [
    "FORMAT_VERSION",
    "RECORD_BYTES_MAX",
    "NODE_ID_MAX",
    "TOPIC_NAME_CHARS_MAX",
    "TOPIC_PARTITIONS_MAX",
    "REPLICATION_FACTOR_MAX",
    "TOPIC_CONFIG_ENTRIES_MAX",
    "CONFIG_VALUE_CHARS_MAX",
    "PRODUCER_ID_MAX",
    "PRODUCER_ID_BLOCK_SIZE_MAX",
    "MetadataRecordError",
    "PartitionAssignment",
    "InitializeCluster",
    "RegisterBroker",
    "BrokerFenced",
    "BrokerUnfenced",
    "UnregisterBroker",
    "CreateTopic",
    "DeleteTopic",
    "SetTopicConfig",
    "AllocateProducerIds",
    "ChangePreferredLeader",
    "ReassignReplicas",
    "MetadataRecord",
    "RECORD_TYPES",
    "encode_record",
    "decode_record",
    "record_type",
    "config_pairs",
    "topic_name_problem",
    "address_problem",
]

FORMAT_VERSION: Final = 1
RECORD_BYTES_MAX: Final = 1 << 20  # one encoded record; decode refuses larger input unread
NODE_ID_MAX: Final = (1 << 31) - 1  # Kafka broker ids are int32; Raft reserves 0 for "none"
INT64_MAX: Final = (1 << 63) - 1
TOPIC_NAME_CHARS_MAX: Final = 249  # Kafka's limit (255 minus room for ".deleted" suffixes)
TOPIC_PARTITIONS_MAX: Final = 4096  # each partition is a Raft group; also bounds record size
REPLICATION_FACTOR_MAX: Final = 16  # voters per partition group; also bounds record size
TOPIC_CONFIG_ENTRIES_MAX: Final = 64
CONFIG_KEY_CHARS_MAX: Final = 255
CONFIG_VALUE_CHARS_MAX: Final = 1024
CLUSTER_ID_CHARS_MAX: Final = 64
ADDRESS_CHARS_MAX: Final = 261  # a 255-byte host name, ':' and a 5-digit port
PRODUCER_ID_MAX: Final = INT64_MAX  # producer ids are int64 on the wire
PRODUCER_ID_BLOCK_SIZE_MAX: Final = 1 << 20

_TOPIC_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_TOPIC_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
_PATH_CHARS: Final = frozenset("/\\\0")


class MetadataRecordError(ValueError):
    """Bytes that are not a metadata record, or a record whose fields are out of shape."""


# ---- shape checks shared with validation ------------------------------------------------------


def topic_name_problem(name: str) -> str | None:
    """Why `name` is not a legal topic name (Kafka's rules), or None when it is legal."""
    if not name:
        return "topic name is empty"
    if len(name) > TOPIC_NAME_CHARS_MAX:
        return f"topic name is {len(name)} characters long; the maximum is {TOPIC_NAME_CHARS_MAX}"
    if name in (".", ".."):
        return f"topic name cannot be {name!r}"
    bad_path = sorted(_PATH_CHARS.intersection(name))
    if bad_path:
        # said separately because these are what would escape a data directory
        return f"topic name {name!r} contains path characters {bad_path!r}"
    if not _TOPIC_NAME_RE.fullmatch(name):
        return (
            f"topic name {name!r} contains characters other than ASCII letters, digits, "
            "'.', '_' and '-'"
        )
    return None


def address_problem(address: str) -> str | None:
    """Why `address` is not of the form host:port ([v6]:port for IPv6), or None."""
    if len(address) > ADDRESS_CHARS_MAX:
        return f"address is longer than {ADDRESS_CHARS_MAX} characters"
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        return f"address {address!r} is not host:port"
    if host.startswith("[") != host.endswith("]") or host in ("[", "[]"):
        return f"address {address!r} has an unbalanced IPv6 bracket"
    if any(c.isspace() for c in host):
        return f"address {address!r} contains white space"
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return f"address {address!r} has no port in 1..65535"
    return None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise MetadataRecordError(message)


def _check_node_id(node_id: int, what: str = "node_id") -> None:
    _require(type(node_id) is int and 1 <= node_id <= NODE_ID_MAX,
             f"{what} {node_id!r} is not in 1..{NODE_ID_MAX}")


def _check_positive(value: int, what: str, maximum: int = INT64_MAX) -> None:
    _require(type(value) is int and 1 <= value <= maximum,
             f"{what} {value!r} is not in 1..{maximum}")


def _check_topic_name(name: str) -> None:
    _require(type(name) is str, f"topic name {name!r} is not a string")
    problem = topic_name_problem(name)
    _require(problem is None, problem or "")


def _check_topic_id(topic_id: str) -> None:
    _require(
        type(topic_id) is str and bool(_TOPIC_ID_RE.fullmatch(topic_id)) and topic_id != "0" * 32,
        f"topic_id {topic_id!r} is not 32 lowercase hex digits (all zeros is reserved)",
    )


def _check_address(address: str, what: str) -> None:
    _require(type(address) is str, f"{what} is not a string")
    problem = address_problem(address)
    _require(problem is None, f"{what}: {problem}")


def _check_replicas(replicas: tuple[int, ...], what: str) -> None:
    _require(type(replicas) is tuple and 1 <= len(replicas) <= REPLICATION_FACTOR_MAX,
             f"{what}: replicas must be 1..{REPLICATION_FACTOR_MAX} node ids")
    for node in replicas:
        _check_node_id(node, f"{what}: replica")
    _require(len(set(replicas)) == len(replicas), f"{what}: duplicate replica in {replicas}")


def _check_config_pairs(pairs: tuple[tuple[str, str | None], ...], allow_none: bool) -> None:
    _require(type(pairs) is tuple and len(pairs) <= TOPIC_CONFIG_ENTRIES_MAX,
             f"configs must be a tuple of at most {TOPIC_CONFIG_ENTRIES_MAX} (key, value) pairs")
    keys = []
    for pair in pairs:
        _require(type(pair) is tuple and len(pair) == 2, f"config entry {pair!r} is not a pair")
        key, value = pair
        _require(type(key) is str and 1 <= len(key) <= CONFIG_KEY_CHARS_MAX,
                 f"config key {key!r} is not a string of 1..{CONFIG_KEY_CHARS_MAX} characters")
        if value is None:
            _require(allow_none, f"config {key!r} has no value")
        else:
            _require(type(value) is str and len(value) <= CONFIG_VALUE_CHARS_MAX,
                     f"config {key!r}: value is not a string of at most "
                     f"{CONFIG_VALUE_CHARS_MAX} characters")
        keys.append(key)
    # one canonical order, so that equal records encode to equal bytes
    _require(keys == sorted(set(keys)), f"config keys must be unique and sorted: {keys}")


# ---- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionAssignment:
    """Where one partition of a new topic lives. replicas[0] is the preferred leader."""

    partition: int  # 0..partitions-1, in order within a CreateTopic
    replicas: tuple[int, ...]  # distinct node ids, 1..REPLICATION_FACTOR_MAX of them

    def __post_init__(self) -> None:
        _require(type(self.partition) is int and 0 <= self.partition < TOPIC_PARTITIONS_MAX,
                 f"partition {self.partition!r} is not in 0..{TOPIC_PARTITIONS_MAX - 1}")
        _check_replicas(self.replicas, f"partition {self.partition}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InitializeCluster:
    """The first record of a cluster's log: names the cluster (Kafka's cluster id)."""

    cluster_id: str  # 1..64 printable ASCII characters, no spaces

    def __post_init__(self) -> None:
        _require(
            type(self.cluster_id) is str
            and 1 <= len(self.cluster_id) <= CLUSTER_ID_CHARS_MAX
            and self.cluster_id.isascii()
            and self.cluster_id.isprintable()
            and " " not in self.cluster_id,
            f"cluster_id {self.cluster_id!r} is not 1..{CLUSTER_ID_CHARS_MAX} printable ASCII "
            "characters without spaces",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterBroker:
    """A broker process announces itself. Its broker epoch becomes the index of this record when
    `incarnation` is new; re-registering the same incarnation keeps the epoch (a retry)."""

    node_id: int
    client_address: str  # host:port clients connect to (Kafka protocol)
    raft_address: str  # host:port of the ZeroMQ peer bus
    incarnation: int  # 0..2**63-1, chosen afresh by each process start

    def __post_init__(self) -> None:
        _check_node_id(self.node_id)
        _check_address(self.client_address, "client_address")
        _check_address(self.raft_address, "raft_address")
        _require(type(self.incarnation) is int and 0 <= self.incarnation <= INT64_MAX,
                 f"incarnation {self.incarnation!r} is not in 0..{INT64_MAX}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerFenced:
    """The controller leader saw no heartbeat from this broker epoch for a session timeout."""

    node_id: int
    broker_epoch: int  # the epoch the decision was about; a later registration makes it stale

    def __post_init__(self) -> None:
        _check_node_id(self.node_id)
        _check_positive(self.broker_epoch, "broker_epoch")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerUnfenced:
    """The controller leader hears this broker epoch again."""

    node_id: int
    broker_epoch: int

    def __post_init__(self) -> None:
        _check_node_id(self.node_id)
        _check_positive(self.broker_epoch, "broker_epoch")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnregisterBroker:
    """The broker leaves the cluster for good (its replicas stay assigned until reassigned)."""

    node_id: int
    broker_epoch: int

    def __post_init__(self) -> None:
        _check_node_id(self.node_id)
        _check_positive(self.broker_epoch, "broker_epoch")


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopic:
    """A new topic; each partition becomes a Raft group over its replicas when applied."""

    name: str
    topic_id: str  # 32 lowercase hex digits (a UUID), not all zeros
    partitions: tuple[PartitionAssignment, ...]  # numbered 0..n-1 in order, same length replicas
    configs: tuple[tuple[str, str], ...] = ()  # explicit settings, sorted by key, unique keys

    def __post_init__(self) -> None:
        _check_topic_name(self.name)
        _check_topic_id(self.topic_id)
        parts = self.partitions
        _require(type(parts) is tuple and 1 <= len(parts) <= TOPIC_PARTITIONS_MAX,
                 f"a topic has 1..{TOPIC_PARTITIONS_MAX} partitions")
        for number, assignment in enumerate(parts):
            _require(type(assignment) is PartitionAssignment and assignment.partition == number,
                     f"partition {number} is missing or out of order")
        factors = {len(a.replicas) for a in parts}
        _require(len(factors) == 1, f"partitions have different replica counts: {sorted(factors)}")
        _check_config_pairs(self.configs, allow_none=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopic:
    name: str
    topic_id: str  # must match, so a stale delete never removes a topic recreated under the name

    def __post_init__(self) -> None:
        _check_topic_name(self.name)
        _check_topic_id(self.topic_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTopicConfig:
    """Sets (value) or removes, back to the default (None), some of a topic's configs."""

    name: str
    topic_id: str
    configs: tuple[tuple[str, str | None], ...]  # sorted by key, unique keys, at least one

    def __post_init__(self) -> None:
        _check_topic_name(self.name)
        _check_topic_id(self.topic_id)
        _require(type(self.configs) is tuple and len(self.configs) >= 1, "no config to set")
        _check_config_pairs(self.configs, allow_none=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocateProducerIds:
    """Hands the next `block_size` producer ids to `broker`; the start is assigned on apply."""

    broker: int
    broker_epoch: int  # of the requesting broker, so it can recognise its own block
    block_size: int  # 1..PRODUCER_ID_BLOCK_SIZE_MAX

    def __post_init__(self) -> None:
        _check_node_id(self.broker, "broker")
        _check_positive(self.broker_epoch, "broker_epoch")
        _check_positive(self.block_size, "block_size", PRODUCER_ID_BLOCK_SIZE_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangePreferredLeader:
    """Moves `node_id`, already a replica, to the front of the group's replica list."""

    group_id: int  # group ids are never reused, so a stale record cannot touch a newer group
    node_id: int

    def __post_init__(self) -> None:
        _check_positive(self.group_id, "group_id")
        _check_node_id(self.node_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReassignReplicas:
    """The group's target replica list (first = preferred leader). Moving the Raft membership
    there is the replicas' job; this record only states the goal."""

    group_id: int
    replicas: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_positive(self.group_id, "group_id")
        _check_replicas(self.replicas, f"group {self.group_id}")


MetadataRecord: TypeAlias = (
    InitializeCluster
    | RegisterBroker
    | BrokerFenced
    | BrokerUnfenced
    | UnregisterBroker
    | CreateTopic
    | DeleteTopic
    | SetTopicConfig
    | AllocateProducerIds
    | ChangePreferredLeader
    | ReassignReplicas
)

RECORD_TYPES: Final[Mapping[str, type]] = MappingProxyType({
    "init_cluster": InitializeCluster,
    "register_broker": RegisterBroker,
    "broker_fenced": BrokerFenced,
    "broker_unfenced": BrokerUnfenced,
    "unregister_broker": UnregisterBroker,
    "create_topic": CreateTopic,
    "delete_topic": DeleteTopic,
    "set_topic_config": SetTopicConfig,
    "allocate_producer_ids": AllocateProducerIds,
    "change_preferred_leader": ChangePreferredLeader,
    "reassign_replicas": ReassignReplicas,
})
_TAGS: Final[Mapping[type, str]] = MappingProxyType(
    {cls: tag for tag, cls in RECORD_TYPES.items()})
_HINTS: Final[Mapping[type, Mapping[str, Any]]] = MappingProxyType({
    cls: MappingProxyType(typing.get_type_hints(cls)) for cls in RECORD_TYPES.values()
})
_RESERVED_KEYS: Final = frozenset({"type", "v"})
_V = TypeVar("_V")


# ---- encoding ---------------------------------------------------------------------------------


def record_type(record: MetadataRecord) -> str:
    """The type tag of `record`, as written in its encoding (e.g. "create_topic")."""
    tag = _TAGS.get(type(record))
    assert tag is not None, f"not a metadata record: {record!r}"
    return tag


def config_pairs(configs: Mapping[str, _V]) -> tuple[tuple[str, _V], ...]:
    """`configs` in the canonical form records carry: (key, value) pairs sorted by key."""
    return tuple(sorted(configs.items()))


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if type(value) is PartitionAssignment:
        return [value.partition, list(value.replicas)]
    return value


def encode_record(record: MetadataRecord) -> bytes:
    """Canonical bytes of `record`: equal records give equal bytes."""
    tag = record_type(record)
    obj: dict[str, Any] = {"type": tag, "v": FORMAT_VERSION}
    for field in dataclasses.fields(record):
        obj[field.name] = _to_json(getattr(record, field.name))
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    # the shape checks bound every field, so only a bug can make a record this large
    assert len(data) <= RECORD_BYTES_MAX, f"{tag} record is {len(data)} bytes"
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MetadataRecordError("duplicate key in a JSON object")
    return obj


def decode_record(data: bytes | bytearray | memoryview) -> MetadataRecord:
    """The record in `data`; raises MetadataRecordError on anything else (never another error)."""
    if len(data) > RECORD_BYTES_MAX:
        raise MetadataRecordError(f"record is {len(data)} bytes; the maximum is {RECORD_BYTES_MAX}")
    try:
        obj = json.loads(bytes(data), object_pairs_hook=_no_duplicate_keys)
    except MetadataRecordError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MetadataRecordError(f"not a JSON record: {exc}") from None
    if type(obj) is not dict:
        raise MetadataRecordError("a record is a JSON object")
    if obj.get("v") != FORMAT_VERSION or type(obj.get("v")) is not int:
        raise MetadataRecordError(f"unknown record format version {obj.get('v')!r}")
    cls = RECORD_TYPES.get(obj["type"]) if type(obj.get("type")) is str else None
    if cls is None:
        raise MetadataRecordError(f"unknown record type {obj.get('type')!r}")
    hints = _HINTS[cls]
    got = set(obj) - _RESERVED_KEYS
    if got != set(hints):
        missing, extra = sorted(set(hints) - got), sorted(got - set(hints))
        raise MetadataRecordError(
            f"{obj['type']}: missing fields {missing}, unknown fields {extra}")
    kwargs = {name: _from_json(hint, obj[name], name) for name, hint in hints.items()}
    return typing.cast(MetadataRecord, cls(**kwargs))


def _from_json(hint: Any, value: Any, where: str) -> Any:
    """Converts one JSON value to the field type `hint`, checking its JSON type strictly."""
    if hint is int or hint is str:
        if type(value) is not hint:  # `type is`, so that True is not taken for 1
            raise MetadataRecordError(f"{where}: expected {hint.__name__}, got {value!r:.40}")
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType or origin is typing.Union:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_json(inner, value, where)
    if hint is PartitionAssignment:
        if type(value) is not list or len(value) != 2:
            raise MetadataRecordError(f"{where}: expected [partition, [replicas]]")
        return PartitionAssignment(
            partition=_from_json(int, value[0], f"{where}.partition"),
            replicas=_from_json(tuple[int, ...], value[1], f"{where}.replicas"),
        )
    if origin is tuple:
        if type(value) is not list:
            raise MetadataRecordError(f"{where}: expected an array")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise MetadataRecordError(f"{where}: expected {len(args)} elements")
        return tuple(_from_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    raise AssertionError(f"no JSON conversion for {hint!r}")
