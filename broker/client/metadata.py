"""The client's view of the cluster: a state object with no I/O (as aiokafka's ClusterMetadata).

Fed MetadataResponses by the ClusterClient's one refresher task; read by everything else
(leader of a partition, brokers' addresses, the controller). It also keeps the refresh clock,
as Kafka's `Metadata.timeToNextUpdate` does: a refresh is due `metadata_max_age_ms` after the
last success, or at once when someone asked for one (`request_update`), but never sooner than
`retry_backoff_ms` after the previous attempt, so errors cannot turn into a refresh storm.

A full refresh (all topics) replaces the topic table, so topics deleted on the cluster, and
entries for names that never existed, disappear; it alone resets the max-age clock. A refresh
of named topics updates only those, keeping an errored entry (e.g. UNKNOWN_TOPIC_OR_PARTITION)
so callers can see why; the table is thus bounded by the cluster's topics plus the names asked
about since the last full refresh.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from broker.client.config import Address
from broker.client.errors import error_code
from broker.wire.errors import ErrorCode
from broker.wire.kafka.messages import (
    MetadataResponse,
    MetadataResponsePartition,
    MetadataResponseTopic,
)

__all__ = ["BrokerMetadata", "PartitionMetadata", "TopicMetadata", "ClusterMetadata"]

_EMPTY: Mapping[int, PartitionMetadata] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerMetadata:
    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> Address:
        return Address(host=self.host, port=self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionMetadata:
    topic: str
    partition: int
    leader: int | None  # None: no leader right now (election, or every replica down)
    leader_epoch: int  # the partition's Raft term; -1 when the broker did not say
    replicas: tuple[int, ...]
    isr: tuple[int, ...]  # replicas caught up with the leader
    offline_replicas: tuple[int, ...]
    error_code: ErrorCode  # LEADER_NOT_AVAILABLE while leaderless; NONE otherwise


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicMetadata:
    name: str
    error_code: ErrorCode  # NONE, or why the topic could not be described
    internal: bool
    partitions: Mapping[int, PartitionMetadata]  # by partition index

    @property
    def all_led(self) -> bool:
        """Known, with at least one partition, and every partition has a leader."""
        return (self.error_code == ErrorCode.NONE and bool(self.partitions)
                and all(p.leader is not None for p in self.partitions.values()))


def _partition(topic: str, p: MetadataResponsePartition) -> PartitionMetadata:
    return PartitionMetadata(
        topic=topic, partition=p.partition_index,
        leader=p.leader_id if p.leader_id >= 0 else None, leader_epoch=p.leader_epoch,
        replicas=tuple(p.replica_nodes), isr=tuple(p.isr_nodes),
        offline_replicas=tuple(p.offline_replicas), error_code=error_code(p.error_code))


def _topic(t: MetadataResponseTopic) -> TopicMetadata:
    assert t.name is not None
    partitions = {p.partition_index: _partition(t.name, p) for p in t.partitions}
    return TopicMetadata(name=t.name, error_code=error_code(t.error_code),
                         internal=t.is_internal or t.name.startswith("__"),
                         partitions=MappingProxyType(partitions) if partitions else _EMPTY)


class ClusterMetadata:
    """Brokers, controller and topics as last reported, and when to ask again."""

    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.controller_id: int | None = None
        self._brokers: dict[int, BrokerMetadata] = {}
        self._topics: dict[str, TopicMetadata] = {}
        self.version = 0  # updates applied; callers compare it to see that something changed
        self.updated_ms: float | None = None  # last successful full (all-topic) update
        self._attempt_ms: float | None = None  # last update or failure
        self._update_requested = True  # nothing known yet

    # ---- reads ----------------------------------------------------------------------------
    @property
    def brokers(self) -> Mapping[int, BrokerMetadata]:
        return MappingProxyType(self._brokers)

    @property
    def topics(self) -> Mapping[str, TopicMetadata]:
        return MappingProxyType(self._topics)

    def broker(self, node_id: int) -> BrokerMetadata | None:
        return self._brokers.get(node_id)

    def topic(self, name: str) -> TopicMetadata | None:
        return self._topics.get(name)

    def partition(self, topic: str, partition: int) -> PartitionMetadata | None:
        t = self._topics.get(topic)
        return None if t is None else t.partitions.get(partition)

    def leader_for(self, topic: str, partition: int) -> int | None:
        p = self.partition(topic, partition)
        return None if p is None else p.leader

    def partitions_for(self, topic: str) -> frozenset[int] | None:
        """The topic's partition indexes; None while the topic is unknown or errored."""
        t = self._topics.get(topic)
        if t is None or not t.partitions:
            return None
        return frozenset(t.partitions)

    def available_partitions_for(self, topic: str) -> frozenset[int]:
        """Partitions that have a leader now (Kafka's availablePartitionsForTopic)."""
        t = self._topics.get(topic)
        if t is None:
            return frozenset()
        return frozenset(i for i, p in t.partitions.items() if p.leader is not None)

    # ---- the refresh clock ----------------------------------------------------------------
    def request_update(self) -> None:
        """Something looked stale (a NOT_LEADER error, a lost connection): refresh soon."""
        self._update_requested = True

    @property
    def update_requested(self) -> bool:
        return self._update_requested

    def ms_until_refresh(self, now_ms: float, max_age_ms: int, backoff_ms: int) -> float:
        """How long the refresher may sleep before the next refresh (0: now)."""
        backoff_left = 0.0 if self._attempt_ms is None else self._attempt_ms + backoff_ms - now_ms
        if self._update_requested or self.updated_ms is None:
            return max(0.0, backoff_left)
        return max(0.0, self.updated_ms + max_age_ms - now_ms, backoff_left)

    def failed(self, now_ms: float) -> None:
        """A refresh attempt failed: the next one waits for the backoff."""
        self._attempt_ms = now_ms

    # ---- updates --------------------------------------------------------------------------
    def update(self, response: MetadataResponse, *, topics: Collection[str] | None,
               now_ms: float) -> None:
        """Apply a MetadataResponse to a request for `topics` (None: all topics)."""
        self._brokers = {b.node_id: BrokerMetadata(node_id=b.node_id, host=b.host, port=b.port,
                                                   rack=b.rack) for b in response.brokers}
        self.controller_id = response.controller_id if response.controller_id >= 0 else None
        if response.cluster_id is not None:
            self.cluster_id = response.cluster_id
        answered = {t.name: _topic(t) for t in response.topics if t.name is not None}
        if topics is None:
            self._topics = answered  # the broker lists what exists: the rest is gone
            self._update_requested = False
            self.updated_ms = now_ms
        else:
            # Named topics only: neither a request_update nor the max-age clock is satisfied.
            self._topics.update(answered)
        self.version += 1
        self._attempt_ms = now_ms
        self.check_invariants()

    def check_invariants(self) -> None:
        for name, t in self._topics.items():
            assert t.name == name
            for index, p in t.partitions.items():
                assert p.partition == index and p.topic == name
        for node_id, b in self._brokers.items():
            assert b.node_id == node_id
        assert self.controller_id is None or self.controller_id >= 0
