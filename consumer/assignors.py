"""Partition assignors, run by the group leader (a client), as Kafka's are. Pure.

    range       per topic, members subscribed to it in member-id order each take a contiguous
                run of partitions; the first P % M members take one extra (Kafka's
                RangeAssignor)
    roundrobin  every subscribed partition, sorted by (topic, partition), dealt in turn to the
                members in member-id order, skipping members not subscribed to its topic
                (Kafka's RoundRobinAssignor)

Both give every partition of a subscribed topic to exactly one member subscribed to that
topic, and the same input always gives the same output, so members running different
clients (ours, kafka-python, Java) agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from consumer.structs import TopicPartition

__all__ = ["ASSIGNORS", "Assign", "range_assign", "roundrobin_assign"]

# member id -> the topics it subscribes to
Subscriptions = Mapping[str, Sequence[str]]
# topic -> its partition count (topics missing here, e.g. not created yet, get nothing)
PartitionCounts = Mapping[str, int]
Assign = Callable[[PartitionCounts, Subscriptions], dict[str, list[TopicPartition]]]


def range_assign(partitions: PartitionCounts, subscriptions: Subscriptions
                 ) -> dict[str, list[TopicPartition]]:
    out: dict[str, list[TopicPartition]] = {m: [] for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        count = partitions.get(topic, 0)
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if count <= 0 or not members:
            continue
        share, extra = divmod(count, len(members))
        for i, member in enumerate(members):
            start = share * i + min(i, extra)
            length = share + (1 if i < extra else 0)
            out[member].extend(TopicPartition(topic, p) for p in range(start, start + length))
    return out


def roundrobin_assign(partitions: PartitionCounts, subscriptions: Subscriptions
                      ) -> dict[str, list[TopicPartition]]:
    out: dict[str, list[TopicPartition]] = {m: [] for m in subscriptions}
    members = sorted(subscriptions)
    if not members:
        return out
    wanted = {m: set(subscriptions[m]) for m in members}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    turn = 0
    for topic in topics:
        for p in range(max(partitions.get(topic, 0), 0)):
            for _ in range(len(members)):  # the next member subscribed to this topic
                member = members[turn % len(members)]
                turn += 1
                if topic in wanted[member]:
                    out[member].append(TopicPartition(topic, p))
                    break
    return out


ASSIGNORS: Mapping[str, Assign] = {"range": range_assign, "roundrobin": roundrobin_assign}
