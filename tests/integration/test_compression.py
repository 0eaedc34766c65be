"""Every Kafka codec end to end on three brokers: librdkafka (confluent-kafka) produces with
gzip, snappy, lz4, zstd and none, one partition each; our consumer reads every record back and
librdkafka's offsets_for_times (ListOffsets by timestamp, which decodes the batch it lands in)
answers for each. Our producer writes each codec and librdkafka reads it back. A batch whose CRC
holds but whose compressed records do not decode answers ListOffsets with CORRUPT_MESSAGE
instead of a closed connection."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import KafkaException
from confluent_kafka import Producer as CkProducer
from confluent_kafka import TopicPartition as CkTopicPartition

from broker.wire.records import Record, encode_batch
from consumer import Consumer, TopicPartition
from producer import Producer
from tests.integration import kafka_wire as wire
from tests.integration.clients import create_topic
from tests.integration.cluster import LocalCluster, NotYet
from tests.unit.test_records import golden_batch

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # kafka-python's admin

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_CODEC = 200
# Recent, so that time-based retention (7 days by default) keeps every record.
TIMESTAMP_BASE_MS = (int(time.time()) - 3600) * 1000
CK_TOPIC = "cmp-from-librdkafka"
OURS_TOPIC = "cmp-from-ours"
BAD_TOPIC = "cmp-corrupt"
NOT_LEADER_OR_FOLLOWER = 6
CORRUPT_MESSAGE = 2  # confluent-kafka names no constant for it


def _value(codec: str, i: int) -> bytes:
    if i % 50 == 7:  # larger than one xerial snappy block (32 KiB) and one lz4 block (64 KiB)
        return b"%s large %d " % (codec.encode(), i) * 8000
    return b"%s value %d " % (codec.encode(), i) * 10


def _timestamp_ms(partition: int, i: int) -> int:
    return TIMESTAMP_BASE_MS + partition * 1_000_000 + i * 10


def _ck_config(cluster: LocalCluster, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": cluster.bootstrap, "reconnect.backoff.max.ms": 1_000, **extra}


@pytest.fixture(scope="module")
def from_librdkafka(cluster: LocalCluster) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """Per partition (= index in CODECS): (offset, key, value) of every record librdkafka
    delivered, one producer per codec, several records per batch."""
    create_topic(cluster.bootstrap, CK_TOPIC, len(CODECS), 3)
    delivered: dict[int, list[tuple[int, bytes, bytes]]] = {p: [] for p in range(len(CODECS))}
    failures: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            delivered[msg.partition()].append((msg.offset(), msg.key(), msg.value()))

    for partition, codec in enumerate(CODECS):
        producer = CkProducer(_ck_config(cluster, **{
            "compression.type": codec, "acks": "all", "linger.ms": 20,
            "message.timeout.ms": 60_000}))
        for i in range(RECORDS_PER_CODEC):
            producer.produce(CK_TOPIC, key=b"k%d" % i, value=_value(codec, i),
                             partition=partition, timestamp=_timestamp_ms(partition, i),
                             headers=[("codec", codec.encode())], on_delivery=report)
            producer.poll(0)
        assert producer.flush(60) == 0, f"{codec}: records left undelivered"
    assert not failures, failures
    for records in delivered.values():
        records.sort()
        assert len(records) == RECORDS_PER_CODEC
    return delivered


def test_our_consumer_reads_every_codec_librdkafka_writes(
        cluster: LocalCluster, from_librdkafka: dict[int, list[tuple[int, bytes, bytes]]]
) -> None:
    consumer = Consumer(bootstrap_servers=cluster.bootstrap, group_id=None,
                        auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        tps = [TopicPartition(CK_TOPIC, p) for p in range(len(CODECS))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {p: [] for p in
                                                                         range(len(CODECS))}

        def everything() -> bool:
            for tp, records in consumer.poll(timeout_ms=500).items():
                got[tp.partition] += [(r.offset, r.key, r.value) for r in records]
                for r in records:
                    assert r.headers == [("codec", CODECS[tp.partition].encode())]
                    assert r.timestamp_ms == _timestamp_ms(tp.partition, int(r.key[1:]))
            short = {CODECS[p]: len(v) for p, v in got.items() if len(v) < RECORDS_PER_CODEC}
            if short:
                raise NotYet(f"records read per codec: {short}")
            return True

        cluster.wait_until(everything, timeout_s=60, what="every record of every codec")
    finally:
        consumer.close()
    for partition, codec in enumerate(CODECS):
        assert got[partition] == from_librdkafka[partition], codec


@pytest.mark.parametrize("codec", CODECS)
def test_offsets_for_times_in_every_codec(
        cluster: LocalCluster, from_librdkafka: dict[int, list[tuple[int, bytes, bytes]]],
        codec: str) -> None:
    partition = CODECS.index(codec)
    offsets = [offset for offset, _, _ in from_librdkafka[partition]]
    consumer = CkConsumer(_ck_config(cluster, **{"group.id": "cmp-unused"}))
    try:
        for i in (0, 1, RECORDS_PER_CODEC // 2, RECORDS_PER_CODEC - 1):
            target = CkTopicPartition(CK_TOPIC, partition, _timestamp_ms(partition, i) - 5)
            (answer,) = consumer.offsets_for_times([target], timeout=15)
            assert answer.error is None, answer.error
            assert answer.offset == offsets[i], f"{codec}: record {i}"
        past = CkTopicPartition(CK_TOPIC, partition, _timestamp_ms(partition, 10**6))
        (answer,) = consumer.offsets_for_times([past], timeout=15)
        assert answer.offset == -1
    finally:
        consumer.close()


def test_librdkafka_reads_every_codec_our_producer_writes(cluster: LocalCluster) -> None:
    create_topic(cluster.bootstrap, OURS_TOPIC, len(CODECS), 3)
    for partition, codec in enumerate(CODECS):
        with Producer(bootstrap_servers=cluster.bootstrap, compression_type=codec,
                      linger_ms=20) as producer:
            futures = [producer.send(OURS_TOPIC, value=_value(codec, i), key=b"k%d" % i,
                                     partition=partition,
                                     timestamp_ms=_timestamp_ms(partition, i))
                       for i in range(RECORDS_PER_CODEC)]
            producer.flush(timeout=60)
            assert [f.get(timeout=30).offset for f in futures] == list(range(RECORDS_PER_CODEC))
    consumer = CkConsumer(_ck_config(cluster, **{
        "group.id": "cmp-reader", "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    got: dict[int, list[tuple[int, bytes, bytes]]] = {p: [] for p in range(len(CODECS))}
    try:
        consumer.assign([CkTopicPartition(OURS_TOPIC, p, 0) for p in range(len(CODECS))])

        def everything() -> bool:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append((msg.offset(), msg.key(), msg.value()))
            short = {CODECS[p]: len(v) for p, v in got.items() if len(v) < RECORDS_PER_CODEC}
            if short:
                raise NotYet(f"records read per codec: {short}")
            return True

        cluster.wait_until(everything, timeout_s=60, what="librdkafka to read every codec")
    finally:
        consumer.close()
    for partition, codec in enumerate(CODECS):
        assert got[partition] == [(i, b"k%d" % i, _value(codec, i))
                                  for i in range(RECORDS_PER_CODEC)], codec


def _produce_raw(cluster: LocalCluster, records: bytes) -> int:
    """Produce v3 to partition 0's leader; the error code."""
    def attempt() -> tuple[int]:  # a tuple: wait_until wants a truthy answer
        leader = cluster.leader_of(BAD_TOPIC, 0)
        if leader is None:
            raise NotYet("partition 0 has no leader")
        with wire.KafkaSocket(cluster.address(leader), timeout_s=30) as conn:
            conn.send(wire.produce_v3_request(41, BAD_TOPIC, 0, records))
            answer = wire.parse_produce_v3(conn.expect_response())
        error, _ = answer.partitions[(BAD_TOPIC, 0)]
        if error == NOT_LEADER_OR_FOLLOWER:
            raise NotYet(f"broker {leader} is no longer the leader")
        return (error,)

    (error,) = cluster.wait_until(attempt, timeout_s=60, what="a Produce answer")
    return error


