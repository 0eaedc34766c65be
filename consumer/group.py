"""Group membership for a subscribing consumer, as Kafka's ConsumerCoordinator does it, run by
two background tasks owned here:

- the membership task finds the coordinator (FindCoordinator), and whenever the group needs
  it (first subscription, a heartbeat said REBALANCE_IN_PROGRESS, the member was dropped, the
  subscribed topics' partition counts changed) it rejoins: it commits consumed positions
  (auto-commit), revokes every partition (eager protocol), sends JoinGroup (answering
  MEMBER_ID_REQUIRED by rejoining with the id given), runs the assignor if it was chosen as
  leader, and takes its assignment from SyncGroup. It also runs auto-commit.
- the heartbeat task sends Heartbeat every `heartbeat_interval_ms` while the member is in a
  stable generation, and turns the answers into "rejoin" or "find the coordinator again".

Commits and committed-offset lookups (OffsetCommit / OffsetFetch) go to the coordinator too,
retried across coordinator moves (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, load in
progress) until `request_timeout_ms`; a commit refused because the group moved on raises
CommitFailedError. After a coordinator failover the new coordinator has the group's members
and generation from `__consumer_offsets`, so heartbeats simply carry on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from broker.client import ClientError, ClusterClient, RequestTimedOutError
from broker.client.errors import error_code
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka.messages import (
    FindCoordinatorRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    JoinGroupRequestProtocol,
    LeaveGroupRequest,
    MemberIdentity,
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
    OffsetFetchRequest,
    OffsetFetchRequestTopic,
    SyncGroupRequest,
    SyncGroupRequestAssignment,
)
from consumer.assignors import ASSIGNORS
from consumer.config import ConsumerConfig
from consumer.errors import CommitFailedError, IllegalStateError
from consumer.protocol import (
    PROTOCOL_TYPE,
    ProtocolDecodeError,
    Subscription,
    assignment_by_member,
    decode_assignment,
    decode_subscription,
    encode_subscription,
)
from consumer.structs import OffsetAndMetadata, TopicPartition
from consumer.subscription import SubscriptionState

__all__ = ["GroupMember", "MemberState"]

log = logging.getLogger(__name__)

JOIN_ATTEMPTS_MAX = 8  # JoinGroup retries within one rejoin (MEMBER_ID_REQUIRED, ...)
METADATA_CHECK_S = 1.0  # how often subscribed topics are checked for new partitions
LEAVE_TIMEOUT_MS_MAX = 5000

_COORDINATOR_MOVED = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                ErrorCode.REQUEST_TIMED_OUT})
_GENERATION_GONE = frozenset({ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION,
                              ErrorCode.REBALANCE_IN_PROGRESS})


class MemberState(enum.Enum):
    UNJOINED = "unjoined"
    REBALANCING = "rebalancing"
    STABLE = "stable"


class GroupMember:
    def __init__(self, cluster: ClusterClient, config: ConsumerConfig,
                 subscription: SubscriptionState, *, on_assigned: Callable[[], None],
                 before_revoke: Callable[[], Awaitable[None]]) -> None:
        assert config.group_id is not None
        self.group_id: str = config.group_id
        self._cluster = cluster
        self._config = config
        self._subs = subscription
        self._on_assigned = on_assigned
        self._before_revoke = before_revoke
        self.coordinator_id: int | None = None
        self.member_id = ""
        self.generation = -1
        self.protocol: str | None = None
        self.state = MemberState.UNJOINED
        self.rebalances = 0  # completed joins, for diagnostics
        self.fatal: Exception | None = None  # raised by the consumer's next getmany()
        self._needs_rejoin = False
        self._wake = asyncio.Event()  # the membership task has something to do
        self._joined_counts: dict[str, int] = {}
        self._coordinator_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._auto_commit: Callable[[], Awaitable[None]] | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, auto_commit: Callable[[], Awaitable[None]] | None) -> None:
        self._auto_commit = auto_commit
        name = self._config.client_id
        self._tasks = [asyncio.create_task(self._membership_loop(), name=f"{name}-membership"),
                       asyncio.create_task(self._heartbeat_loop(), name=f"{name}-heartbeat")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def request_rejoin(self) -> None:
        self._needs_rejoin = True
        self._wake.set()

    @property
    def in_generation(self) -> bool:
        return self.state is MemberState.STABLE and self.generation >= 0

    # ---- the membership task --------------------------------------------------------------
    async def _membership_loop(self) -> None:
        c = self._config
        backoff_s = max(c.retry_backoff_ms, 10) / 1000
        commit_every_s = c.auto_commit_interval_ms / 1000
        loop = asyncio.get_running_loop()
        commit_at = loop.time() + commit_every_s
        while True:
            self._wake.clear()
            try:
                if self._subs.topics is not None and (
                        self.state is not MemberState.STABLE or self._needs_rejoin
                        or self._partitions_changed()):
                    self._needs_rejoin = False
                    await self._join_round()
                elif self._subs.topics is not None and self.coordinator_id is None:
                    await self.ensure_coordinator()
                elif self._subs.topics is None and self.member_id:
                    await self.leave()  # unsubscribed: our partitions go to the others now
                if self._auto_commit is not None and loop.time() >= commit_at:
                    commit_at = loop.time() + commit_every_s
                    await self._auto_commit()
            except asyncio.CancelledError:
                raise
            except (ClientError, KafkaError) as e:
                if not getattr(e, "retriable", False):
                    self.fatal = e
                log.info("group %r: %s; retrying", self.group_id, e)
                await asyncio.sleep(backoff_s)
                continue
            wait_s = min(METADATA_CHECK_S, max(0.0, commit_at - loop.time())) \
                if self._auto_commit is not None else METADATA_CHECK_S
            if self._subs.topics is not None and self.state is not MemberState.STABLE:
                wait_s = backoff_s
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _partitions_changed(self) -> bool:
        for topic in self._subs.topics or ():
            count = len(self._cluster.partitions_for(topic) or ())
            if count and count != self._joined_counts.get(topic, 0):
                return True
        return False

    async def _join_round(self) -> None:
        await self.ensure_coordinator()
        if self._subs.assignment:
            await self._before_revoke()
            self._subs.revoke_all()
            self._on_assigned()
        self.state = MemberState.REBALANCING
        joined = await self._join()
        if joined is None:
            return
        assignment = await self._sync(joined)
        if assignment is None:
            return
        self._subs.set_group_assignment(assignment)
        self.state = MemberState.STABLE
        self.rebalances += 1
        self._on_assigned()
        log.info("group %r generation %d: member %s assigned %s", self.group_id,
                 self.generation, self.member_id,
                 ", ".join(f"{t}-{p}" for t, p in sorted(assignment)) or "nothing")

    async def _join(self) -> Any | None:
        """JoinGroup until answered; the response, or None to start over later."""
        c = self._config
        topics = tuple(sorted(self._subs.topics or ()))
        metadata = encode_subscription(Subscription(topics=topics))
        for _ in range(JOIN_ATTEMPTS_MAX):
            coordinator = await self.ensure_coordinator()
            request = JoinGroupRequest(
                group_id=self.group_id, session_timeout_ms=c.session_timeout_ms,
                rebalance_timeout_ms=c.rebalance_timeout_ms, member_id=self.member_id,
                group_instance_id=None, protocol_type=PROTOCOL_TYPE,
                protocols=[JoinGroupRequestProtocol(name=name, metadata=metadata)
                           for name in c.partition_assignment_strategy])
            try:
                response = await self._cluster.send(coordinator, request,
                                                    timeout_ms=c.join_timeout_ms)
            except ClientError:
                self._coordinator_dead()
                raise
            code = error_code(response.error_code)
            if code == ErrorCode.NONE:
                self.member_id = response.member_id
                self.generation = response.generation_id
                self.protocol = response.protocol_name
                return response
            if code == ErrorCode.MEMBER_ID_REQUIRED:
                self.member_id = response.member_id  # KIP-394: rejoin with the id given
            elif code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            elif code in _COORDINATOR_MOVED:
                self._coordinator_dead()
                return None
            elif code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                await asyncio.sleep(c.retry_backoff_ms / 1000)
            elif code not in (ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION):
                raise KafkaError(code, f"joining group {self.group_id!r}: {code.name}")
        return None

    async def _sync(self, joined: Any) -> list[TopicPartition] | None:
        assignments: dict[str, bytes] = {}
        if joined.leader == self.member_id:
            assignments = await self._assign(joined.protocol_name, joined.members)
        else:
            self._joined_counts = self._counts(self._subs.topics or ())
        request = SyncGroupRequest(
            group_id=self.group_id, generation_id=self.generation, member_id=self.member_id,
            group_instance_id=None,
            assignments=[SyncGroupRequestAssignment(member_id=m, assignment=a)
                         for m, a in assignments.items()])
        try:
            response = await self._cluster.send(self._coordinator(), request,
                                                timeout_ms=self._config.join_timeout_ms)
        except ClientError:
            self._coordinator_dead()
            raise
        code = error_code(response.error_code)
        if code != ErrorCode.NONE:
            self._generation_error(code)
            if code not in RETRIABLE and code not in _GENERATION_GONE:
                raise KafkaError(code, f"syncing group {self.group_id!r}: {code.name}")
            return None
        try:
            return list(decode_assignment(bytes(response.assignment)).partitions)
        except ProtocolDecodeError as e:
            raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                             f"group {self.group_id!r}: unreadable assignment: {e}") from None

    async def _assign(self, protocol: str, members: Sequence[Any]) -> dict[str, bytes]:
        """As the group leader: every member's partitions, by the chosen assignor."""
        assign = ASSIGNORS.get(protocol)
        if assign is None:
            raise KafkaError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                             f"the group chose assignor {protocol!r}, which we do not have")
        subscriptions: dict[str, tuple[str, ...]] = {}
        for m in members:
            try:
                subscriptions[m.member_id] = decode_subscription(bytes(m.metadata)).topics
            except ProtocolDecodeError as e:
                log.warning("group %r: member %s sent an unreadable subscription (%s)",
                            self.group_id, m.member_id, e)
                subscriptions[m.member_id] = ()
        topics = {t for ts in subscriptions.values() for t in ts}
        try:
            async with asyncio.timeout(self._config.request_timeout_ms / 1000):
                await self._cluster.refresh_metadata(topics)
        except (TimeoutError, ClientError) as e:
            log.info("group %r: assigning from older metadata (%s)", self.group_id, e)
        counts = self._counts(topics)
        self._joined_counts = {t: n for t, n in counts.items() if t in (self._subs.topics or ())}
        return assignment_by_member(assign(counts, subscriptions))

    def _counts(self, topics: Any) -> dict[str, int]:
        return {t: len(self._cluster.partitions_for(t) or ()) for t in topics}

    def _generation_error(self, code: ErrorCode) -> None:
        """The group moved on without us (rejoin) or is rebalancing (rejoin, but our
        generation stays valid until then: Kafka accepts its commits meanwhile)."""
        if code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
            if code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            self.generation = -1
            self.state = MemberState.UNJOINED
        elif code in _COORDINATOR_MOVED:
            self._coordinator_dead()
        if code in _GENERATION_GONE or code in _COORDINATOR_MOVED:
            self.request_rejoin()

    # ---- the heartbeat task ---------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        c = self._config
        while True:
            await asyncio.sleep(c.heartbeat_interval_ms / 1000)
            if self.state is not MemberState.STABLE or self.coordinator_id is None:
                continue
            request = HeartbeatRequest(group_id=self.group_id, generation_id=self.generation,
                                       member_id=self.member_id, group_instance_id=None)
            try:
                response = await self._cluster.send(
                    self.coordinator_id, request,
                    timeout_ms=min(c.request_timeout_ms, c.session_timeout_ms))
            except ClientError as e:
                log.debug("group %r: heartbeat failed: %s", self.group_id, e)
                self._coordinator_dead()
                continue
            code = error_code(response.error_code)
            if code in _GENERATION_GONE:
                log.info("group %r: heartbeat says %s; rejoining", self.group_id, code.name)
                self._generation_error(code)
            elif code in _COORDINATOR_MOVED:
                self._coordinator_dead()

    # ---- the coordinator ------------------------------------------------------------------
    def _coordinator(self) -> int:
        if self.coordinator_id is None:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                             f"group {self.group_id!r} has no known coordinator")
        return self.coordinator_id

    def _coordinator_dead(self) -> None:
        if self.coordinator_id is not None:
            log.info("group %r: coordinator %d unavailable; looking for it again",
                     self.group_id, self.coordinator_id)
        self.coordinator_id = None
        self._wake.set()  # the membership task finds it again (no rejoin needed)

    async def ensure_coordinator(self) -> int:
        """The coordinator's node id, asking the cluster when unknown (within
        request_timeout_ms). Raises KafkaError or ClientError."""
        if self.coordinator_id is not None:
            return self.coordinator_id
        async with self._coordinator_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._config.request_timeout_ms / 1000
            while self.coordinator_id is None:
                code, message = await self._find_coordinator()
                if code == ErrorCode.NONE:
                    break
                if code not in RETRIABLE or loop.time() >= deadline:
                    raise KafkaError(code, f"finding the coordinator of group "
                                           f"{self.group_id!r}: {message or code.name}")
                await asyncio.sleep(self._config.retry_backoff_ms / 1000)
            assert self.coordinator_id is not None
            return self.coordinator_id

    async def _find_coordinator(self) -> tuple[ErrorCode, str | None]:
        try:
            response = await self._cluster.send_any(
                FindCoordinatorRequest(key=self.group_id, key_type=0),
                timeout_ms=self._config.request_timeout_ms)
        except ClientError as e:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, str(e)
        code = error_code(response.error_code)
        if code != ErrorCode.NONE:
            return code, response.error_message
        if self._cluster.metadata.broker(response.node_id) is None:
            try:
                await self._cluster.refresh_metadata(())
            except ClientError as e:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE, str(e)
            if self._cluster.metadata.broker(response.node_id) is None:
                return ErrorCode.COORDINATOR_NOT_AVAILABLE, \
                    f"coordinator {response.node_id} is not in the metadata yet"
        self.coordinator_id = response.node_id
        return ErrorCode.NONE, None

    # ---- offsets --------------------------------------------------------------------------
    async def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        """OffsetCommit, retried across coordinator moves until request_timeout_ms. In
        subscribe mode the commit carries our generation and member id."""
        if not offsets:
            return
        group_managed = self._subs.topics is not None
        if group_managed and not self.in_generation:
            raise CommitFailedError(f"group {self.group_id!r} is rebalancing: the partitions "
                                    "may be reassigned; commit after the next poll")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.request_timeout_ms / 1000
        pending = dict(offsets)
        while pending:
            pending = await self._commit_once(pending, group_managed)
            if pending:
                if loop.time() >= deadline:
                    raise RequestTimedOutError(
                        f"group {self.group_id!r}: commit not acknowledged within "
                        f"{self._config.request_timeout_ms} ms")
                await asyncio.sleep(self._config.retry_backoff_ms / 1000)

    async def _commit_once(self, offsets: Mapping[TopicPartition, OffsetAndMetadata],
                           group_managed: bool) -> dict[TopicPartition, OffsetAndMetadata]:
        """One OffsetCommit; what must be retried. Raises what cannot be retried."""
        try:
            coordinator = await self.ensure_coordinator()
        except KafkaError as e:
            if e.retriable:
                return dict(offsets)
            raise
        topics: dict[str, list[OffsetCommitRequestPartition]] = {}
        for tp, om in sorted(offsets.items()):
            topics.setdefault(tp.topic, []).append(OffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=om.offset,
                committed_leader_epoch=om.leader_epoch, commit_timestamp=-1,
                committed_metadata=om.metadata))
        request = OffsetCommitRequest(
            group_id=self.group_id,
            generation_id_or_member_epoch=self.generation if group_managed else -1,
            member_id=self.member_id if group_managed else "", group_instance_id=None,
            retention_time_ms=-1,
            topics=[OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in topics.items()])
        try:
            response = await self._cluster.send(coordinator, request)
        except ClientError:
            self._coordinator_dead()
            return dict(offsets)
        retry: dict[TopicPartition, OffsetAndMetadata] = {}
        for t in response.topics:
            for p in t.partitions:
                tp = TopicPartition(t.name, p.partition_index)
                code = error_code(p.error_code)
                if code == ErrorCode.NONE or tp not in offsets:
                    continue
                if code in _GENERATION_GONE:
                    self._generation_error(code)
                    raise CommitFailedError(
                        f"group {self.group_id!r} rebalanced ({code.name}): the commit of "
                        f"{tp.topic}-{tp.partition} was refused; its partitions may belong to "
                        "another member now")
                if code in _COORDINATOR_MOVED or code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                    if code in _COORDINATOR_MOVED:
                        self._coordinator_dead()
                    retry[tp] = offsets[tp]
                    continue
                raise KafkaError(code, f"committing {tp.topic}-{tp.partition} for group "
                                       f"{self.group_id!r}: {code.name}")
        return retry

    async def fetch_committed(self, partitions: Sequence[TopicPartition]
                              ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets (None where nothing is committed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.request_timeout_ms / 1000
        while True:
            found = await self._fetch_committed_once(partitions)
            if found is not None:
                return found
            if loop.time() >= deadline:
                raise RequestTimedOutError(f"group {self.group_id!r}: committed offsets not "
                                           f"found within {self._config.request_timeout_ms} ms")
            await asyncio.sleep(self._config.retry_backoff_ms / 1000)

    async def _fetch_committed_once(self, partitions: Sequence[TopicPartition]
                                    ) -> dict[TopicPartition, OffsetAndMetadata | None] | None:
        try:
            coordinator = await self.ensure_coordinator()
        except KafkaError as e:
            if e.retriable:
                return None
            raise
        topics: dict[str, list[int]] = {}
        for tp in partitions:
            topics.setdefault(tp.topic, []).append(tp.partition)
        request = OffsetFetchRequest(group_id=self.group_id, topics=[
            OffsetFetchRequestTopic(name=t, partition_indexes=ps) for t, ps in topics.items()])
        try:
            response = await self._cluster.send(coordinator, request)
        except ClientError:
            self._coordinator_dead()
            return None
        codes = [error_code(response.error_code)] + [
            error_code(p.error_code) for t in response.topics for p in t.partitions]
        for code in codes:
            if code in _COORDINATOR_MOVED or code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                if code in _COORDINATOR_MOVED:
                    self._coordinator_dead()
                return None
            if code not in (ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                raise KafkaError(code, f"committed offsets of group {self.group_id!r}: "
                                       f"{code.name}")
        out: dict[TopicPartition, OffsetAndMetadata | None] = {tp: None for tp in partitions}
        for t in response.topics:
            for p in t.partitions:
                tp = TopicPartition(t.name, p.partition_index)
                if tp in out and p.committed_offset >= 0 and p.error_code == 0:
                    out[tp] = OffsetAndMetadata(offset=p.committed_offset,
                                                metadata=p.metadata or "",
                                                leader_epoch=p.committed_leader_epoch)
        return out

    # ---- leaving --------------------------------------------------------------------------
    async def leave(self) -> None:
        """LeaveGroup (best effort, bounded): the group rebalances at once instead of waiting
        out our session."""
        member_id, coordinator = self.member_id, self.coordinator_id
        self.member_id, self.generation, self.state = "", -1, MemberState.UNJOINED
        if not member_id or coordinator is None:
            return
        request = LeaveGroupRequest(group_id=self.group_id, member_id=member_id,
                                    members=[MemberIdentity(member_id=member_id,
                                                            group_instance_id=None)])
        try:
            await self._cluster.send(coordinator, request, timeout_ms=min(
                self._config.request_timeout_ms, LEAVE_TIMEOUT_MS_MAX))
        except ClientError as e:
            log.info("group %r: LeaveGroup failed (%s); the session will expire instead",
                     self.group_id, e)


def check_group(member: GroupMember | None, what: str) -> GroupMember:
    if member is None:
        raise IllegalStateError(f"{what} needs a group_id")
    return member
