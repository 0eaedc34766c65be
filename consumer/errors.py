"""What a consumer raises, besides the cluster client's families (broker.client.errors):
`KafkaError` when a broker answered with an error code the consumer cannot handle itself, and
`ClientError` subclasses when no usable answer came (e.g. NoBrokersAvailableError).

Consumer-specific errors, all `ConsumerError`:
- IllegalStateError: the call does not fit the consumer's state (committing a partition that
  is not assigned, asking a position of one, poll() with nothing subscribed or assigned, group
  operations without a group_id, mixing subscribe() and assign(), using a closed consumer).
- NoOffsetForPartitionError: auto_offset_reset="none" and a partition has no committed offset.
- OffsetOutOfRangeError: auto_offset_reset="none" and a position is outside the log (seeked
  past its end or before its start, or the start moved past it).
- CommitFailedError: the group refused the commit because it rebalanced since the
  assignment was made (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS); the
  partitions may belong to another member now.
- UnknownTopicError: a topic the consumer was given does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.client.errors import ClientConfigError
from consumer.structs import TopicPartition

__all__ = [
    "ConsumerError",
    "ConsumerConfigError",
    "IllegalStateError",
    "NoOffsetForPartitionError",
    "OffsetOutOfRangeError",
    "CommitFailedError",
    "UnknownTopicError",
]


class ConsumerError(Exception):
    """A consumer operation failed (see the subclasses)."""


class ConsumerConfigError(ClientConfigError):
    """A consumer option is out of range or malformed."""


class IllegalStateError(ConsumerError):
    """The call does not fit the consumer's current state."""


class NoOffsetForPartitionError(ConsumerError):
    """auto_offset_reset is "none" and these partitions have no committed offset."""

    def __init__(self, partitions: frozenset[TopicPartition]) -> None:
        self.partitions = partitions
        names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions))
        super().__init__(f"no committed offset for {names} and auto_offset_reset is 'none'")


class OffsetOutOfRangeError(ConsumerError):
    """auto_offset_reset is "none" and these positions are outside their partitions' logs."""

    def __init__(self, positions: Mapping[TopicPartition, int]) -> None:
        self.positions = dict(positions)
        names = ", ".join(f"{tp.topic}-{tp.partition} at {offset}"
                          for tp, offset in sorted(positions.items()))
        super().__init__(f"position out of range: {names}; auto_offset_reset is 'none' "
                         "(seek to a valid offset)")


class CommitFailedError(ConsumerError):
    """The group rebalanced: the commit's generation or member is no longer current."""


class UnknownTopicError(ConsumerError):
    """A topic the consumer was asked to read does not exist."""

    def __init__(self, topics: frozenset[str]) -> None:
        self.topics = topics
        super().__init__(f"unknown topic{'s' if len(topics) > 1 else ''}: "
                         + ", ".join(repr(t) for t in sorted(topics)))
