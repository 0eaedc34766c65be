"""AsyncConsumer: the asyncio consumer (the sync `Consumer` runs one on a private loop).

    consumer = AsyncConsumer("orders", bootstrap_servers="127.0.0.1:9092", group_id="billing",
                             auto_offset_reset="earliest")
    await consumer.start()
    async for record in consumer: ...                         # or:
    batch = await consumer.getmany(timeout_ms=1000)           # {TopicPartition: [records]}
    await consumer.commit()
    await consumer.stop()                                     # or: async with AsyncConsumer(...)

Parts, each with one owner (this class): the ClusterClient (connections and metadata), the
SubscriptionState (what we read and where we are), the Fetcher (background fetching into
bounded buffers) and, with a group_id, the GroupMember (membership, heartbeats, commits).
Positions advance as records are handed out; auto-commit commits those positions every
`auto_commit_interval_ms`, before each rebalance and on stop(), so records are delivered at
least once across failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from broker.client import ClientError, ClusterClient, RequestTimedOutError
from broker.wire.errors import KafkaError
from consumer.config import ConsumerConfig
from consumer.errors import CommitFailedError, IllegalStateError, UnknownTopicError
from consumer.fetcher import Fetcher
from consumer.group import GroupMember, check_group
from consumer.offsets import EARLIEST, LATEST, list_offsets, unknown_topics
from consumer.structs import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition
from consumer.subscription import Reset, SubscriptionState

__all__ = ["AsyncConsumer"]

log = logging.getLogger(__name__)

TOPIC_CHECK_ATTEMPTS = 4  # metadata answers saying "unknown" before we believe it
TOPIC_CHECK_PAUSE_MS = 250


class AsyncConsumer:
    def __init__(self, *topics: str, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092",
                 **options: Any) -> None:
        self.config = ConsumerConfig(**options)
        c = self.config
        self._cluster = ClusterClient(bootstrap_servers, client_id=c.client_id,
                                      request_timeout_ms=c.request_timeout_ms,
                                      metadata_max_age_ms=c.metadata_max_age_ms,
                                      retry_backoff_ms=c.retry_backoff_ms)
        self._subs = SubscriptionState(default_reset=c.auto_offset_reset,
                                       group=c.group_id is not None)
        self._group: GroupMember | None = None
        if c.group_id is not None:
            self._group = GroupMember(self._cluster, c, self._subs,
                                      on_assigned=self._assignment_changed,
                                      before_revoke=self._commit_before_revoke)
        self._fetcher = Fetcher(self._cluster, c, self._subs,
                                self._committed_positions if self._group else None)
        self._initial_topics = tuple(topics)
        self._unchecked: set[str] = set()
        self._committed_sent: dict[TopicPartition, int] = {}  # auto-commit skips unchanged
        self._started = False
        self._closed = False

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (bootstrap), then start fetching and, with a group, joining. Topics given
        to the constructor are subscribed to (UnknownTopicError if one does not exist)."""
        if self._closed:
            raise IllegalStateError("the consumer is closed")
        if self._started:
            return
        await self._cluster.start()
        self._started = True
        if self._initial_topics:
            self.subscribe(self._initial_topics)
            await self._check_topics()
        self._fetcher.start()
        if self._group is not None:
            auto = self._auto_commit if self.config.enable_auto_commit else None
            self._group.start(auto)

    async def stop(self) -> None:
        """Commit consumed positions (auto-commit), leave the group, stop every task and close
        every connection. Harmless to call twice."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            await self._cluster.close()
            return
        try:
            if self._group is not None:
                if self.config.enable_auto_commit:
                    await self._commit_quietly("on close")
                await self._group.stop()
                await self._group.leave()
        finally:
            await self._fetcher.stop()
            await self._cluster.close()

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise IllegalStateError("the consumer is closed")
        if not self._started:
            raise IllegalStateError("the consumer is not started: await start() first")

    # ---- what to read ---------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str]) -> None:
        """Read `topics` as a member of the group (needs a group_id); partitions are assigned
        by the group and change with its membership."""
        names = [topics] if isinstance(topics, str) else list(topics)
        if self._subs.subscribe(names) and self._group is not None:
            self._group.request_rejoin()
        self._unchecked.update(names)
        self._fetcher.wake()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions, without group membership (commits still go to the
        group, if a group_id is set)."""
        self._subs.assign(partitions)
        self._unchecked.update(tp.topic for tp in self._subs.assignment)
        self._fetcher.wake()

    def unsubscribe(self) -> None:
        self._subs.unsubscribe()
        if self._group is not None:
            self._group.request_rejoin()
        self._fetcher.wake()

    def subscription(self) -> frozenset[str]:
        return self._subs.topics or frozenset()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._subs.assignment)

    async def _check_topics(self) -> None:
        """Raise UnknownTopicError for topics (given since the last check) that the cluster
        says do not exist."""
        if not self._unchecked:
            return
        topics, self._unchecked = set(self._unchecked), set()
        unknown = await self._unknown(topics)
        if unknown:
            raise UnknownTopicError(unknown)

    async def _unknown(self, topics: set[str]) -> frozenset[str]:
        """Topics the cluster says do not exist, once a few answers agree (the broker asked
        may lag behind a creation). Empty when the cluster cannot be asked."""
        unknown: frozenset[str] = frozenset()
        for attempt in range(TOPIC_CHECK_ATTEMPTS):
            try:
                await self._cluster.refresh_metadata(topics)
            except ClientError as e:
                log.debug("topic check: %s", e)
                return frozenset()
            unknown = unknown_topics(self._cluster, topics)
            if not unknown:
                return unknown
            await asyncio.sleep(TOPIC_CHECK_PAUSE_MS / 1000 * (attempt + 1))
        return unknown

    # ---- reading --------------------------------------------------------------------------
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None
                      ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records ready now, or the first to arrive within `timeout_ms`; {} if none did.
        At most `max_records` (default max_poll_records). Raises what the background work
        met: NoOffsetForPartitionError / OffsetOutOfRangeError (auto_offset_reset="none"),
        UnknownTopicError, KafkaError for an error it cannot handle."""
        self._check_open()
        if partitions:
            raise IllegalStateError("getmany(*partitions) is not supported; use assign()")
        if not self._subs.subscribed:
            raise IllegalStateError("nothing to read: subscribe() or assign() first")
        limit = self.config.max_poll_records if max_records is None else max_records
        if limit < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        await self._check_topics()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        while True:
            if self._group is not None and self._group.fatal is not None:
                error, self._group.fatal = self._group.fatal, None
                raise error
            self._fetcher.raise_error()
            records = self._fetcher.take(limit)
            if records:
                return records
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {}
            await self._fetcher.wait_for_data(remaining)

    async def getone(self) -> ConsumerRecord:
        """The next record, waiting as long as it takes."""
        while True:
            batch = await self.getmany(timeout_ms=1000, max_records=1)
            for records in batch.values():
                return records[0]

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self

    async def __anext__(self) -> ConsumerRecord:
        if self._closed:
            raise StopAsyncIteration
        return await self.getone()

    # ---- positions ------------------------------------------------------------------------
    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` next. An offset past the end or before the start
        of the log is handled as auto_offset_reset says when the fetch finds it so."""
        self._subs.seek(TopicPartition(*partition), offset)
        self._fetcher.wake()

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._seek_to(partitions, Reset.EARLIEST)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._seek_to(partitions, Reset.LATEST)

    def _seek_to(self, partitions: Sequence[TopicPartition], reset: Reset) -> None:
        for tp in partitions or tuple(self._subs.assignment):
            self._subs.request_reset(TopicPartition(*tp), reset)
        self._fetcher.wake()

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record to be handed out (resolving it if unknown)."""
        self._check_open()
        tp = TopicPartition(*partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout_ms / 1000
        while True:
            st = self._subs.state(tp, "position")
            if st.position is not None:
                return st.position
            self._fetcher.raise_error()
            if loop.time() >= deadline:
                raise RequestTimedOutError(f"the position of {tp.topic}-{tp.partition} was not "
                                           f"resolved within {self.config.request_timeout_ms} ms")
            self._fetcher.wake()
            await asyncio.sleep(0.01)

    async def partitions_for_topic(self, topic: str) -> frozenset[int] | None:
        """The topic's partition numbers, fresh from the cluster (None: no such topic)."""
        self._check_open()
        if await self._unknown({topic}):
            return None
        return self._cluster.partitions_for(topic)

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's high watermark as the last fetch reported it."""
        st = self._subs.state(TopicPartition(*partition), "highwater")
        return st.high_watermark if st.high_watermark >= 0 else None

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]
                                ) -> dict[TopicPartition, int]:
        return await self._list({TopicPartition(*tp): EARLIEST for tp in partitions})

    async def end_offsets(self, partitions: Iterable[TopicPartition]
                          ) -> dict[TopicPartition, int]:
        """The high watermark of each partition: the offset the next committed record gets."""
        return await self._list({TopicPartition(*tp): LATEST for tp in partitions})

    async def offsets_for_times(self, timestamps: Mapping[TopicPartition, int]
                                ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Per partition, the first record with a timestamp >= the given one (None: none)."""
        self._check_open()
        wanted = {TopicPartition(*tp): ts for tp, ts in timestamps.items()}
        for tp, ts in wanted.items():
            if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
                raise ValueError(f"timestamp of {tp} must be a non-negative int, got {ts!r}")
        found = await list_offsets(self._cluster, wanted,
                                   timeout_ms=self.config.request_timeout_ms,
                                   retry_backoff_ms=self.config.retry_backoff_ms)
        return {tp: (OffsetAndTimestamp(offset=o, timestamp_ms=t) if o >= 0 else None)
                for tp, (o, t) in found.items()}

    async def _list(self, wanted: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        self._check_open()
        found = await list_offsets(self._cluster, wanted,
                                   timeout_ms=self.config.request_timeout_ms,
                                   retry_backoff_ms=self.config.retry_backoff_ms)
        return {tp: offset for tp, (offset, _ts) in found.items()}

    # ---- committing -----------------------------------------------------------------------
    async def commit(self, offsets: Mapping[TopicPartition, Any] | None = None) -> None:
        """Commit `offsets` ({tp: offset or OffsetAndMetadata}), by default the positions of
        every assigned partition (everything handed out so far). Raises IllegalStateError for
        a partition not assigned to this consumer, CommitFailedError when the group has
        rebalanced since (the partitions may be someone else's now)."""
        self._check_open()
        group = check_group(self._group, "commit()")
        if offsets is None:
            prepared = {tp: OffsetAndMetadata(offset=o)
                        for tp, o in self._subs.consumed_positions().items()}
        else:
            prepared = {}
            for tp, value in offsets.items():
                tp = TopicPartition(*tp)
                self._subs.state(tp, "commit")  # raises for a partition not assigned
                om = value if isinstance(value, OffsetAndMetadata) \
                    else OffsetAndMetadata(offset=value)
                if isinstance(om.offset, bool) or not isinstance(om.offset, int) or om.offset < 0:
                    raise ValueError(f"commit offset of {tp} must be a non-negative int")
                prepared[tp] = om
        await group.commit(prepared)
        self._committed_sent.update({tp: om.offset for tp, om in prepared.items()})

    async def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of `partition` (None: nothing committed)."""
        self._check_open()
        group = check_group(self._group, "committed()")
        tp = TopicPartition(*partition)
        found = await group.fetch_committed([tp])
        om = found.get(tp)
        return None if om is None else om.offset

    async def _committed_positions(self, tps: list[TopicPartition]
                                   ) -> dict[TopicPartition, int | None]:
        assert self._group is not None
        found = await self._group.fetch_committed(tps)
        return {tp: (om.offset if om is not None else None) for tp, om in found.items()}

    async def _auto_commit(self) -> None:
        positions = self._subs.consumed_positions()
        changed = {tp: o for tp, o in positions.items() if self._committed_sent.get(tp) != o}
        if changed:
            await self._commit_quietly("auto-commit", changed)

    async def _commit_before_revoke(self) -> None:
        if self.config.enable_auto_commit:
            await self._commit_quietly("before rebalancing")

    async def _commit_quietly(self, why: str,
                              positions: Mapping[TopicPartition, int] | None = None) -> None:
        assert self._group is not None
        offsets = positions if positions is not None else self._subs.consumed_positions()
        if not offsets:
            return
        if self._subs.topics is not None and not self._group.in_generation:
            return  # nothing to commit to: the generation is gone
        try:
            await self._group.commit({tp: OffsetAndMetadata(offset=o) for tp, o in offsets.items()})
            self._committed_sent.update(offsets)
        except (CommitFailedError, KafkaError, ClientError) as e:
            log.info("group %r: commit %s failed: %s", self._group.group_id, why, e)

    def _assignment_changed(self) -> None:
        self._committed_sent = {tp: o for tp, o in self._committed_sent.items()
                                if tp in self._subs.assignment}
        self._fetcher.wake()
