"""The cluster's metadata as a deterministic state machine over the controller's log (pure).

Every broker follows the controller's Raft log (group 0) and feeds each committed entry, in
index order, to `MetadataState.apply_entry` (or `apply` with a decoded record). Applying is a
pure function of the state and the record, so all brokers hold the same metadata after the
same index. What it tracks:

- brokers: addresses, incarnation, broker epoch (= the log index of the registration of the
  current incarnation, as in KRaft) and whether the controller leader has fenced them;
- topics: id, configs, and per partition its Raft group id and replicas (the first replica is
  the preferred leader). Who leads each group right now is Raft's business, not the log's;
- counters: the next Raft group id (group 0 is the controller; partition groups count up from 1
  and are never reused, even after a topic is deleted, so a stale replica of a deleted topic can
  never join a new group) and the next producer id.

Two kinds of failure, two places (as in KRaft):
- before proposing, the controller leader validates a request against the state with the
  `validate_*` / `*_record` functions here, which raise `MetadataError` with Kafka's error code;
- when applying, a committed record that the state has made inapplicable in the meantime (two
  racing creates of one name, a fence of a broker that has since re-registered) is a no-op
  reported as `RecordIgnored` with a reason; `apply` never raises on a well-formed record.

Applying an index at or below the last applied one does nothing, so replaying a log prefix after
a restart is harmless. There is no snapshot: a broker replays the metadata log from its start.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, TypeAlias

from broker.controller.records import (
    REPLICATION_FACTOR_MAX,
    TOPIC_PARTITIONS_MAX,
    AllocateProducerIds,
    BrokerFenced,
    BrokerUnfenced,
    ChangePreferredLeader,
    CreateTopic,
    DeleteTopic,
    InitializeCluster,
    MetadataRecord,
    MetadataRecordError,
    ReassignReplicas,
    RegisterBroker,
    SetTopicConfig,
    UnregisterBroker,
    config_pairs,
    decode_record,
    record_type,
    topic_name_problem,
)
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.limits import BATCH_BYTES_MAX

__all__ = [
    "CONTROLLER_GROUP_ID",
    "FIRST_PARTITION_GROUP_ID",
    "CLUSTER_PARTITIONS_MAX",
    "BROKERS_MAX",
    "INTERNAL_TOPIC_PREFIX",
    "CONSUMER_OFFSETS_TOPIC",
    "MetadataError",
    "ConfigKind",
    "TopicConfigSpec",
    "TOPIC_CONFIGS",
    "BrokerInfo",
    "PartitionInfo",
    "TopicInfo",
    "ClusterInitialized",
    "BrokerChanged",
    "BrokerRemoved",
    "TopicCreated",
    "TopicDeleted",
    "TopicConfigChanged",
    "PartitionAdded",
    "PartitionRemoved",
    "PartitionReplicasChanged",
    "ProducerIdsAllocated",
    "RecordIgnored",
    "Change",
    "MetadataState",
    "is_internal_topic",
    "validate_topic_name",
    "validate_topic_configs",
    "validate_new_topic_name",
    "validate_create_topic",
    "validate_replica_assignment",
    "validate_register_broker",
    "delete_topic_record",
    "set_topic_config_record",
]

CONTROLLER_GROUP_ID: Final = 0  # the metadata log's own Raft group
FIRST_PARTITION_GROUP_ID: Final = 1
CLUSTER_PARTITIONS_MAX: Final = 100_000  # partitions (Raft groups) alive at once, all topics
BROKERS_MAX: Final = 1024  # registered brokers at once
INTERNAL_TOPIC_PREFIX: Final = "__"
CONSUMER_OFFSETS_TOPIC: Final = "__consumer_offsets"
_INT32_MAX: Final = (1 << 31) - 1
_INT64_MAX: Final = (1 << 63) - 1
_INT64_MIN: Final = -(1 << 63)


class MetadataError(KafkaError):
    """A request the controller must refuse before proposing anything; `code` is Kafka's."""


