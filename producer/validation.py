"""Checking what `send()` is given, before anything is queued: every mistake is raised to
the caller at once, as a TypeError (wrong type), ValueError (bad value) or
RecordTooLargeError (a record no broker would take), never as a failed future later."""

from __future__ import annotations

import time
from collections.abc import Iterable

from broker.wire.records import Record
from producer.batch import batch_bytes_max_for, headers_bytes, record_bytes_estimate
from producer.config import ProducerConfig, Serializer
from producer.errors import RecordTooLargeError

__all__ = ["PreparedRecord", "prepare_record"]

Headers = tuple[tuple[str, "bytes | None"], ...]
_NO_HEADERS: Headers = ()
_INT64_MAX = (1 << 63) - 1
_INT32_MAX = (1 << 31) - 1


class PreparedRecord:
    """A checked record ready to queue, with its size estimate (bytes reserved for it)."""

    __slots__ = ("topic", "record", "size_bytes", "partition")

    def __init__(self, topic: str, record: Record, size_bytes: int,
                 partition: int | None) -> None:
        self.topic = topic
        self.record = record
        self.size_bytes = size_bytes
        self.partition = partition  # as asked by the caller; None: the partitioner decides


def prepare_record(config: ProducerConfig, topic: object, value: object, key: object,
                   partition: object, timestamp_ms: object, headers: object
                   ) -> PreparedRecord:
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__}")
    if not topic:
        raise ValueError("topic must not be empty")
    key_bytes = _serialize(key, config.key_serializer, "key")
    value_bytes = _serialize(value, config.value_serializer, "value")
    header_list = _headers(headers)
    if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)):
        raise TypeError(f"partition must be an int or None, got {type(partition).__name__}")
    if partition is not None and not 0 <= partition <= _INT32_MAX:
        raise ValueError(f"partition must be between 0 and {_INT32_MAX}, got {partition}")
    size = record_bytes_estimate(-1 if key_bytes is None else len(key_bytes),
                                 -1 if value_bytes is None else len(value_bytes),
                                 headers_bytes(header_list) if header_list else 1)
    _check_size(config, size)
    record = Record(key_bytes, value_bytes, header_list, _timestamp(timestamp_ms))
    return PreparedRecord(topic, record, size, partition)


def _serialize(data: object, serializer: Serializer | None, what: str) -> bytes | None:
    if serializer is not None and data is not None:
        data = serializer(data)
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"the {what}_serializer returned {type(data).__name__}, "
                            "not bytes or None")
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)  # a private copy: the caller may reuse its buffer
    raise TypeError(f"{what} must be bytes or None, got {type(data).__name__} "
                    f"(set {what}_serializer to send other types)")


def _headers(headers: object) -> Headers:
    if headers is None:
        return _NO_HEADERS
    if isinstance(headers, (str, bytes)) or not isinstance(headers, Iterable):
        raise TypeError("headers must be a list of (str, bytes | None) pairs")
    out: list[tuple[str, bytes | None]] = []
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"each header must be a (str, bytes | None) pair, got {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"header key must be str, got {type(name).__name__}")
        if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"header {name!r} value must be bytes or None, "
                            f"got {type(value).__name__}")
        out.append((name, None if value is None else bytes(value)))
    return tuple(out)


def _timestamp(timestamp_ms: object) -> int:
    if timestamp_ms is None:
        return time.time_ns() // 1_000_000
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
        raise TypeError(f"timestamp_ms must be an int or None, got {type(timestamp_ms).__name__}")
    if not 0 <= timestamp_ms <= _INT64_MAX:
        raise ValueError(f"timestamp_ms must be between 0 and {_INT64_MAX}, got {timestamp_ms}")
    return timestamp_ms


def _check_size(config: ProducerConfig, size: int) -> None:
    batch_bytes = batch_bytes_max_for(size, config.compression)
    if batch_bytes > config.max_request_size:
        raise RecordTooLargeError(
            f"the record is {batch_bytes} bytes when serialized in its own batch, more than "
            f"max_request_size={config.max_request_size}", size_bytes=batch_bytes,
            limit_bytes=config.max_request_size)
    if size > config.buffer_memory:
        raise RecordTooLargeError(
            f"the record is {size} bytes, more than buffer_memory={config.buffer_memory}",
            size_bytes=size, limit_bytes=config.buffer_memory)

