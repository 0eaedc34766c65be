"""ListOffsets for the consumer: the log start, the high watermark, or the first offset at or
after a time, per partition, asked of each partition's leader.

Leader errors (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, a stale epoch, a topic the
answering broker does not know yet) and lost connections are retried after a metadata refresh
until `timeout_ms` runs out (RequestTimedOutError); a topic the cluster does not have raises
UnknownTopicError; any other error code raises KafkaError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from broker.client import ClientError, ClusterClient, RequestTimedOutError
from broker.client.errors import error_code
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka import ApiKey
from broker.wire.kafka.messages import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from consumer.errors import UnknownTopicError
from consumer.structs import TopicPartition

__all__ = ["EARLIEST", "LATEST", "list_offsets", "unknown_topics"]

EARLIEST = -2  # ListOffsets timestamp: the log start offset
LATEST = -1  # ListOffsets timestamp: the high watermark

Found = tuple[int, int]  # (offset, timestamp_ms); (-1, -1) when no record qualifies


def unknown_topics(cluster: ClusterClient, topics: set[str]) -> frozenset[str]:
    """Topics the last metadata answer says do not exist."""
    out = set()
    for t in topics:
        md = cluster.metadata.topic(t)
        if md is not None and md.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            out.add(t)
    return frozenset(out)


async def list_offsets(cluster: ClusterClient, wanted: Mapping[TopicPartition, int], *,
                       timeout_ms: int, retry_backoff_ms: int) -> dict[TopicPartition, Found]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    pending = dict(wanted)
    found: dict[TopicPartition, Found] = {}
    while True:
        by_leader: dict[int, dict[TopicPartition, int]] = {}
        for tp, ts in pending.items():
            leader = cluster.leader_for(tp.topic, tp.partition)
            if leader is not None:
                by_leader.setdefault(leader, {})[tp] = ts
        results = await asyncio.gather(*(_ask(cluster, node, asked, timeout_ms)
                                         for node, asked in by_leader.items()))
        for got in results:
            for tp, value in got.items():
                found[tp] = value
                del pending[tp]
        if not pending:
            return found
        if loop.time() >= deadline:
            raise RequestTimedOutError(f"offsets of {len(pending)} partitions not found within "
                                       f"{timeout_ms} ms (no leader answered)")
        await asyncio.sleep(retry_backoff_ms / 1000)
        try:
            async with asyncio.timeout_at(deadline):
                await cluster.refresh_metadata({tp.topic for tp in pending})
        except (TimeoutError, ClientError):
            continue
        unknown = unknown_topics(cluster, {tp.topic for tp in pending})
        if unknown:
            raise UnknownTopicError(unknown)
        for tp in pending:
            count = cluster.partitions_for(tp.topic)
            if count is not None and tp.partition not in count:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"topic {tp.topic!r} has no partition {tp.partition}")


def _leader_epoch(cluster: ClusterClient, tp: TopicPartition) -> int:
    """The leader epoch metadata names (-1: unknown): a leader of another term refuses with
    FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH rather than answer from an older view."""
    pm = cluster.metadata.partition(tp.topic, tp.partition)
    return -1 if pm is None else pm.leader_epoch


async def _ask(cluster: ClusterClient, node: int, asked: Mapping[TopicPartition, int],
               timeout_ms: int) -> dict[TopicPartition, Found]:
    """One ListOffsets to one leader: what it answered; retriable failures are left out."""
    topics: dict[str, list[ListOffsetsPartition]] = {}
    for tp, ts in asked.items():
        topics.setdefault(tp.topic, []).append(ListOffsetsPartition(
            partition_index=tp.partition, current_leader_epoch=_leader_epoch(cluster, tp),
            timestamp=ts, max_num_offsets=1))
    request = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        ListOffsetsTopic(name=name, partitions=parts) for name, parts in topics.items()])
    try:
        version = await cluster.api_version(node, ApiKey.LIST_OFFSETS)
        response = await cluster.send(node, request, timeout_ms=timeout_ms)
    except ClientError:
        return {}
    out: dict[TopicPartition, Found] = {}
    for t in response.topics:
        for p in t.partitions:
            tp = TopicPartition(t.name, p.partition_index)
            code = error_code(p.error_code)
            if code == ErrorCode.NONE:
                if version == 0:
                    out[tp] = (p.old_style_offsets[0] if p.old_style_offsets else -1, -1)
                else:
                    out[tp] = (p.offset, p.timestamp)
            elif code in RETRIABLE:
                cluster.request_metadata_update()
            else:
                raise KafkaError(code, f"offsets of {tp.topic}-{tp.partition}: {code.name}")
    return out
