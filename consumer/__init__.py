"""raftlog's consumer library: Kafka's consumer protocol, asyncio core with a sync facade.

    from consumer import Consumer, AsyncConsumer, ConsumerRecord, TopicPartition
    c = Consumer("orders", bootstrap_servers="127.0.0.1:9092", group_id="billing")
    for record in c: ...

    async_consumer.py  AsyncConsumer (the core); sync_consumer.py Consumer (the facade)
    fetcher.py         background fetching into bounded per-partition buffers
    group.py           group membership: coordinator, join/sync, heartbeats, commits
    subscription.py    what is read and where (pure state)
    assignors.py       range and round-robin assignors (pure)
    protocol.py        Kafka's consumer protocol bytes (pure)
    offsets.py         ListOffsets: beginning, end, offsets for times
    config.py          ConsumerConfig; errors.py the exceptions; structs.py the values
"""

from consumer.async_consumer import AsyncConsumer
from consumer.config import ConsumerConfig
from consumer.errors import (
    CommitFailedError,
    ConsumerConfigError,
    ConsumerError,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    UnknownTopicError,
)
from consumer.structs import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition
from consumer.sync_consumer import Consumer

__all__ = [
    "Consumer",
    "AsyncConsumer",
    "ConsumerConfig",
    "ConsumerRecord",
    "TopicPartition",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "ConsumerError",
    "ConsumerConfigError",
    "IllegalStateError",
    "NoOffsetForPartitionError",
    "OffsetOutOfRangeError",
    "CommitFailedError",
    "UnknownTopicError",
]
