"""kafka-python, used as any Kafka user would use it against the cluster: create topics, write
records and remember what the broker acknowledged, read everything back and compare.

Every wait has a deadline; clients reconnect quickly (reconnect backoff capped at 1 s) because
the tests kill and restart brokers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

__all__ = [
    "Acked",
    "ContinuousWriter",
    "Delivered",
    "Headers",
    "Outgoing",
    "Stored",
    "admin_client",
    "create_topic",
    "make_consumer",
    "make_producer",
    "mismatches",
    "read_all",
    "send_all",
    "wait_kafka_leaders",
]

CLIENT_DEFAULTS: dict[str, Any] = {
    "request_timeout_ms": 15_000,
    "reconnect_backoff_ms": 50,
    "reconnect_backoff_max_ms": 1_000,
    "retry_backoff_ms": 100,
    "metadata_max_age_ms": 5_000,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    partition: int | None
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """A record another client library (librdkafka, aiokafka) reported delivered, with the
    codec it was sent with and where the report says it is."""

    codec: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Acked:
    """A record the broker acknowledged, and where it said the record is."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    sent_s: float  # time.monotonic() at send()
    acked_s: float  # time.monotonic() when the acknowledgement arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """A record as a consumer read it back."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _servers(bootstrap: str) -> list[str]:
    return [s for s in bootstrap.split(",") if s]


def make_producer(bootstrap: str, **overrides: Any) -> KafkaProducer:
    """acks=all, lz4, idempotent: the strongest settings kafka-python offers."""
    config: dict[str, Any] = {
        **CLIENT_DEFAULTS,
        "acks": "all",
        "compression_type": "lz4",
        "enable_idempotence": True,
        "linger_ms": 5,
        "delivery_timeout_ms": 60_000,
        "max_block_ms": 30_000,
        **overrides,
    }
    return KafkaProducer(bootstrap_servers=_servers(bootstrap), **config)


def make_consumer(bootstrap: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        **CLIENT_DEFAULTS,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": 200,
        **overrides,
    }
    return KafkaConsumer(bootstrap_servers=_servers(bootstrap), **config)


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=_servers(bootstrap), **CLIENT_DEFAULTS)


def wait_kafka_leaders(admin: KafkaAdminClient, topic: str, partitions: int,
                       timeout_s: float = 60.0) -> dict[int, int]:
    """Poll Metadata (through kafka-python) until every partition has a leader."""
    deadline = time.monotonic() + timeout_s
    seen: object = None
    while time.monotonic() < deadline:
        try:
            (info,) = admin.describe_topics([topic])
            seen = info
            leaders = {p["partition_index"]: p["leader_id"] for p in info["partitions"]}
            if info["error_code"] == 0 and len(leaders) == partitions and \
                    min(leaders.values()) >= 0:
                return leaders
        except Exception as e:  # noqa: BLE001 - not ready yet; reported on timeout
            seen = e
        time.sleep(0.2)
    raise AssertionError(f"no leader for every partition of {topic!r} within {timeout_s:g} s; "
                         f"last metadata: {seen!r}")


def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int,
                 timeout_s: float = 60.0) -> dict[int, int]:
    """Create a topic with kafka-python's admin client; returns partition -> leader."""
    admin = admin_client(bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions,
                                     "replication_factor": replication_factor}})
        return wait_kafka_leaders(admin, topic, partitions, timeout_s)
    finally:
        admin.close()


def send_all(producer: KafkaProducer, topic: str, items: Sequence[Outgoing],
             timeout_s: float = 60.0) -> list[Acked]:
    """Send every item, then wait for every acknowledgement (any failure raises)."""
    sent = []
    for item in items:
        future = producer.send(topic, value=item.value, key=item.key, partition=item.partition,
                               headers=list(item.headers) or None)
        sent.append((item, time.monotonic(), future))
    producer.flush(timeout=timeout_s)
    acked = []
    for item, sent_s, future in sent:
        md = future.get(timeout=timeout_s)
        acked.append(Acked(partition=md.partition, offset=md.offset, key=item.key,
                           value=item.value, headers=item.headers, sent_s=sent_s,
                           acked_s=time.monotonic()))
    return acked


def read_all(bootstrap: str, topic: str, partitions: Iterable[int],
             timeout_s: float = 60.0) -> dict[tuple[int, int], Stored]:
    """Every record from the start of each partition up to its end offset (high watermark) as
    found when reading starts, keyed by (partition, offset)."""
    consumer = make_consumer(bootstrap)
    try:
        return _read_all(consumer, topic, sorted(partitions), timeout_s)
    finally:
        consumer.close()


def _read_all(consumer: KafkaConsumer, topic: str, partitions: list[int],
              timeout_s: float) -> dict[tuple[int, int], Stored]:
    deadline = time.monotonic() + timeout_s
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
    out: dict[tuple[int, int], Stored] = {}
    while True:
        positions = {tp: consumer.position(tp, timeout_ms=5_000) for tp in tps}
        behind = {tp.partition: (pos, ends[tp]) for tp, pos in positions.items()
                  if pos is None or pos < ends[tp]}
        if not behind:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"read {len(out)} records of {topic!r} in {timeout_s:g} s; "
                                 f"partitions still behind (position, end): {behind}")
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                out[(tp.partition, r.offset)] = Stored(
                    partition=tp.partition, offset=r.offset, key=r.key, value=r.value,
                    headers=tuple((k, v) for k, v in (r.headers or [])))


