"""The fetcher: keeps records of the assigned partitions ready to hand out.

One background task (owned here) loops: resolve unknown positions (committed offset, or
ListOffsets per `auto_offset_reset`), then send a Fetch to each partition leader that has no
fetch in flight, for its partitions whose prefetch buffer has room; it sleeps until a fetch
returns, the user takes records, the assignment changes, or a backoff ends.

- Fetch (v4+, whatever the broker and we both speak) is a long poll: the leader answers once
  it has `fetch_min_bytes`, or after `fetch_max_wait_ms`. The broker only ever returns records
  below the high watermark (Raft-committed).
- Bounded prefetch: a partition is fetched while its buffer holds less than
  `max_partition_fetch_bytes` (so at most about twice that is buffered per partition), and no
  fetch starts while all buffers together hold `fetch_max_bytes` or more.
- Leader changes: NOT_LEADER_OR_FOLLOWER and its kin, or a lost connection, ask for a metadata
  refresh and back the partition off for `retry_backoff_ms`; the next fetch goes to whoever the
  refreshed metadata names.
- OFFSET_OUT_OF_RANGE (a seek past the end or before the start, or retention passed us) resets
  the position per `auto_offset_reset`; with "none" the next getmany() raises
  OffsetOutOfRangeError. Except from a replica behind us: its high watermark is below our
  position, yet a leader already reported that position committed (or it is the committed
  offset we resumed from). A deposed leader that has not yet heard of its successor answers
  so (a paused broker just resumed); Raft never loses committed entries, so this is treated
  like NOT_LEADER_OR_FOLLOWER for up to `request_timeout_ms`, and only then as a log that
  really shrank (a topic deleted and made again).
- Batches are decoded here (every codec) with `broker.wire.records.decode_batches`; control
  batches and records before the fetch offset (a batch starts before it) are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.client import ClientError, ClusterClient
from broker.client.errors import error_code
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka.messages import FetchPartition, FetchRequest, FetchTopic
from broker.wire.records import CorruptBatchError
from consumer.buffer import PartitionBuffer, scan
from consumer.config import ConsumerConfig
from consumer.errors import ConsumerError, NoOffsetForPartitionError, OffsetOutOfRangeError
from consumer.offsets import EARLIEST, LATEST, list_offsets
from consumer.structs import ConsumerRecord, TopicPartition, consumer_records
from consumer.subscription import PartitionState, Reset, SubscriptionState

__all__ = ["Fetcher", "CommittedLookup"]

log = logging.getLogger(__name__)

# Given partitions, their committed offsets (None: nothing committed).
CommittedLookup = Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int | None]]]

ERRORS_MAX = 16  # errors waiting to be raised by getmany(); more are dropped (and logged)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ask:
    """One partition of a fetch about to be sent."""

    tp: TopicPartition
    offset: int
    epoch: int  # the position's epoch (a seek or reset since makes the answer stale)
    leader_epoch: int  # the partition's leader epoch per metadata; -1: unknown


class Fetcher:
    def __init__(self, cluster: ClusterClient, config: ConsumerConfig,
                 subscription: SubscriptionState, committed: CommittedLookup | None) -> None:
        self._cluster = cluster
        self._config = config
        self._subs = subscription
        self._committed = committed
        self._buffers: dict[TopicPartition, PartitionBuffer] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}  # leader node -> its fetch
        self._inflight_tps: set[TopicPartition] = set()
        self._backoff_until: dict[TopicPartition, float] = {}
        self._errors: deque[Exception] = deque()
        self._wakeup = asyncio.Event()
        self._data_ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resetting: asyncio.Task[None] | None = None  # resolving unknown positions
        self._rotation = 0  # which partition take() starts with, for fairness

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._loop(), name=f"{self._config.client_id}-fetcher")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, self._resetting, *self._inflight.values()]
                 if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._inflight.clear()

    def wake(self) -> None:
        """Something changed (assignment, positions): look again at what to fetch."""
        self._wakeup.set()
        self._data_ready.set()

    # ---- handing out records --------------------------------------------------------------
    def raise_error(self) -> None:
        if self._errors:
            raise self._errors.popleft()

    def take(self, records_max: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to `records_max` buffered records, advancing each partition's position past
        what is handed out. Partitions take turns so a busy one cannot starve the others."""
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        tps = list(self._buffers)
        if not tps:
            return out
        self._rotation = (self._rotation + 1) % len(tps)
        left = records_max
        for tp in tps[self._rotation:] + tps[:self._rotation]:
            if left <= 0:
                break
            taken = self._take_from(tp, left)
            if taken:
                out[tp] = taken
                left -= len(taken)
        if out:
            self._wakeup.set()
        return out

    def _take_from(self, tp: TopicPartition, left: int) -> list[ConsumerRecord]:
        buf = self._buffers[tp]
        st = self._subs.assignment.get(tp)
        if st is None or st.epoch != buf.epoch or st.position is None:
            del self._buffers[tp]
            return []
        try:
            raw = buf.take(left)
        except CorruptBatchError as e:
            self._error(KafkaError(ErrorCode.CORRUPT_MESSAGE, f"{tp.topic}-{tp.partition}: {e}"))
            raw = []
        out = consumer_records(tp.topic, tp.partition, raw, self._config.key_deserializer,
                               self._config.value_deserializer)
        if out:
            st.position = out[-1].offset + 1
        if buf.empty:
            st.position = max(st.position, buf.next_offset)  # past skipped control records
            del self._buffers[tp]
        return out

    def buffered_bytes(self) -> int:
        return sum(b.size_bytes for b in self._buffers.values())

    async def wait_for_data(self, timeout_s: float) -> None:
        self._data_ready.clear()
        if self._buffers:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._data_ready.wait()
        except TimeoutError:
            pass

    # ---- the loop -------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff_s = max(self._config.retry_backoff_ms, 10) / 1000
        while True:
            self._wakeup.clear()
            if self._resetting is None and self._subs.needs_reset():
                self._resetting = asyncio.create_task(
                    self._reset_positions(backoff_s), name=f"{self._config.client_id}-reset")
            try:
                self._start_fetches(loop.time())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug: tell the user, keep going
                log.exception("fetcher failed")
                self._error(e)
            try:
                async with asyncio.timeout(self._next_wake_s(loop.time())):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _next_wake_s(self, now: float) -> float:
        later = [t - now for t in self._backoff_until.values() if t > now]
        return max(0.001, min(later)) if later else 1.0

    def _error(self, e: Exception) -> None:
        last = self._errors[-1] if self._errors else None
        if last is not None and type(last) is type(e) and str(last) == str(e):
            return  # the same failure again before the user saw the first one
        if len(self._errors) >= ERRORS_MAX:
            log.error("consumer error dropped (too many unread): %s", e)
            return
        self._errors.append(e)
        self._data_ready.set()

    # ---- positions ------------------------------------------------------------------------
    async def _reset_positions(self, backoff_s: float) -> None:
        """Resolve unknown positions (a task of its own, so fetching the partitions whose
        positions are known goes on meanwhile); failures are retried after a backoff."""
        try:
            await self._reset_once()
        except asyncio.CancelledError:
            raise
        except (ClientError, KafkaError, ConsumerError) as e:
            if getattr(e, "retriable", False):
                log.debug("resetting positions: %s", e)
            else:
                self._error(e)
            await asyncio.sleep(backoff_s)
        except Exception as e:  # a bug: tell the user, keep going
            log.exception("resetting positions failed")
            self._error(e)
            await asyncio.sleep(backoff_s)
        finally:
            self._resetting = None
            self._wakeup.set()

    async def _reset_once(self) -> None:
        needs = self._subs.needs_reset()
        if not needs:
            return
        epochs = {tp: self._subs.assignment[tp].epoch for tp in needs}
        committed = [tp for tp, r in needs.items() if r is Reset.COMMITTED]
        if committed:
            assert self._committed is not None, "Reset.COMMITTED only with a group"
            found = await self._committed(committed)
            for tp in committed:
                offset = found.get(tp)
                if offset is not None and offset >= 0:
                    self._set_position(tp, epochs[tp], offset)
                else:
                    needs[tp] = self._subs.default_reset
        none = frozenset(tp for tp, r in needs.items() if r is Reset.NONE)
        if none:
            for tp in none:
                st = self._subs.assignment.get(tp)
                if st is not None and st.epoch == epochs[tp]:
                    st.reset = Reset.FAILED
            self._error(NoOffsetForPartitionError(none))
        targets = {tp: EARLIEST if r is Reset.EARLIEST else LATEST
                   for tp, r in needs.items() if r in (Reset.EARLIEST, Reset.LATEST)}
        if targets:
            found_offsets = await list_offsets(
                self._cluster, targets, timeout_ms=self._config.request_timeout_ms,
                retry_backoff_ms=self._config.retry_backoff_ms)
            for tp, (offset, _ts) in found_offsets.items():
                self._set_position(tp, epochs[tp], max(offset, 0))

    def _set_position(self, tp: TopicPartition, epoch: int, offset: int) -> None:
        st = self._subs.assignment.get(tp)
        if st is not None and st.epoch == epoch and st.position is None:
            st.seek(offset)
            st.learn_end(offset)  # a committed offset, or one a leader listed

    # ---- fetching -------------------------------------------------------------------------
    def _start_fetches(self, now: float) -> None:
        for tp in [tp for tp, t in self._backoff_until.items() if t <= now]:
            del self._backoff_until[tp]  # bounded by the partitions backing off now
        if self.buffered_bytes() >= self._config.fetch_max_bytes:
            return
        by_leader: dict[int, list[_Ask]] = {}
        for tp, st in self._subs.assignment.items():
            if st.position is None or tp in self._inflight_tps:
                continue
            if self._backoff_until.get(tp, 0.0) > now:
                continue
            buf = self._buffers.get(tp)
            if buf is not None and buf.epoch != st.epoch:
                del self._buffers[tp]
                buf = None
            if buf is not None and buf.size_bytes >= self._config.max_partition_fetch_bytes:
                continue
            pm = self._cluster.metadata.partition(tp.topic, tp.partition)
            if pm is None or pm.leader is None:
                self._back_off(tp, now)
                continue
            if pm.leader in self._inflight:
                continue
            offset = buf.next_offset if buf is not None else st.position
            by_leader.setdefault(pm.leader, []).append(
                _Ask(tp=tp, offset=offset, epoch=st.epoch, leader_epoch=pm.leader_epoch))
        for leader, parts in by_leader.items():
            self._inflight_tps.update(ask.tp for ask in parts)
            task = asyncio.create_task(self._fetch(leader, parts),
                                       name=f"{self._config.client_id}-fetch-{leader}")
            self._inflight[leader] = task

    def _back_off(self, tp: TopicPartition, now: float) -> None:
        self._backoff_until[tp] = now + self._config.retry_backoff_ms / 1000
        self._cluster.request_metadata_update()

    async def _fetch(self, node: int, parts: list[_Ask]) -> None:
        c = self._config
        topics: dict[str, list[FetchPartition]] = {}
        for ask in parts:
            # The leader epoch the metadata named: a leader of another term answers
            # FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH (a refresh, then a retry) instead of
            # serving from a view older or newer than ours (KIP-320).
            topics.setdefault(ask.tp.topic, []).append(FetchPartition(
                partition=ask.tp.partition, current_leader_epoch=ask.leader_epoch,
                fetch_offset=ask.offset, log_start_offset=-1,
                partition_max_bytes=c.max_partition_fetch_bytes))
        request = FetchRequest(
            replica_id=-1, max_wait_ms=c.fetch_max_wait_ms, min_bytes=c.fetch_min_bytes,
            max_bytes=c.fetch_max_bytes, isolation_level=0, session_id=0, session_epoch=-1,
            topics=[FetchTopic(topic=t, partitions=ps) for t, ps in topics.items()],
            forgotten_topics_data=[], rack_id="")
        asked = {ask.tp: (ask.offset, ask.epoch) for ask in parts}
        loop = asyncio.get_running_loop()
        try:
            response = await self._cluster.send(
                node, request, timeout_ms=c.request_timeout_ms + c.fetch_max_wait_ms)
            for t in response.responses:
                for p in t.partitions:
                    tp = TopicPartition(t.topic, p.partition_index)
                    if tp in asked:
                        self._handle(node, tp, p, *asked[tp], loop.time())
        except ClientError as e:
            log.debug("fetch from broker %d failed: %s", node, e)
            for tp in asked:
                self._back_off(tp, loop.time())
        finally:
            self._inflight.pop(node, None)
            self._inflight_tps.difference_update(asked)
            self._wakeup.set()

    def _handle(self, node: int, tp: TopicPartition, p: Any, offset: int, epoch: int,
                now: float) -> None:
        st = self._subs.assignment.get(tp)
        if st is None or st.epoch != epoch:
            return  # unassigned or seeked while the fetch was out
        code = error_code(p.error_code)
        if code == ErrorCode.NONE:
            st.high_watermark = p.high_watermark
            st.log_start_offset = p.log_start_offset
            st.learn_end(p.high_watermark)
            st.lagging_since_s = None
            self._store(tp, epoch, offset, p.records)
        elif code == ErrorCode.OFFSET_OUT_OF_RANGE:
            if self._behind_us(node, tp, st, p.high_watermark, offset, now):
                self._back_off(tp, now)
            else:
                self._out_of_range(tp, offset)
        elif code in RETRIABLE:
            self._back_off(tp, now)
        else:
            self._back_off(tp, now)
            self._error(KafkaError(code, f"fetching {tp.topic}-{tp.partition}: {code.name}"))

    def _behind_us(self, node: int, tp: TopicPartition, st: PartitionState,
                   high_watermark: int, offset: int, now: float) -> bool:
        """Whether an OFFSET_OUT_OF_RANGE at `offset` comes from a replica behind the
        partition (see the module doc) rather than from a position outside its log. A high
        watermark the answer does not give (-1) proves nothing: the usual reset then."""
        if high_watermark < 0 or offset <= high_watermark or offset > st.known_end_offset:
            return False
        if st.lagging_since_s is None:
            st.lagging_since_s = now
            log.info("broker %d answered offset %d of %s-%d out of range with high watermark "
                     "%d, below the %d already seen: a replica behind; retrying", node, offset,
                     tp.topic, tp.partition, high_watermark, st.known_end_offset)
            return True
        if now - st.lagging_since_s <= self._config.request_timeout_ms / 1000:
            return True
        log.warning("%s-%d: still answered out of range at %d (high watermark %d) after %d ms; "
                    "taking the log to have shrunk", tp.topic, tp.partition, offset,
                    high_watermark, self._config.request_timeout_ms)
        return False

    def _out_of_range(self, tp: TopicPartition, offset: int) -> None:
        reset = self._subs.default_reset
        if reset is Reset.NONE:
            self._subs.assignment[tp].request_reset(Reset.FAILED)
            self._error(OffsetOutOfRangeError({tp: offset}))
        else:
            log.info("offset %d of %s-%d is out of range; resetting to %s", offset, tp.topic,
                     tp.partition, reset.value)
            self._subs.assignment[tp].request_reset(reset)
        self._buffers.pop(tp, None)

    def _store(self, tp: TopicPartition, epoch: int, offset: int, raw: Any) -> None:
        """Keep a fetch response's records (undecoded: see consumer.buffer)."""
        if raw is None:
            return
        data = raw if isinstance(raw, (bytes, bytearray, memoryview)) else b"".join(raw)
        if not len(data):
            return
        try:
            next_offset, useful = scan(data, offset)
        except CorruptBatchError as e:
            self._error(KafkaError(ErrorCode.CORRUPT_MESSAGE,
                                   f"{tp.topic}-{tp.partition} at {offset}: {e}"))
            return
        buf = self._buffers.get(tp)
        if buf is not None and (buf.epoch != epoch or buf.next_offset != offset):
            buf = None
        if not useful:
            # Only control batches (or nothing new): move on without handing anything out.
            if buf is not None:
                buf.next_offset = max(buf.next_offset, next_offset)
            else:
                st = self._subs.assignment[tp]
                st.position = max(st.position or 0, next_offset)
            return
        if buf is None:
            buf = self._buffers[tp] = PartitionBuffer(epoch=epoch, next_offset=offset)
        buf.add(data, offset, next_offset)
        self._data_ready.set()