# ---- topic configs ----------------------------------------------------------------------------


class ConfigKind(enum.Enum):
    INT = "int"  # Kafka INT: int32
    LONG = "long"  # Kafka LONG: int64
    CHOICE = "choice"  # one of `choices`, case-sensitive as in Kafka


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicConfigSpec:
    name: str
    kind: ConfigKind
    default: str  # canonical form, as DescribeConfigs reports it
    value_min: int | None = None  # INT/LONG: inclusive bounds (None: the type's own bound)
    value_max: int | None = None
    choices: tuple[str, ...] = ()  # CHOICE: the accepted values

    def normalize(self, value: str) -> str:
        """The canonical form of `value`; raises MetadataError(INVALID_CONFIG) naming the key."""
        text = value.strip()
        if self.kind is ConfigKind.CHOICE:
            if text not in self.choices:
                raise MetadataError(
                    ErrorCode.INVALID_CONFIG,
                    f"invalid value {value!r} for config {self.name}: supported values are "
                    f"{', '.join(self.choices)}",
                )
            return text
        low_type, high_type = (
            (-(1 << 31), _INT32_MAX) if self.kind is ConfigKind.INT else (_INT64_MIN, _INT64_MAX)
        )
        low = low_type if self.value_min is None else self.value_min
        high = high_type if self.value_max is None else self.value_max
        body = text[1:] if text[:1] in "+-" else text
        if not (body.isascii() and body.isdigit()) or len(body) > 19:
            raise MetadataError(
                ErrorCode.INVALID_CONFIG, f"invalid value {value!r} for config {self.name}: "
                f"expected an integer in {low}..{high}"
            )
        number = int(text)
        if not low <= number <= high:
            raise MetadataError(
                ErrorCode.INVALID_CONFIG,
                f"invalid value {value!r} for config {self.name}: must be in {low}..{high}",
            )
        return str(number)


def _spec(name: str, kind: ConfigKind, default: object, low: int | None = None,
          high: int | None = None, choices: tuple[str, ...] = ()) -> TopicConfigSpec:
    return TopicConfigSpec(name=name, kind=kind, default=str(default), value_min=low,
                           value_max=high, choices=choices)


_INT, _LONG, _CHOICE = ConfigKind.INT, ConfigKind.LONG, ConfigKind.CHOICE
# The topic configs we honour, with Kafka's names, types, defaults and bounds, except where noted.
TOPIC_CONFIGS: Final[Mapping[str, TopicConfigSpec]] = MappingProxyType({s.name: s for s in (
    # only deletion: compaction is not implemented, and saying yes to it would be a lie
    _spec("cleanup.policy", _CHOICE, "delete", choices=("delete",)),
    # the broker never recompresses (batches stay opaque), so only the producer's choice holds
    _spec("compression.type", _CHOICE, "producer", choices=("producer",)),
    _spec("flush.messages", _LONG, _INT64_MAX, 1),
    _spec("flush.ms", _LONG, _INT64_MAX, 0),
    _spec("index.interval.bytes", _INT, 4096, 0),
    # capped by the broker's hard batch limit, which is below Kafka's default of 1048588
    _spec("max.message.bytes", _INT, BATCH_BYTES_MAX, 0, BATCH_BYTES_MAX),
    _spec("message.timestamp.type", _CHOICE, "CreateTime",
          choices=("CreateTime", "LogAppendTime")),
    _spec("min.insync.replicas", _INT, 1, 1),
    _spec("retention.bytes", _LONG, -1, -1),
    _spec("retention.ms", _LONG, 604_800_000, -1),
    # Kafka 4 requires 1 MiB; 1 KiB lets retention and rolling be exercised with little data
    _spec("segment.bytes", _INT, 1 << 30, 1024),
    _spec("segment.jitter.ms", _LONG, 0, 0),
    _spec("segment.ms", _LONG, 604_800_000, 1),
)})


