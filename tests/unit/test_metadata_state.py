"""MetadataState: applying committed records, as every broker does, through the bytes path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.controller.metadata import (
    BrokerChanged,
    BrokerRemoved,
    Change,
    ClusterInitialized,
    MetadataState,
    PartitionAdded,
    PartitionRemoved,
    PartitionReplicasChanged,
    ProducerIdsAllocated,
    RecordIgnored,
    TopicConfigChanged,
    TopicCreated,
    TopicDeleted,
)
from broker.controller.records import (
    AllocateProducerIds,
    BrokerFenced,
    BrokerUnfenced,
    ChangePreferredLeader,
    CreateTopic,
    DeleteTopic,
    InitializeCluster,
    MetadataRecord,
    PartitionAssignment,
    ReassignReplicas,
    RegisterBroker,
    SetTopicConfig,
    UnregisterBroker,
    config_pairs,
    encode_record,
)
from broker.wire.errors import ErrorCode

ID_A = "a" * 32
ID_B = "b" * 32


class Log:
    """A metadata log applied entry by entry, invariants checked after each."""

    def __init__(self) -> None:
        self.state = MetadataState()
        self.entries: list[tuple[int, bytes]] = []
        self.index = 0

    def append(self, record: MetadataRecord, *, gap: int = 0) -> list[Change]:
        self.index += 1 + gap  # gaps stand for the log's non-record entries
        data = encode_record(record)
        self.entries.append((self.index, data))
        changes = self.state.apply_entry(self.index, data)
        self.state.check_invariants()
        return changes


def register(node_id: int, incarnation: int = 1, port: int = 0) -> RegisterBroker:
    return RegisterBroker(node_id=node_id, client_address=f"10.0.0.{node_id}:{9092 + port}",
                          raft_address=f"10.0.0.{node_id}:{19092 + port}",
                          incarnation=incarnation)


def create(name: str, topic_id: str, *replicas: tuple[int, ...], **configs: str) -> CreateTopic:
    return CreateTopic(
        name=name, topic_id=topic_id,
        partitions=tuple(PartitionAssignment(partition=i, replicas=r)
                         for i, r in enumerate(replicas)),
        configs=config_pairs({k.replace("_", "."): v for k, v in configs.items()}),
    )


def view(state: MetadataState) -> Any:
    """Everything observable about a state, for equality."""
    return (
        state.last_applied_index, state.cluster_id, dict(state.brokers), dict(state.topics),
        state.next_group_id, state.next_producer_id, list(state.partitions()),
        {n: state.partitions_for_broker(n) for n in range(1, 10)},
    )


def cluster(*nodes: int) -> Log:
    log = Log()
    log.append(InitializeCluster(cluster_id="c1"))
    for node in nodes:
        log.append(register(node))
    return log


def test_an_empty_state() -> None:
    state = MetadataState()
    assert state.last_applied_index == 0 and state.cluster_id is None
    assert state.next_group_id == 1 and state.next_producer_id == 0
    assert not state.brokers and not state.topics and state.live_brokers() == ()
    assert state.group(0) is None and state.partitions_for_broker(1) == ()
    state.check_invariants()


def test_initialize_cluster_once() -> None:
    log = Log()
    assert log.append(InitializeCluster(cluster_id="c1")) == [ClusterInitialized(cluster_id="c1")]
    assert log.append(InitializeCluster(cluster_id="c1")) == []
    (ignored,) = log.append(InitializeCluster(cluster_id="c2"))
    assert isinstance(ignored, RecordIgnored)
    assert ignored.code is ErrorCode.INCONSISTENT_CLUSTER_ID and ignored.index == 3
    assert log.state.cluster_id == "c1"


def test_registration_sets_the_broker_epoch_to_the_record_index() -> None:
    log = cluster()
    (change,) = log.append(register(1), gap=3)
    assert isinstance(change, BrokerChanged) and change.previous is None
    assert change.broker.broker_epoch == 5 and change.broker.alive
    assert log.state.broker(1) == change.broker
    assert log.state.brokers[1].client_address == "10.0.0.1:9092"
    assert log.state.live_brokers() == (1,)


def test_a_retried_registration_keeps_the_epoch_and_a_new_incarnation_gets_a_new_one() -> None:
    log = cluster(1)
    epoch = log.state.brokers[1].broker_epoch
    assert log.append(register(1)) == []
    (moved,) = log.append(register(1, port=1))
    assert isinstance(moved, BrokerChanged)
    assert moved.broker.broker_epoch == epoch and moved.broker.client_address.endswith(":9093")
    log.append(BrokerFenced(node_id=1, broker_epoch=epoch))
    (restarted,) = log.append(register(1, incarnation=2))
    assert isinstance(restarted, BrokerChanged) and restarted.previous is not None
    assert restarted.broker.broker_epoch == log.index and not restarted.broker.fenced


def test_fencing_follows_the_broker_epoch() -> None:
    log = cluster(1, 2)
    epoch = log.state.brokers[2].broker_epoch
    (fenced,) = log.append(BrokerFenced(node_id=2, broker_epoch=epoch))
    assert isinstance(fenced, BrokerChanged) and fenced.broker.fenced and not fenced.broker.alive
    assert log.state.live_brokers() == (1,)
    assert log.append(BrokerFenced(node_id=2, broker_epoch=epoch)) == []
    (stale,) = log.append(BrokerUnfenced(node_id=2, broker_epoch=epoch + 100))
    assert isinstance(stale, RecordIgnored) and stale.code is ErrorCode.STALE_BROKER_EPOCH
    (unknown,) = log.append(BrokerFenced(node_id=7, broker_epoch=1))
    assert isinstance(unknown, RecordIgnored)
    assert unknown.code is ErrorCode.BROKER_ID_NOT_REGISTERED
    (unfenced,) = log.append(BrokerUnfenced(node_id=2, broker_epoch=epoch))
    assert isinstance(unfenced, BrokerChanged) and unfenced.broker.alive
    assert log.state.live_brokers() == (1, 2)


def test_a_fence_decided_before_a_restart_does_not_fence_the_new_incarnation() -> None:
    log = cluster(1)
    old_epoch = log.state.brokers[1].broker_epoch
    log.append(register(1, incarnation=2))
    (ignored,) = log.append(BrokerFenced(node_id=1, broker_epoch=old_epoch))
    assert isinstance(ignored, RecordIgnored) and ignored.code is ErrorCode.STALE_BROKER_EPOCH
    assert log.state.brokers[1].alive


def test_unregister() -> None:
    log = cluster(1, 2)
    (stale,) = log.append(UnregisterBroker(node_id=2, broker_epoch=1))
    assert isinstance(stale, RecordIgnored)
    (removed,) = log.append(UnregisterBroker(node_id=2,
                                             broker_epoch=log.state.brokers[2].broker_epoch))
    assert isinstance(removed, BrokerRemoved) and removed.broker.node_id == 2
    assert 2 not in log.state.brokers and log.state.live_brokers() == (1,)


def test_creating_a_topic_allocates_one_group_per_partition_in_order() -> None:
    log = cluster(1, 2, 3)
    changes = log.append(create("orders", ID_A, (1, 2, 3), (2, 3, 1), (3, 1, 2),
                                retention_ms="1000"))
    created, *added = changes
    assert isinstance(created, TopicCreated)
    topic = created.topic
    assert topic == log.state.topics["orders"] == log.state.topic_by_id(ID_A)
    assert [p.group_id for p in topic.partitions] == [1, 2, 3]
    assert [p.preferred_leader for p in topic.partitions] == [1, 2, 3]
    assert topic.replication_factor == 3 and not topic.internal
    assert added == [PartitionAdded(partition=p) for p in topic.partitions]
    assert log.state.next_group_id == 4
    assert log.state.group(2) == topic.partitions[1]
    assert [p.group_id for p in log.state.partitions_for_broker(2)] == [1, 2, 3]
    assert topic.config("retention.ms") == "1000" and topic.config_int("retention.ms") == 1000
    assert topic.config("cleanup.policy") == "delete"  # the default


def test_a_racing_second_create_is_a_no_op_with_a_reason() -> None:
    log = cluster(1, 2)
    log.append(create("orders", ID_A, (1, 2)))
    before = view(log.state)
    (ignored,) = log.append(create("orders", ID_B, (2, 1), (1, 2)))
    assert isinstance(ignored, RecordIgnored) and ignored.record_type == "create_topic"
    assert ignored.code is ErrorCode.TOPIC_ALREADY_EXISTS and "orders" in ignored.reason
    (same_id,) = log.append(create("other", ID_A, (1,)))
    assert isinstance(same_id, RecordIgnored) and same_id.code is ErrorCode.TOPIC_ALREADY_EXISTS
    assert view(log.state)[1:] == before[1:]  # only the applied index moved


def test_group_ids_are_never_reused_after_deletion() -> None:
    log = cluster(1, 2)
    log.append(create("orders", ID_A, (1, 2), (2, 1)))
    deleted, *removed = log.append(DeleteTopic(name="orders", topic_id=ID_A))
    assert isinstance(deleted, TopicDeleted) and deleted.topic.name == "orders"
    assert [c.partition.group_id for c in removed if isinstance(c, PartitionRemoved)] == [1, 2]
    assert log.state.topics == {} and log.state.group(1) is None
    assert log.state.partitions_for_broker(1) == ()
    _, *added = log.append(create("orders", ID_B, (1, 2), (2, 1)))
    assert [c.partition.group_id for c in added if isinstance(c, PartitionAdded)] == [3, 4]
    assert log.state.topic_by_id(ID_A) is None


def test_a_stale_delete_never_removes_a_recreated_topic() -> None:
    log = cluster(1)
    log.append(create("orders", ID_A, (1,)))
    log.append(DeleteTopic(name="orders", topic_id=ID_A))
    log.append(create("orders", ID_B, (1,)))
    (stale,) = log.append(DeleteTopic(name="orders", topic_id=ID_A))
    assert isinstance(stale, RecordIgnored) and stale.code is ErrorCode.UNKNOWN_TOPIC_ID
    (missing,) = log.append(DeleteTopic(name="gone", topic_id=ID_A))
    assert isinstance(missing, RecordIgnored)
    assert missing.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert log.state.topics["orders"].topic_id == ID_B


def test_topic_configs_are_set_and_reset() -> None:
    log = cluster(1)
    log.append(create("orders", ID_A, (1,), retention_ms="1000", segment_bytes="4096"))
    (changed,) = log.append(SetTopicConfig(name="orders", topic_id=ID_A, configs=config_pairs(
        {"retention.ms": "5", "segment.bytes": None, "retention.bytes": "-1"})))
    assert isinstance(changed, TopicConfigChanged)
    assert changed.topic.configs == (("retention.bytes", "-1"), ("retention.ms", "5"))
    assert changed.keys == ("retention.ms", "segment.bytes")  # retention.bytes -1 is the default
    assert log.state.topics["orders"].config("segment.bytes") == str(1 << 30)
    again = SetTopicConfig(name="orders", topic_id=ID_A, configs=(("retention.ms", "5"),))
    assert log.append(again) == []
    (stale,) = log.append(SetTopicConfig(name="orders", topic_id=ID_B,
                                         configs=(("retention.ms", "7"),)))
    assert isinstance(stale, RecordIgnored) and stale.code is ErrorCode.UNKNOWN_TOPIC_ID


def test_producer_id_blocks_are_consecutive_and_assigned_on_apply() -> None:
    log = cluster(1, 2)
    blocks = [log.append(AllocateProducerIds(broker=b, broker_epoch=2, block_size=size))
              for b, size in ((1, 1000), (2, 1000), (1, 10))]
    assert blocks == [
        [ProducerIdsAllocated(broker=1, broker_epoch=2, block_start=0, block_size=1000)],
        [ProducerIdsAllocated(broker=2, broker_epoch=2, block_start=1000, block_size=1000)],
        [ProducerIdsAllocated(broker=1, broker_epoch=2, block_start=2000, block_size=10)],
    ]
    assert log.state.next_producer_id == 2010


def test_preferred_leader_and_reassignment_update_the_indexes() -> None:
    log = cluster(1, 2, 3, 4)
    log.append(create("orders", ID_A, (1, 2, 3), (2, 3, 4)))
    (moved,) = log.append(ChangePreferredLeader(group_id=1, node_id=3))
    assert isinstance(moved, PartitionReplicasChanged)
    assert moved.partition.replicas == (3, 1, 2) and moved.previous.replicas == (1, 2, 3)
    assert log.state.topics["orders"].partitions[0].preferred_leader == 3
    assert log.append(ChangePreferredLeader(group_id=1, node_id=3)) == []
    (outsider,) = log.append(ChangePreferredLeader(group_id=1, node_id=4))
    assert isinstance(outsider, RecordIgnored)
    assert outsider.code is ErrorCode.INVALID_REPLICA_ASSIGNMENT
    (reassigned,) = log.append(ReassignReplicas(group_id=2, replicas=(4, 1, 2)))
    assert isinstance(reassigned, PartitionReplicasChanged)
    assert [p.group_id for p in log.state.partitions_for_broker(3)] == [1]
    assert [p.group_id for p in log.state.partitions_for_broker(1)] == [1, 2]
    (unknown,) = log.append(ReassignReplicas(group_id=99, replicas=(1,)))
    assert isinstance(unknown, RecordIgnored)
    assert unknown.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_undecodable_entries_are_reported_and_skipped() -> None:
    log = cluster(1)
    (ignored,) = log.state.apply_entry(log.index + 1, b"\x00garbage")
    assert isinstance(ignored, RecordIgnored)
    assert ignored.record_type == "undecodable" and ignored.code is ErrorCode.CORRUPT_MESSAGE
    assert log.state.last_applied_index == log.index + 1
    log.state.check_invariants()


def test_replaying_applied_entries_changes_nothing() -> None:
    log = cluster(1, 2, 3)
    log.append(create("orders", ID_A, (1, 2), (2, 3)))
    log.append(BrokerFenced(node_id=3, broker_epoch=log.state.brokers[3].broker_epoch))
    log.append(AllocateProducerIds(broker=1, broker_epoch=2, block_size=5))
    log.append(DeleteTopic(name="orders", topic_id=ID_A))
    before = view(log.state)
    for index, data in log.entries:
        assert log.state.apply_entry(index, data) == []
    assert log.state.apply(1, register(9)) == []
    assert view(log.state) == before
    fresh = MetadataState()
    for index, data in log.entries:
        fresh.apply_entry(index, data)
    assert view(fresh) == before


# ---- random logs ------------------------------------------------------------------------------

NODES = st.integers(1, 4)
EPOCHS = st.integers(1, 40)
NAMES = st.sampled_from(["a", "b", "c"])
IDS = st.sampled_from([ID_A, ID_B, "c" * 32])


@st.composite
def _creates(draw: st.DrawFn) -> CreateTopic:
    factor = draw(st.integers(1, 3))
    rows = draw(st.lists(st.lists(NODES, min_size=factor, max_size=factor, unique=True)
                         .map(tuple), min_size=1, max_size=4))
    return create(draw(NAMES), draw(IDS), *rows)


RECORDS = st.one_of(
    st.builds(InitializeCluster, cluster_id=st.sampled_from(["c1", "c2"])),
    st.builds(register, NODES, st.integers(1, 3), st.integers(0, 1)),
    st.builds(BrokerFenced, node_id=NODES, broker_epoch=EPOCHS),
    st.builds(BrokerUnfenced, node_id=NODES, broker_epoch=EPOCHS),
    st.builds(UnregisterBroker, node_id=NODES, broker_epoch=EPOCHS),
    _creates(),
    st.builds(DeleteTopic, name=NAMES, topic_id=IDS),
    st.builds(SetTopicConfig, name=NAMES, topic_id=IDS, configs=st.dictionaries(
        st.sampled_from(["retention.ms", "segment.bytes"]), st.none() | st.just("2048"),
        min_size=1).map(config_pairs)),
    st.builds(AllocateProducerIds, broker=NODES, broker_epoch=EPOCHS,
              block_size=st.integers(1, 100)),
    st.builds(ChangePreferredLeader, group_id=st.integers(1, 12), node_id=NODES),
    st.builds(ReassignReplicas, group_id=st.integers(1, 12),
              replicas=st.lists(NODES, min_size=1, max_size=3, unique=True).map(tuple)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(RECORDS, st.integers(0, 2)), max_size=40))
def test_random_logs_apply_deterministically_and_never_reuse_group_ids(
    entries: list[tuple[MetadataRecord, int]],
) -> None:
    log = Log()
    groups_seen: set[int] = set()
    next_group_id = log.state.next_group_id
    for record, gap in entries:
        for change in log.append(record, gap=gap):
            if isinstance(change, PartitionAdded):
                assert change.partition.group_id not in groups_seen
                groups_seen.add(change.partition.group_id)
        assert log.state.next_group_id >= next_group_id
        next_group_id = log.state.next_group_id
    replayed = MetadataState()
    for index, data in log.entries:
        replayed.apply_entry(index, data)
    assert view(replayed) == view(log.state)
    assert all(log.state.apply_entry(i, d) == [] for i, d in log.entries)
