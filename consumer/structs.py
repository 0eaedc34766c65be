"""The values a consumer hands out: partitions, records, committed offsets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from broker.wire.records import Record

__all__ = ["TopicPartition", "ConsumerRecord", "OffsetAndMetadata", "OffsetAndTimestamp",
           "consumer_records"]


class TopicPartition(NamedTuple):
    """A partition of a topic. A NamedTuple (as kafka-python's) so it sorts, hashes and
    unpacks: `topic, partition = tp`."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: Any  # bytes, None, or what key_deserializer made of the bytes
    value: Any  # bytes, None, or what value_deserializer made of the bytes
    headers: Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetAndMetadata:
    """A committed offset: the next record the group will read, and the committer's note."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetAndTimestamp:
    """offsets_for_times: the first record at or after the asked time."""

    offset: int
    timestamp_ms: int


# Records are handed out by the hundred thousand a second: they are built by writing their
# slots directly, since the frozen dataclass __init__ (object.__setattr__ per field) costs
# more than decoding the record did.
_new = object.__new__
_SETTERS = tuple(getattr(ConsumerRecord, name).__set__ for name in (
    "topic", "partition", "offset", "timestamp_ms", "key", "value", "headers"))


def consumer_records(topic: str, partition: int, records: Iterable[Record],
                     key_deserializer: Callable[[bytes], Any] | None,
                     value_deserializer: Callable[[bytes], Any] | None) -> list[ConsumerRecord]:
    """ConsumerRecords of decoded records, keys and values deserialized (None stays None)."""
    set_topic, set_partition, set_offset, set_ts, set_key, set_value, set_headers = _SETTERS
    out: list[ConsumerRecord] = []
    append = out.append
    for r in records:
        c = _new(ConsumerRecord)
        set_topic(c, topic)
        set_partition(c, partition)
        set_offset(c, r.offset)
        set_ts(c, r.timestamp_ms)
        key, value = r.key, r.value
        set_key(c, key_deserializer(key) if key_deserializer is not None and key is not None
                else key)
        set_value(c, value_deserializer(value)
                  if value_deserializer is not None and value is not None else value)
        set_headers(c, r.headers)
        append(c)
    return out