# ---- what the state holds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerInfo:
    node_id: int
    client_address: str  # host:port for Kafka clients
    raft_address: str  # host:port of the ZeroMQ peer bus
    incarnation: int
    broker_epoch: int  # log index of the registration of this incarnation
    fenced: bool  # True once the controller leader has declared the session dead

    @property
    def alive(self) -> bool:
        return not self.fenced


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionInfo:
    topic: str
    partition: int
    group_id: int  # >= FIRST_PARTITION_GROUP_ID; unique over the cluster's whole history
    replicas: tuple[int, ...]  # distinct; replicas[0] is the preferred leader

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    name: str
    topic_id: str  # 32 hex digits
    partitions: tuple[PartitionInfo, ...]  # partitions[i].partition == i
    configs: tuple[tuple[str, str], ...] = ()  # explicit settings only, sorted by key

    @property
    def internal(self) -> bool:
        return is_internal_topic(self.name)

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas)

    def config(self, key: str) -> str:
        """The effective value of a known config: the explicit setting, else the default."""
        for name, value in self.configs:
            if name == key:
                return value
        return TOPIC_CONFIGS[key].default

    def config_int(self, key: str) -> int:
        assert TOPIC_CONFIGS[key].kind is not ConfigKind.CHOICE, key
        return int(self.config(key))


# ---- what applying a record reports -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInitialized:
    cluster_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerChanged:
    """Registered (previous None), re-registered, fenced or unfenced."""

    broker: BrokerInfo
    previous: BrokerInfo | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerRemoved:
    broker: BrokerInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicCreated:
    topic: TopicInfo  # followed by one PartitionAdded per partition


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicDeleted:
    topic: TopicInfo  # followed by one PartitionRemoved per partition


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicConfigChanged:
    topic: TopicInfo  # with the new configs
    keys: tuple[str, ...]  # the keys whose effective value changed


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionAdded:
    partition: PartitionInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionRemoved:
    partition: PartitionInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionReplicasChanged:
    partition: PartitionInfo
    previous: PartitionInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerIdsAllocated:
    broker: int
    broker_epoch: int
    block_start: int  # the block is block_start .. block_start + block_size - 1
    block_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordIgnored:
    """A committed record that the state made inapplicable; nothing changed."""

    index: int
    record_type: str  # the record's tag, or "undecodable"
    code: ErrorCode  # what a client waiting on this record should be told
    reason: str


Change: TypeAlias = (
    ClusterInitialized
    | BrokerChanged
    | BrokerRemoved
    | TopicCreated
    | TopicDeleted
    | TopicConfigChanged
    | PartitionAdded
    | PartitionRemoved
    | PartitionReplicasChanged
    | ProducerIdsAllocated
    | RecordIgnored
)


def is_internal_topic(name: str) -> bool:
    return name.startswith(INTERNAL_TOPIC_PREFIX)


# ---- the state machine ------------------------------------------------------------------------


