"""The group coordinator of one broker: consumer groups whose `__consumer_offsets` partition
this broker leads.

Where state lives, and why it survives failover:
- Each offsets partition is a Raft group like any other. When this broker's replica of one
  becomes leader (and has committed an entry of its term, so its high watermark covers every
  earlier term), the partition is *loaded*: its log is replayed from the start up to that high
  watermark, rebuilding each group's committed offsets and last written membership. Until
  then requests for its groups get COORDINATOR_LOAD_IN_PROGRESS; a broker that does not lead
  the partition answers NOT_COORDINATOR. Losing leadership drops the partition's groups.
- Every change worth keeping is a record appended through the partition's replica with
  acks=all: committed offsets (the OffsetCommit answer waits for the commit), and the group's
  membership when the leader's assignment is set or the group becomes Empty (the SyncGroup
  answers wait for that write). Memory is updated when the write commits, in log order, so it
  always equals a replay of the log.
- The membership transitions themselves are the pure `broker.groups.state.Group`; this module
  feeds it requests and the clock (a tick every TICK_MS expires sessions and ends join
  phases) and turns its Effects into answers and writes.

`__consumer_offsets` is made on first use: FindCoordinator asks the controller for it
(16 partitions, replication factor min(3, live brokers)) and answers COORDINATOR_NOT_AVAILABLE
until its partition has a leader, as Kafka does.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from broker.controller.metadata import CONSUMER_OFFSETS_TOPIC
from broker.controller.placement import (
    CONSUMER_OFFSETS_CONFIGS,
    CONSUMER_OFFSETS_PARTITIONS,
    CONSUMER_OFFSETS_REPLICATION_FACTOR,
)
from broker.groups.keys import offsets_partition_for
from broker.groups.records import (
    METADATA_CHARS_MAX,
    GroupMetadata,
    OffsetCommit,
    OffsetKey,
    OffsetRecordError,
    OffsetValue,
    decode_record,
    encode_group_metadata,
    encode_offset_commit,
)
from broker.groups.state import Effects, Group, GroupSnapshot, JoinRequest, JoinResult, SyncResult
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import CorruptBatchError, Record, decode_batches, encode_batch, \
    read_batch_header

if TYPE_CHECKING:
    from broker.replica.partition import Replica
    from broker.server import Broker

__all__ = ["GroupCoordinator", "CommitItem", "FetchedOffset", "Coordinates"]

log = logging.getLogger(__name__)

TICK_MS = 100  # how often sessions and join phases are checked
LOAD_BYTES_PER_STEP = 1 << 20  # replay reads this much, then yields to the event loop
LOAD_RETRY_MS = 1000  # after a read error, the load starts over this much later
COMMIT_TIMEOUT_MS = 5000  # Kafka's offsets.commit.timeout.ms
RECORDS_PER_BATCH_MAX = 500  # a commit of more partitions is written as several batches
GROUPS_PER_PARTITION_MAX = 100_000  # beyond: new groups are refused (COORDINATOR_NOT_AVAILABLE)
CREATE_TIMEOUT_MS = 15_000

# Append failures as Kafka's coordinator reports them to clients.
_APPEND_ERRORS = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.INVALID_COMMIT_OFFSET_SIZE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitItem:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedOffset:
    topic: str
    partition: int
    value: OffsetValue | None  # None: nothing committed


@dataclass(frozen=True, slots=True, kw_only=True)
class Coordinates:
    error_code: ErrorCode
    node_id: int = -1
    host: str = ""
    port: int = -1
    message: str | None = None


@dataclass(slots=True, kw_only=True)
class _Slot:
    """One offsets partition this broker leads (loading or loaded)."""

    index: int
    replica: Replica
    term: int
    loaded: bool = False
    groups: dict[str, Group] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)  # groups with members or admissions
    load_task: asyncio.Task[None] | None = None


class GroupCoordinator:
    def __init__(self, broker: Broker) -> None:
        from broker.groups.api import GroupApi

        self.broker = broker
        self.api = GroupApi(self)
        self._slots: dict[int, _Slot] = {}  # offsets partition index -> slot
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._waiter_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._creating: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="group-coordinator-ticks")

    async def stop(self) -> None:
        for slot in list(self._slots.values()):
            self._unload(slot)
        tasks = [t for t in (self._ticker, self._creating) if t is not None] + list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._ticker = self._creating = None

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    def _now_ms() -> int:
        return int(time.monotonic() * 1000)

    # ---- offsets partitions: leadership, loading ------------------------------------------
    def on_role(self, replica: Replica) -> None:
        """A local replica's role changed (ReplicaManager role listener)."""
        if replica.topic != CONSUMER_OFFSETS_TOPIC:
            return
        slot = self._slots.get(replica.partition)
        if replica.leader_ready:
            if slot is not None and slot.replica is replica and slot.term == replica.node.term:
                return
            if slot is not None:
                self._unload(slot)
            slot = _Slot(index=replica.partition, replica=replica, term=replica.node.term)
            self._slots[slot.index] = slot
            slot.load_task = self._spawn(self._load(slot), f"load-offsets-{slot.index}")
        elif slot is not None and slot.replica is replica:
            self._unload(slot)

    def _unload(self, slot: _Slot) -> None:
        if self._slots.get(slot.index) is slot:
            del self._slots[slot.index]
        if slot.load_task is not None and not slot.load_task.done():
            slot.load_task.cancel()
        for group in slot.groups.values():
            self._deliver(slot, group, group.unload())
        slot.groups.clear()
        slot.active.clear()
        log.info("no longer coordinating the groups of %s-%d", CONSUMER_OFFSETS_TOPIC, slot.index)

    def _current(self, slot: _Slot) -> bool:
        return self._slots.get(slot.index) is slot and slot.replica.leader_ready

    async def _load(self, slot: _Slot) -> None:
        """Replay the partition, then serve its groups. A read error leaves it loading (its
        groups answered COORDINATOR_LOAD_IN_PROGRESS): served from part of the log, a group
        would hand out older committed offsets than it has (consumers re-read what they
        committed). A storage error takes the replica offline, which unloads the partition;
        any other, the load starts over a little later (e.g. retention moved the log start
        under it)."""
        while self._current(slot):
            if await self._load_once(slot):
                return
            await asyncio.sleep(LOAD_RETRY_MS / 1000)

    async def _load_once(self, slot: _Slot) -> bool:
        """One replay; returns False after a read error."""
        started = time.monotonic()
        replica = slot.replica
        offsets: dict[str, dict[tuple[str, int], OffsetValue]] = {}
        snapshots: dict[str, GroupSnapshot | None] = {}
        offset, end = replica.log.log_start_offset, replica.high_watermark
        records = 0
        while offset < end and self._current(slot):
            try:
                batches = replica.read(offset, LOAD_BYTES_PER_STEP)
            except (KafkaError, OSError) as e:
                log.error("loading %s: %s (not serving its groups; retrying in %d ms unless "
                          "the replica goes offline)", replica.name, e, LOAD_RETRY_MS)
                return False
            if not batches:
                break
            for raw in batches:
                offset, count = self._replay(raw, offset, offsets, snapshots)
                records += count
            await asyncio.sleep(0)
        if not self._current(slot):
            return True
        now_ms = self._now_ms()
        for group_id in set(offsets) | set(snapshots):
            snapshot = snapshots.get(group_id)
            group = Group.restore(snapshot, now_ms) if snapshot is not None else Group(group_id)
            group.offsets.update(offsets.get(group_id, {}))
            slot.groups[group_id] = group
            self._track(slot, group)
        slot.loaded = True
        log.info("coordinating %d groups of %s (%d records replayed in %.0f ms)",
                 len(slot.groups), replica.name, records, (time.monotonic() - started) * 1000)
        return True

    @staticmethod
    def _replay(raw: bytes | memoryview, offset: int,
                offsets: dict[str, dict[tuple[str, int], OffsetValue]],
                snapshots: dict[str, GroupSnapshot | None]) -> tuple[int, int]:
        """Apply one stored batch; returns (the offset after it, records applied)."""
        count = 0
        try:
            for batch in decode_batches(raw):
                offset = max(offset, batch.next_offset)
                if batch.is_control:
                    continue
                for rec in batch.records:
                    try:
                        decoded = decode_record(rec.key, rec.value)
                    except OffsetRecordError as e:
                        log.warning("skipping an unreadable offsets record at %d: %s",
                                    rec.offset, e)
                        continue
                    count += 1
                    if isinstance(decoded, OffsetCommit):
                        table = offsets.setdefault(decoded.key.group_id, {})
                        tp = (decoded.key.topic, decoded.key.partition)
                        if decoded.value is None:
                            table.pop(tp, None)
                        else:
                            table[tp] = decoded.value
                    elif isinstance(decoded, GroupMetadata):
                        snapshots[decoded.group_id] = decoded.snapshot
        except CorruptBatchError as e:
            header = read_batch_header(raw)
            offset = max(offset, header.last_offset + 1)
            log.error("skipping a corrupt offsets batch at %d: %s", header.base_offset, e)
        return offset, count

    # ---- waiters and effects ----------------------------------------------------------------
    def _new_waiter(self) -> tuple[int, asyncio.Future[Any]]:
        waiter = next(self._waiter_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[waiter] = future
        return waiter, future

    async def _wait(self, waiter: int, future: asyncio.Future[Any]) -> Any:
        try:
            return await future
        finally:
            self._waiters.pop(waiter, None)

    def _resolve(self, result: JoinResult | SyncResult) -> None:
        future = self._waiters.pop(result.waiter, None)
        if future is not None and not future.done():
            future.set_result(result)

    def _deliver(self, slot: _Slot, group: Group, fx: Effects) -> None:
        for reply in fx.replies:
            self._resolve(reply)
        if fx.persist:
            self._persist(slot, group, fx.after_persist)
        else:
            assert not fx.after_persist
        self._track(slot, group)

    @staticmethod
    def _track(slot: _Slot, group: Group) -> None:
        if group.members or group.pending:
            slot.active.add(group.group_id)
        else:
            slot.active.discard(group.group_id)

    def _persist(self, slot: _Slot, group: Group, gated: list[SyncResult]) -> None:
        """Write the group's membership; the gated SyncGroup answers go out once committed."""
        generation = group.generation
        if not self._current(slot):
            for r in gated:
                self._resolve(replace(r, error_code=ErrorCode.NOT_COORDINATOR, assignment=b""))
            return
        try:
            futures = self._append(slot, [encode_group_metadata(group.group_id,
                                                                group.snapshot())])
        except KafkaError as e:
            self._spawn(self._persisted(slot, group, generation, gated, [], e.code),
                        "group-persist")
            return
        self._spawn(self._persisted(slot, group, generation, gated, futures, None),
                    "group-persist")

    async def _persisted(self, slot: _Slot, group: Group, generation: int,
                         gated: list[SyncResult], futures: list[asyncio.Future[Any]],
                         error: ErrorCode | None) -> None:
        if error is None:
            error = await self._committed(futures)
        if error == ErrorCode.NONE:
            for r in gated:
                self._resolve(r)
            return
        log.info("group %r: writing generation %d failed (%s)", group.group_id, generation,
                 error.name)
        for r in gated:
            self._resolve(replace(r, error_code=error, assignment=b""))
        if self._current(slot) and slot.groups.get(group.group_id) is group:
            self._deliver(slot, group, group.persist_failed(generation, self._now_ms()))

    def _append(self, slot: _Slot, records: Sequence[tuple[bytes, bytes | None]]
                ) -> list[asyncio.Future[Any]]:
        """Append records to the slot's partition (acks=all); one future per batch. Raises
        KafkaError when the replica refuses."""
        now_wall_ms = int(time.time() * 1000)
        futures = []
        for start in range(0, len(records), RECORDS_PER_BATCH_MAX):
            chunk = records[start:start + RECORDS_PER_BATCH_MAX]
            batch = bytearray(encode_batch([Record(key=k, value=v, headers=[],
                                                   timestamp_ms=now_wall_ms) for k, v in chunk]))
            result = slot.replica.append(batch, read_batch_header(batch), -1)
            assert isinstance(result, asyncio.Future), "acks=-1 always waits"
            futures.append(result)
        return futures

    @staticmethod
    async def _committed(futures: list[asyncio.Future[Any]]) -> ErrorCode:
        """Wait (bounded) for appended batches; NONE or the error to report."""
        if not futures:
            return ErrorCode.NONE
        done, pending = await asyncio.wait([asyncio.shield(f) for f in futures],
                                           timeout=COMMIT_TIMEOUT_MS / 1000)
        if pending:
            for p in pending:
                p.cancel()
            return ErrorCode.REQUEST_TIMED_OUT
        for f in done:
            if f.cancelled():
                return ErrorCode.NOT_COORDINATOR
            e = f.exception()
            if e is not None:
                code = e.code if isinstance(e, KafkaError) else ErrorCode.UNKNOWN_SERVER_ERROR
                return _APPEND_ERRORS.get(code, code)
        return ErrorCode.NONE

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_MS / 1000)
            now_ms = self._now_ms()
            for slot in list(self._slots.values()):
                if not slot.loaded:
                    continue
                for group_id in list(slot.active):
                    group = slot.groups[group_id]
                    self._deliver(slot, group, group.tick(now_ms))
                    if __debug__:
                        group.check_invariants()

    # ---- finding groups -------------------------------------------------------------------
    def _offsets_partitions(self) -> int | None:
        topic = self.broker.controller.state.topic(CONSUMER_OFFSETS_TOPIC)
        return None if topic is None else len(topic.partitions)

    def _slot_for(self, group_id: str) -> _Slot | ErrorCode:
        count = self._offsets_partitions()
        if count is None:
            return ErrorCode.NOT_COORDINATOR
        slot = self._slots.get(offsets_partition_for(group_id, count))
        if slot is None or not slot.replica.leader_ready:
            return ErrorCode.NOT_COORDINATOR
        if not slot.loaded:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return slot

    def _group(self, slot: _Slot, group_id: str, *, create: bool) -> Group | None:
        group = slot.groups.get(group_id)
        if group is None and create and len(slot.groups) < GROUPS_PER_PARTITION_MAX:
            group = slot.groups[group_id] = Group(group_id)
        return group

    async def find_coordinator(self, group_id: str) -> Coordinates:
        """Where `group_id` is coordinated: the leader of its offsets partition."""
        b = self.broker
        state = b.controller.state
        topic = state.topic(CONSUMER_OFFSETS_TOPIC)
        if topic is None:
            self._create_offsets_topic()
            return Coordinates(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                               message=f"{CONSUMER_OFFSETS_TOPIC} is being created")
        p = topic.partitions[offsets_partition_for(group_id, len(topic.partitions))]
        leader = b.leader_of(p.group_id)
        if leader == b.node_id:
            address = b.config.advertised
        else:
            info = state.broker(leader) if leader else None
            if info is None or not info.alive:
                return Coordinates(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                   message=f"{CONSUMER_OFFSETS_TOPIC}-{p.partition} has no "
                                           "leader right now")
            address = info.client_address
        host, _, port = address.rpartition(":")
        return Coordinates(error_code=ErrorCode.NONE, node_id=leader, host=host, port=int(port))

    def _create_offsets_topic(self) -> None:
        if self._creating is None or self._creating.done():
            self._creating = asyncio.create_task(self._create(), name="create-offsets-topic")

    async def _create(self) -> None:
        live = len(self.broker.controller.state.live_brokers()) or 1
        args = {"name": CONSUMER_OFFSETS_TOPIC, "partitions": CONSUMER_OFFSETS_PARTITIONS,
                "replication_factor": min(CONSUMER_OFFSETS_REPLICATION_FACTOR, live),
                "configs": dict(CONSUMER_OFFSETS_CONFIGS), "internal": True}
        try:
            await self.broker.controller_request("create_topic", args, CREATE_TIMEOUT_MS)
            log.info("created %s (%d partitions, replication factor %d)",
                     CONSUMER_OFFSETS_TOPIC, args["partitions"], args["replication_factor"])
        except KafkaError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                log.warning("creating %s failed: %s", CONSUMER_OFFSETS_TOPIC, e)

    # ---- membership -----------------------------------------------------------------------
    async def join(self, group_id: str, request: JoinRequest) -> JoinResult:
        """Answers when the join phase ends (or at once for an error or MEMBER_ID_REQUIRED).
        The request's `waiter` and `new_member_id` are filled in here."""
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return JoinResult(waiter=0, error_code=found, member_id=request.member_id)
        group = self._group(found, group_id, create=True)
        if group is None:
            return JoinResult(waiter=0, error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                              member_id=request.member_id)
        waiter, future = self._new_waiter()
        # Kafka's member ids: the client id, a dash, a random UUID.
        request = replace(request, waiter=waiter,
                          new_member_id=f"{request.client_id or 'member'}-{uuid.uuid4()}")
        self._deliver(found, group, group.join(request, self._now_ms()))
        result: JoinResult = await self._wait(waiter, future)
        return result

    async def sync(self, group_id: str, *, member_id: str, generation_id: int,
                   assignments: dict[str, bytes]) -> SyncResult:
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return SyncResult(waiter=0, error_code=found)
        group = self._group(found, group_id, create=False)
        if group is None:
            return SyncResult(waiter=0, error_code=ErrorCode.UNKNOWN_MEMBER_ID)
        waiter, future = self._new_waiter()
        fx = group.sync(waiter=waiter, member_id=member_id, generation_id=generation_id,
                        assignments=assignments, now_ms=self._now_ms())
        self._deliver(found, group, fx)
        result: SyncResult = await self._wait(waiter, future)
        return result

    def heartbeat(self, group_id: str, *, member_id: str, generation_id: int) -> ErrorCode:
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return found
        group = self._group(found, group_id, create=False)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return group.heartbeat(member_id=member_id, generation_id=generation_id,
                               now_ms=self._now_ms())

    def leave(self, group_id: str, member_ids: Sequence[str]
              ) -> tuple[ErrorCode, list[tuple[str, ErrorCode]]]:
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return found, []
        group = self._group(found, group_id, create=False)
        if group is None:
            return ErrorCode.NONE, [(m, ErrorCode.UNKNOWN_MEMBER_ID) for m in member_ids]
        results, fx = group.leave(member_ids, self._now_ms())
        self._deliver(found, group, fx)
        return ErrorCode.NONE, results

    # ---- offsets ---------------------------------------------------------------------------
    async def commit(self, group_id: str, *, member_id: str, generation_id: int,
                     items: Sequence[CommitItem]) -> list[tuple[CommitItem, ErrorCode]]:
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return [(i, found) for i in items]
        group = self._group(found, group_id, create=generation_id < 0)
        if group is None:
            code = ErrorCode.ILLEGAL_GENERATION if generation_id >= 0 \
                else ErrorCode.COORDINATOR_NOT_AVAILABLE
            return [(i, code) for i in items]
        code = group.validate_commit(member_id=member_id, generation_id=generation_id,
                                     now_ms=self._now_ms())
        if code != ErrorCode.NONE:
            return [(i, code) for i in items]
        verdicts = {i: self._commit_error(i) for i in items}
        valid = [i for i in items if verdicts[i] is None]
        error = await self._write_offsets(found, group, valid)
        return [(i, verdicts[i] or error) for i in items]

    def _commit_error(self, item: CommitItem) -> ErrorCode | None:
        topic = self.broker.controller.state.topic(item.topic)
        if topic is None or not 0 <= item.partition < len(topic.partitions):
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if item.metadata is not None and len(item.metadata) > METADATA_CHARS_MAX:
            return ErrorCode.OFFSET_METADATA_TOO_LARGE
        return None

    async def _write_offsets(self, slot: _Slot, group: Group,
                             items: Sequence[CommitItem]) -> ErrorCode:
        if not items:
            return ErrorCode.NONE
        now_wall_ms = int(time.time() * 1000)
        entries = [(OffsetKey(group_id=group.group_id, topic=i.topic, partition=i.partition),
                    OffsetValue(offset=i.offset, leader_epoch=i.leader_epoch,
                                metadata=i.metadata or "", commit_timestamp_ms=now_wall_ms))
                   for i in items]
        records = [encode_offset_commit(k, v) for k, v in entries]
        try:
            futures = self._append(slot, records)
        except KafkaError as e:
            return _APPEND_ERRORS.get(e.code, e.code)
        for n, future in enumerate(futures):
            chunk = entries[n * RECORDS_PER_BATCH_MAX:(n + 1) * RECORDS_PER_BATCH_MAX]
            future.add_done_callback(functools.partial(_apply_offsets, group=group,
                                                       entries=chunk))
        return await self._committed(futures)

    def fetch_offsets(self, group_id: str, partitions: Iterable[tuple[str, int]] | None
                      ) -> tuple[ErrorCode, list[FetchedOffset]]:
        """Committed offsets of the group (all of them when `partitions` is None)."""
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return found, []
        group = found.groups.get(group_id)
        table: dict[tuple[str, int], Any] = group.offsets if group is not None else {}
        if partitions is None:
            return ErrorCode.NONE, [FetchedOffset(topic=t, partition=p, value=v)
                                    for (t, p), v in sorted(table.items())]
        return ErrorCode.NONE, [FetchedOffset(topic=t, partition=p, value=table.get((t, p)))
                                for t, p in partitions]

    # ---- inspection ------------------------------------------------------------------------
    def describe(self, group_id: str) -> tuple[ErrorCode, Group | None]:
        found = self._slot_for(group_id)
        if isinstance(found, ErrorCode):
            return found, None
        return ErrorCode.NONE, found.groups.get(group_id)

    def list_groups(self) -> tuple[ErrorCode, list[Group]]:
        loading = any(not s.loaded for s in self._slots.values())
        groups = [g for s in self._slots.values() if s.loaded for g in s.groups.values()]
        return (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if loading else ErrorCode.NONE), groups


def _apply_offsets(future: asyncio.Future[Any], *, group: Group,
                   entries: Sequence[tuple[OffsetKey, OffsetValue]]) -> None:
    """Done callback of one committed offsets batch: memory follows the log, in log order
    (commit futures resolve in log order and their callbacks run in that order)."""
    if future.cancelled() or future.exception() is not None:
        return
    for key, value in entries:
        group.offsets[(key.topic, key.partition)] = value
