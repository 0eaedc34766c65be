"""One consumer group's membership as a pure state machine (Kafka's classic group protocol).

Every transition lives here; the coordinator (broker.groups.coordinator) feeds it requests and
the clock and carries out what it hands back. No I/O, no clock, no randomness: `now_ms` is an
argument and new member ids are made by the caller.

States (Kafka's names, as DescribeGroups reports them):

    Empty               no members; committed offsets may exist
    PreparingRebalance  waiting for every known member to (re)join, up to the rebalance
                        timeout; members that do not rejoin by then are removed
    CompletingRebalance the join phase is over (new generation, leader chosen): waiting for
                        the leader's SyncGroup carrying every member's assignment
    Stable              assignments handed out; heartbeats keep members in
    Dead                the coordinator gave the group up (its partition moved)

Requests that wait (JoinGroup until the join phase ends, SyncGroup until the leader's
assignment) are named by a `waiter` number chosen by the caller; answers come back as
`JoinResult` / `SyncResult` in `Effects.replies`. When the group's metadata must be written to
`__consumer_offsets` (the leader's assignment, or the group becoming Empty) `Effects.persist`
is set, and the SyncGroup answers that depend on the write are in `Effects.after_persist`:
they go out once the write is committed, as Kafka does.

Rules follow Kafka's GroupCoordinator: JoinGroup v4+ from an unknown member gets
MEMBER_ID_REQUIRED and a member id to rejoin with; a new member, a member whose protocols
changed, a leader rejoining, a clean leave and a session expiry all start a rebalance; members
waiting on a JoinGroup or SyncGroup answer do not expire; commits are refused from unknown
members (UNKNOWN_MEMBER_ID), older generations (ILLEGAL_GENERATION) and while the leader's
assignment is pending (REBALANCE_IN_PROGRESS); a group with no members accepts "simple" commits
(generation -1).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.wire.errors import ErrorCode

__all__ = [
    "GroupState",
    "Group",
    "Member",
    "JoinRequest",
    "JoinResult",
    "SyncResult",
    "Effects",
    "GroupSnapshot",
    "MemberSnapshot",
    "SESSION_TIMEOUT_MS_MIN",
    "SESSION_TIMEOUT_MS_MAX",
    "INITIAL_REBALANCE_DELAY_MS",
    "GROUP_MEMBERS_MAX",
]

SESSION_TIMEOUT_MS_MIN = 1000  # Kafka's group.min.session.timeout.ms is 6000; tests want less
SESSION_TIMEOUT_MS_MAX = 1_800_000  # Kafka's group.max.session.timeout.ms
# Kafka's group.initial.rebalance.delay.ms (3000 there): an empty group's first join phase
# waits this long so that members starting together land in one generation.
INITIAL_REBALANCE_DELAY_MS = 300
GROUP_MEMBERS_MAX = 1000  # members + members being admitted; beyond: GROUP_MAX_SIZE_REACHED


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRequest:
    waiter: int  # the caller's handle for this request's answer
    member_id: str  # "" for a member the group does not know yet
    new_member_id: str  # the id to give a new member (made by the caller)
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]  # (name, metadata) in the member's preference
    require_known_member_id: bool  # JoinGroup v4+: a new member must rejoin with its id


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinResult:
    waiter: int
    error_code: ErrorCode
    generation_id: int = -1
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    # Only the leader gets the members: (member id, group instance id, metadata)
    members: tuple[tuple[str, str | None, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    waiter: int
    error_code: ErrorCode
    assignment: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSnapshot:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes  # the metadata of the group's protocol
    assignment: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSnapshot:
    """What `__consumer_offsets` keeps of a group's membership (Kafka's GroupMetadataValue)."""

    group_id: str
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp_ms: int
    members: tuple[MemberSnapshot, ...]


@dataclass(slots=True, kw_only=True)
class Effects:
    """What a transition asks of the coordinator."""

    replies: list[JoinResult | SyncResult] = field(default_factory=list)
    persist: bool = False  # write the group's snapshot to its offsets partition
    after_persist: list[SyncResult] = field(default_factory=list)  # answers gated on it


@dataclass(slots=True, kw_only=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    assignment: bytes = b""
    heartbeat_deadline_ms: int = 0  # expired after this unless a join/sync answer is pending
    join_waiter: int | None = None  # invariant: only in PreparingRebalance
    sync_waiter: int | None = None  # invariant: only in CompletingRebalance

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def same_protocols(self, protocols: Sequence[tuple[str, bytes]]) -> bool:
        return tuple(protocols) == self.protocols


class Group:
    """A group's membership and generation. Committed offsets live beside it
    (`offsets`, filled by the coordinator); the transitions never read them."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None  # invariant: a member id, or None when no members
        self.members: dict[str, Member] = {}  # in join order
        self.pending: dict[str, int] = {}  # admitted member id -> deadline to rejoin (v4+)
        self.rebalance_deadline_ms = 0  # PreparingRebalance ends by then
        self.initial_delay_until_ms = 0  # an empty group's first join phase waits until then
        self.state_timestamp_ms = 0
        self.offsets: dict[tuple[str, int], object] = {}  # the coordinator's committed offsets

    # ---- restoring ------------------------------------------------------------------------
    @classmethod
    def restore(cls, snapshot: GroupSnapshot, now_ms: int) -> Group:
        """A group as its last written snapshot says; its members have one session timeout to
        heartbeat to this (new) coordinator."""
        group = cls(snapshot.group_id)
        group.generation = snapshot.generation
        group.protocol_type = snapshot.protocol_type or None
        group.protocol = snapshot.protocol
        group.state_timestamp_ms = snapshot.state_timestamp_ms
        for m in snapshot.members:
            group.members[m.member_id] = Member(
                member_id=m.member_id, group_instance_id=m.group_instance_id,
                client_id=m.client_id, client_host=m.client_host,
                session_timeout_ms=m.session_timeout_ms,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                protocol_type=snapshot.protocol_type,
                protocols=((snapshot.protocol or "", m.subscription),),
                assignment=m.assignment,
                heartbeat_deadline_ms=now_ms + m.session_timeout_ms)
        if group.members:
            group.state = GroupState.STABLE
            group.leader = snapshot.leader if snapshot.leader in group.members \
                else next(iter(group.members))
        return group

    def snapshot(self) -> GroupSnapshot:
        return GroupSnapshot(
            group_id=self.group_id, protocol_type=self.protocol_type or "",
            generation=self.generation, protocol=self.protocol, leader=self.leader,
            state_timestamp_ms=self.state_timestamp_ms,
            members=tuple(MemberSnapshot(
                member_id=m.member_id, group_instance_id=m.group_instance_id,
                client_id=m.client_id, client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms,
                subscription=m.metadata(self.protocol), assignment=m.assignment)
                for m in self.members.values()))

    # ---- JoinGroup ------------------------------------------------------------------------
    def join(self, req: JoinRequest, now_ms: int) -> Effects:
        fx = Effects()
        error = self._join_error(req)
        if error is not None:
            fx.replies.append(JoinResult(waiter=req.waiter, error_code=error,
                                         member_id=req.member_id))
            return fx
        if req.member_id == "":
            if req.require_known_member_id:
                # Kafka 2.2+ (KIP-394): hand out an id first, so a client that times out and
                # retries does not leave a ghost member behind.
                self.pending[req.new_member_id] = now_ms + req.session_timeout_ms
                fx.replies.append(JoinResult(waiter=req.waiter,
                                             error_code=ErrorCode.MEMBER_ID_REQUIRED,
                                             member_id=req.new_member_id))
                return fx
            self._add_member(req, req.new_member_id, now_ms, fx)
        elif req.member_id in self.pending:
            del self.pending[req.member_id]
            self._add_member(req, req.member_id, now_ms, fx)
        else:
            self._rejoin(self.members[req.member_id], req, now_ms, fx)
        return fx

    def _join_error(self, req: JoinRequest) -> ErrorCode | None:
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if not SESSION_TIMEOUT_MS_MIN <= req.session_timeout_ms <= SESSION_TIMEOUT_MS_MAX:
            return ErrorCode.INVALID_SESSION_TIMEOUT
        if not req.protocol_type or not req.protocols:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        others = [m for m in self.members.values() if m.member_id != req.member_id]
        if others:
            names = {name for name, _ in req.protocols}
            if req.protocol_type != self.protocol_type or not names & _common(others):
                return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        known = req.member_id in self.members or req.member_id in self.pending
        if req.member_id != "" and not known:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if req.member_id == "" and len(self.members) + len(self.pending) >= GROUP_MEMBERS_MAX:
            return ErrorCode.GROUP_MAX_SIZE_REACHED
        return None

    def _add_member(self, req: JoinRequest, member_id: str, now_ms: int, fx: Effects) -> None:
        self.members[member_id] = Member(
            member_id=member_id, group_instance_id=req.group_instance_id,
            client_id=req.client_id, client_host=req.client_host,
            session_timeout_ms=req.session_timeout_ms,
            rebalance_timeout_ms=req.rebalance_timeout_ms, protocol_type=req.protocol_type,
            protocols=req.protocols, heartbeat_deadline_ms=now_ms + req.session_timeout_ms,
            join_waiter=req.waiter)
        self.protocol_type = req.protocol_type
        if self.leader is None:
            self.leader = member_id
        if self.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(now_ms, fx)
        else:
            self._prepare_rebalance(now_ms, fx)

    def _rejoin(self, member: Member, req: JoinRequest, now_ms: int, fx: Effects) -> None:
        member.heartbeat_deadline_ms = now_ms + req.session_timeout_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            self._update_member(member, req, fx)
            self._maybe_complete_join(now_ms, fx)
            return
        unchanged = member.same_protocols(req.protocols)
        if unchanged and (self.state is GroupState.COMPLETING_REBALANCE or (
                self.state is GroupState.STABLE and member.member_id != self.leader)):
            # The member missed our answer (e.g. it timed out): the current generation holds.
            fx.replies.append(self._join_result(req.waiter, member))
            return
        self._update_member(member, req, fx)
        self._prepare_rebalance(now_ms, fx)

    def _update_member(self, member: Member, req: JoinRequest, fx: Effects) -> None:
        if member.join_waiter is not None:
            # A second JoinGroup from the same member supersedes the first.
            fx.replies.append(JoinResult(waiter=member.join_waiter,
                                         error_code=ErrorCode.REBALANCE_IN_PROGRESS,
                                         member_id=member.member_id))
        member.join_waiter = req.waiter
        member.protocols = req.protocols
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.client_id = req.client_id
        member.client_host = req.client_host

    # ---- rebalancing ----------------------------------------------------------------------
    def _prepare_rebalance(self, now_ms: int, fx: Effects) -> None:
        if self.state is GroupState.COMPLETING_REBALANCE:
            self._reset_assignments(ErrorCode.REBALANCE_IN_PROGRESS, fx)
        timeout_ms = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
        if self.state is GroupState.EMPTY:
            self.initial_delay_until_ms = now_ms + min(INITIAL_REBALANCE_DELAY_MS, timeout_ms)
        self.state = GroupState.PREPARING_REBALANCE
        self.state_timestamp_ms = now_ms
        self.rebalance_deadline_ms = now_ms + timeout_ms
        self._maybe_complete_join(now_ms, fx)

    def _reset_assignments(self, error: ErrorCode, fx: Effects) -> None:
        for m in self.members.values():
            m.assignment = b""
            if m.sync_waiter is not None:
                fx.replies.append(SyncResult(waiter=m.sync_waiter, error_code=error))
                m.sync_waiter = None

    def _maybe_complete_join(self, now_ms: int, fx: Effects, *, forced: bool = False) -> None:
        if self.state is not GroupState.PREPARING_REBALANCE:
            return
        joined = all(m.join_waiter is not None for m in self.members.values())
        if not forced and not (joined and now_ms >= self.initial_delay_until_ms):
            return
        for m in [m for m in self.members.values() if m.join_waiter is None]:
            self._remove(m, now_ms, fx, rebalance=False)
        self._complete_join(now_ms, fx)

    def _complete_join(self, now_ms: int, fx: Effects) -> None:
        self.generation += 1
        self.state_timestamp_ms = now_ms
        self.initial_delay_until_ms = 0
        if not self.members:
            self.state = GroupState.EMPTY
            self.protocol = None
            self.leader = None
            fx.persist = True
            return
        self.protocol = self._select_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.state = GroupState.COMPLETING_REBALANCE
        for m in self.members.values():
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms
            waiter, m.join_waiter = m.join_waiter, None
            assert waiter is not None
            fx.replies.append(self._join_result(waiter, m))

    def _select_protocol(self) -> str:
        """Among the protocols every member supports, the one most members list first (ties:
        the leader's preference), as Kafka's GroupMetadata.selectProtocol does."""
        candidates = _common(self.members.values())
        assert candidates, "join validation keeps a common protocol"
        votes: dict[str, int] = {}
        for m in self.members.values():
            first = next(name for name, _ in m.protocols if name in candidates)
            votes[first] = votes.get(first, 0) + 1
        leader = self.members[self.leader] if self.leader in self.members else \
            next(iter(self.members.values()))
        order = [name for name, _ in leader.protocols if name in candidates]
        return max(order, key=lambda name: (votes.get(name, 0), -order.index(name)))

    def _join_result(self, waiter: int, member: Member) -> JoinResult:
        members: tuple[tuple[str, str | None, bytes], ...] = ()
        if member.member_id == self.leader:
            members = tuple((m.member_id, m.group_instance_id, m.metadata(self.protocol))
                            for m in self.members.values())
        return JoinResult(waiter=waiter, error_code=ErrorCode.NONE,
                          generation_id=self.generation, protocol_name=self.protocol,
                          leader=self.leader or "", member_id=member.member_id,
                          members=members)

    # ---- SyncGroup ------------------------------------------------------------------------
    def sync(self, *, waiter: int, member_id: str, generation_id: int,
             assignments: Mapping[str, bytes], now_ms: int) -> Effects:
        fx = Effects()
        member = self.members.get(member_id)
        error: ErrorCode | None = None
        if self.state is GroupState.DEAD:
            error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        elif member is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        elif generation_id != self.generation:
            error = ErrorCode.ILLEGAL_GENERATION
        elif self.state is GroupState.PREPARING_REBALANCE:
            error = ErrorCode.REBALANCE_IN_PROGRESS
        if error is not None or member is None:
            fx.replies.append(SyncResult(waiter=waiter, error_code=error or ErrorCode.NONE))
            return fx
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is GroupState.STABLE:
            fx.replies.append(SyncResult(waiter=waiter, error_code=ErrorCode.NONE,
                                         assignment=member.assignment))
            return fx
        assert self.state is GroupState.COMPLETING_REBALANCE, self.state
        if member.sync_waiter is not None:
            fx.replies.append(SyncResult(waiter=member.sync_waiter,
                                         error_code=ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_waiter = waiter
        if member_id == self.leader:
            for m in self.members.values():
                m.assignment = bytes(assignments.get(m.member_id, b""))
            self.state = GroupState.STABLE
            self.state_timestamp_ms = now_ms
            fx.persist = True
            for m in self.members.values():
                if m.sync_waiter is not None:
                    fx.after_persist.append(SyncResult(waiter=m.sync_waiter,
                                                       error_code=ErrorCode.NONE,
                                                       assignment=m.assignment))
                    m.sync_waiter = None
        return fx

    def persist_failed(self, generation_id: int, now_ms: int) -> Effects:
        """Writing the leader's assignment failed: members may hold assignments nobody else
        will know of after a failover, so the group rebalances (as Kafka does)."""
        fx = Effects()
        if self.generation == generation_id and self.state is GroupState.STABLE:
            self._reset_assignments(ErrorCode.NOT_COORDINATOR, fx)
            self._prepare_rebalance(now_ms, fx)
        return fx

    # ---- Heartbeat, LeaveGroup, expiry ---------------------------------------------------
    def heartbeat(self, *, member_id: str, generation_id: int, now_ms: int) -> ErrorCode:
        member = self.members.get(member_id)
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation_id != self.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        if self.state is GroupState.PREPARING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(self, member_ids: Iterable[str], now_ms: int
              ) -> tuple[list[tuple[str, ErrorCode]], Effects]:
        fx = Effects()
        results: list[tuple[str, ErrorCode]] = []
        for member_id in member_ids:
            if self.pending.pop(member_id, None) is not None:
                results.append((member_id, ErrorCode.NONE))
                continue
            member = self.members.get(member_id)
            if member is None or self.state is GroupState.DEAD:
                results.append((member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                continue
            self._remove(member, now_ms, fx, rebalance=True)
            results.append((member_id, ErrorCode.NONE))
        return results, fx

    def tick(self, now_ms: int) -> Effects:
        """Expire silent members and admissions, and end a join phase that is due."""
        fx = Effects()
        for member_id, deadline in list(self.pending.items()):
            if now_ms >= deadline:
                del self.pending[member_id]
        for m in list(self.members.values()):
            waiting = m.join_waiter is not None or m.sync_waiter is not None
            if not waiting and now_ms >= m.heartbeat_deadline_ms and m.member_id in self.members:
                self._remove(m, now_ms, fx, rebalance=True)
        if self.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(now_ms, fx, forced=now_ms >= self.rebalance_deadline_ms)
        return fx

    def _remove(self, member: Member, now_ms: int, fx: Effects, *, rebalance: bool) -> None:
        del self.members[member.member_id]
        if member.join_waiter is not None:
            fx.replies.append(JoinResult(waiter=member.join_waiter,
                                         error_code=ErrorCode.UNKNOWN_MEMBER_ID,
                                         member_id=member.member_id))
        if member.sync_waiter is not None:
            fx.replies.append(SyncResult(waiter=member.sync_waiter,
                                         error_code=ErrorCode.UNKNOWN_MEMBER_ID))
        if self.leader == member.member_id:
            self.leader = next(iter(self.members), None)
        if not rebalance:
            return
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now_ms, fx)
        else:
            self._maybe_complete_join(now_ms, fx)

    @property
    def next_deadline_ms(self) -> int | None:
        """When `tick` next has something to do (None: nothing scheduled)."""
        deadlines = [d for d in self.pending.values()]
        deadlines += [m.heartbeat_deadline_ms for m in self.members.values()]
        if self.state is GroupState.PREPARING_REBALANCE:
            deadlines += [self.rebalance_deadline_ms, self.initial_delay_until_ms]
        return min(deadlines) if deadlines else None

    # ---- OffsetCommit ---------------------------------------------------------------------
    def validate_commit(self, *, member_id: str, generation_id: int, now_ms: int) -> ErrorCode:
        if self.state is GroupState.DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id < 0 and self.state is GroupState.EMPTY:
            return ErrorCode.NONE  # the group only stores offsets ("simple" consumers)
        if self.state is GroupState.COMPLETING_REBALANCE:
            return ErrorCode.REBALANCE_IN_PROGRESS
        member = self.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation_id != self.generation:
            return ErrorCode.ILLEGAL_GENERATION
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        return ErrorCode.NONE

    # ---- giving the group up --------------------------------------------------------------
    def unload(self) -> Effects:
        """The coordinator moved: every waiting request is told to find the new one."""
        fx = Effects()
        for m in self.members.values():
            if m.join_waiter is not None:
                fx.replies.append(JoinResult(waiter=m.join_waiter,
                                             error_code=ErrorCode.NOT_COORDINATOR,
                                             member_id=m.member_id))
                m.join_waiter = None
            if m.sync_waiter is not None:
                fx.replies.append(SyncResult(waiter=m.sync_waiter,
                                             error_code=ErrorCode.NOT_COORDINATOR))
                m.sync_waiter = None
        self.state = GroupState.DEAD
        return fx

    @property
    def is_empty(self) -> bool:
        return not self.members and not self.pending

    def check_invariants(self) -> None:
        assert self.generation >= 0
        if self.state is GroupState.EMPTY:
            assert not self.members, "an Empty group has no members"
        if self.members:
            assert self.leader in self.members, (self.leader, list(self.members))
        else:
            assert self.leader is None, self.leader
        for m in self.members.values():
            if m.join_waiter is not None:
                assert self.state is GroupState.PREPARING_REBALANCE, (self.state, m.member_id)
            if m.sync_waiter is not None:
                assert self.state is GroupState.COMPLETING_REBALANCE, (self.state, m.member_id)
        assert not set(self.pending) & set(self.members)
        assert len(self.members) + len(self.pending) <= GROUP_MEMBERS_MAX + 1


def _common(members: Iterable[Member]) -> set[str]:
    """The protocols every one of `members` supports."""
    common: set[str] | None = None
    for m in members:
        names = {name for name, _ in m.protocols}
        common = names if common is None else common & names
    return common or set()