class MetadataState:
    """The metadata as of `last_applied_index`. Mutated only by `apply`/`apply_entry`."""

    def __init__(self) -> None:
        self._last_applied_index = 0
        self._cluster_id: str | None = None
        self._brokers: dict[int, BrokerInfo] = {}
        self._topics: dict[str, TopicInfo] = {}
        self._topic_names_by_id: dict[str, str] = {}
        self._groups: dict[int, PartitionInfo] = {}
        self._groups_by_node: dict[int, set[int]] = {}  # node -> groups it is a replica of
        self._next_group_id = FIRST_PARTITION_GROUP_ID  # never decreases
        self._next_producer_id = 0  # never decreases

    # -- reading --

    @property
    def last_applied_index(self) -> int:
        return self._last_applied_index

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    @property
    def brokers(self) -> Mapping[int, BrokerInfo]:
        return MappingProxyType(self._brokers)

    @property
    def topics(self) -> Mapping[str, TopicInfo]:
        return MappingProxyType(self._topics)

    @property
    def next_group_id(self) -> int:
        return self._next_group_id

    @property
    def next_producer_id(self) -> int:
        return self._next_producer_id

    @property
    def partition_count(self) -> int:
        return len(self._groups)

    def broker(self, node_id: int) -> BrokerInfo | None:
        return self._brokers.get(node_id)

    def live_brokers(self) -> tuple[int, ...]:
        """Registered, unfenced node ids, ascending."""
        return tuple(sorted(n for n, b in self._brokers.items() if not b.fenced))

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: str) -> TopicInfo | None:
        name = self._topic_names_by_id.get(topic_id)
        return None if name is None else self._topics[name]

    def group(self, group_id: int) -> PartitionInfo | None:
        return self._groups.get(group_id)

    def partitions(self) -> Iterator[PartitionInfo]:
        """Every partition of every topic, by ascending group id."""
        return (self._groups[g] for g in sorted(self._groups))

    def partitions_for_broker(self, node_id: int) -> tuple[PartitionInfo, ...]:
        """The partitions `node_id` holds a replica of, by ascending group id."""
        return tuple(self._groups[g] for g in sorted(self._groups_by_node.get(node_id, ())))

    # -- applying --

    def apply_entry(self, index: int, data: bytes | bytearray | memoryview) -> list[Change]:
        """Decodes and applies the committed entry at `index`. Undecodable bytes are ignored
        (every node ignores the same bytes, so the states stay equal) and reported."""
        if index <= self._last_applied_index:
            return []
        try:
            record = decode_record(data)
        except MetadataRecordError as exc:
            self._last_applied_index = index
            return [RecordIgnored(index=index, record_type="undecodable",
                                  code=ErrorCode.CORRUPT_MESSAGE, reason=str(exc))]
        return self.apply(index, record)

    def apply(self, index: int, record: MetadataRecord) -> list[Change]:
        """Applies the committed `record` at log `index` and says what changed. Indexes must
        rise (gaps are fine: not every controller log entry is a record); an index at or below
        `last_applied_index` is a replay and changes nothing."""
        if index <= self._last_applied_index:
            return []
        self._last_applied_index = index
        match record:
            case InitializeCluster():
                return self._initialize(index, record)
            case RegisterBroker():
                return self._register(index, record)
            case BrokerFenced() | BrokerUnfenced():
                return self._set_fenced(index, record)
            case UnregisterBroker():
                return self._unregister(index, record)
            case CreateTopic():
                return self._create_topic(index, record)
            case DeleteTopic():
                return self._delete_topic(index, record)
            case SetTopicConfig():
                return self._set_configs(index, record)
            case AllocateProducerIds():
                return self._allocate_producer_ids(index, record)
            case ChangePreferredLeader() | ReassignReplicas():
                return self._change_replicas(index, record)
        raise AssertionError(f"unhandled record {record!r}")

    @staticmethod
    def _ignored(index: int, record: MetadataRecord, code: ErrorCode, reason: str) -> list[Change]:
        return [RecordIgnored(index=index, record_type=record_type(record), code=code,
                              reason=reason)]

    def _initialize(self, index: int, record: InitializeCluster) -> list[Change]:
        if self._cluster_id == record.cluster_id:
            return []
        if self._cluster_id is not None:
            return self._ignored(index, record, ErrorCode.INCONSISTENT_CLUSTER_ID,
                                 f"the cluster is already named {self._cluster_id!r}")
        self._cluster_id = record.cluster_id
        return [ClusterInitialized(cluster_id=record.cluster_id)]

    def _register(self, index: int, record: RegisterBroker) -> list[Change]:
        previous = self._brokers.get(record.node_id)
        if previous is not None and previous.incarnation == record.incarnation:
            # a retried registration: same process, same epoch; addresses may have moved
            broker = replace(previous, client_address=record.client_address,
                             raft_address=record.raft_address)
        else:
            broker = BrokerInfo(node_id=record.node_id, client_address=record.client_address,
                                raft_address=record.raft_address,
                                incarnation=record.incarnation, broker_epoch=index, fenced=False)
        if broker == previous:
            return []
        self._brokers[record.node_id] = broker
        return [BrokerChanged(broker=broker, previous=previous)]

    def _current_broker(
        self, index: int, record: BrokerFenced | BrokerUnfenced | UnregisterBroker
    ) -> BrokerInfo | list[Change]:
        """The broker `record` is about, or the RecordIgnored explaining why it is stale."""
        broker = self._brokers.get(record.node_id)
        if broker is None:
            return self._ignored(index, record, ErrorCode.BROKER_ID_NOT_REGISTERED,
                                 f"broker {record.node_id} is not registered")
        if broker.broker_epoch != record.broker_epoch:
            return self._ignored(
                index, record, ErrorCode.STALE_BROKER_EPOCH,
                f"broker {record.node_id} is at epoch {broker.broker_epoch}, "
                f"not {record.broker_epoch}",
            )
        return broker

    def _set_fenced(self, index: int, record: BrokerFenced | BrokerUnfenced) -> list[Change]:
        broker = self._current_broker(index, record)
        if isinstance(broker, list):
            return broker
        fenced = isinstance(record, BrokerFenced)
        if broker.fenced == fenced:
            return []
        self._brokers[broker.node_id] = replace(broker, fenced=fenced)
        return [BrokerChanged(broker=self._brokers[broker.node_id], previous=broker)]

    def _unregister(self, index: int, record: UnregisterBroker) -> list[Change]:
        broker = self._current_broker(index, record)
        if isinstance(broker, list):
            return broker
        del self._brokers[broker.node_id]
        return [BrokerRemoved(broker=broker)]

    def _create_topic(self, index: int, record: CreateTopic) -> list[Change]:
        if record.name in self._topics:
            return self._ignored(index, record, ErrorCode.TOPIC_ALREADY_EXISTS,
                                 f"topic {record.name!r} already exists")
        if record.topic_id in self._topic_names_by_id:
            return self._ignored(
                index, record, ErrorCode.TOPIC_ALREADY_EXISTS,
                f"topic id {record.topic_id} is taken by "
                f"{self._topic_names_by_id[record.topic_id]!r}",
            )
        first = self._next_group_id
        partitions = tuple(
            PartitionInfo(topic=record.name, partition=a.partition, group_id=first + a.partition,
                          replicas=a.replicas)
            for a in record.partitions
        )
        self._next_group_id = first + len(partitions)
        topic = TopicInfo(name=record.name, topic_id=record.topic_id, partitions=partitions,
                          configs=record.configs)
        self._topics[topic.name] = topic
        self._topic_names_by_id[topic.topic_id] = topic.name
        changes: list[Change] = [TopicCreated(topic=topic)]
        for info in partitions:
            self._add_group(info)
            changes.append(PartitionAdded(partition=info))
        return changes

    def _topic_for(
        self, index: int, record: DeleteTopic | SetTopicConfig
    ) -> TopicInfo | list[Change]:
        topic = self._topics.get(record.name)
        if topic is None:
            return self._ignored(index, record, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"topic {record.name!r} does not exist")
        if topic.topic_id != record.topic_id:
            return self._ignored(
                index, record, ErrorCode.UNKNOWN_TOPIC_ID,
                f"topic {record.name!r} has id {topic.topic_id}, not {record.topic_id}",
            )
        return topic

    def _delete_topic(self, index: int, record: DeleteTopic) -> list[Change]:
        topic = self._topic_for(index, record)
        if isinstance(topic, list):
            return topic
        del self._topics[topic.name]
        del self._topic_names_by_id[topic.topic_id]
        changes: list[Change] = [TopicDeleted(topic=topic)]
        for info in topic.partitions:
            self._remove_group(info)
            changes.append(PartitionRemoved(partition=info))
        return changes

    def _set_configs(self, index: int, record: SetTopicConfig) -> list[Change]:
        topic = self._topic_for(index, record)
        if isinstance(topic, list):
            return topic
        configs: dict[str, str] = dict(topic.configs)
        for key, value in record.configs:
            if value is None:
                configs.pop(key, None)
            else:
                configs[key] = value
        updated = replace(topic, configs=config_pairs(configs))
        keys = tuple(k for k, _ in record.configs if _effective(updated, k) != _effective(topic, k))
        if updated == topic:
            return []
        self._topics[topic.name] = updated
        return [TopicConfigChanged(topic=updated, keys=keys)]

    def _allocate_producer_ids(self, index: int, record: AllocateProducerIds) -> list[Change]:
        start = self._next_producer_id
        if start + record.block_size - 1 > _INT64_MAX:
            return self._ignored(index, record, ErrorCode.UNKNOWN_SERVER_ERROR,
                                 "producer ids are exhausted")
        self._next_producer_id = start + record.block_size
        return [ProducerIdsAllocated(broker=record.broker, broker_epoch=record.broker_epoch,
                                     block_start=start, block_size=record.block_size)]

    def _change_replicas(
        self, index: int, record: ChangePreferredLeader | ReassignReplicas
    ) -> list[Change]:
        previous = self._groups.get(record.group_id)
        if previous is None:
            return self._ignored(index, record, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"group {record.group_id} does not exist")
        if isinstance(record, ReassignReplicas):
            replicas = record.replicas
        elif record.node_id not in previous.replicas:
            return self._ignored(
                index, record, ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"node {record.node_id} is not a replica of group {record.group_id}",
            )
        else:
            replicas = (record.node_id,) + tuple(
                n for n in previous.replicas if n != record.node_id
            )
        if replicas == previous.replicas:
            return []
        info = replace(previous, replicas=replicas)
        self._remove_group(previous)
        self._add_group(info)
        topic = self._topics[info.topic]
        parts = list(topic.partitions)
        parts[info.partition] = info
        self._topics[topic.name] = replace(topic, partitions=tuple(parts))
        return [PartitionReplicasChanged(partition=info, previous=previous)]

    def _add_group(self, info: PartitionInfo) -> None:
        self._groups[info.group_id] = info
        for node in info.replicas:
            self._groups_by_node.setdefault(node, set()).add(info.group_id)

    def _remove_group(self, info: PartitionInfo) -> None:
        del self._groups[info.group_id]
        for node in info.replicas:
            held = self._groups_by_node[node]
            held.discard(info.group_id)
            if not held:
                del self._groups_by_node[node]

    def check_invariants(self) -> None:
        """Asserts the state's internal consistency (tests call it after every apply)."""
        assert self._next_group_id >= FIRST_PARTITION_GROUP_ID
        assert self._next_producer_id >= 0
        for node_id, broker in self._brokers.items():
            assert broker.node_id == node_id
            assert 1 <= broker.broker_epoch <= self._last_applied_index
        assert len(self._topic_names_by_id) == len(self._topics)
        seen: dict[int, PartitionInfo] = {}
        for name, topic in self._topics.items():
            assert topic.name == name and self._topic_names_by_id[topic.topic_id] == name
            assert topic.partitions and topic.configs == config_pairs(dict(topic.configs))
            for number, info in enumerate(topic.partitions):
                assert info.topic == name and info.partition == number
                assert FIRST_PARTITION_GROUP_ID <= info.group_id < self._next_group_id
                assert info.group_id not in seen and len(set(info.replicas)) == len(info.replicas)
                seen[info.group_id] = info
        assert seen == self._groups
        by_node: dict[int, set[int]] = {}
        for info in self._groups.values():
            for node in info.replicas:
                by_node.setdefault(node, set()).add(info.group_id)
        assert by_node == self._groups_by_node


