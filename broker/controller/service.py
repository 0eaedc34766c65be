"""The controller: runs the metadata state machine on Raft group 0 and, on its leader, makes
the cluster's decisions (registration, liveness, topic creation and deletion, producer ids).

Every broker hosts a replica of group 0 and applies each committed metadata record to its
`MetadataState`; listeners (the broker) then create or remove local partition replicas. Each
metadata record travels as the single record of a Kafka RecordBatch v2 (as KRaft does), so the
controller log is an ordinary partition log on disk.

Requests reach the controller leader either locally or over the peer bus (`T_REQUEST`): any
broker can serve an admin request by forwarding it; the answer comes back once the record is
committed and applied (or at once with an error).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from broker.controller.metadata import (
    Change,
    MetadataState,
    RecordIgnored,
    delete_topic_record,
)
from broker.controller.placement import create_topic_record
from broker.controller.records import (
    AllocateProducerIds,
    BrokerFenced,
    BrokerUnfenced,
    InitializeCluster,
    MetadataRecord,
    RegisterBroker,
    encode_record,
)
from broker.raft.messages import Entry, EntryKind
from broker.replica.partition import Replica
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import Record, decode_batches, encode_batch, read_batch_header

__all__ = ["ControllerService", "BrokerSeen"]

log = logging.getLogger(__name__)

PENDING_PROPOSALS_MAX = 1024
PRODUCER_ID_BLOCK = 1000


class BrokerSeen:
    """What a broker heartbeat told the controller leader about one broker."""

    __slots__ = ("node_id", "client_address", "raft_address", "incarnation", "last_heard_s")

    def __init__(self, node_id: int, client_address: str, raft_address: str, incarnation: int,
                 last_heard_s: float) -> None:
        self.node_id = node_id
        self.client_address = client_address
        self.raft_address = raft_address
        self.incarnation = incarnation
        self.last_heard_s = last_heard_s


class ControllerService:
    def __init__(self, *, node_id: int, session_timeout_ms: int) -> None:
        self.node_id = node_id
        self.state = MetadataState()
        self.replica: Replica | None = None
        self.session_timeout_s = session_timeout_ms / 1000
        self.listeners: list[Callable[[list[Change]], None]] = []
        self._pending: dict[int, asyncio.Future[list[Change]]] = {}  # by Kafka base offset
        self._seen: dict[int, BrokerSeen] = {}
        self._leader_since_s: float | None = None
        # Why this broker's replica of the metadata log is offline (a storage error); None
        # while it is online. Never cleared: only a restart reopens the log (as in Kafka, a
        # failed log dir needs a restart), and until then `state` is a frozen image.
        self.offline_reason: str | None = None

    # ---- applying the log (every broker) --------------------------------------------------
    def on_committed(self, replica: Replica, entry: Entry) -> None:
        if entry.kind is not EntryKind.DATA:
            return
        base_offset = read_batch_header(entry.data).base_offset
        changes: list[Change] = []
        try:
            for batch in decode_batches(entry.data):
                for record in batch.records:
                    if record.value is not None:
                        changes.extend(self.state.apply_entry(entry.index, record.value))
        except Exception as e:  # a committed entry we cannot read: report, never crash
            log.error("metadata entry %d is unreadable: %s", entry.index, e)
        future = self._pending.pop(base_offset, None)
        if future is not None and not future.done():
            future.set_result(changes)
        if changes:
            for listener in self.listeners:
                listener(changes)

    # ---- availability -----------------------------------------------------------------------
    @property
    def online(self) -> bool:
        """Whether `state` follows the metadata log (False: it is a frozen image)."""
        return self.offline_reason is None

    def go_offline(self, reason: str) -> None:
        """The local metadata replica failed: stop claiming leadership or naming a leader."""
        if self.offline_reason is None:
            self.offline_reason = reason
            # NOT_CONTROLLER, not a storage error: a forwarding broker then retries with the
            # next controller leader, which may already have committed the change.
            self.fail_pending(ErrorCode.NOT_CONTROLLER, reason)

    # ---- leadership -------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.online and self.replica is not None and self.replica.leader_ready

    @property
    def leader_id(self) -> int:
        """The metadata group's leader as this broker knows it (0: none known, or offline)."""
        if not self.online or self.replica is None:
            return 0
        return self.replica.node.leader_id

    async def propose(self, record: MetadataRecord) -> list[Change]:
        """Append a record on the leader and wait until it is committed and applied."""
        replica = self.replica
        if replica is None or not self.is_leader:
            raise KafkaError(ErrorCode.NOT_CONTROLLER, "this broker is not the controller leader")
        if len(self._pending) >= PENDING_PROPOSALS_MAX:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, "too many metadata changes pending")
        batch = bytearray(encode_batch(
            [Record(key=None, value=encode_record(record), headers=[],
                    timestamp_ms=int(time.time() * 1000))]))
        header = read_batch_header(batch)
        result = replica.append(batch, header, acks=-1)
        assert isinstance(result, asyncio.Future)
        loop = asyncio.get_running_loop()
        applied: asyncio.Future[list[Change]] = loop.create_future()
        base_offset = read_batch_header(batch).base_offset
        self._pending[base_offset] = applied
        try:
            await result  # committed (raises if leadership moved)
            changes = await applied
        finally:
            self._pending.pop(base_offset, None)
        for change in changes:
            if isinstance(change, RecordIgnored):
                raise KafkaError(change.code, change.reason)
        return changes

    # ---- requests (served on the leader) ---------------------------------------------------
    async def handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One controller operation; raises KafkaError with Kafka's code when refused."""
        if op == "create_topic":
            record = create_topic_record(
                self.state, name=str(args["name"]), topic_id=uuid.uuid4().hex,
                partitions=int(args["partitions"]),
                replication_factor=int(args["replication_factor"]),
                configs={str(k): str(v) for k, v in dict(args.get("configs") or {}).items()},
                internal=bool(args.get("internal", False)),
                assignments=_assignments(args.get("assignments")),
            )
            if args.get("validate_only"):
                return {}
            await self.propose(record)
            return {}
        if op == "delete_topic":
            await self.propose(delete_topic_record(self.state, str(args["name"])))
            return {}
        if op == "allocate_producer_ids":
            broker = self.state.broker(int(args["broker"]))
            if broker is None:
                raise KafkaError(ErrorCode.BROKER_ID_NOT_REGISTERED, f"broker {args['broker']}")
            changes = await self.propose(AllocateProducerIds(
                broker=broker.node_id, broker_epoch=broker.broker_epoch,
                block_size=PRODUCER_ID_BLOCK))
            for c in changes:
                if hasattr(c, "block_start"):
                    return {"block_start": c.block_start, "block_size": c.block_size}
            raise KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, "no producer ids allocated")
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown controller operation {op!r}")

    # ---- liveness and registration (leader duties) ----------------------------------------
    def heard_from(self, node_id: int, client_address: str, raft_address: str,
                   incarnation: int) -> None:
        now = time.monotonic()
        seen = self._seen.get(node_id)
        if seen is None or seen.incarnation != incarnation:
            self._seen[node_id] = BrokerSeen(node_id, client_address, raft_address, incarnation, now)
        else:
            seen.last_heard_s = now
            seen.client_address, seen.raft_address = client_address, raft_address

    def duties(self) -> list[MetadataRecord]:
        """Records the leader should propose now (called periodically on the leader)."""
        if not self.is_leader:
            self._leader_since_s = None
            return []
        now = time.monotonic()
        if self._leader_since_s is None:
            self._leader_since_s = now
        out: list[MetadataRecord] = []
        if self.state.cluster_id is None:
            return [InitializeCluster(cluster_id=uuid.uuid4().hex)]
        for seen in sorted(self._seen.values(), key=lambda s: s.node_id):
            info = self.state.broker(seen.node_id)
            fresh = now - seen.last_heard_s < self.session_timeout_s
            if info is None or info.incarnation != seen.incarnation or (
                    info.client_address, info.raft_address) != (seen.client_address, seen.raft_address):
                if fresh:
                    out.append(RegisterBroker(node_id=seen.node_id,
                                              client_address=seen.client_address,
                                              raft_address=seen.raft_address,
                                              incarnation=seen.incarnation))
            elif info.fenced and fresh:
                out.append(BrokerUnfenced(node_id=info.node_id, broker_epoch=info.broker_epoch))
        grace_over = now - self._leader_since_s > self.session_timeout_s
        for info in self.state.brokers.values():
            seen = self._seen.get(info.node_id)
            silent = seen is None or now - seen.last_heard_s > self.session_timeout_s
            if not info.fenced and silent and grace_over and info.node_id != self.node_id:
                out.append(BrokerFenced(node_id=info.node_id, broker_epoch=info.broker_epoch))
        return out

    def fail_pending(self, code: ErrorCode = ErrorCode.NOT_CONTROLLER,
                     message: str = "controller moved") -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(KafkaError(code, message))
        self._pending.clear()


def _assignments(raw: object) -> list[list[int]] | None:
    """Manual replica assignments {partition: [brokers]} -> a list by partition index."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, "assignments must be a mapping")
    by_index = {int(k): [int(b) for b in v] for k, v in raw.items()}
    if sorted(by_index) != list(range(len(by_index))):
        raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                         "assignments must cover partitions 0..n-1")
    return [by_index[i] for i in range(len(by_index))]
