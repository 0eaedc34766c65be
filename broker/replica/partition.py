"""One local replica of one Raft group: a RaftNode over a PartitionLog, plus what the Kafka API
needs of it (offset assignment, the high watermark, idempotent-producer state, waiters).

The replica never runs I/O by itself: the `ReplicaManager` calls `write()` (persist a Ready),
syncs the log, then calls `finish()` (apply committed entries and resolve waiters). Produce and
fetch handlers call `append()` and `read()`.

Storage errors. A LogError from a read the replica makes for a handler (`read`, or a handler's
own read reported through `storage_error`) is answered with its Kafka error code, never with
bytes; when it latched the log (damage met), `on_failure` tells the manager, which takes the
replica offline. Creating a replica reads the log too (the producer state), so the
constructor may raise LogError.

Producer state is rebuilt on creation from the newest usable producer snapshot (see
`broker.replica.snapshots`) and the committed batch headers after it; a snapshot is taken every
SNAPSHOT_INTERVAL_BATCHES applied batches, so the replay is bounded whatever the log's length.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from broker.raft.core import RaftNode
from broker.raft.messages import Entry, EntryKind, ProposeResult, Ready, Role
from broker.replica.producers import BatchSequence, ProducerTable
from broker.replica.snapshots import ProducerSnapshots
from broker.storage import LogDamageError, LogError, PartitionLog
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import BatchHeader, read_batch_header, stamp_batch

__all__ = ["Replica", "AppendResult"]


def _nothing() -> None:
    return None


def _ignore(exc: Exception) -> None:
    return None


def _sequence(h: BatchHeader, base_offset: int, index: int = 0) -> BatchSequence:
    return BatchSequence(epoch=h.producer_epoch, first_seq=h.base_sequence,
                         last_seq=h.base_sequence + h.last_offset_delta, base_offset=base_offset,
                         index=index)

log = logging.getLogger(__name__)

WAITERS_MAX = 10_000  # outstanding produce acknowledgements per partition; beyond: refused
# A producer snapshot per this many applied DATA batches: creating the replica replays at most
# about this many batch headers (~5 us each) on top of loading the snapshot.
SNAPSHOT_INTERVAL_BATCHES = 20_000


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    log_append_time_ms: int = -1


@dataclass(slots=True)
class _Waiter:
    index: int  # raft index of the entry
    term: int  # the term it was proposed in: another entry may end up at that index
    base_offset: int
    future: asyncio.Future[AppendResult]


def _waiter_index(w: _Waiter) -> int:
    return w.index


class Replica:
    __slots__ = (
        "group_id", "topic", "partition", "node", "log", "high_watermark", "leader_ready",
        "producers", "_next_offset", "_commit_waiters", "_append_waiters", "_hw_event",
        "_stable_index", "_on_committed", "_on_role", "on_work", "idle_ticks", "_applied_term",
        "_leader_term", "on_failure", "failure", "_snapshots", "_applied_offset",
        "_batches_since_snapshot",
    )

    log: PartitionLog

    def __init__(
        self,
        *,
        group_id: int,
        topic: str,
        partition: int,
        node: RaftNode,
        log: PartitionLog,
        on_committed: Callable[[Replica, Entry], None] | None = None,
        on_role: Callable[[Replica], None] | None = None,
    ) -> None:
        self.group_id = group_id
        self.topic = topic
        self.partition = partition
        self.node = node
        self.log = log
        self.leader_ready = False  # leader AND has applied an entry of its term
        self._leader_term = 0  # the term leader_ready was last set in
        self._applied_term = 0  # term of the last entry applied here
        self.producers = ProducerTable()
        self.high_watermark = log.offset_end_at(node.commit_index)
        self._next_offset = log.next_offset
        self._commit_waiters: deque[_Waiter] = deque()  # acks=all, by raft index
        self._append_waiters: deque[_Waiter] = deque()  # acks=1, by raft index
        self._hw_event = asyncio.Event()
        self._stable_index = log.last_index()
        self._on_committed = on_committed
        self._on_role = on_role
        self.on_work: Callable[[], None] = _nothing  # the manager: "this group has a Ready"
        self.idle_ticks = 0  # consecutive ticks this group could have been quiet
        # The manager: "a handler's read latched the log; take this replica offline".
        self.on_failure: Callable[[Exception], None] = _ignore
        self.failure: Exception | None = None  # the storage error that took it offline
        self._snapshots = ProducerSnapshots(log.directory)
        # Offset after the last batch whose producer state is in `producers.committed`.
        self._applied_offset = self.high_watermark
        self._batches_since_snapshot = 0
        self._rebuild_producers()

    # ---- produce ------------------------------------------------------------------------
    def append(self, batch: bytearray, header: BatchHeader, acks: int) -> asyncio.Future[AppendResult] | AppendResult:
        """Stamp and propose one verified batch. Returns a future (acks 1/all) resolved when
        the batch is durable on this leader (1) or committed (all), or the result at once for a
        duplicate or acks=0. Raises KafkaError when refused."""
        if not self.leader_ready or self.node.term != self._leader_term:
            # (a term change since the last cycle: leadership lost, maybe regained, unseen yet)
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"not the leader of {self.name}")
        idempotent = header.producer_id >= 0 and header.base_sequence >= 0
        if idempotent:
            last_seq = header.base_sequence + header.last_offset_delta
            verdict = self.producers.check(
                header.producer_id, header.producer_epoch, header.base_sequence, last_seq
            )
            if verdict.duplicate_of is not None:
                return self._answer_duplicate(verdict.duplicate_of, verdict.duplicate_index, acks)
            if not verdict.accept:
                raise KafkaError(verdict.error, f"{self.name}: producer {header.producer_id} "
                                 f"sequence {header.base_sequence} refused")
        if len(self._commit_waiters) + len(self._append_waiters) >= WAITERS_MAX:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"{self.name}: too many pending writes")
        base_offset = self._next_offset
        stamp_batch(batch, 0, base_offset, self.node.term)
        if self.node.propose(bytes(batch)) is not ProposeResult.ACCEPTED:
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS,
                             f"{self.name}: the leader cannot accept more uncommitted data now")
        self._next_offset = base_offset + header.last_offset_delta + 1
        self.on_work()
        if idempotent:
            self.producers.append_pending(header.producer_id,
                                          _sequence(header, base_offset, self.node.last_index))
        if acks == 0:
            return AppendResult(base_offset)
        return self._wait_for(self.node.last_index, self.node.term, base_offset, acks)

    def _answer_duplicate(self, base_offset: int, index: int, acks: int
                          ) -> asyncio.Future[AppendResult] | AppendResult:
        """A retry of a batch we hold: its original offset, but only once the original is as
        durable as `acks` asks. A retry of a batch appended and not yet committed must wait
        like the original: answered at once, it would acknowledge a write that a lost
        leadership can still truncate (a retry reaching a paused leader after it resumed)."""
        if acks == 0 or base_offset < self.high_watermark:
            return AppendResult(base_offset)
        if index == 0:  # appended by an earlier leadership: committed once our commit is
            index = self.node.last_index
        if len(self._commit_waiters) + len(self._append_waiters) >= WAITERS_MAX:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"{self.name}: too many pending writes")
        return self._wait_for(index, self.node.term_at(index), base_offset, acks)

    def _wait_for(self, index: int, term: int, base_offset: int, acks: int
                  ) -> asyncio.Future[AppendResult]:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(index, term, base_offset, future)
        waiters = self._commit_waiters if acks == -1 else self._append_waiters
        if waiters and waiters[-1].index > index:
            # A retry waits on an earlier entry: keep each list in index order.
            bisect.insort_right(waiters, waiter, key=_waiter_index)
        else:
            waiters.append(waiter)
        if acks == -1:
            self._resolve_committed()
        else:
            self._resolve_appended()
        return future

    # ---- fetch --------------------------------------------------------------------------
    def read(self, offset: int, bytes_max: int) -> list[bytes | memoryview]:
        """Committed batches from `offset`. An offset at or past the high watermark but within
        the log (appended, not yet committed) reads nothing yet, as Kafka's leader answers;
        only one outside [log start, log end] raises KafkaError OFFSET_OUT_OF_RANGE."""
        end = max(self.high_watermark, self.log.next_offset)
        if offset < self.log.log_start_offset or offset > end:
            raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE,
                             f"{self.name}: offset {offset} outside "
                             f"[{self.log.log_start_offset}, {end}]")
        if offset >= self.high_watermark:
            return []
        try:
            return self.log.read(offset, self.high_watermark, bytes_max)
        except LogError as e:
            raise self.storage_error(e) from e

    def storage_error(self, exc: LogError) -> KafkaError:
        """A read of this replica's log failed: the error to answer with. If it latched the log
        (a read met damage), the manager is told and takes the replica offline."""
        if self.log.read_only:
            self.note_failure(exc)
            self.on_failure(exc)
        return KafkaError(exc.error_code, f"{self.name}: {exc}")

    def note_failure(self, exc: Exception) -> None:
        """Remember why the replica fails; damage wins (its cure is a reopen)."""
        if self.failure is None or isinstance(exc, LogDamageError):
            self.failure = exc

    async def wait_for_data(self, offset: int, timeout_s: float) -> None:
        """Return once the high watermark passes `offset`, or after `timeout_s`."""
        if self.high_watermark > offset:
            return
        try:
            async with asyncio.timeout(timeout_s):
                while self.high_watermark <= offset:
                    await self._hw_event.wait()
        except TimeoutError:
            pass

    # ---- the Ready cycle (driven by ReplicaManager) ---------------------------------------
    def write(self, ready: Ready) -> None:
        """Persist a Ready's log and hard state (buffered; the manager syncs)."""
        if ready.log_reset is not None:
            self.log.reset(*ready.log_reset)
            self._snapshots.drop_above(self.log.next_offset)
        if ready.entries:
            first = ready.entries[0].index
            cut = first <= self.log.last_index()
            self.log.append(ready.entries)
            if cut and self._snapshots.newest >= 0:
                # (never below a snapshot's offset, which is committed, unless a bug cuts there)
                self._snapshots.drop_above(self.log.offset_end_at(first - 1))
        if ready.hard_state is not None:
            self.log.set_hard_state(ready.hard_state)

    def finish(self, ready: Ready) -> None:
        """After the sync: apply committed entries, resolve waiters, note role changes."""
        if ready.entries or ready.log_reset is not None:
            self._stable_index = self.log.last_index()
            self._resolve_appended()
        for entry in ready.committed:
            self._apply(entry)
        if ready.committed:
            self._resolve_committed()
            if self._batches_since_snapshot >= SNAPSHOT_INTERVAL_BATCHES:
                self.snapshot_producers()
        ready_now = self._is_leader_ready()
        if ready.soft_state is not None or self.leader_ready != ready_now or (
                ready_now and self._leader_term != self.node.term):
            self._role_changed()

    def _is_leader_ready(self) -> bool:
        """Leader, and every entry of earlier terms is applied here: it has applied an entry
        of its own term (entries apply in log order). Committing one is not enough: peers may
        acknowledge our term's first entry while we persist it, so the commit index can cover
        an earlier term's uncommitted tail before that tail is handed to us as committed (or
        it comes in pages). Producer state without the tail would judge retries of its batches
        as new (appended twice) or as out of order (the producer then takes a new id and
        sends all it has in flight again)."""
        return (self.node.role is Role.LEADER and self.node.has_committed_in_term
                and self._applied_term == self.node.term)

    def _apply(self, entry: Entry) -> None:
        self._applied_term = entry.term
        if entry.kind is EntryKind.DATA:
            h = read_batch_header(entry.data)
            self._set_high_watermark(h.last_offset + 1)
            self._applied_offset = max(self._applied_offset, h.last_offset + 1)
            self._batches_since_snapshot += 1
            if h.producer_id >= 0 and h.base_sequence >= 0:
                self.producers.commit(h.producer_id, _sequence(h, h.base_offset))
        if self._on_committed is not None:
            self._on_committed(self, entry)

    def _set_high_watermark(self, hw: int) -> None:
        if hw > self.high_watermark:
            self.high_watermark = hw
            self._hw_event.set()
            self._hw_event = asyncio.Event()

    def _resolve_committed(self) -> None:
        self._resolve(self._commit_waiters, self.node.commit_index)

    def _resolve_appended(self) -> None:
        self._resolve(self._append_waiters, self._stable_index)

    def _resolve(self, waiters: deque[_Waiter], upto: int) -> None:
        """Acknowledge waiters at indexes <= upto whose entry is still the one proposed (same
        term at that index); a replaced entry is reported as a lost leadership."""
        while waiters and waiters[0].index <= upto:
            w = waiters.popleft()
            if w.future.done():
                continue
            if self.node.term_at(w.index) == w.term:
                w.future.set_result(AppendResult(w.base_offset))
            else:
                w.future.set_exception(KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                                  f"{self.name}: the write was superseded"))

    def _role_changed(self) -> None:
        ready = self._is_leader_ready()
        if ready and (not self.leader_ready or self._leader_term != self.node.term):
            # Everything before our term's first commit is committed, persisted and applied
            # here, and no proposal of ours precedes it: the log's end is where our offsets
            # continue. Batches a leadership of ours in an earlier term appended are only
            # known as far as they were committed (an earlier leadership may have been lost
            # and regained between two cycles, its pending batches truncated meanwhile).
            self._next_offset = self.log.next_offset
            self.high_watermark = max(self.high_watermark, self.log.offset_end_at(self.node.commit_index))
            self.producers.drop_pending()
            self._leader_term = self.node.term
        if not ready and self.node.role is not Role.LEADER:
            self._fail_waiters(ErrorCode.NOT_LEADER_OR_FOLLOWER)
            self.producers.drop_pending()
        self.leader_ready = ready
        if self._on_role is not None:
            self._on_role(self)

    def _fail_waiters(self, code: ErrorCode) -> None:
        for waiters in (self._commit_waiters, self._append_waiters):
            while waiters:
                w = waiters.popleft()
                if not w.future.done():
                    w.future.set_exception(KafkaError(code, f"{self.name}: leadership moved"))

    def _rebuild_producers(self) -> None:
        """Idempotence state from the committed log (batches carry producer id/epoch/seq):
        the newest snapshot at or below the high watermark, then the batches after it; with
        none, every batch from the log start. Snapshots beyond the log's end (cut by a
        repair) or below its start (batches after them deleted) are deleted."""
        hw = self.high_watermark
        self._snapshots.drop_above(self.log.next_offset)
        snapshot = self._snapshots.load(self.producers, hw, self.log.log_start_offset)
        start = self.log.log_start_offset if snapshot is None else snapshot
        replayed = 0
        for h in self.log.batch_headers(start, hw):
            replayed += 1
            if h.producer_id >= 0 and h.base_sequence >= 0:
                self.producers.commit(h.producer_id, _sequence(h, h.base_offset))
        log.debug("%s: producer state from offset %d (%s), %d batches replayed", self.name,
                  start, "log start" if snapshot is None else "snapshot", replayed)
        self._batches_since_snapshot = replayed
        if replayed >= SNAPSHOT_INTERVAL_BATCHES:  # spare the next creation this replay
            self.snapshot_producers()

    def snapshot_producers(self) -> bool:
        """Store the committed producer state at the offset it covers (see
        `broker.replica.snapshots`). Returns whether it was written."""
        self._batches_since_snapshot = 0
        return self._snapshots.write(self._applied_offset, self.producers)

    def close(self, code: ErrorCode = ErrorCode.NOT_LEADER_OR_FOLLOWER) -> None:
        self._fail_waiters(code)
        self.leader_ready = False
        self.log.close()

    def close_failed(self) -> None:
        """After a storage error: fail every waiter, drop buffered writes (never synced)."""
        self._fail_waiters(ErrorCode.KAFKA_STORAGE_ERROR)
        self.leader_ready = False
        try:
            self.log.close(sync=False)
        except Exception:  # the log is already broken; closing is best effort
            pass

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"