def _effective(topic: TopicInfo, key: str) -> str | None:
    """A key's effective value; None for a key with no known default (not in TOPIC_CONFIGS)."""
    explicit = dict(topic.configs).get(key)
    if explicit is not None or key not in TOPIC_CONFIGS:
        return explicit
    return TOPIC_CONFIGS[key].default


# ---- validation before proposing --------------------------------------------------------------


def validate_topic_name(name: str) -> None:
    """Kafka's rules: 1..249 of [a-zA-Z0-9._-], not "." or ".."; INVALID_TOPIC_EXCEPTION."""
    problem = topic_name_problem(name) if isinstance(name, str) else "topic name is not a string"
    if problem is not None:
        raise MetadataError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)


def validate_topic_configs(
    configs: Mapping[str, str | None], *, allow_removal: bool = False
) -> tuple[tuple[str, str | None], ...]:
    """The configs in canonical form (sorted pairs, normalized values); INVALID_CONFIG naming
    the key for an unknown key or a bad value. A None value (back to the default) is accepted
    only with `allow_removal`."""
    pairs: list[tuple[str, str | None]] = []
    for key, value in sorted(configs.items()):
        spec = TOPIC_CONFIGS.get(key)
        if spec is None:
            raise MetadataError(ErrorCode.INVALID_CONFIG, f"unknown topic config {key!r}")
        if value is None:
            if not allow_removal:
                raise MetadataError(ErrorCode.INVALID_CONFIG, f"config {key} has no value")
            pairs.append((key, None))
        elif not isinstance(value, str):
            raise MetadataError(ErrorCode.INVALID_CONFIG, f"config {key}: value is not a string")
        else:
            pairs.append((key, spec.normalize(value)))
    return tuple(pairs)


