"""Replica placement and leadership balancing: even, load-aware and deterministic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.controller.metadata import (
    CONSUMER_OFFSETS_TOPIC,
    MetadataError,
    MetadataState,
)
from broker.controller.placement import (
    CONSUMER_OFFSETS_PARTITIONS,
    BrokerLoad,
    PlacementError,
    assign_replicas,
    broker_load,
    consumer_offsets_record,
    create_topic_record,
    leader_balance_moves,
)
from broker.controller.records import (
    BrokerFenced,
    CreateTopic,
    InitializeCluster,
    MetadataRecord,
    RegisterBroker,
)
from broker.wire.errors import ErrorCode

Rows = Sequence[tuple[int, ...]]


def leaders_of(rows: Rows) -> Counter[int]:
    return Counter(row[0] for row in rows)


def replicas_of(rows: Rows) -> Counter[int]:
    return Counter(node for row in rows for node in row)


def spread(counts: Counter[int], brokers: Sequence[int]) -> int:
    values = [counts[b] for b in brokers]
    return max(values) - min(values)


def check_shape(rows: Rows, brokers: Sequence[int], partitions: int, factor: int) -> None:
    assert len(rows) == partitions
    for row in rows:
        assert len(row) == factor and len(set(row)) == factor and set(row) <= set(brokers)


class Cluster:
    """A metadata state driven through records, as the controller leader would."""

    def __init__(self, *nodes: int) -> None:
        self.state = MetadataState()
        self.topics = 0
        self.apply(InitializeCluster(cluster_id="c1"))
        for node in nodes:
            self.apply(RegisterBroker(node_id=node, client_address=f"h{node}:9092",
                                      raft_address=f"h{node}:19092", incarnation=1))

    def apply(self, record: MetadataRecord) -> None:
        self.state.apply(self.state.last_applied_index + 1, record)
        self.state.check_invariants()

    def create(self, name: str, partitions: int, factor: int) -> CreateTopic:
        self.topics += 1
        record = create_topic_record(self.state, name=name, topic_id=f"{self.topics:032x}",
                                     partitions=partitions, replication_factor=factor)
        self.apply(record)
        return record

    def fence(self, node: int) -> None:
        self.apply(BrokerFenced(node_id=node, broker_epoch=self.state.brokers[node].broker_epoch))


def rows_of(record: CreateTopic) -> list[tuple[int, ...]]:
    return [a.replicas for a in record.partitions]


def test_three_brokers_six_partitions_rf3() -> None:
    cluster = Cluster(1, 2, 3)
    rows = rows_of(cluster.create("orders", 6, 3))
    check_shape(rows, [1, 2, 3], 6, 3)
    assert leaders_of(rows) == {1: 2, 2: 2, 3: 2}
    assert replicas_of(rows) == {1: 6, 2: 6, 3: 6}


@pytest.mark.parametrize("brokers", [3, 5])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_a_thousand_partitions_are_even_within_one(brokers: int, factor: int) -> None:
    nodes = list(range(1, brokers + 1))
    rows = assign_replicas(brokers=nodes, partitions=1000, replication_factor=factor)
    check_shape(rows, nodes, 1000, factor)
    assert spread(leaders_of(rows), nodes) <= 1
    assert spread(replicas_of(rows), nodes) <= 1


def test_followers_of_one_leader_vary() -> None:
    rows = assign_replicas(brokers=[1, 2, 3, 4, 5], partitions=20, replication_factor=3)
    follower_sets = {frozenset(row[1:]) for row in rows if row[0] == 1}
    assert len(follower_sets) >= 3  # a failed leader's load lands on several brokers


def test_a_new_topic_goes_where_the_load_is_lightest() -> None:
    rows = assign_replicas(brokers=[1, 2, 3], partitions=2, replication_factor=1,
                           load=BrokerLoad(replicas={1: 5}, leaders={1: 5}))
    assert sorted(r[0] for r in rows) == [2, 3]
    rows = assign_replicas(brokers=[1, 2, 3], partitions=1, replication_factor=2,
                           load=BrokerLoad(replicas={1: 4, 2: 5, 3: 4}, leaders={1: 2, 2: 1, 3: 2}))
    assert rows[0][0] == 2  # the least-led broker leads, though it holds the most replicas
    cluster = Cluster(1, 2, 3)
    firsts = [rows_of(cluster.create(f"t{n}", 1, 1))[0][0] for n in range(3)]
    assert sorted(firsts) == [1, 2, 3]


def test_the_remainder_goes_to_a_newly_added_broker_but_the_topic_stays_spread() -> None:
    cluster = Cluster(1, 2, 3)
    cluster.create("old", 30, 2)
    cluster.apply(RegisterBroker(node_id=4, client_address="h4:9092", raft_address="h4:19092",
                                 incarnation=1))
    rows = rows_of(cluster.create("new", 6, 2))
    assert leaders_of(rows)[4] == 2 and replicas_of(rows)[4] == 3  # the empty broker leads
    assert spread(leaders_of(rows), [1, 2, 3, 4]) <= 1  # and the topic is not piled on it
    assert spread(replicas_of(rows), [1, 2, 3, 4]) <= 1


def test_many_small_topics_spread_over_the_cluster() -> None:
    cluster = Cluster(1, 2, 3, 4, 5)
    for number in range(20):
        cluster.create(f"t{number}", 2, 3)
    load = broker_load(cluster.state)
    assert set(load.leaders.values()) == {8} and set(load.replicas.values()) == {24}


def test_placement_is_deterministic() -> None:
    load = BrokerLoad(replicas={1: 5, 2: 3}, leaders={1: 2})
    args = dict(brokers=[3, 1, 2, 7], partitions=50, replication_factor=3, load=load, rotation=9)
    assert assign_replicas(**args) == assign_replicas(**args)  # type: ignore[arg-type]
    one, two = Cluster(1, 2, 3), Cluster(1, 2, 3)
    assert one.create("orders", 12, 2) == two.create("orders", 12, 2)


@pytest.mark.parametrize("brokers, partitions, factor", [
    ([], 1, 1), ([1, 1], 1, 1), ([1, 2], 1, 3), ([1, 2], 1, 0), ([1, 2], 0, 1),
])
def test_impossible_shapes_raise(brokers: list[int], partitions: int, factor: int) -> None:
    with pytest.raises(PlacementError):
        assign_replicas(brokers=brokers, partitions=partitions, replication_factor=factor)


@settings(max_examples=200, deadline=None)
@given(
    brokers=st.lists(st.integers(1, 1000), min_size=1, max_size=12, unique=True),
    partitions=st.integers(1, 120),
    data=st.data(),
)
def test_every_topic_is_spread_within_one_over_any_existing_load(
    brokers: list[int], partitions: int, data: st.DataObject
) -> None:
    factor = data.draw(st.integers(1, len(brokers)))
    leaders = data.draw(st.dictionaries(st.sampled_from(brokers), st.integers(0, 50)))
    replicas = {b: leaders.get(b, 0) + data.draw(st.integers(0, 50)) for b in brokers}
    load = BrokerLoad(replicas=replicas, leaders=leaders)
    rotation = data.draw(st.integers(0, 10_000))
    rows = assign_replicas(brokers=brokers, partitions=partitions, replication_factor=factor,
                           load=load, rotation=rotation)
    check_shape(rows, brokers, partitions, factor)
    assert spread(leaders_of(rows), brokers) <= 1
    assert spread(replicas_of(rows), brokers) <= 1
    assert rows == assign_replicas(brokers=list(reversed(brokers)), partitions=partitions,
                                   replication_factor=factor, load=load, rotation=rotation)
    # a broker carrying less before leads at least as much of this topic
    new_leaders = leaders_of(rows)
    for a in brokers:
        for b in brokers:
            if (leaders.get(a, 0), replicas[a]) < (leaders.get(b, 0), replicas[b]):
                assert new_leaders[a] >= new_leaders[b]


@settings(max_examples=100, deadline=None)
@given(
    brokers=st.integers(1, 9),
    topics=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 9)), min_size=1, max_size=10),
)
def test_cluster_leader_counts_stay_within_one_topic_after_topic(
    brokers: int, topics: list[tuple[int, int]]
) -> None:
    nodes = list(range(1, brokers + 1))
    leaders: Counter[int] = Counter()
    replicas: Counter[int] = Counter()
    for number, (partitions, factor) in enumerate(topics):
        factor = min(factor, brokers)
        rows = assign_replicas(brokers=nodes, partitions=partitions, replication_factor=factor,
                               load=BrokerLoad(replicas=dict(replicas), leaders=dict(leaders)),
                               rotation=number)
        leaders += leaders_of(rows)
        replicas += replicas_of(rows)
        assert spread(leaders, nodes) <= 1


def test_same_shaped_topics_keep_cluster_replicas_within_one() -> None:
    cluster = Cluster(1, 2, 3, 4, 5, 6, 7)
    for number in range(15):
        cluster.create(f"t{number}", 1 + number % 4, 3)
    load = broker_load(cluster.state)
    assert spread(Counter(load.replicas), range(1, 8)) <= 1
    assert spread(Counter(load.leaders), range(1, 8)) <= 1


# ---- creation records -------------------------------------------------------------------------


def test_create_topic_record_validates_first() -> None:
    cluster = Cluster(1, 2, 3)
    cluster.fence(3)
    with pytest.raises(MetadataError) as info:
        create_topic_record(cluster.state, name="t", topic_id="1" * 32, partitions=3,
                            replication_factor=3)
    assert info.value.code is ErrorCode.INVALID_REPLICATION_FACTOR
    record = create_topic_record(cluster.state, name="t", topic_id="1" * 32, partitions=4,
                                 replication_factor=2, configs={"retention.ms": "07"})
    assert record.configs == (("retention.ms", "7"),)
    assert all(set(r) == {1, 2} for r in rows_of(record))  # only live brokers


def test_create_topic_record_takes_manual_assignments() -> None:
    cluster = Cluster(1, 2, 3)
    record = create_topic_record(cluster.state, name="t", topic_id="1" * 32, partitions=-1,
                                 replication_factor=-1, assignments=[[3, 1], [1, 2]])
    assert rows_of(record) == [(3, 1), (1, 2)]
    with pytest.raises(MetadataError) as info:
        create_topic_record(cluster.state, name="t", topic_id="1" * 32, partitions=-1,
                            replication_factor=-1, assignments=[[3, 9]])
    assert info.value.code is ErrorCode.INVALID_REPLICA_ASSIGNMENT


def test_the_consumer_offsets_topic() -> None:
    cluster = Cluster(1)
    record = consumer_offsets_record(cluster.state, topic_id="f" * 32)
    assert record.name == CONSUMER_OFFSETS_TOPIC
    assert len(record.partitions) == CONSUMER_OFFSETS_PARTITIONS
    assert {a.replicas for a in record.partitions} == {(1,)}  # lowered to the one live broker
    assert dict(record.configs)["retention.ms"] == "-1"
    cluster.apply(record)
    assert cluster.state.topics[CONSUMER_OFFSETS_TOPIC].internal
    bigger = Cluster(1, 2, 3, 4)
    record = consumer_offsets_record(bigger.state, topic_id="f" * 32, partitions=8)
    assert {len(a.replicas) for a in record.partitions} == {3}
    empty = MetadataState()
    with pytest.raises(MetadataError) as info:
        consumer_offsets_record(empty, topic_id="f" * 32)
    assert info.value.code is ErrorCode.INVALID_REPLICATION_FACTOR


# ---- leadership -------------------------------------------------------------------------------


def preferred(state: MetadataState) -> dict[int, int]:
    return {p.group_id: p.preferred_leader for p in state.partitions()}


def settle(state: MetadataState, leaders: dict[int, int], alive: set[int],
           moves_max: int = 8) -> tuple[dict[int, int], int]:
    """Applies suggested moves until none are left; returns the leaders and the rounds."""
    for rounds in range(1000):
        moves = leader_balance_moves(state, leaders, alive, moves_max=moves_max)
        assert len(moves) <= moves_max
        if not moves:
            return leaders, rounds
        for group_id, target in moves:
            assert target in alive and target in state.group(group_id).replicas  # type: ignore
            leaders[group_id] = target
    raise AssertionError("leadership never settles")


def test_no_moves_when_every_group_is_led_by_its_preferred_leader() -> None:
    cluster = Cluster(1, 2, 3)
    cluster.create("orders", 9, 3)
    assert leader_balance_moves(cluster.state, preferred(cluster.state), {1, 2, 3}) == []


def test_leadership_returns_to_preferred_leaders_most_loaded_first() -> None:
    cluster = Cluster(1, 2, 3)
    cluster.create("orders", 9, 3)
    leaders = {g: 1 for g in preferred(cluster.state)}
    leaders[next(g for g, p in preferred(cluster.state).items() if p == 3)] = 2
    moves = leader_balance_moves(cluster.state, leaders, {1, 2, 3}, moves_max=2)
    assert len(moves) == 2 and all(leaders[g] == 1 for g, _ in moves)
    settled, _ = settle(cluster.state, leaders, {1, 2, 3})
    assert settled == preferred(cluster.state)


def test_groups_of_a_dead_preferred_leader_spread_over_live_replicas() -> None:
    cluster = Cluster(1, 2, 3, 4)
    cluster.create("orders", 24, 3)
    leaders = {g: (p if p != 4 else next(r for r in cluster.state.group(g).replicas  # type: ignore
                                          if r != 4)) for g, p in preferred(cluster.state).items()}
    first_live = Counter(leaders.values())
    settled, _ = settle(cluster.state, dict(leaders), {1, 2, 3})
    counts = Counter(settled.values())
    assert 4 not in counts and spread(counts, [1, 2, 3]) <= 1
    assert sum(counts.values()) == sum(first_live.values()) == 24
    back, _ = settle(cluster.state, settled, {1, 2, 3, 4})
    assert back == preferred(cluster.state)


def test_groups_without_a_live_leader_are_left_to_raft() -> None:
    cluster = Cluster(1, 2, 3)
    cluster.create("orders", 3, 3)
    leaders = {g: 2 if p == 1 else p for g, p in preferred(cluster.state).items()}
    assert leader_balance_moves(cluster.state, leaders, {1, 3}) == []  # 2 is down
    assert leader_balance_moves(cluster.state, {}, {1, 2, 3}) == []


@settings(max_examples=60, deadline=None)
@given(brokers=st.integers(2, 6), partitions=st.integers(1, 40), data=st.data())
def test_balancing_always_settles_evenly(brokers: int, partitions: int,
                                         data: st.DataObject) -> None:
    cluster = Cluster(*range(1, brokers + 1))
    cluster.create("t", partitions, data.draw(st.integers(1, brokers)))
    alive = set(data.draw(st.sets(st.integers(1, brokers), min_size=1)))
    leaders = {}
    for info in cluster.state.partitions():
        live = [r for r in info.replicas if r in alive]
        if live:
            leaders[info.group_id] = data.draw(st.sampled_from(live))
    settled, _ = settle(cluster.state, dict(leaders), alive,
                        moves_max=data.draw(st.integers(1, 5)))
    assert settled.keys() == leaders.keys()
    for group_id, node in settled.items():
        group = cluster.state.group(group_id)
        assert group is not None
        if group.preferred_leader in alive:
            assert node == group.preferred_leader
    assert leader_balance_moves(cluster.state, settled, alive) == []
