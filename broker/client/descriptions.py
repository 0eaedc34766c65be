"""What the admin client returns: frozen, slotted, keyword-only records of topics and the cluster.

Node ids are the brokers' `--node-id`; a leader of None means the partition has none right now;
a high watermark of -1 means its leader could not be asked (no leader, or it did not answer).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "TopicListing",
    "PartitionDescription",
    "TopicDescription",
    "BrokerDescription",
    "ClusterPartition",
    "ClusterDescription",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicListing:
    name: str
    partitions: int
    replication_factor: int  # replicas of the widest partition (all partitions have as many)
    internal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionDescription:
    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    high_watermark: int  # the end of the committed log; -1: unknown
    leader_epoch: int = -1  # the partition's Raft term; -1: unknown
    offline_replicas: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicDescription:
    name: str
    partitions: tuple[PartitionDescription, ...]  # by partition index
    internal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerDescription:
    node_id: int
    host: str
    port: int
    alive: bool  # registered and heard from within its session timeout

    @property
    def id(self) -> int:  # noqa: A003 - the name `raftlog cluster status --json` uses
        return self.node_id

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterPartition:
    topic: str
    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def under_replicated(self) -> bool:
        """Fewer replicas caught up than assigned (Kafka's UnderReplicatedPartitions)."""
        return len(self.isr) < len(self.replicas)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterDescription:
    controller: int | None  # the controller quorum's leader; None while there is none
    brokers: tuple[BrokerDescription, ...]  # by node id, dead ones included
    partitions: tuple[ClusterPartition, ...]  # by topic, then partition
    complete: bool = True  # False: read from Metadata, which lists only live brokers

    @property
    def under_replicated(self) -> int:
        return sum(1 for p in self.partitions if p.under_replicated)

    @property
    def offline(self) -> int:
        """Partitions without a leader."""
        return sum(1 for p in self.partitions if p.leader is None)

    def partitions_led(self, node_id: int) -> int:
        return sum(1 for p in self.partitions if p.leader == node_id)