def _collision_key(name: str) -> str:
    # Kafka's metric names turn '.' into '_', so two names equal after that would collide
    return name.replace(".", "_")


def validate_new_topic_name(state: MetadataState, name: str, *, internal: bool = False) -> None:
    """The name is legal, free, and does not collide with an existing topic's. Names starting
    with "__" are reserved for internal topics (`internal=True`) and required of them."""
    validate_topic_name(name)
    if is_internal_topic(name) and not internal:
        raise MetadataError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"topic {name!r}: names starting with {INTERNAL_TOPIC_PREFIX!r} are reserved for "
            "internal topics",
        )
    if internal and not is_internal_topic(name):
        raise MetadataError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                            f"internal topic {name!r} must start with {INTERNAL_TOPIC_PREFIX!r}")
    if name in state.topics:
        raise MetadataError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
    if "." in name or "_" in name:
        key = _collision_key(name)
        for other in state.topics:
            if _collision_key(other) == key:
                raise MetadataError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                                    f"topic {name!r} collides with existing topic {other!r}")


def validate_create_topic(
    state: MetadataState,
    *,
    name: str,
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, str] | None = None,
    internal: bool = False,
) -> tuple[tuple[str, str], ...]:
    """Checks a topic creation (placed by us) against the state; returns the canonical config
    pairs. The API layer turns CreateTopics' -1 ("broker default") into numbers first."""
    validate_new_topic_name(state, name, internal=internal)
    _validate_partition_count(state, partitions)
    _validate_replication_factor(state, replication_factor)
    return _config_values(configs or {})


