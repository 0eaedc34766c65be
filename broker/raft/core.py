"""RaftNode: one member of one Raft group, sans-IO, modelled on etcd's raft/RawNode.

Inputs: `step(msg)`, `tick()`, `propose(data)`, `propose_conf_change(change)`,
`transfer_leadership(to)`, `campaign()`, `report_unreachable(node)`. Output: `ready()`, a
`Ready` the driver executes in the order messages.py states, then hands back with `advance()`.
No clock, no randomness of its own (an injected `RandomSource` draws election timeouts), no I/O:
storage is only read (`LogStorage`), entries the node produces wait in the log's memory tail.

Protocol, in brief (each handler says more):
- Elections: randomized timeouts in [election_ticks, 2 * election_ticks); pre-vote (a node asks
  whether it could win before raising its term); check-quorum (a leader that has not heard from
  a quorum within an election timeout steps down; a node that heard from a live leader within
  one ignores vote requests without raising its term, unless the campaign is a leadership
  transfer). A candidate counts its own vote only once its term and vote are durable.
- Replication: followers in PROBE get one append at a time, in REPLICATE a pipeline bounded by
  inflight_messages_max and inflight_bytes_max; each append carries at most message_bytes_max
  payload bytes (at least one entry). Rejections carry a (index, term) hint so the leader skips
  a divergent term at once. Appends are assembled when the driver asks for a Ready, so a burst
  of proposals leaves as one message per follower.
- Commit: only by counting replicas of an entry of the current term (`_maybe_commit`); the
  leader counts itself only for entries the driver has persisted. A new leader appends an EMPTY
  entry; `has_committed_in_term` says when it has committed one of its own.
- Membership: single-server changes as CONFIG entries, one uncommitted at a time, effective
  when committed; the core applies them itself as its commit index passes them and records the
  result in HardState.conf. Learners are replicated to but never vote or campaign. A leader
  whose own removal commits stops counting itself, drops proposals and hands leadership to the
  most caught-up voter, stepping down when that voter's election reaches it (`_hand_over`).
- Retention: a follower whose next index is below the leader's log start gets a
  LogStartRequest, discards its log and continues after the leader's log start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from broker.raft import quorum
from broker.raft.confchange import (
    ConfChangeError,
    apply_conf_change,
    decode_conf_change,
    decode_conf_result,
    encode_conf_change,
)
from broker.raft.log import RaftLog
from broker.raft.messages import (
    NO_NODE,
    AppendRequest,
    AppendResponse,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    LogStartRequest,
    Message,
    ProposeResult,
    Ready,
    RepairMark,
    Role,
    SoftState,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from broker.raft.progress import Progress, ProgressState
from broker.raft.storage import LogStorage

__all__ = [
    "RaftConfig",
    "RaftNode",
    "ProposeResult",
    "RandomSource",
    "RaftError",
    "RaftConfigError",
    "NoHardStateError",
    "StorageStateError",
    "ConfChangeError",
    "Progress",
    "ProgressState",
    "encode_conf_change",
    "decode_conf_change",
]

_LEADER = Role.LEADER
_FOLLOWER = Role.FOLLOWER
_CANDIDATE = Role.CANDIDATE
_PRE_CANDIDATE = Role.PRE_CANDIDATE
_REPLICATE = ProgressState.REPLICATE
_PROBE = ProgressState.PROBE
_ACCEPTED = ProposeResult.ACCEPTED
_DROPPED = ProposeResult.DROPPED
_SCAN_BYTES_MAX = 1 << 20  # page size when scanning the uncommitted tail at start-up


class RandomSource(Protocol):
    """What the core needs of randomness; pass a seeded `random.Random`."""

    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    election_ticks: int = 10  # a follower campaigns after a random timeout in [e, 2e) ticks
    heartbeat_ticks: int = 1
    inflight_messages_max: int = 64  # unacknowledged appends per follower in Replicate state
    inflight_bytes_max: int = 32 << 20  # unacknowledged payload bytes per follower
    message_bytes_max: int = 1 << 20  # payload bytes per AppendRequest (at least one entry)
    uncommitted_bytes_max: int = 64 << 20  # propose() returns DROPPED beyond this
    pre_vote: bool = True
    check_quorum: bool = True


class RaftError(Exception):
    """Base of the core's typed errors."""


class RaftConfigError(RaftError, ValueError):
    """A RaftConfig or node id the core cannot run with."""


class NoHardStateError(RaftError, LookupError):
    """Storage holds no hard state: the group was never bootstrapped on this replica."""


class StorageStateError(RaftError):
    """Storage contents contradict each other (e.g. a commit index beyond the last entry)."""


def _validate(node_id: int, config: RaftConfig) -> None:
    if node_id <= NO_NODE:
        raise RaftConfigError(f"node ids are positive, got {node_id}")
    if config.heartbeat_ticks < 1 or config.election_ticks <= config.heartbeat_ticks:
        raise RaftConfigError("need 1 <= heartbeat_ticks < election_ticks")
    for name in (
        "inflight_messages_max",
        "inflight_bytes_max",
        "message_bytes_max",
        "uncommitted_bytes_max",
    ):
        if getattr(config, name) < 1:
            raise RaftConfigError(f"{name} must be >= 1")


