"""Raft's vocabulary: log entries, peer messages, hard/soft state and the `Ready` hand-off.

Everything here is a frozen, slotted, keyword-only dataclass (or an Enum). The core
(`broker.raft.core`) consumes `Message`s and ticks and produces `Ready`s; the driver that owns
the I/O executes a `Ready` in this order, which is the durability contract of the project:

    1. persist: `log_reset` (if any), then `entries` (truncating any conflicting suffix),
       then `hard_state` (if any); fsync when `must_sync`;
    2. send `messages_after_persist` (vote and append responses: they promise durability);
       `messages` may be sent at once, before the persist (a leader's appends, heartbeats);
    3. apply `committed` entries in index order;
    4. call `RaftNode.advance(ready)`.

Node ids are positive ints; 0 means "none" (no vote, no leader), as in etcd's raft.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "NO_NODE",
    "EntryKind",
    "Entry",
    "ConfChangeKind",
    "ConfChange",
    "ConfState",
    "HardState",
    "Role",
    "SoftState",
    "VoteRequest",
    "VoteResponse",
    "AppendRequest",
    "AppendResponse",
    "Heartbeat",
    "HeartbeatResponse",
    "TimeoutNow",
    "LogStartRequest",
    "RepairMark",
    "Message",
    "Ready",
    "ProposeResult",
]

NO_NODE = 0


class EntryKind(enum.IntEnum):
    """What an entry's payload is. Only DATA entries are visible to consumers."""

    DATA = 0  # an application payload (for a partition: one Kafka RecordBatch v2)
    CONFIG = 1  # an encoded ConfChange; takes no Kafka offset
    EMPTY = 2  # the no-op a new leader appends in its own term; takes no Kafka offset


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    index: int  # >= 1, contiguous in a log
    term: int  # >= 1, non-decreasing along a log
    kind: EntryKind
    data: bytes = b""


class ConfChangeKind(enum.IntEnum):
    ADD_LEARNER = 0  # node joins as a non-voting learner
    PROMOTE = 1  # learner becomes a voter
    REMOVE = 2  # voter or learner leaves


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChange:
    kind: ConfChangeKind
    node: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfState:
    voters: frozenset[int]  # never empty for a live group
    learners: frozenset[int] = frozenset()  # disjoint from voters


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What must survive a crash. `conf` is the membership as of `commit` (config entries take
    effect when committed, and retention may delete them, so the membership is kept here)."""

    term: int
    vote: int  # NO_NODE when none in `term`
    commit: int
    conf: ConfState
    # Index of the CONFIG entry `conf` results from (0: none, or unknown); CONFIG entries at or
    # below it are already reflected in `conf`. Above `commit` only after a LogStartRequest,
    # whose membership is the leader's as of its own commit index.
    conf_index: int = 0
    # Storage found damage and cut the log: the last index the log had before the cut (0: no
    # repair under way) and the hard state's term then. Until the repair ends the node may
    # have promised entries it no longer holds: it never campaigns, and votes only for logs at
    # least as up to date as both its own and `repair_mark` (see RaftNode).
    repair_index: int = 0
    repair_term: int = 0
    # No entry this log ever held has a higher term (0: unknown, a file written before the
    # field existed). Durable with the entries that raise it, so before any acknowledgement
    # of them; it stays below `term` while no leader of `term` has appended here.
    entry_term_max: int = 0

    @property
    def repairing(self) -> bool:
        return self.repair_index > 0

    @property
    def repair_mark(self) -> tuple[int, int]:
        """(term, index) at least that of every entry lost to the damage; (0, 0) when not
        repairing. The term is the lower of the two upper bounds known: the hard state's
        term at the damage, and entry_term_max (raising our term by an election appends
        nothing, and a bound above every surviving log's last term would block elections)."""
        if not self.repair_index:
            return (0, 0)
        term = self.repair_term
        if self.entry_term_max:
            term = min(term, self.entry_term_max)
        return (term, self.repair_index)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftState:
    role: Role
    leader: int  # NO_NODE when unknown


# ---- peer messages -------------------------------------------------------------------------
# `src` and `dst` are node ids; `term` is the sender's term (for a pre-vote request: the term
# the sender would campaign in, its own term is not raised).


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRequest:
    src: int
    dst: int
    term: int
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False  # campaign started by TimeoutNow: bypasses the leader lease


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteResponse:
    src: int
    dst: int
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRequest:
    src: int
    dst: int
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResponse:
    src: int
    dst: int
    term: int
    success: bool
    index: int  # success: the last index now known to match; reject: the prev_index rejected
    hint_index: int = 0  # reject: the leader should probe no higher than this index ...
    hint_term: int = 0  # ... whose term on the follower is this (0: follower log too short)
    # reject: the follower lost entries since it last answered (a repair): the leader's idea of
    # its match index is void
    repairing: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    src: int
    dst: int
    term: int
    commit: int  # min(leader commit, follower's match): never beyond what the follower holds


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    src: int
    dst: int
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """Leadership transfer: the receiver campaigns at once, ignoring leases."""

    src: int
    dst: int
    term: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LogStartRequest:
    """The follower is behind the leader's log start (retention deleted what it needs): it
    discards its log and continues after `start_index`, all of which is committed."""

    src: int
    dst: int
    term: int
    start_index: int  # the last index deleted; the follower's log restarts at start_index + 1
    start_term: int  # term of the entry at start_index
    commit: int
    # The leader's membership as of its commit index (>= start_index): the follower adopts it,
    # as the CONFIG entries that built it may be among those deleted. None: keep its own.
    conf: ConfState | None = None
    conf_index: int = 0  # the CONFIG entry `conf` results from: later ones still apply


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairMark:
    """The leader learnt that the follower lost entries it had counted as matched (a rejection
    hinted below the follower's match index): the follower must repair up to the leader's last
    entry at that moment, (`index`, `log_term`), which bounds every entry the leader ever sent
    it. Sent alongside the appends to that follower (ahead of them) until its match index
    reaches `index`; a peer that does not know it drops it and nothing else."""

    src: int
    dst: int
    term: int
    index: int  # the leader's last index when it learnt of the loss
    log_term: int  # the term of that entry (the leader's own term)


Message = (
    VoteRequest
    | VoteResponse
    | AppendRequest
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | TimeoutNow
    | LogStartRequest
    | RepairMark
)


class ProposeResult(enum.Enum):
    ACCEPTED = "accepted"
    DROPPED = "dropped"  # not leader, transfer in progress, or uncommitted_bytes_max reached


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """One batch of work for the driver; see the module docstring for the required order."""

    soft_state: SoftState | None  # set when role or leader changed since the last Ready
    hard_state: HardState | None  # set when term, vote, commit or conf changed: persist it
    log_reset: tuple[int, int] | None  # (start_index, start_term): discard the whole log first
    entries: tuple[Entry, ...]  # append; an entry at an existing index replaces that suffix
    must_sync: bool  # fsync before sending messages_after_persist (entries, term or vote changed)
    messages: tuple[Message, ...]  # may leave now
    messages_after_persist: tuple[Message, ...]  # may leave only once the persist is durable
    committed: tuple[Entry, ...]  # newly committed, to apply in order

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and self.log_reset is None
            and not self.entries
            and not self.messages
            and not self.messages_after_persist
            and not self.committed
        )