def _config_values(configs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    pairs = validate_topic_configs(configs)
    return tuple((k, v) for k, v in pairs if v is not None)


def _validate_partition_count(state: MetadataState, partitions: int) -> None:
    if type(partitions) is not int or partitions < 1:
        raise MetadataError(ErrorCode.INVALID_PARTITIONS,
                            f"number of partitions must be at least 1, got {partitions!r}")
    if partitions > TOPIC_PARTITIONS_MAX:
        raise MetadataError(
            ErrorCode.INVALID_PARTITIONS,
            f"number of partitions {partitions} is above the maximum of {TOPIC_PARTITIONS_MAX}",
        )
    if state.partition_count + partitions > CLUSTER_PARTITIONS_MAX:
        raise MetadataError(
            ErrorCode.INVALID_PARTITIONS,
            f"{partitions} more partitions would exceed the cluster's maximum of "
            f"{CLUSTER_PARTITIONS_MAX} (it has {state.partition_count})",
        )


def _validate_replication_factor(state: MetadataState, replication_factor: int) -> None:
    if type(replication_factor) is not int or replication_factor < 1:
        raise MetadataError(ErrorCode.INVALID_REPLICATION_FACTOR,
                            f"replication factor must be at least 1, got {replication_factor!r}")
    if replication_factor > REPLICATION_FACTOR_MAX:
        raise MetadataError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"replication factor {replication_factor} is above the maximum of "
            f"{REPLICATION_FACTOR_MAX}",
        )
    live = len(state.live_brokers())
    if replication_factor > live:
        raise MetadataError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"replication factor {replication_factor} is larger than the number of live "
            f"brokers ({live})",
        )