def mismatches(acked: Iterable[Acked], stored: Mapping[tuple[int, int], Stored],
               shown_max: int = 10) -> list[str]:
    """What differs between what was acknowledged and what is stored at those offsets."""
    problems = []
    for a in acked:
        s = stored.get((a.partition, a.offset))
        if s is None:
            problems.append(f"acknowledged p{a.partition}@{a.offset} value={a.value[:40]!r} "
                            "is missing")
        elif (s.key, s.value, s.headers) != (a.key, a.value, a.headers):
            problems.append(f"p{a.partition}@{a.offset}: acknowledged "
                            f"{(a.key, a.value[:40], a.headers)!r}, stored "
                            f"{(s.key, (s.value or b'')[:40], s.headers)!r}")
    if len(problems) > shown_max:
        problems = problems[:shown_max] + [f"... and {len(problems) - shown_max} more"]
    return problems


@dataclass(slots=True)
class _WriterLog:
    acked: list[Acked] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (sequence, error)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ContinuousWriter:
    """Writes numbered records round-robin over partitions from a thread, bounded by a record
    count, a duration and a window of unacknowledged records; remembers every acknowledgement
    (partition, offset, value, send and acknowledgement times) and every failure."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, count_max: int = 20_000,
                 duration_s_max: float = 60.0, inflight_max: int = 200,
                 value_bytes: int = 100, **producer_overrides: Any) -> None:
        self.topic = topic
        self.partitions = partitions
        self.count_max = count_max
        self.duration_s_max = duration_s_max
        self.value_bytes = value_bytes
        self._bootstrap = bootstrap
        self._overrides = producer_overrides
        self._window = threading.BoundedSemaphore(inflight_max)
        self._stop = threading.Event()
        self._log = _WriterLog()
        self.sent = 0
        self.error: BaseException | None = None  # what stopped the thread, if not the bounds
        self.idempotent: bool | None = None
        self._thread = threading.Thread(target=self._run, name=f"writer-{topic}", daemon=True)

    def start(self) -> ContinuousWriter:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 90.0) -> None:
        """Stop sending, wait for outstanding acknowledgements (the producer's delivery
        timeout bounds them) and for the thread."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"writer thread still running {timeout_s:g} s after stop()")

    @property
    def acked(self) -> list[Acked]:
        with self._log.lock:
            return list(self._log.acked)

    @property
    def failed(self) -> list[tuple[int, str]]:
        with self._log.lock:
            return list(self._log.failed)

    def acked_count(self, partition: int | None = None, sent_after_s: float = 0.0) -> int:
        return len([a for a in self.acked if a.sent_s > sent_after_s
                    and (partition is None or a.partition == partition)])

    def first_ack_after(self, partition: int, t_s: float) -> Acked | None:
        """The earliest acknowledgement on `partition` of a record sent after `t_s`."""
        later = [a for a in self.acked if a.partition == partition and a.sent_s > t_s]
        return min(later, key=lambda a: a.acked_s, default=None)

    def _run(self) -> None:
        try:
            producer = make_producer(self._bootstrap, **self._overrides)
        except BaseException as e:  # noqa: BLE001 - reported to the test through self.error
            self.error = e
            return
        self.idempotent = bool(producer.config.get("enable_idempotence"))
        try:
            self._send_loop(producer)
            producer.flush(timeout=90)
        except BaseException as e:  # noqa: BLE001
            self.error = e
        finally:
            producer.close(timeout=10)

    def _send_loop(self, producer: KafkaProducer) -> None:
        deadline = time.monotonic() + self.duration_s_max
        pad = b"." * max(0, self.value_bytes - 12)
        while self.sent < self.count_max and not self._stop.is_set() \
                and time.monotonic() < deadline:
            if not self._window.acquire(timeout=0.5):
                continue
            seq = self.sent
            self.sent += 1
            partition = seq % self.partitions
            value = b"w-%010d" % seq + pad
            try:
                future = producer.send(self.topic, value=value, key=b"k%d" % seq,
                                       partition=partition)
            except Exception as e:  # noqa: BLE001 - e.g. metadata timeout while failing over
                self._failed(seq, e)
                continue
            future.add_callback(self._ok, value, time.monotonic())
            future.add_errback(self._failed, seq)

    def _ok(self, value: bytes, sent_s: float, md: Any) -> None:
        acked = Acked(partition=md.partition, offset=md.offset, key=b"k%d" % int(value[2:12]),
                      value=value, headers=(), sent_s=sent_s, acked_s=time.monotonic())
        with self._log.lock:
            self._log.acked.append(acked)
        self._window.release()

    def _failed(self, seq: int, error: BaseException) -> None:
        with self._log.lock:
            self._log.failed.append((seq, repr(error)))
        self._window.release()
