"""What the controller leader refuses before proposing, each with Kafka's error code."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broker.controller.metadata import (
    CLUSTER_PARTITIONS_MAX,
    TOPIC_CONFIGS,
    MetadataError,
    MetadataState,
    delete_topic_record,
    set_topic_config_record,
    validate_create_topic,
    validate_register_broker,
    validate_replica_assignment,
    validate_topic_configs,
    validate_topic_name,
)
from broker.controller.records import (
    TOPIC_PARTITIONS_MAX,
    BrokerFenced,
    CreateTopic,
    DeleteTopic,
    InitializeCluster,
    PartitionAssignment,
    RegisterBroker,
    SetTopicConfig,
)
from broker.wire.errors import ErrorCode, KafkaError

ID_A = "a" * 32


def _state(
    *nodes: int, fenced: tuple[int, ...] = (), topics: tuple[str, ...] = ()
) -> MetadataState:
    state = MetadataState()
    index = 1
    state.apply(index, InitializeCluster(cluster_id="c1"))
    for node in nodes:
        index += 1
        state.apply(index, RegisterBroker(node_id=node, client_address=f"h{node}:9092",
                                          raft_address=f"h{node}:19092", incarnation=1))
    for node in fenced:
        index += 1
        state.apply(index, BrokerFenced(node_id=node,
                                        broker_epoch=state.brokers[node].broker_epoch))
    for number, name in enumerate(topics):
        index += 1
        state.apply(index, CreateTopic(
            name=name, topic_id=f"{number + 1:032x}",
            partitions=(PartitionAssignment(partition=0, replicas=(nodes[0],)),)))
    state.check_invariants()
    return state


def _refused(code: ErrorCode, call: Callable[[], object], *words: str) -> MetadataError:
    with pytest.raises(MetadataError) as info:
        call()
    assert info.value.code is code, info.value
    for word in words:
        assert word in info.value.message, info.value.message
    return info.value


def test_metadata_error_is_a_kafka_error() -> None:
    error = _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: validate_topic_name(""))
    assert isinstance(error, KafkaError) and not error.retriable


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a/b", "a\\b", "a\0b", "a b",
                                  "caf\u00e9", "a:b", "a*"])
def test_illegal_topic_names(name: str) -> None:
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: validate_topic_name(name))


@pytest.mark.parametrize("name", ["a", "orders", "x" * 249, "A.b_c-9", "..."])
def test_legal_topic_names(name: str) -> None:
    validate_topic_name(name)


def _create(state: MetadataState, name: str = "orders", partitions: int = 3,
            replication_factor: int = 3, configs: dict[str, str] | None = None,
            internal: bool = False) -> tuple[tuple[str, str], ...]:
    return validate_create_topic(state, name=name, partitions=partitions,
                                 replication_factor=replication_factor, configs=configs,
                                 internal=internal)


def test_a_valid_creation_returns_canonical_configs() -> None:
    state = _state(1, 2, 3)
    configs = {"segment.bytes": " 0004096 ", "retention.ms": "+100", "cleanup.policy": "delete"}
    assert _create(state, configs=configs) == (
        ("cleanup.policy", "delete"), ("retention.ms", "100"), ("segment.bytes", "4096"))


def test_existing_topics_and_collisions() -> None:
    state = _state(1, 2, 3, topics=("orders", "a.b"))
    _refused(ErrorCode.TOPIC_ALREADY_EXISTS, lambda: _create(state), "orders")
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: _create(state, name="a_b"), "collides")
    _create(state, name="a-b")


def test_double_underscore_names_are_reserved_for_internal_topics() -> None:
    state = _state(1, 2, 3)
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: _create(state, name="__mine"), "reserved")
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: _create(state, internal=True))
    _create(state, name="__consumer_offsets", internal=True)


@pytest.mark.parametrize("partitions", [0, -1, TOPIC_PARTITIONS_MAX + 1])
def test_partition_counts(partitions: int) -> None:
    _refused(ErrorCode.INVALID_PARTITIONS, lambda: _create(_state(1, 2, 3), partitions=partitions),
             str(partitions))


def test_the_cluster_partition_limit() -> None:
    state = _state(1)
    big = TOPIC_PARTITIONS_MAX
    index = state.last_applied_index
    for number in range(CLUSTER_PARTITIONS_MAX // big):
        index += 1
        state.apply(index, CreateTopic(
            name=f"t{number}", topic_id=f"{number + 1:032x}",
            partitions=tuple(PartitionAssignment(partition=p, replicas=(1,)) for p in range(big))))
    room = CLUSTER_PARTITIONS_MAX - state.partition_count
    _create(state, partitions=room, replication_factor=1)
    _refused(ErrorCode.INVALID_PARTITIONS,
             lambda: _create(state, partitions=room + 1, replication_factor=1), "maximum")


@pytest.mark.parametrize("factor", [0, -1])
def test_replication_factor_must_be_positive(factor: int) -> None:
    _refused(ErrorCode.INVALID_REPLICATION_FACTOR,
             lambda: _create(_state(1, 2, 3), replication_factor=factor))


def test_replication_factor_counts_only_live_brokers() -> None:
    _refused(ErrorCode.INVALID_REPLICATION_FACTOR,
             lambda: _create(_state(1, 2, 3), replication_factor=4), "4", "3")
    fenced = _state(1, 2, 3, fenced=(2,))
    _refused(ErrorCode.INVALID_REPLICATION_FACTOR, lambda: _create(fenced), "3", "(2)")
    _create(fenced, replication_factor=2)
    _refused(ErrorCode.INVALID_REPLICATION_FACTOR,
             lambda: _create(_state(*range(1, 20)), replication_factor=17), "maximum")


BAD_CONFIGS = [
    ("retention.ms", "-2"), ("retention.ms", "1.5"), ("retention.ms", "abc"),
    ("retention.ms", ""), ("retention.ms", str(1 << 63)), ("retention.bytes", "-2"),
    ("segment.bytes", "1023"), ("segment.bytes", str(1 << 31)), ("segment.ms", "0"),
    ("segment.jitter.ms", "-1"), ("max.message.bytes", str(2 << 20)),
    ("max.message.bytes", "-1"), ("cleanup.policy", "compact"),
    ("cleanup.policy", "compact,delete"), ("min.insync.replicas", "0"),
    ("message.timestamp.type", "createtime"), ("compression.type", "lz4"),
    ("flush.messages", "0"), ("flush.ms", "-1"), ("index.interval.bytes", "-1"),
    ("retention.ms", "\u0661\u0662"),
]


@pytest.mark.parametrize("key, value", BAD_CONFIGS)
def test_bad_config_values_name_the_key(key: str, value: str) -> None:
    _refused(ErrorCode.INVALID_CONFIG,
             lambda: _create(_state(1, 2, 3), configs={key: value}), key)


def test_unknown_configs_name_the_key() -> None:
    _refused(ErrorCode.INVALID_CONFIG,
             lambda: _create(_state(1, 2, 3), configs={"retention.hours": "1"}), "retention.hours")


def test_every_known_config_accepts_its_default() -> None:
    defaults = {key: spec.default for key, spec in TOPIC_CONFIGS.items()}
    assert dict(validate_topic_configs(defaults)) == defaults
    _refused(ErrorCode.INVALID_CONFIG, lambda: validate_topic_configs({"retention.ms": None}))
    assert validate_topic_configs({"retention.ms": None}, allow_removal=True) == (
        ("retention.ms", None),)


def test_manual_replica_assignments() -> None:
    state = _state(1, 2, 3, fenced=(3,))
    assert validate_replica_assignment(state, [[1, 2], [2, 3]]) == ((1, 2), (2, 3))
    for bad, words in (
        ([[1, 2], [2, 2]], "repeat"), ([[1, 2], []], "empty"), ([[1, 2], [1]], "replicas"),
        ([[1, 9]], "not registered"), ([[3]], "fenced"),
    ):
        _refused(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                 lambda: validate_replica_assignment(state, bad), *words.split())
    _refused(ErrorCode.INVALID_PARTITIONS, lambda: validate_replica_assignment(state, []))


def test_deleting_topics() -> None:
    state = _state(1, topics=("orders", "__consumer_offsets"))
    assert delete_topic_record(state, "orders") == DeleteTopic(
        name="orders", topic_id=state.topics["orders"].topic_id)
    _refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, lambda: delete_topic_record(state, "gone"))
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION, lambda: delete_topic_record(state, "a/b"))
    _refused(ErrorCode.INVALID_TOPIC_EXCEPTION,
             lambda: delete_topic_record(state, "__consumer_offsets"), "internal")


def test_setting_topic_configs() -> None:
    state = _state(1, topics=("orders",))
    record = set_topic_config_record(state, "orders", {"segment.bytes": None,
                                                       "retention.ms": "010"})
    assert record == SetTopicConfig(name="orders", topic_id=state.topics["orders"].topic_id,
                                    configs=(("retention.ms", "10"), ("segment.bytes", None)))
    _refused(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
             lambda: set_topic_config_record(state, "gone", {"retention.ms": "1"}))
    _refused(ErrorCode.INVALID_CONFIG,
             lambda: set_topic_config_record(state, "orders", {"retention.ms": "x"}),
             "retention.ms")
    _refused(ErrorCode.INVALID_REQUEST, lambda: set_topic_config_record(state, "orders", {}))


def test_broker_registration_must_not_take_a_live_brokers_address() -> None:
    state = _state(1, 2, fenced=(2,))
    same = RegisterBroker(node_id=3, client_address="h1:9092", raft_address="h3:1", incarnation=1)
    _refused(ErrorCode.DUPLICATE_BROKER_REGISTRATION,
             lambda: validate_register_broker(state, same), "h1:9092")
    takes_fenced = RegisterBroker(node_id=3, client_address="h2:9092", raft_address="h2:19092",
                                  incarnation=1)
    validate_register_broker(state, takes_fenced)
    restart = RegisterBroker(node_id=1, client_address="h1:9092", raft_address="h1:19092",
                             incarnation=2)
    validate_register_broker(state, restart)