class RaftNode:
    __slots__ = (
        "_id",
        "_cfg",
        "_rng",
        "_log",
        "_term",
        "_vote",
        "_conf",
        "_conf_index",
        "_role",
        "_leader",
        "_election_elapsed",
        "_heartbeat_elapsed",
        "_election_timeout",
        "_progress",
        "_votes",
        "_msgs",
        "_msgs_after",
        "_append_to",
        "_append_all",
        "_transferee",
        "_term_start",
        "_uncommitted_bytes",
        "_proposed",
        "_conf_entries",
        "_prev_soft",
        "_prev_hard",
        "_in_flight",
        "_repair_index",
        "_repair_term",
        "_lost_entries",
        "_entry_term_max",
        "_marks_taken",
        "_start_term",
    )

    def __init__(
        self,
        *,
        node_id: int,
        storage: LogStorage,
        rng: RandomSource,
        config: RaftConfig = RaftConfig(),
        applied: int = 0,
    ) -> None:
        """Restores term/vote/commit/membership from storage.initial_state() (which must exist:
        a new group is bootstrapped by persisting HardState(term=0, vote=0, commit=0, conf=...));
        the term is raised to the last entry's if a crash kept entries but not the hard state
        written after them. Committed entries above `applied` are handed out again by ready()
        for replay; `applied` is clamped to [log start - 1, commit]."""
        _validate(node_id, config)
        hard = storage.initial_state()
        if hard is None:
            raise NoHardStateError(f"node {node_id}: storage holds no hard state")
        if hard.commit > storage.last_index():
            raise StorageStateError(
                f"node {node_id}: commit {hard.commit} beyond last index {storage.last_index()}"
            )
        if not hard.conf.voters or hard.conf.voters & hard.conf.learners:
            raise StorageStateError(f"node {node_id}: invalid membership {hard.conf}")
        self._id = node_id
        self._cfg = config
        self._rng = rng
        self._log = RaftLog(storage, commit=hard.commit, applied=applied)
        self._term = hard.term
        self._vote = hard.vote  # NO_NODE when none in this term
        last_term = self._log.last_term()
        if last_term > hard.term:
            # A crash after the entries of a Ready reached the disk and before its hard state
            # did. No vote can have left in a term whose hard state never became durable.
            self._term, self._vote = last_term, NO_NODE
        self._conf = hard.conf  # membership as of the commit index (or of _conf_index)
        self._conf_index = hard.conf_index  # the CONFIG entry _conf results from
        self._role = _FOLLOWER
        self._leader = NO_NODE
        self._election_elapsed = 0  # ticks since the last reset (leader: since the last check)
        self._heartbeat_elapsed = 0
        self._election_timeout = self._draw_timeout()
        self._progress: dict[int, Progress] = {}  # leader only: every member (itself too)
        self._votes: dict[int, bool] = {}  # (pre-)candidate only: answers received
        self._msgs: list[Message] = []  # for Ready.messages
        self._msgs_after: list[Message] = []  # for Ready.messages_after_persist
        self._append_to: dict[int, bool] = {}  # leader: followers to send appends to at the
        self._append_all = False  # next Ready (value: an empty append is wanted), or all
        self._transferee = NO_NODE  # leader: target of the leadership transfer in progress
        self._term_start = 0  # leader: index of its EMPTY entry
        self._uncommitted_bytes = 0  # leader: payload bytes it proposed, not yet committed
        self._proposed: deque[tuple[int, int]] = deque()  # leader: (index, bytes) uncommitted
        self._conf_entries: deque[Entry] = deque()  # CONFIG entries above the commit index
        self._prev_soft = (_FOLLOWER, NO_NODE)  # as last handed out
        self._prev_hard = hard  # as last handed out
        self._in_flight: Ready | None = None  # the Ready handed out and not yet advanced
        # Storage found damage and cut the log (hard.repair_index: the last index before the
        # cut; repair_term: the term then). Entries this node persisted, and so may have
        # promised (acknowledged to a leader), are gone: until the repair ends (_repair_done)
        # it never campaigns, and it votes as if its log still ended at the repair mark
        # (_grants_vote_to), or its vote could elect a leader lacking an entry committed with
        # its help. Not for a lone voter: with nobody to repair from, what remains is all
        # there is. A leader that finds we lost entries storage could not see marks a repair
        # the same way (RepairMark, _on_repair_mark).
        lone = hard.conf.voters == frozenset((node_id,))
        self._repair_term, self._repair_index = (0, 0) if lone else hard.repair_mark
        # Volatile, for this process's life: the log lost entries on open, so a leader's idea
        # of our match index may be too high; rejections say so (AppendResponse.repairing).
        self._lost_entries = self._repair_index > 0
        # No entry this log ever held has a higher term (HardState.entry_term_max).
        self._entry_term_max = max(hard.entry_term_max, last_term)
        # The last RepairMark taken, as (term, index, log_term): a leader repeats its mark
        # until our match index reaches it, and a repair that already ended must not restart.
        self._marks_taken = (0, 0, 0)
        # Our term when this process started: entries can be lost only across a restart, so
        # only a leader of this term can have counted acknowledgements we no longer hold.
        self._start_term = self._term
        self._scan_uncommitted_conf()

    # ---- read access ------------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        return self._id

    @property
    def soft_state(self) -> SoftState:
        return SoftState(role=self._role, leader=self._leader)

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> int:
        return self._leader

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> int:
        return self._vote

    @property
    def commit_index(self) -> int:
        return self._log.commit

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def stable_index(self) -> int:
        """Highest index persisted and acknowledged through advance()."""
        return self._log.stable_last_index()

    @property
    def conf(self) -> ConfState:
        return self._conf

    @property
    def lead_transferee(self) -> int:
        return self._transferee

    @property
    def uncommitted_bytes(self) -> int:
        return self._uncommitted_bytes

    @property
    def repairing(self) -> bool:
        """The log is being repaired after damage: no campaigns, and votes only for logs at
        least as up to date as the repair mark (see _grants_vote_to)."""
        return self._repair_index > 0

    @property
    def repair_mark(self) -> tuple[int, int]:
        """(term, index) bounding the entries lost to damage; (0, 0) when not repairing."""
        return (self._repair_term, self._repair_index) if self._repair_index else (0, 0)

    @property
    def has_committed_in_term(self) -> bool:
        """Leader only: it has committed an entry of its own term, so its commit index is
        final (only then may a Kafka high watermark be published from it)."""
        return self._role is _LEADER and self._log.commit >= self._term_start > 0

    @property
    def has_pending_conf_change(self) -> bool:
        return bool(self._conf_entries)

    def term_at(self, index: int) -> int:
        """Term of the entry at `index` (first_index - 1 <= index <= last_index)."""
        return self._log.term_at(index)

    def progress(self, node: int) -> Progress | None:
        """Leader only: its view of `node` (match, next, state); read-only. None otherwise."""
        return self._progress.get(node)

    # ---- inputs -----------------------------------------------------------------------------

    def tick(self) -> None:
        if self._role is _LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def step(self, msg: Message) -> None:
        assert msg.dst == self._id and msg.src != self._id, (msg, self._id)
        if msg.term != self._term and not self._step_term(msg):
            return
        match msg:
            case AppendRequest():
                if self._follow(msg.src):
                    self._on_append_request(msg)
            case AppendResponse():
                if self._role is _LEADER:
                    self._on_append_response(msg)
            case Heartbeat():
                if self._follow(msg.src):
                    self._on_heartbeat(msg)
            case HeartbeatResponse():
                if self._role is _LEADER:
                    self._on_heartbeat_response(msg)
            case VoteRequest():
                self._on_vote_request(msg)
            case VoteResponse():
                if self._role is _CANDIDATE or self._role is _PRE_CANDIDATE:
                    self._on_vote_response(msg)
            case TimeoutNow():
                if self._role is _FOLLOWER:
                    self._hup(transfer=True)
            case LogStartRequest():
                if self._follow(msg.src):
                    self._on_log_start(msg)
            case RepairMark():
                if self._follow(msg.src):
                    self._on_repair_mark(msg)

    def propose(self, data: bytes) -> ProposeResult:
        """Append a DATA entry (leader only). DROPPED if not leader, during a leadership
        transfer, or when it would take the uncommitted payload past uncommitted_bytes_max
        (a single entry is always accepted when nothing is uncommitted)."""
        if self._role is not _LEADER or self._transferee != NO_NODE:
            return _DROPPED
        pending = self._uncommitted_bytes
        if pending and pending + len(data) > self._cfg.uncommitted_bytes_max:
            return _DROPPED
        self._append_own(EntryKind.DATA, data)
        return _ACCEPTED

    def propose_conf_change(self, change: ConfChange) -> ProposeResult:
        """Append a CONFIG entry (leader only). DROPPED if not leader, during a transfer,
        while another CONFIG entry is uncommitted, or before the leader has committed an entry
        of its term (a membership change must not race one a previous leader left behind).
        Raises ConfChangeError if `change` does not apply to the current membership."""
        if (
            self._role is not _LEADER
            or self._transferee != NO_NODE
            or self._conf_entries
            or not self.has_committed_in_term
        ):
            return _DROPPED
        result = apply_conf_change(self._conf, change)
        self._append_own(EntryKind.CONFIG, encode_conf_change(change, result))
        return _ACCEPTED

    def transfer_leadership(self, to: int) -> None:
        """Leader only: bring voter `to` up to date, then tell it to campaign at once
        (TimeoutNow). Proposals are dropped meanwhile; the transfer is abandoned after an
        election timeout. Ignored when not leader or `to` is not another voter."""
        if self._role is not _LEADER or to == self._id or to not in self._conf.voters:
            return
        if self._transferee == to:
            return
        self._transferee = to
        self._election_elapsed = 0  # the transfer gets one election timeout
        if self._progress[to].match == self._log.last_index():
            self._send_timeout_now(to)
        else:
            self._mark_append(to, True)  # an empty append probes a follower whose window is idle

    def campaign(self) -> None:
        """Start an election now (pre-vote first if enabled). Ignored on a leader and on a
        node that is not a voter."""
        self._hup(transfer=False)

    def forget_leader(self) -> None:
        """The driver knows the leader's process is gone (its broker stopped heartbeating):
        stop honouring its lease, so vote requests are no longer refused because of it, and
        count the election timeout as already elapsed but for the randomized part, so
        followers elect quickly without all campaigning at once (etcd's MsgForgetLeader,
        plus the skip). Ignored unless this node is a follower."""
        if self._role is not _FOLLOWER or self._leader == NO_NODE:
            return
        self._leader = NO_NODE
        self._election_elapsed = max(self._election_elapsed, self._cfg.election_ticks)

    def report_unreachable(self, node: int) -> None:
        """The transport could not deliver to `node`: an append may be lost, so stop
        streaming and probe it again."""
        if self._role is not _LEADER or node == self._id:
            return
        pr = self._progress.get(node)
        if pr is not None and pr.state is _REPLICATE:
            pr.become_probe()

    # ---- the Ready hand-off -----------------------------------------------------------------

    def has_ready(self) -> bool:
        """True if ready() would hand out work. False while a Ready is in flight."""
        if self._in_flight is not None:
            return False
        if self._append_all or self._append_to:
            self._flush_appends()
        if self._msgs or self._msgs_after:
            return True
        log = self._log
        return bool(
            log.has_unsent()
            or log.has_next_committed()
            or self._role is not self._prev_soft[0]
            or self._leader != self._prev_soft[1]
            or self._hard_state_changed()
        )

    def _hard_state_changed(self) -> bool:
        """Does the hard state differ from the one last handed out?"""
        prev, log = self._prev_hard, self._log
        return (
            self._term != prev.term
            or self._vote != prev.vote
            or log.commit != prev.commit
            or self._conf_index != prev.conf_index
            or self._repair_index != prev.repair_index
            or self._repair_term != prev.repair_term
            or max(self._entry_term_max, log.last_term()) != prev.entry_term_max
            or (self._conf is not prev.conf and self._conf != prev.conf)
        )

    def ready(self) -> Ready:
        """The work accumulated since the last Ready. Must not be called again before
        advance() of this one; step/tick/propose may be called meanwhile."""
        assert self._in_flight is None, "ready() called again before advance()"
        self._flush_appends()
        log = self._log
        soft = None
        if self._role is not self._prev_soft[0] or self._leader != self._prev_soft[1]:
            self._prev_soft = (self._role, self._leader)
            soft = SoftState(role=self._role, leader=self._leader)
        prev = self._prev_hard
        # Terms never decrease along a log: its last term bounds every entry it holds, and the
        # bound must be durable before any acknowledgement of those entries (hence the sync).
        self._entry_term_max = max(self._entry_term_max, log.last_term())
        term_or_vote = self._term != prev.term or self._vote != prev.vote
        bound_raised = self._entry_term_max != prev.entry_term_max
        # A mark a leader gave us must be durable before any vote or acknowledgement leaves.
        bound_raised = bound_raised or (self._repair_index > 0 and (
            self._repair_index, self._repair_term) != (prev.repair_index, prev.repair_term))
        hard = None
        if self._hard_state_changed():
            hard = HardState(
                term=self._term,
                vote=self._vote,
                commit=log.commit,
                conf=self._conf,
                conf_index=self._conf_index,
                repair_index=self._repair_index,
                repair_term=self._repair_term if self._repair_index else 0,
                entry_term_max=self._entry_term_max,
            )
            self._prev_hard = hard
        reset = log.take_reset()
        entries = log.take_unsent()
        committed: tuple[Entry, ...] = ()
        if log.has_next_committed():
            committed = tuple(log.next_committed(self._cfg.message_bytes_max))
        rd = Ready(
            soft_state=soft,
            hard_state=hard,
            log_reset=reset,
            entries=entries,
            must_sync=term_or_vote or bound_raised or bool(entries) or reset is not None,
            messages=tuple(self._msgs),
            messages_after_persist=tuple(self._msgs_after),
            committed=committed,
        )
        self._msgs.clear()
        self._msgs_after.clear()
        self._in_flight = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """The driver has executed `ready` (persisted, sent, applied)."""
        assert ready is self._in_flight, "advance() of a Ready that is not the one in flight"
        self._in_flight = None
        log = self._log
        log.persisted(ready.log_reset, ready.entries)
        if ready.committed:
            log.applied_to(ready.committed[-1].index)
        me = self._progress.get(self._id)  # None on a removed leader handing over
        if me is not None:
            stable = log.stable_last_index()
            if stable > me.match:
                me.match = stable
                if me.next <= stable:
                    me.next = stable + 1
                if self._maybe_commit():
                    self._on_leader_commit()
        elif self._role is _CANDIDATE:
            hs = ready.hard_state
            if hs is not None and hs.term == self._term and hs.vote == self._id:
                self._record_vote(self._id, True)  # our own vote is durable now

    # ---- terms and roles ----------------------------------------------------------------------

    def _draw_timeout(self) -> int:
        e = self._cfg.election_ticks
        return self._rng.randrange(e, 2 * e)

    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = NO_NODE
        self._leader = NO_NODE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._election_timeout = self._draw_timeout()
        self._votes.clear()
        self._transferee = NO_NODE
        self._progress = {}
        self._append_to.clear()
        self._append_all = False
        self._term_start = 0
        self._uncommitted_bytes = 0
        self._proposed.clear()

    def _become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self._role = _FOLLOWER
        self._leader = leader

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote change: a pre-vote round leaves no durable trace.
        self._role = _PRE_CANDIDATE
        self._leader = NO_NODE
        self._votes.clear()
        self._election_elapsed = 0
        self._election_timeout = self._draw_timeout()

    def _become_candidate(self) -> None:
        self._reset(self._term + 1)
        self._vote = self._id
        self._role = _CANDIDATE

    def _become_leader(self) -> None:
        assert self._role is _CANDIDATE
        self._reset(self._term)
        self._role = _LEADER
        self._leader = self._id
        log = self._log
        next_index = log.last_index() + 1
        for node in self._conf.voters:
            self._progress[node] = self._new_progress(next_index, is_learner=False)
        for node in self._conf.learners:
            self._progress[node] = self._new_progress(next_index, is_learner=True)
        me = self._progress.get(self._id)
        if me is not None:
            me.match = log.stable_last_index()  # the leader counts only what it has persisted
            me.state = _REPLICATE
        self._term_start = next_index
        self._append_own(EntryKind.EMPTY, b"")
        if me is None:
            self._hand_over()  # a removed node elected to finish a handover (see _promotable)

    def _new_progress(self, next_index: int, *, is_learner: bool) -> Progress:
        cfg = self._cfg
        return Progress(
            next_index=next_index,
            is_learner=is_learner,
            count_max=cfg.inflight_messages_max,
            bytes_max=cfg.inflight_bytes_max,
        )

    def _promotable(self) -> bool:
        """May this node campaign? Voters may. So may a removed node (neither voter nor
        learner) still holding an uncommitted tail of the term of its commit point: typically
        a leader whose removal committed before it could hand over. A remaining voter that has
        not learnt of that commit still counts it in its quorum, and it refuses its vote to
        anyone with a shorter log, so it alone can unblock the group. It campaigns with
        pre-vote, counts only the voters' votes, and as leader hands over at once. It can only
        win if no later configuration committed (a quorum holding that entry refuses it), so
        its quorums intersect those of every leader of its term. Once a later leader's entry
        reached it, or all it holds is committed, it stays quiet."""
        conf = self._conf
        if self._repair_index:
            return False
        if self._id in conf.voters:
            return True
        if self._id in conf.learners:
            return False
        log = self._log
        return log.last_index() > log.commit and log.last_term() == log.term_at(log.commit)

    def _in_lease(self) -> bool:
        """Heard from a live leader (or is one) within the election timeout."""
        return (
            self._cfg.check_quorum
            and self._leader != NO_NODE
            and self._election_elapsed < self._cfg.election_ticks
        )

    def _step_term(self, msg: Message) -> bool:
        """Handle a message from another term; True if it should then be processed."""
        if msg.term > self._term:
            if isinstance(msg, VoteRequest):
                if not msg.transfer and self._in_lease():
                    return False  # a live leader exists: do not even raise our term
                if not msg.pre_vote:
                    self._become_follower(msg.term, NO_NODE)
                return True  # a pre-vote never raises our term
            if isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                return True  # granted for the term we would campaign in
            from_leader = isinstance(msg, (AppendRequest, Heartbeat, LogStartRequest, RepairMark))
            self._become_follower(msg.term, msg.src if from_leader else NO_NODE)
            return True
        # A stale term. Tell a deposed leader or a lagging (pre-)candidate the current term:
        # a leader steps down at once, and a candidate catches up in one round instead of
        # climbing one term per election timeout (etcd ignores stale vote requests).
        if isinstance(msg, (AppendRequest, Heartbeat, LogStartRequest)):
            self._msgs_after.append(
                AppendResponse(src=self._id, dst=msg.src, term=self._term, success=False, index=0)
            )
        elif isinstance(msg, VoteRequest):
            self._msgs_after.append(
                VoteResponse(
                    src=self._id,
                    dst=msg.src,
                    term=self._term,
                    granted=False,
                    pre_vote=msg.pre_vote,
                )
            )
        return False

    def _follow(self, leader: int) -> bool:
        """A message from the leader of our term arrived; False on a leader (which cannot
        happen: one leader per term)."""
        if self._role is _LEADER:
            return False
        if self._role is not _FOLLOWER or self._leader != leader:
            self._become_follower(self._term, leader)
        self._election_elapsed = 0
        return True

    # ---- elections --------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._election_timeout and self._promotable():
            self._election_elapsed = 0
            self._hup(transfer=False)

    def _hup(self, *, transfer: bool) -> None:
        if self._role is _LEADER or not self._promotable():
            return
        if (self._cfg.pre_vote or self._id not in self._conf.voters) and not transfer:
            self._pre_campaign()
        else:
            self._campaign(transfer)

    def _pre_campaign(self) -> None:
        self._become_pre_candidate()
        self._votes[self._id] = True
        if quorum.vote_result(self._conf.voters, self._votes) is quorum.VoteResult.WON:
            self._campaign(False)
            return
        self._request_votes(self._term + 1, pre_vote=True, transfer=False)

    def _campaign(self, transfer: bool) -> None:
        # Our own vote counts once term and vote are durable: at advance() of the Ready that
        # carries them, or with the first grant (the request left only after that persist).
        self._become_candidate()
        self._request_votes(self._term, pre_vote=False, transfer=transfer)

    def _request_votes(self, term: int, *, pre_vote: bool, transfer: bool) -> None:
        log = self._log
        last_index, last_term = log.last_index(), log.last_term()
        out = self._msgs if pre_vote else self._msgs_after  # a real request needs its persist
        for voter in sorted(self._conf.voters):
            if voter != self._id:
                out.append(
                    VoteRequest(
                        src=self._id,
                        dst=voter,
                        term=term,
                        last_index=last_index,
                        last_term=last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _on_vote_request(self, msg: VoteRequest) -> None:
        can_vote = (
            self._vote == msg.src
            or (self._vote == NO_NODE and self._leader == NO_NODE)
            or (msg.pre_vote and msg.term > self._term)
        )
        if can_vote and self._grants_vote_to(msg.last_index, msg.last_term):
            # A grant carries the term asked for (for a pre-vote, the one it would run in).
            self._msgs_after.append(
                VoteResponse(
                    src=self._id, dst=msg.src, term=msg.term, granted=True, pre_vote=msg.pre_vote
                )
            )
            if not msg.pre_vote:
                self._vote = msg.src
                self._election_elapsed = 0
        else:
            self._msgs_after.append(
                VoteResponse(
                    src=self._id,
                    dst=msg.src,
                    term=self._term,
                    granted=False,
                    pre_vote=msg.pre_vote,
                )
            )

    def _grants_vote_to(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction, for votes and pre-votes alike: is a log ending at
        (last_index, last_term) at least as up to date as ours? While repairing, ours counts
        as ending at max(our log's last entry, the repair mark). That is safe: the entries we
        may have acknowledged and then lost to damage form a prefix of the log we held when
        the damage struck, whose last entry is at most the mark (HardState.repair_mark). Its
        term is at most the lower of the hard state's term then (an acknowledgement leaves
        only once the entries and a hard state of the leader's term, at least the entries'
        term, are durable, and the durable term never falls) and the hard state's
        entry_term_max (durable with the entries that raise it). Its index is at most
        repair_index, the last index storage found before the cut (storage must not
        understate it: the end of the repair relies on it too). Comparing (term, index) in
        order, a log at least as up to date as the mark is at least as up to date as the lost
        one, so every vote we grant is one we could have granted before the damage, and
        Raft's argument (a candidate at least as up to date as a voter holding a committed
        entry holds it) applies unchanged. Abstaining instead cost liveness: with one of four
        voters gone and another repairing, the other two could never win."""
        if not self._log.is_up_to_date(last_index, last_term):
            return False
        return not self._repair_index or (last_term, last_index) >= (
            self._repair_term, self._repair_index)

    def _on_vote_response(self, msg: VoteResponse) -> None:
        pre = self._role is _PRE_CANDIDATE
        if msg.pre_vote != pre:
            return  # an answer to the other kind of round
        if pre and msg.granted and msg.term != self._term + 1:
            return  # a grant from an earlier round, for another term
        if not pre and msg.granted:
            self._votes.setdefault(self._id, True)
        self._record_vote(msg.src, msg.granted)

    def _record_vote(self, node: int, granted: bool) -> None:
        self._votes.setdefault(node, granted)
        result = quorum.vote_result(self._conf.voters, self._votes)
        if result is quorum.VoteResult.WON:
            if self._role is _PRE_CANDIDATE:
                self._campaign(False)
            else:
                self._become_leader()
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self._term, NO_NODE)

    # ---- follower side of replication -------------------------------------------------------

    def _respond_append(
        self, to: int, success: bool, index: int, hint_index: int = 0, hint_term: int = 0
    ) -> None:
        self._msgs_after.append(
            AppendResponse(
                src=self._id,
                dst=to,
                term=self._term,
                success=success,
                index=index,
                hint_index=hint_index,
                hint_term=hint_term,
                repairing=self._lost_entries and not success,
            )
        )

    def _on_append_request(self, msg: AppendRequest) -> None:
        log = self._log
        commit = log.commit
        prev, prev_term, entries = msg.prev_index, msg.prev_term, msg.entries
        if prev < commit:
            # Entries up to our commit index are committed, hence the leader's: skip them.
            if prev + len(entries) <= commit:
                self._respond_append(msg.src, True, commit)
                return
            skip = commit - prev
            prev, prev_term, entries = commit, entries[skip - 1].term, entries[skip:]
        if not log.match_term(prev, prev_term):
            hint_index, hint_term = log.find_conflict_by_term(
                min(prev, log.last_index()), prev_term
            )
            self._respond_append(msg.src, False, msg.prev_index, hint_index, hint_term)
            return
        last_new = prev + len(entries)
        if entries:
            conflict = log.find_conflict(entries)
            if conflict:
                assert conflict > commit, (conflict, commit)
                self._append_from_leader(entries[conflict - prev - 1 :])
        if msg.commit > commit and last_new > commit:
            self._advance_commit(min(msg.commit, last_new))
        if self._repair_index and self._repair_done(last_new, msg.commit):
            self._repair_index = self._repair_term = 0
        self._respond_append(msg.src, True, last_new)

    def _repair_done(self, matched: int, leader_commit: int) -> bool:
        """Our log now matches the leader's up to `matched`. Every entry we may have promised
        before the damage is ours again (so voting by our own log is safe) once
        (a) `matched` reaches the old last index: each of those entries is the leader's own
            if it is of the term we promised it in, and a committed one must be (a quorum
            holding it, or needing our vote, given by the repair mark, elected this leader); or
        (b) the leader's term is above the mark's (a term after the damage, or the damage's
            own when no leader of it had appended to us) and we hold its log up to an entry
            of its term it has committed: it then holds every entry committed before it, all
            below that entry, including those an old leader may still count our stale
            acknowledgements for (it can only do so with a quorum that must have made this
            leader hold them: our own vote, if it had it, went by the repair mark, which is
            as strict as the log that held those entries), and every entry we acknowledged
            to it before the damage (all older than its term, so below its own entries)."""
        if matched >= self._repair_index:
            return True
        point = min(matched, leader_commit)
        return (self._term > self._repair_term and point >= self._log.first_index()
                and self._log.term_at(point) == self._term)

    def _append_from_leader(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        conf_entries = self._conf_entries
        while conf_entries and conf_entries[-1].index >= first:
            conf_entries.pop()  # replaced before it was committed
        self._log.truncate_and_append(entries)
        for entry in entries:
            if entry.kind is EntryKind.CONFIG:
                conf_entries.append(entry)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        # The leader sends min(its commit, our match): we hold that entry, unless the log lost
        # entries on open and the leader has not heard yet (then what we hold is a prefix of
        # what matched, so the clamp keeps the promise).
        log = self._log
        commit = min(msg.commit, log.last_index())
        if commit > log.commit:
            self._advance_commit(commit)
        if msg.commit > log.last_index():
            self._reject_lost_match(msg)
        self._msgs.append(HeartbeatResponse(src=self._id, dst=msg.src, term=self._term))

    def _reject_lost_match(self, msg: Heartbeat) -> None:
        """The leader holds a match index for us above our last index (a heartbeat carries
        min(its commit, our match)): we lost entries it counted, across a restart in its
        term. Answer as a rejection below that match index would, so the leader lowers the
        match index and probes from our last entry. Without it, a leader with nothing new to
        send never appends again, and our log (and applied index) stays short for good.
        Safe: it only makes the leader send what it holds; the rejection's hint is our last
        entry, a prefix of what matched, which the leader trusts as it trusts any rejection
        below the match index (flagged when storage marked a repair, else checked against
        its own log, then followed by a RepairMark)."""
        log = self._log
        last = log.last_index()
        self._respond_append(msg.src, False, msg.commit, last, log.term_at(last))

    def _on_log_start(self, msg: LogStartRequest) -> None:
        log = self._log
        if msg.start_index <= log.commit:
            self._respond_append(msg.src, True, log.commit)  # stale: we are past it
            return
        if log.match_term(msg.start_index, msg.start_term):
            # We hold the leader's log start: keep our log (etcd does this for snapshots).
            self._advance_commit(msg.start_index)
            self._respond_append(msg.src, True, msg.start_index)
            return
        log.reset(msg.start_index, msg.start_term)
        self._conf_entries.clear()
        if msg.conf is not None:
            # The leader's membership as of its commit index, which the CONFIG entries up to
            # conf_index built: those still to arrive here must not roll it back.
            self._conf, self._conf_index = msg.conf, msg.conf_index
        self._respond_append(msg.src, True, msg.start_index)

    def _on_repair_mark(self, msg: RepairMark) -> None:
        """The leader counted entries of ours as matched that we no longer hold (our newest
        segment was cut short, which storage cannot tell from a torn write, so nothing marked
        the repair on open). Repair as after damage, up to the leader's mark (term, index):
        every entry we may have acknowledged and lost that can ever be committed is in the
        leader's log (Leader Completeness for the entries committed before its term, and the
        same argument for those an older leader may still commit with our stale
        acknowledgements), hence at an index up to the mark's, which was the leader's last
        when it learnt of the loss, after the loss; and of a term up to the mark's (the
        leader's own). So the mark bounds them in (term, index) order, as the storage mark
        bounds what damage took, and the vote rule and the end of the repair (_repair_done)
        apply unchanged. (Lost entries of older terms beyond the mark's index are a suffix no
        leader of this term holds: none can ever be committed.)
        Combined with a mark already held by taking the larger in (term, index) order: a log
        at least as up to date as the larger is at least as up to date as both."""
        log = self._log
        if msg.term != self._start_term:
            # Every acknowledgement of this leader's term left this process, which lost
            # nothing: the mark answers a stale rejection (one overtaken by a later append).
            return
        if msg.index < log.first_index() or log.match_term(msg.index, msg.log_term):
            return  # we hold the leader's log up to its mark: nothing it counted is missing
        taken = (msg.term, msg.index, msg.log_term)
        if taken == self._marks_taken:
            return  # a repeat: the repair it started already ended (or still runs)
        self._marks_taken = taken
        mark = (msg.log_term, msg.index)
        if self._repair_index:
            mark = max(mark, (self._repair_term, self._repair_index))
        self._repair_term, self._repair_index = mark

    def _advance_commit(self, index: int) -> None:
        self._log.commit_to(index)
        self._apply_committed_conf()

    # ---- leader side of replication ----------------------------------------------------------

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._cfg.election_ticks:
            self._election_elapsed = 0
            if self._cfg.check_quorum and not self._check_quorum():
                self._become_follower(self._term, NO_NODE)
                return
            if self._id in self._conf.voters:
                self._transferee = NO_NODE  # a transfer not done within an election timeout
            else:
                self._hand_over()  # removed: try again, maybe with another voter
        if self._heartbeat_elapsed >= self._cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _check_quorum(self) -> bool:
        """Was a quorum of voters active during the last election timeout? Starts the next
        period with every follower inactive."""
        me, progress = self._id, self._progress
        active = quorum.quorum_active(
            self._conf.voters, lambda v: v == me or progress[v].recent_active
        )
        for node, pr in progress.items():
            if node != me:
                pr.recent_active = False
        return active

    def _broadcast_heartbeat(self) -> None:
        commit = self._log.commit
        for node, pr in self._progress.items():
            if node != self._id:
                self._msgs.append(
                    Heartbeat(
                        src=self._id,
                        dst=node,
                        term=self._term,
                        commit=min(commit, pr.match),
                    )
                )

    def _append_own(self, kind: EntryKind, data: bytes) -> None:
        log = self._log
        entry = Entry(index=log.last_index() + 1, term=self._term, kind=kind, data=data)
        log.append(entry)
        if data:
            self._uncommitted_bytes += len(data)
            self._proposed.append((entry.index, len(data)))
        if kind is EntryKind.CONFIG:
            self._conf_entries.append(entry)
        self._append_all = True

    def _mark_append(self, node: int, empty_ok: bool) -> None:
        if empty_ok or node not in self._append_to:
            self._append_to[node] = empty_ok

    def _flush_appends(self) -> None:
        """Send the appends marked since the last Ready: one pass per Ready, so that many
        proposals leave together."""
        if not self._append_all and not self._append_to:
            return
        if self._role is not _LEADER:
            self._append_to.clear()
            self._append_all = False
            return
        marked = self._append_to
        if self._append_all:
            self._append_all = False
            for node, pr in self._progress.items():
                if node != self._id:
                    self._send_appends(node, pr, marked.get(node, False))
        else:
            for node, empty_ok in marked.items():
                target = self._progress.get(node)
                if target is not None and node != self._id:
                    self._send_appends(node, target, empty_ok)
        marked.clear()

    def _send_appends(self, node: int, pr: Progress, empty_ok: bool) -> None:
        commit = self._log.commit
        # An empty append is worth sending when asked for, or to carry a commit index the
        # follower has not seen and can use (etcd's CanBumpCommit).
        bump = commit > pr.sent_commit and pr.sent_commit < pr.next - 1
        at = len(self._msgs)
        if self._send_append(node, pr, empty_ok or bump):
            while pr.state is _REPLICATE and self._send_append(node, pr, False):
                pass
            if pr.repair_index and not isinstance(self._msgs[at], RepairMark):
                self._msgs.insert(at, self._repair_mark(node, pr))  # once, ahead of them

    def _repair_mark(self, node: int, pr: Progress) -> RepairMark:
        """The mark a follower that lost entries we counted is owed (see Progress)."""
        return RepairMark(src=self._id, dst=node, term=self._term, index=pr.repair_index,
                          log_term=pr.repair_term)

    def _send_append(self, node: int, pr: Progress, empty_ok: bool) -> bool:
        """Send one append from pr.next if flow control allows; True if a message left."""
        if pr.is_paused():
            return False
        log = self._log
        next_index = pr.next
        if log.is_compacted(next_index):
            self._send_log_start(node, pr)
            return True
        last = log.last_index()
        if next_index <= last:
            entries, size = log.entries(next_index, last + 1, self._cfg.message_bytes_max)
        elif empty_ok:
            entries, size = [], 0
        else:
            return False
        commit = log.commit
        self._msgs.append(
            AppendRequest(
                src=self._id,
                dst=node,
                term=self._term,
                prev_index=next_index - 1,
                prev_term=log.term_at(next_index - 1),
                entries=tuple(entries),
                commit=commit,
            )
        )
        pr.sent_commit = commit
        if pr.state is _REPLICATE:
            if entries:
                pr.sent_entries(entries[-1].index, size)
        else:
            pr.probe_sent = True
        return True

    def _send_empty_probe(self, node: int, pr: Progress) -> None:
        """An empty append at pr.next - 1 that bypasses a full in-flight window: if all the
        messages that filled it were lost, the follower rejects it and we probe again."""
        log = self._log
        if log.is_compacted(pr.next):
            self._send_log_start(node, pr)
            return
        if pr.repair_index:
            self._msgs.append(self._repair_mark(node, pr))
        self._msgs.append(
            AppendRequest(
                src=self._id,
                dst=node,
                term=self._term,
                prev_index=pr.next - 1,
                prev_term=log.term_at(pr.next - 1),
                entries=(),
                commit=log.commit,
            )
        )
        pr.sent_commit = log.commit

    def _send_log_start(self, node: int, pr: Progress) -> None:
        if pr.state is _REPLICATE:
            pr.become_probe()
        log = self._log
        start = log.first_index() - 1
        if pr.repair_index:
            self._msgs.append(self._repair_mark(node, pr))
        self._msgs.append(
            LogStartRequest(
                src=self._id,
                dst=node,
                term=self._term,
                start_index=start,
                start_term=log.term_at(start),
                commit=log.commit,
                conf=self._conf,
                conf_index=self._conf_index,
            )
        )
        pr.probe_sent = True  # wait for the answer (or a heartbeat's) before retrying

    def _send_timeout_now(self, node: int) -> None:
        self._msgs.append(TimeoutNow(src=self._id, dst=node, term=self._term))

    def _on_append_response(self, msg: AppendResponse) -> None:
        pr = self._progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        if not msg.success and msg.hint_index < pr.match and (
                msg.repairing or self._log.match_term(msg.hint_index, msg.hint_term)):
            # The follower lost entries we counted as matched (damage cut its log on open; or
            # its newest segment was cut short, which it cannot tell from a torn write): what
            # it still holds up to its hint is a prefix of what matched. Probe from there.
            # Without this, a rejection below the match index is taken for a stale one and
            # the probe at the match index is rejected again, forever. An unflagged hint is
            # trusted only where our entry has its term (then the logs agree up to it), so a
            # stale rejection can only lower the match index to an index that truly matches.
            pr.match = msg.hint_index
            if not msg.repairing:
                # A loss storage could not see (a flagged one carries storage's own mark).
                # Every entry we ever sent it is in our log, so our last entry bounds those it
                # may have acknowledged and lost; it must repair up to there (RepairMark).
                pr.repair_term, pr.repair_index = self._log.last_term(), self._log.last_index()
            pr.become_probe()
            self._mark_append(msg.src, True)
            return
        if not msg.success:
            hint = msg.hint_index
            if msg.hint_term > 0:
                # Skip every index where our term is above the follower's: none can match.
                hint = self._log.find_conflict_by_term(msg.hint_index, msg.hint_term)[0]
            if pr.maybe_decr_to(msg.index, hint):
                if pr.state is _REPLICATE:
                    pr.become_probe()
                self._mark_append(msg.src, True)
            return
        updated = pr.maybe_update(msg.index)
        if pr.repair_index and pr.match >= pr.repair_index:
            pr.repair_index = pr.repair_term = 0  # it holds our log up to the mark
        if updated or (pr.match == msg.index and pr.state is _PROBE):
            if pr.state is _PROBE:
                pr.become_replicate()
            else:
                pr.inflights.free_le(msg.index)
            if self._maybe_commit():
                self._on_leader_commit()
            self._mark_append(msg.src, False)
            if msg.src == self._transferee and pr.match == self._log.last_index():
                self._send_timeout_now(msg.src)

    def _on_heartbeat_response(self, msg: HeartbeatResponse) -> None:
        pr = self._progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False  # a paused probe is retried once per heartbeat
        last = self._log.last_index()
        if msg.src == self._transferee and pr.match == last:
            self._send_timeout_now(msg.src)  # again, in case the first one was lost
        if pr.match < last or pr.state is _PROBE:
            if pr.state is _REPLICATE and pr.inflights.full():
                self._send_empty_probe(msg.src, pr)
            else:
                self._mark_append(msg.src, True)

    # ---- commit -------------------------------------------------------------------------------

    def _maybe_commit(self) -> bool:
        """Raft's commit rule: the highest index a quorum of voters holds becomes committed,
        but only if it is an entry of the current term (an older entry is committed only
        indirectly, by committing a later one of this term: Raft paper, figure 8). Returns True
        if the commit index advanced. The leader's own match counts only persisted entries."""
        progress = self._progress
        index = quorum.committed_index(progress[v].match for v in self._conf.voters)
        log = self._log
        if index <= log.commit or log.term_at(index) != self._term:
            return False
        log.commit_to(index)
        return True

    def _on_leader_commit(self) -> None:
        commit = self._log.commit
        proposed = self._proposed
        while proposed and proposed[0][0] <= commit:
            self._uncommitted_bytes -= proposed.popleft()[1]
        self._append_all = True  # followers learn the new commit index
        if self._apply_committed_conf() and self._role is _LEADER and self._maybe_commit():
            self._on_leader_commit()  # a smaller quorum may commit more at once

    # ---- membership -------------------------------------------------------------------------

    def _scan_uncommitted_conf(self) -> None:
        """Find the CONFIG entries above the commit index (once, at start-up)."""
        log = self._log
        lo, last = log.commit + 1, log.last_index()
        while lo <= last:
            entries, _ = log.entries(lo, last + 1, _SCAN_BYTES_MAX)
            for entry in entries:
                if entry.kind is EntryKind.CONFIG:
                    self._conf_entries.append(entry)
            lo = entries[-1].index + 1

    def _apply_committed_conf(self) -> bool:
        """Apply the CONFIG entries the commit index has passed; True if any was."""
        conf_entries, commit = self._conf_entries, self._log.commit
        applied = False
        while conf_entries and conf_entries[0].index <= commit:
            entry = conf_entries.popleft()
            if entry.index > self._conf_index:  # else already reflected (LogStartRequest)
                self._apply_conf_entry(entry)
                applied = True
        return applied

    def _apply_conf_entry(self, entry: Entry) -> None:
        self._conf_index = entry.index
        result = decode_conf_result(entry.data)
        if result is None:  # a bare change (no result carried): apply it as a delta
            try:
                result = apply_conf_change(self._conf, decode_conf_change(entry.data))
            except ConfChangeError:
                return  # it does not apply to the membership we have: nothing to do
        self._conf = result
        if self._role is _LEADER:
            self._leader_conf_changed()

    def _leader_conf_changed(self) -> None:
        conf, progress = self._conf, self._progress
        for node in [n for n in progress if n not in conf.voters and n not in conf.learners]:
            del progress[node]
        next_index = self._log.last_index() + 1
        for members, is_learner in ((conf.voters, False), (conf.learners, True)):
            for node in members:
                pr = progress.get(node)
                if pr is None:
                    progress[node] = self._new_progress(next_index, is_learner=is_learner)
                else:
                    pr.is_learner = is_learner
        if self._transferee not in conf.voters:
            self._transferee = NO_NODE
        if self._id not in conf.voters:
            self._hand_over()

    def _hand_over(self) -> None:
        """The leader's own removal committed. Stepping down at once could strand the group:
        a voter that has not yet learnt that the removal committed still counts us in its
        quorum, and our vote goes to no one with a shorter log than ours. So the leader keeps
        leading without counting itself, drops proposals, and transfers leadership to the
        most caught-up voter; it steps down when that voter's election reaches it."""
        progress = self._progress
        best = max(sorted(self._conf.voters), key=lambda v: progress[v].match)
        self._transferee = NO_NODE
        self.transfer_leadership(best)

    # ---- invariants ---------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Assert this node's own invariants; cheap (O(members)), call it after every step."""
        log = self._log
        log.check()
        conf, role, term = self._conf, self._role, self._term
        assert conf.voters and not conf.voters & conf.learners, conf
        last, last_term = log.last_index(), log.last_term()
        assert last_term <= term, (last_term, term)
        assert log.term_at(log.commit) <= term
        assert self._vote == NO_NODE or term > 0, (self._vote, term)
        assert self._in_flight is None or isinstance(self._in_flight, Ready)
        prev = 0
        for entry in self._conf_entries:
            assert entry.kind is EntryKind.CONFIG and log.commit < entry.index <= last, entry
            assert entry.index > prev
            prev = entry.index
        if role is _LEADER:
            self._check_leader(last, last_term)
            return
        assert not self._progress and self._transferee == NO_NODE
        assert self._uncommitted_bytes == 0 and not self._proposed
        if role is _FOLLOWER:
            assert self._leader != self._id, self._leader
        else:
            assert self._leader == NO_NODE and self._id not in conf.learners, (role, self._leader)
            if role is _CANDIDATE:
                assert self._vote == self._id, (self._vote, self._id)

    def _check_leader(self, last: int, last_term: int) -> None:
        conf, log = self._conf, self._log
        assert self._leader == self._id and self._vote == self._id, (self._leader, self._vote)
        # A removed leader is handing over (see _hand_over).
        assert self._id in conf.voters or self._transferee != NO_NODE, conf
        assert last_term == self._term, (last_term, self._term)  # its EMPTY entry at least
        assert 0 < self._term_start <= last
        if self._term_start >= log.first_index():
            assert log.term_at(self._term_start) == self._term
            assert log.term_at(self._term_start - 1) < self._term
        assert self._progress.keys() == conf.voters | conf.learners, (self._progress, conf)
        for node, pr in self._progress.items():
            assert pr.is_learner == (node in conf.learners), (node, pr)
            if node == self._id:
                assert pr.match <= log.stable_last_index(), (pr, log.stable_last_index())
            else:
                pr.check(last)
        assert self._uncommitted_bytes >= 0
        assert (self._uncommitted_bytes == 0) == (not self._proposed), self._uncommitted_bytes
        assert not self._proposed or self._proposed[0][0] > log.commit, self._proposed[0]
        assert self._transferee == NO_NODE or (
            self._transferee in conf.voters and self._transferee != self._id
        )