def test_undecodable_batch_answers_list_offsets_with_an_error(cluster: LocalCluster) -> None:
    """The broker stores batches undecoded (length and CRC checked): gzip-flagged garbage with a
    correct CRC is stored, and ListOffsets by timestamp inside it must answer, not hang up."""
    create_topic(cluster.bootstrap, BAD_TOPIC, 1, 3)
    good = encode_batch([Record(b"k", b"v", [], TIMESTAMP_BASE_MS)])
    bad = golden_batch(b"this is not a gzip stream", count=1, last_offset_delta=0,
                       base_ts=TIMESTAMP_BASE_MS + 100, max_ts=TIMESTAMP_BASE_MS + 100,
                       attributes=1)
    assert _produce_raw(cluster, good) == 0
    assert _produce_raw(cluster, bad) == 0
    consumer = CkConsumer(_ck_config(cluster, **{"group.id": "cmp-unused"}))
    try:
        inside_bad = CkTopicPartition(BAD_TOPIC, 0, TIMESTAMP_BASE_MS + 50)
        with pytest.raises(KafkaException) as info:
            answers = consumer.offsets_for_times([inside_bad], timeout=15)
            if answers[0].error is not None:  # reported per partition rather than raised
                raise KafkaException(answers[0].error)
        assert info.value.args[0].code() == CORRUPT_MESSAGE, info.value
        (first,) = consumer.offsets_for_times(
            [CkTopicPartition(BAD_TOPIC, 0, TIMESTAMP_BASE_MS - 1)], timeout=15)
        assert (first.error, first.offset) == (None, 0)
    finally:
        consumer.close()
