"""raftlog's producer: Kafka's producer protocol, asyncio core with a blocking facade.

    from producer import Producer, AsyncProducer, RecordMetadata

`Producer` (blocking, any thread) and `AsyncProducer` (asyncio) take the same options
(ProducerConfig, API.md). Records are batched per partition and compressed per batch
(compression_type: lz4 by default; none, gzip, snappy and zstd in the forms Kafka's clients
write), sent with up to five batches in flight per partition and, by default, idempotently:
retries after leader changes neither duplicate nor reorder records of a partition.
"""

from producer.async_producer import AsyncProducer
from producer.config import ProducerConfig
from producer.errors import (
    BufferFullError,
    DeliveryTimeoutError,
    KafkaTimeoutError,
    ProduceError,
    ProducerClosedError,
    RecordTooLargeError,
    UnknownPartitionError,
    UnknownTopicError,
)
from producer.futures import RecordFuture, RecordMetadata
from producer.partitioner import murmur2, partition_for_key
from producer.sync_producer import Producer

__all__ = [
    "AsyncProducer",
    "Producer",
    "ProducerConfig",
    "RecordFuture",
    "RecordMetadata",
    "BufferFullError",
    "DeliveryTimeoutError",
    "KafkaTimeoutError",
    "ProduceError",
    "ProducerClosedError",
    "RecordTooLargeError",
    "UnknownPartitionError",
    "UnknownTopicError",
    "murmur2",
    "partition_for_key",
]
