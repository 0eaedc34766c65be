"""The metadata log's record encoding: canonical round trips, and garbage refused with a typed
error only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.controller.records import (
    RECORD_BYTES_MAX,
    RECORD_TYPES,
    AllocateProducerIds,
    BrokerFenced,
    BrokerUnfenced,
    ChangePreferredLeader,
    CreateTopic,
    DeleteTopic,
    InitializeCluster,
    MetadataRecord,
    MetadataRecordError,
    PartitionAssignment,
    ReassignReplicas,
    RegisterBroker,
    SetTopicConfig,
    UnregisterBroker,
    address_problem,
    config_pairs,
    decode_record,
    encode_record,
    record_type,
    topic_name_problem,
)

TOPIC_ID = "0123456789abcdef0123456789abcdef"


def _assignments(*replicas: tuple[int, ...]) -> tuple[PartitionAssignment, ...]:
    return tuple(PartitionAssignment(partition=i, replicas=r) for i, r in enumerate(replicas))


EXAMPLES: list[MetadataRecord] = [
    InitializeCluster(cluster_id="raftlog-1"),
    RegisterBroker(node_id=1, client_address="127.0.0.1:9092", raft_address="[::1]:19092",
                   incarnation=(1 << 63) - 1),
    BrokerFenced(node_id=2, broker_epoch=7),
    BrokerUnfenced(node_id=2, broker_epoch=7),
    UnregisterBroker(node_id=3, broker_epoch=9),
    CreateTopic(name="orders", topic_id=TOPIC_ID, partitions=_assignments((1, 2, 3), (2, 3, 1)),
                configs=config_pairs({"retention.ms": "1000", "cleanup.policy": "delete"})),
    DeleteTopic(name="orders", topic_id=TOPIC_ID),
    SetTopicConfig(name="orders", topic_id=TOPIC_ID,
                   configs=config_pairs({"retention.ms": "5", "segment.bytes": None})),
    AllocateProducerIds(broker=1, broker_epoch=4, block_size=1000),
    ChangePreferredLeader(group_id=12, node_id=3),
    ReassignReplicas(group_id=12, replicas=(3, 4, 5)),
]


def test_examples_cover_every_record_type() -> None:
    assert {type(r) for r in EXAMPLES} == set(RECORD_TYPES.values())


@pytest.mark.parametrize("record", EXAMPLES, ids=record_type)
def test_round_trip(record: Any) -> None:
    data = encode_record(record)
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data
    assert decode_record(bytearray(data)) == record
    assert decode_record(memoryview(data)) == record


def test_encoding_is_canonical_json() -> None:
    assert encode_record(BrokerFenced(node_id=2, broker_epoch=7)) == (
        b'{"broker_epoch":7,"node_id":2,"type":"broker_fenced","v":1}'
    )
    create = encode_record(EXAMPLES[5])
    assert b'"partitions":[[0,[1,2,3]],[1,[2,3,1]]]' in create
    assert b'"configs":[["cleanup.policy","delete"],["retention.ms","1000"]]' in create


def test_a_thousand_partition_topic_stays_small() -> None:
    record = CreateTopic(name="big", topic_id=TOPIC_ID,
                         partitions=_assignments(*[(1, 2, 3)] * 1000))
    assert len(encode_record(record)) < 20_000


def _encoded(record: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(encode_record(record))
    return obj


def _bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


GARBAGE = {
    "empty": b"",
    "not json": b"\x00\xff\x10garbage",
    "truncated": encode_record(EXAMPLES[5])[:-3],
    "not an object": b"[1, 2, 3]",
    "bad utf-8": b'{"type": "\xff"}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "too large": b" " * (RECORD_BYTES_MAX + 1),
    "no version": _bytes({k: v for k, v in _encoded(EXAMPLES[2]).items() if k != "v"}),
    "future version": _bytes({**_encoded(EXAMPLES[2]), "v": 2}),
    "version as bool": _bytes({**_encoded(EXAMPLES[2]), "v": True}),
    "unknown type": _bytes({**_encoded(EXAMPLES[2]), "type": "drop_table"}),
    "type not a string": _bytes({**_encoded(EXAMPLES[2]), "type": 3}),
    "missing field": _bytes({k: v for k, v in _encoded(EXAMPLES[2]).items() if k != "node_id"}),
    "extra field": _bytes({**_encoded(EXAMPLES[2]), "rack": "a"}),
    "bool for int": _bytes({**_encoded(EXAMPLES[2]), "node_id": True}),
    "float for int": _bytes({**_encoded(EXAMPLES[2]), "node_id": 2.0}),
    "string for int": _bytes({**_encoded(EXAMPLES[2]), "node_id": "2"}),
    "huge int": b'{"broker_epoch":7,"node_id":' + b"9" * 5000 + b',"type":"broker_fenced","v":1}',
    "NaN": b'{"broker_epoch":NaN,"node_id":2,"type":"broker_fenced","v":1}',
    "duplicate key": b'{"broker_epoch":7,"node_id":2,"node_id":3,"type":"broker_fenced","v":1}',
    "node id out of range": _bytes({**_encoded(EXAMPLES[2]), "node_id": 0}),
    "null for a required value": _bytes({**_encoded(EXAMPLES[0]), "cluster_id": None}),
    "partition not a pair": _bytes({**_encoded(EXAMPLES[5]), "partitions": [[0, [1], 5]]}),
    "partition as object": _bytes(
        {**_encoded(EXAMPLES[5]), "partitions": [{"partition": 0, "replicas": [1]}]}),
    "replicas not an array": _bytes({**_encoded(EXAMPLES[5]), "partitions": [[0, 1]]}),
    "partitions out of order": _bytes(
        {**_encoded(EXAMPLES[5]), "partitions": [[1, [1]], [0, [2]]]}),
    "duplicate replica": _bytes({**_encoded(EXAMPLES[5]), "partitions": [[0, [1, 1]]]}),
    "uneven replication": _bytes({**_encoded(EXAMPLES[5]), "partitions": [[0, [1, 2]], [1, [1]]]}),
    "no partitions": _bytes({**_encoded(EXAMPLES[5]), "partitions": []}),
    "config not a pair": _bytes({**_encoded(EXAMPLES[5]), "configs": [["a", "b", "c"]]}),
    "configs unsorted": _bytes({**_encoded(EXAMPLES[5]), "configs": [["b", "1"], ["a", "2"]]}),
    "null config value on create": _bytes({**_encoded(EXAMPLES[5]), "configs": [["a", None]]}),
    "bad topic name": _bytes({**_encoded(EXAMPLES[6]), "name": "../etc"}),
    "bad topic id": _bytes({**_encoded(EXAMPLES[6]), "topic_id": "XYZ"}),
    "bad address": _bytes({**_encoded(EXAMPLES[1]), "client_address": "localhost"}),
}


@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_raises_a_typed_error(data: bytes) -> None:
    with pytest.raises(MetadataRecordError):
        decode_record(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    try:
        record = decode_record(data)
    except MetadataRecordError:
        return
    assert encode_record(record)  # whatever decodes is a well-formed record


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXAMPLES), st.data())
def test_records_with_a_field_replaced_by_random_json_never_crash(record: Any,
                                                                   data: st.DataObject) -> None:
    obj = _encoded(record)
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(JSON)
    try:
        decoded = decode_record(_bytes(obj))
    except MetadataRecordError:
        return
    assert decode_record(encode_record(decoded)) == decoded


NODE = st.integers(1, (1 << 31) - 1)
EPOCH = st.integers(1, (1 << 63) - 1)
HOST = st.sampled_from(["127.0.0.1", "broker-1.example.com", "[::1]", "h"])
ADDRESS = st.builds(lambda h, p: f"{h}:{p}", HOST, st.integers(1, 65535))
NAME = st.text("abcXYZ019._-", min_size=1, max_size=30).filter(lambda s: s not in (".", ".."))
TOPIC_IDS = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
CONFIG_KEYS = st.text("abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=20)
REPLICAS = st.lists(st.integers(1, 50), min_size=1, max_size=5, unique=True).map(tuple)


@st.composite
def _create_topics(draw: st.DrawFn) -> CreateTopic:
    factor = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(st.integers(1, 9), min_size=factor, max_size=factor,
                                  unique=True).map(tuple), min_size=1, max_size=20))
    configs = draw(st.dictionaries(CONFIG_KEYS, st.text(max_size=10), max_size=4))
    return CreateTopic(name=draw(NAME), topic_id=draw(TOPIC_IDS),
                       partitions=_assignments(*rows), configs=config_pairs(configs))


RECORDS = st.one_of(
    st.builds(InitializeCluster, cluster_id=st.text("abcdef0123-_", min_size=1, max_size=64)),
    st.builds(RegisterBroker, node_id=NODE, client_address=ADDRESS, raft_address=ADDRESS,
              incarnation=st.integers(0, (1 << 63) - 1)),
    st.builds(BrokerFenced, node_id=NODE, broker_epoch=EPOCH),
    st.builds(BrokerUnfenced, node_id=NODE, broker_epoch=EPOCH),
    st.builds(UnregisterBroker, node_id=NODE, broker_epoch=EPOCH),
    _create_topics(),
    st.builds(DeleteTopic, name=NAME, topic_id=TOPIC_IDS),
    st.builds(SetTopicConfig, name=NAME, topic_id=TOPIC_IDS, configs=st.dictionaries(
        CONFIG_KEYS, st.none() | st.text(max_size=10), min_size=1, max_size=4).map(config_pairs)),
    st.builds(AllocateProducerIds, broker=NODE, broker_epoch=EPOCH,
              block_size=st.integers(1, 1 << 20)),
    st.builds(ChangePreferredLeader, group_id=EPOCH, node_id=NODE),
    st.builds(ReassignReplicas, group_id=EPOCH, replicas=REPLICAS),
)


@settings(max_examples=300, deadline=None)
@given(RECORDS)
def test_any_valid_record_round_trips(record: Any) -> None:
    data = encode_record(record)
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data


@settings(max_examples=200, deadline=None)
@given(RECORDS, st.data())
def test_corrupted_encodings_decode_or_raise_the_typed_error(record: Any,
                                                              data: st.DataObject) -> None:
    encoded = bytearray(encode_record(record))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] = data.draw(st.integers(0, 255))
    try:
        decode_record(bytes(encoded))
    except MetadataRecordError:
        pass


BAD_CONSTRUCTIONS = {
    "node id 0": lambda: BrokerFenced(node_id=0, broker_epoch=1),
    "node id as bool": lambda: BrokerFenced(node_id=True, broker_epoch=1),
    "epoch 0": lambda: BrokerUnfenced(node_id=1, broker_epoch=0),
    "negative incarnation": lambda: RegisterBroker(
        node_id=1, client_address="h:1", raft_address="h:2", incarnation=-1),
    "address without port": lambda: RegisterBroker(
        node_id=1, client_address="h", raft_address="h:2", incarnation=1),
    "empty cluster id": lambda: InitializeCluster(cluster_id=""),
    "cluster id with space": lambda: InitializeCluster(cluster_id="a b"),
    "upper-case topic id": lambda: DeleteTopic(name="t", topic_id=TOPIC_ID.upper()),
    "zero topic id": lambda: DeleteTopic(name="t", topic_id="0" * 32),
    "path in topic name": lambda: DeleteTopic(name="a/b", topic_id=TOPIC_ID),
    "partitions as list": lambda: CreateTopic(
        name="t", topic_id=TOPIC_ID, partitions=list(_assignments((1,)))),  # type: ignore[arg-type]
    "missing partition": lambda: CreateTopic(
        name="t", topic_id=TOPIC_ID, partitions=(PartitionAssignment(partition=1, replicas=(1,)),)),
    "empty replicas": lambda: PartitionAssignment(partition=0, replicas=()),
    "too many replicas": lambda: PartitionAssignment(partition=0, replicas=tuple(range(1, 18))),
    "negative partition": lambda: PartitionAssignment(partition=-1, replicas=(1,)),
    "no configs to set": lambda: SetTopicConfig(name="t", topic_id=TOPIC_ID, configs=()),
    "duplicate config key": lambda: SetTopicConfig(
        name="t", topic_id=TOPIC_ID, configs=(("a", "1"), ("a", "2"))),
    "config value too long": lambda: CreateTopic(
        name="t", topic_id=TOPIC_ID, partitions=_assignments((1,)), configs=(("a", "x" * 2000),)),
    "block size 0": lambda: AllocateProducerIds(broker=1, broker_epoch=1, block_size=0),
    "block size too large": lambda: AllocateProducerIds(broker=1, broker_epoch=1,
                                                        block_size=(1 << 20) + 1),
    "group id 0": lambda: ChangePreferredLeader(group_id=0, node_id=1),
    "reassign with duplicates": lambda: ReassignReplicas(group_id=1, replicas=(1, 1)),
}


@pytest.mark.parametrize("build", BAD_CONSTRUCTIONS.values(), ids=BAD_CONSTRUCTIONS.keys())
def test_records_refuse_bad_shapes_when_built(build: Any) -> None:
    with pytest.raises(MetadataRecordError):
        build()


@pytest.mark.parametrize("name", ["a", "orders", "A.b_c-9", "x" * 249, "..a", "__consumer_offsets"])
def test_legal_topic_names(name: str) -> None:
    assert topic_name_problem(name) is None


@pytest.mark.parametrize("name, words", [
    ("", "empty"), (".", "cannot be"), ("..", "cannot be"), ("x" * 250, "249"),
    ("a/b", "path"), ("a\\b", "path"), ("a\0b", "path"), ("a b", "characters"),
    ("caf\u00e9", "characters"), ("a:b", "characters"),
])
def test_illegal_topic_names_say_why(name: str, words: str) -> None:
    problem = topic_name_problem(name)
    assert problem is not None and words in problem


@pytest.mark.parametrize("address, ok", [
    ("127.0.0.1:9092", True), ("[::1]:9092", True), ("host.example:1", True),
    ("host:65535", True), ("host", False), (":9092", False), ("host:0", False),
    ("host:65536", False), ("host:x", False), ("[::1:9092", False), ("ho st:1", False),
    ("host:\u0661", False), ("h" * 300 + ":1", False),
])
def test_addresses(address: str, ok: bool) -> None:
    assert (address_problem(address) is None) == ok
