"""What the consumer reads: its subscription or manual assignment, and per assigned partition
the position (next offset to hand out) and how to find it when unknown. Pure state, no I/O,
as Kafka's SubscriptionState; the fetcher and the group member read and change it.

A partition's position is None until resolved: `reset` says how (COMMITTED: the group's
committed offset, falling back to `auto_offset_reset`; EARLIEST/LATEST: ListOffsets; NONE:
raise). Every change of position bumps the partition's `epoch`, so fetches answered for an
older position are dropped rather than applied.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from consumer.errors import IllegalStateError
from consumer.structs import TopicPartition

__all__ = ["Reset", "PartitionState", "SubscriptionState"]

TOPICS_MAX = 10_000  # subscribed topics / assigned partitions a consumer accepts


class Reset(enum.Enum):
    COMMITTED = "committed"
    EARLIEST = "earliest"
    LATEST = "latest"
    NONE = "none"
    FAILED = "failed"  # reset "none" was reported to the user; wait for a seek


@dataclass(slots=True, kw_only=True)
class PartitionState:
    position: int | None = None
    reset: Reset | None = Reset.COMMITTED  # how to resolve a None position
    epoch: int = 0  # bumped on every seek or reset
    high_watermark: int = -1  # as the last fetch reported it
    log_start_offset: int = -1
    # Offsets below this are known to exist: the highest high watermark a leader reported, or
    # the committed offset resumed from. Committed Raft entries are never lost, so a replica
    # reporting less is behind (a deposed leader not yet told), not proof the log shrank.
    known_end_offset: int = -1
    lagging_since_s: float | None = None  # when a replica behind known_end_offset first answered

    def seek(self, offset: int) -> None:
        self.position = offset
        self.reset = None
        self.epoch += 1
        self.lagging_since_s = None

    def request_reset(self, reset: Reset) -> None:
        self.position = None
        self.reset = reset
        self.epoch += 1
        self.lagging_since_s = None

    def learn_end(self, offset: int) -> None:
        """`offset` exists in the partition's log (a reported high watermark, a committed
        offset): raise known_end_offset to it."""
        self.known_end_offset = max(self.known_end_offset, offset)


class SubscriptionState:
    def __init__(self, *, default_reset: str, group: bool) -> None:
        self.default_reset = Reset(default_reset)
        self.group = group  # committed offsets exist (a group_id is set)
        self.topics: frozenset[str] | None = None  # subscribe() mode
        self.manual = False  # assign() mode
        self.assignment: dict[TopicPartition, PartitionState] = {}
        self.version = 0  # bumped on every change of subscription or assignment

    # ---- choosing what to read ----------------------------------------------------------
    def subscribe(self, topics: Iterable[str]) -> bool:
        """Subscribe to `topics`; whether the topic set changed (the group must rejoin)."""
        if self.manual:
            raise IllegalStateError("subscribe() after assign(): call unsubscribe() first")
        names = frozenset(topics)
        if not names or any(not isinstance(t, str) or not t for t in names):
            raise ValueError(f"subscribe() needs topic names, got {sorted(map(str, names))}")
        if len(names) > TOPICS_MAX:
            raise ValueError(f"more than {TOPICS_MAX} topics")
        if not self.group:
            raise IllegalStateError("subscribe() needs a group_id; use assign() without one")
        changed = names != self.topics
        self.topics = names
        self.version += 1
        return changed

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        if self.topics is not None:
            raise IllegalStateError("assign() after subscribe(): call unsubscribe() first")
        tps = [TopicPartition(*tp) for tp in partitions]
        if len(tps) > TOPICS_MAX:
            raise ValueError(f"more than {TOPICS_MAX} partitions")
        for tp in tps:
            if not isinstance(tp.topic, str) or not tp.topic or not isinstance(
                    tp.partition, int) or tp.partition < 0:
                raise ValueError(f"not a partition: {tp!r}")
        self.manual = bool(tps)
        self._set_assignment(tps)

    def unsubscribe(self) -> None:
        self.topics = None
        self.manual = False
        self._set_assignment(())

    def set_group_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        """The assignment SyncGroup gave us (only partitions of topics we subscribe to)."""
        assert self.topics is not None
        self._set_assignment(tp for tp in partitions if tp.topic in self.topics)

    def revoke_all(self) -> None:
        self._set_assignment(())

    def _set_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        old = self.assignment
        self.assignment = {}
        for tp in partitions:
            # A partition kept across assign() calls keeps its position (Kafka does the same);
            # a group's new generation starts over from the committed offsets.
            keep = old.get(tp) if self.manual else None
            self.assignment[tp] = keep or PartitionState(reset=self._initial_reset())
        self.version += 1

    def _initial_reset(self) -> Reset:
        return Reset.COMMITTED if self.group else self.default_reset

    @property
    def subscribed(self) -> bool:
        return self.topics is not None or self.manual

    # ---- positions ----------------------------------------------------------------------
    def state(self, tp: TopicPartition, what: str) -> PartitionState:
        st = self.assignment.get(tp)
        if st is None:
            raise IllegalStateError(f"{what}: {tp.topic}-{tp.partition} is not assigned to "
                                    "this consumer")
        return st

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"seek offset must be a non-negative integer, got {offset!r}")
        self.state(tp, "seek").seek(offset)
        self.version += 1

    def request_reset(self, tp: TopicPartition, reset: Reset) -> None:
        self.state(tp, "seek").request_reset(reset)
        self.version += 1

    def needs_reset(self) -> dict[TopicPartition, Reset]:
        return {tp: st.reset for tp, st in self.assignment.items()
                if st.position is None and st.reset not in (None, Reset.FAILED)}

    def consumed_positions(self) -> dict[TopicPartition, int]:
        return {tp: st.position for tp, st in self.assignment.items()
                if st.position is not None}