def validate_replica_assignment(
    state: MetadataState, assignments: Sequence[Sequence[int]]
) -> tuple[tuple[int, ...], ...]:
    """Checks a manual assignment (CreateTopics' `assignments`: replicas per partition, in
    partition order) against the state; INVALID_REPLICA_ASSIGNMENT."""
    _validate_partition_count(state, len(assignments))
    result: list[tuple[int, ...]] = []
    for partition, replicas in enumerate(assignments):
        nodes = tuple(replicas)
        if not nodes or len(set(nodes)) != len(nodes):
            raise MetadataError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                f"partition {partition}: replicas {list(nodes)} are empty or "
                                "repeat")
        if len(nodes) != len(result[0] if result else nodes):
            raise MetadataError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                f"partition {partition}: {len(nodes)} replicas, partition 0 has "
                                f"{len(result[0])}")
        unknown = [n for n in nodes if state.broker(n) is None]
        if unknown:
            raise MetadataError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                f"partition {partition}: brokers {unknown} are not registered")
        if all(state.brokers[n].fenced for n in nodes):
            raise MetadataError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                f"partition {partition}: every replica in {list(nodes)} is fenced")
        result.append(nodes)
    if len(result[0]) > REPLICATION_FACTOR_MAX:
        raise MetadataError(ErrorCode.INVALID_REPLICATION_FACTOR,
                            f"replication factor {len(result[0])} is above the maximum of "
                            f"{REPLICATION_FACTOR_MAX}")
    return tuple(result)


def validate_register_broker(state: MetadataState, record: RegisterBroker) -> None:
    """A new broker must fit, and must not claim an address a live broker holds."""
    if state.broker(record.node_id) is None and len(state.brokers) >= BROKERS_MAX:
        raise MetadataError(ErrorCode.INVALID_REQUEST,
                            f"the cluster already has the maximum of {BROKERS_MAX} brokers")
    for other in state.brokers.values():
        if other.node_id == record.node_id or other.fenced:
            continue
        taken = {other.client_address, other.raft_address}
        clash = taken & {record.client_address, record.raft_address}
        if clash:
            raise MetadataError(ErrorCode.DUPLICATE_BROKER_REGISTRATION,
                                f"live broker {other.node_id} already uses {sorted(clash)}")


def _existing_topic(state: MetadataState, name: str) -> TopicInfo:
    validate_topic_name(name)
    topic = state.topic(name)
    if topic is None:
        raise MetadataError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist")
    return topic


def delete_topic_record(state: MetadataState, name: str) -> DeleteTopic:
    """The record deleting `name`; internal topics cannot be deleted."""
    topic = _existing_topic(state, name)
    if topic.internal:
        raise MetadataError(ErrorCode.INVALID_TOPIC_EXCEPTION,
                            f"internal topic {name!r} cannot be deleted")
    return DeleteTopic(name=name, topic_id=topic.topic_id)


def set_topic_config_record(
    state: MetadataState, name: str, configs: Mapping[str, str | None]
) -> SetTopicConfig:
    """The record setting (or with None, resetting) some of `name`'s configs."""
    topic = _existing_topic(state, name)
    if not configs:
        raise MetadataError(ErrorCode.INVALID_REQUEST, "no config to set")
    pairs = validate_topic_configs(configs, allow_removal=True)
    return SetTopicConfig(name=name, topic_id=topic.topic_id, configs=pairs)
