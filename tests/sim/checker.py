"""Raft's safety properties, checked incrementally as the simulation reports what happens.

The simulator feeds the checker observations (a node became leader, a vote left a node, entries
were written to a log, a hard state became durable, an entry was applied, a value was
acknowledged); each check is O(1) per observation, so it runs after every event. Log Matching is
checked incrementally: every (index, term) ever written anywhere is remembered with its payload
and the term of its predecessor, so two logs that agree on an (index, term) agree on the entry
and, by induction, on the whole prefix. `full_check` cross-checks whole logs (every K events and
at the end) and `final_check` adds what must hold once the cluster has healed.

Every check raises `Violation(invariant, detail)`; the checker's inputs are plain values, so a
test can feed it a hand-made history that breaks one property and watch it fire.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.raft.messages import NO_NODE, Entry, EntryKind, HardState

__all__ = ["Violation", "LogView", "Checker", "INVARIANTS"]

ELECTION_SAFETY = "election-safety"
LOG_MATCHING = "log-matching"
LEADER_COMPLETENESS = "leader-completeness"
COMMITTED_UNSAFE = "committed-entry-unsafe"
STATE_MACHINE_SAFETY = "state-machine-safety"
COMMIT_MONOTONIC = "commit-monotonic"
TERM_MONOTONIC = "term-monotonic"
DURABLE_STATE = "durable-state-monotonic"
DOUBLE_VOTE = "double-vote"
APPLY_ORDER = "apply-order"
ACKED_LOST = "acked-value-lost"
LIVENESS = "liveness"
INVARIANTS = (
    ELECTION_SAFETY, LOG_MATCHING, LEADER_COMPLETENESS, COMMITTED_UNSAFE, STATE_MACHINE_SAFETY,
    COMMIT_MONOTONIC,
    TERM_MONOTONIC, DURABLE_STATE, DOUBLE_VOTE, APPLY_ORDER, ACKED_LOST, LIVENESS,
)

# term_at() answer for an index below the log start: deleted by retention, hence committed.
COMPACTED = -1


class Violation(Exception):
    """A safety or liveness property does not hold."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class LogView:
    """One replica's log as the full checks see it."""

    node: int
    start_index: int  # entries begin at start_index + 1 (below: deleted, committed)
    entries: Sequence[Entry]
    applied: int  # entries up to here are committed and applied on this node


@dataclass(slots=True)
class _Group:
    leaders: dict[int, int] = field(default_factory=dict)  # term -> its leader
    votes: dict[tuple[int, int], int] = field(default_factory=dict)  # (voter, term) -> candidate
    durable: dict[int, HardState] = field(default_factory=dict)  # node -> last durable state
    volatile: dict[int, tuple[int, int]] = field(default_factory=dict)  # node -> (term, commit)
    # (index, term) -> (kind, data, term of index-1) for every entry ever written to any log
    written: dict[tuple[int, int], tuple[EntryKind, bytes, int]] = field(default_factory=dict)
    committed: dict[int, Entry] = field(default_factory=dict)  # index -> the committed entry
    apply_next: dict[int, int] = field(default_factory=dict)  # node -> next index it applies
    commit_marks: dict[int, tuple[int, int]] = field(default_factory=dict)  # leader term ->
    # (its highest commit index, term of that entry)
    acked: dict[bytes, int] = field(default_factory=dict)  # value -> index it was acked at


class Checker:
    """Safety checks for any number of Raft groups; see the module docstring."""

    __slots__ = ("_groups", "checks")

    def __init__(self) -> None:
        self._groups: dict[int, _Group] = {}
        self.checks = 0  # observations checked, for the summary

    def _group(self, group: int) -> _Group:
        st = self._groups.get(group)
        if st is None:
            st = self._groups[group] = _Group()
        return st

    # ---- elections and votes ----
    def leader(self, group: int, node: int, term: int) -> None:
        """`node` is leader in `term` (Election Safety: at most one per term)."""
        self.checks += 1
        leaders = self._group(group).leaders
        other = leaders.setdefault(term, node)
        if other != node:
            raise Violation(
                ELECTION_SAFETY, f"group {group} term {term}: leaders {other} and {node}"
            )

    def vote_granted(self, group: int, voter: int, term: int, candidate: int) -> None:
        """A (non-pre-)vote for `candidate` in `term` left `voter`: at most one per term, ever,
        across restarts."""
        self.checks += 1
        votes = self._group(group).votes
        other = votes.setdefault((voter, term), candidate)
        if other != candidate:
            raise Violation(
                DOUBLE_VOTE,
                f"group {group}: node {voter} voted for {other} and {candidate} in term {term}",
            )

    # ---- term, vote and commit, volatile and durable ----
    def observe(self, group: int, node: int, term: int, commit: int) -> None:
        """A running node's term and commit index: neither regresses while it is up."""
        volatile = self._group(group).volatile
        prev = volatile.get(node)
        if prev is not None:
            if term < prev[0]:
                raise Violation(
                    TERM_MONOTONIC, f"group {group} node {node}: term {prev[0]} -> {term}"
                )
            if commit < prev[1]:
                raise Violation(
                    COMMIT_MONOTONIC, f"group {group} node {node}: commit {prev[1]} -> {commit}"
                )
        volatile[node] = (term, commit)

    def restarted(self, group: int, node: int, hard_state: HardState, apply_from: int) -> None:
        """`node` restarted from `hard_state` (what it found durable) and will apply from
        `apply_from`. The volatile history restarts; the durable one must still be monotonic."""
        st = self._group(group)
        st.volatile.pop(node, None)
        st.apply_next[node] = apply_from
        self.durable_hard_state(group, node, hard_state)

    def damaged(self, group: int, node: int) -> None:
        """`node`'s storage lost a synced suffix (damage cut on open): its durable commit may
        go back once; term and vote are kept, and everything else must still hold."""
        self._group(group).durable.pop(node, None)

    def durable_hard_state(self, group: int, node: int, hs: HardState) -> None:
        """A hard state became durable: term and commit never regress, and the vote never
        changes within a term once cast."""
        self.checks += 1
        durable = self._group(group).durable
        prev = durable.get(node)
        durable[node] = hs
        if prev is None or prev is hs:
            return
        where = f"group {group} node {node}"
        if hs.term < prev.term:
            raise Violation(DURABLE_STATE, f"{where}: durable term {prev.term} -> {hs.term}")
        if hs.commit < prev.commit:
            raise Violation(DURABLE_STATE, f"{where}: durable commit {prev.commit} -> {hs.commit}")
        if hs.term == prev.term and prev.vote != NO_NODE and hs.vote != prev.vote:
            raise Violation(
                DOUBLE_VOTE, f"{where}: durable vote {prev.vote} -> {hs.vote} in term {hs.term}"
            )

    # ---- logs ----
    def written(self, group: int, node: int, prev_term: int, entries: Sequence[Entry]) -> None:
        """`entries` were written to `node`'s log after an entry of term `prev_term` (the
        log-start term when they follow a reset). Log Matching, incrementally: an (index, term)
        always names the same payload and the same predecessor term."""
        written = self._group(group).written
        self.checks += len(entries)
        for e in entries:
            if e.term < prev_term:
                raise Violation(
                    LOG_MATCHING,
                    f"group {group} node {node}: term decreases to {e.term} at index {e.index}",
                )
            key = (e.index, e.term)
            seen = written.get(key)
            if seen is None:
                written[key] = (e.kind, e.data, prev_term)
            elif seen[2] != prev_term or seen[0] != e.kind or seen[1] != e.data:
                raise Violation(
                    LOG_MATCHING,
                    f"group {group} node {node}: entry (index {e.index}, term {e.term}) is "
                    f"{e.kind.name} {e.data!r} after term {prev_term}; elsewhere it is "
                    f"{seen[0].name} {seen[1]!r} after term {seen[2]}",
                )
            prev_term = e.term

    def log_reset(self, group: int, node: int, start_index: int) -> None:
        """`node`'s log restarted after `start_index` (all committed): it applies from there."""
        apply_next = self._group(group).apply_next
        apply_next[node] = max(apply_next.get(node, 1), start_index + 1)

    def applied(self, group: int, node: int, entry: Entry) -> None:
        """`node` applied `entry` (State Machine Safety: one entry per committed index)."""
        self.checks += 1
        st = self._group(group)
        index = entry.index
        expected = st.apply_next.get(node, 1)
        if index != expected:
            raise Violation(
                APPLY_ORDER, f"group {group} node {node}: applied {index}, expected {expected}"
            )
        st.apply_next[node] = index + 1
        other = st.committed.setdefault(index, entry)
        if other is not entry and other != entry:
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"group {group} index {index}: node {node} applied (term {entry.term}, "
                f"{entry.data!r}) but (term {other.term}, {other.data!r}) was applied before",
            )

    def acked(self, group: int, value: bytes, index: int) -> None:
        """A client was told `value` is committed at `index`."""
        st = self._group(group)
        entry = st.committed.get(index)
        if entry is None or entry.data != value:
            raise Violation(
                ACKED_LOST, f"group {group}: {value!r} acked at {index} which holds {entry}"
            )
        st.acked.setdefault(value, index)

    # ---- Leader Completeness ----
    def leader_commit(self, group: int, term: int, commit: int, entry_term: int) -> None:
        """The leader of `term` has commit index `commit`, an entry of term `entry_term`."""
        marks = self._group(group).commit_marks
        prev = marks.get(term)
        if prev is None or commit > prev[0]:
            marks[term] = (commit, entry_term)

    def required_of_leader(self, group: int, term: int) -> tuple[int, int] | None:
        """(index, term) of the highest entry committed by a leader of an earlier term: a
        leader of `term` must hold it (and, by Log Matching, everything before it)."""
        best: tuple[int, int] | None = None
        for t, mark in self._group(group).commit_marks.items():
            if t < term and (best is None or mark[0] > best[0]):
                best = mark
        return best

    def leader_log(
        self, group: int, node: int, term: int, term_at: Callable[[int], int | None]
    ) -> None:
        """Check the log of `node`, leader of `term`; `term_at(i)` is its entry's term at `i`,
        None beyond its log, COMPACTED below its start."""
        self.checks += 1
        need = self.required_of_leader(group, term)
        if need is None:
            return
        index, entry_term = need
        have = term_at(index)
        if have != entry_term and have != COMPACTED:
            raise Violation(
                LEADER_COMPLETENESS,
                f"group {group}: leader {node} of term {term} has term {have} at index {index}, "
                f"committed earlier with term {entry_term}",
            )

    def commit_safe(
        self, group: int, index: int, term: int,
        logs: Sequence[tuple[int, bool, int, int, bool]],
    ) -> None:
        """Entry (`index`, `term`) was just committed. `logs` has, for every voter, (node,
        whether its log holds that entry, the last term and last index it votes by, whether
        it is repairing after damage). Raft's safety proof shows more than Leader
        Completeness: a log lacking a committed entry is strictly less up to date than every
        log of the quorum that committed it, so it can never gather a quorum of votes. A commit
        that leaves such a log electable can be lost later (figure 8 of the Raft paper): report
        it now, before the loss needs more faults to show. A repairing node may have lost the
        entry it acknowledged; until its repair ends it cannot campaign, and it votes as if
        its log ended at the larger of its last entry and its repair mark, which is what it
        is listed with here (so it counts as refusing exactly the logs below that)."""
        self.checks += 1
        quorum = len(logs) // 2 + 1
        for node, holds, last_term, last_index, repairing in logs:
            if holds or repairing:
                continue
            ahead = sum(
                1 for _, _, t, i, _ in logs if t > last_term or (t == last_term and i > last_index)
            )
            if ahead < quorum:
                raise Violation(
                    COMMITTED_UNSAFE,
                    f"group {group}: (index {index}, term {term}) committed, but node {node} "
                    f"lacks it and its log (last term {last_term}, index {last_index}) is at "
                    f"least as up to date as {len(logs) - ahead} of {len(logs)} logs",
                )

    # ---- whole-log cross-checks ----
    def full_check(self, group: int, views: Sequence[LogView]) -> None:
        """Log Matching between every pair of logs; every applied prefix agrees with the
        committed entries; every acked value is in place in every log whose applied index
        covers it."""
        st = self._group(group)
        for i, a in enumerate(views):
            for b in views[i + 1 :]:
                _check_pair(group, a, b)
        by_index = {index: value for value, index in st.acked.items()}
        for v in views:
            top = v.start_index + len(v.entries)
            if v.applied > top:
                raise Violation(
                    STATE_MACHINE_SAFETY,
                    f"group {group} node {v.node}: applied {v.applied} but the log ends at {top}",
                )
            top = v.applied
            for index in range(v.start_index + 1, top + 1):
                e = v.entries[index - v.start_index - 1]
                value = by_index.get(index)
                if value is not None and e.data != value:
                    raise Violation(
                        ACKED_LOST,
                        f"group {group} node {v.node}: acked {value!r} at {index}, log has {e}",
                    )
                c = st.committed.get(index)
                if c is not None and c is not e and c != e:
                    raise Violation(
                        STATE_MACHINE_SAFETY,
                        f"group {group} node {v.node}: index {index} holds {e}, committed {c}",
                    )

    def commit_covers(
        self, group: int, node: int, commit: int, term_at: Callable[[int], int | None]
    ) -> None:
        """Every acked value at or below `commit` is still in `node`'s log: the entry at its
        index has the term it was acked with (Log Matching makes the payload follow).
        `term_at` reads the node's whole log, entries not yet written to storage included."""
        st = self._group(group)
        for index in st.acked.values():
            if index > commit:
                continue
            have = term_at(index)
            want = st.committed[index].term
            if have != want and have != COMPACTED:
                raise Violation(
                    ACKED_LOST,
                    f"group {group} node {node}: commit {commit} covers the value acked at "
                    f"{index} (term {want}), but its log has term {have} there",
                )

    def final_check(self, group: int, views: Sequence[LogView]) -> None:
        """After healing: the full check, and every acked value is applied on every node."""
        self.full_check(group, views)
        st = self._group(group)
        for value, index in st.acked.items():
            for v in views:
                if v.applied < index:
                    raise Violation(
                        ACKED_LOST,
                        f"group {group} node {v.node}: acked {value!r} at {index} is not "
                        f"applied (applied {v.applied})",
                    )

    def acked_count(self) -> int:
        return sum(len(st.acked) for st in self._groups.values())


def _check_pair(group: int, a: LogView, b: LogView) -> None:
    """Log Matching between two logs: once they differ at an index, they never again hold
    entries of the same term at the same index."""
    lo = max(a.start_index, b.start_index) + 1
    hi = min(a.start_index + len(a.entries), b.start_index + len(b.entries))
    diverged_at = 0
    for index in range(lo, hi + 1):
        ea = a.entries[index - a.start_index - 1]
        eb = b.entries[index - b.start_index - 1]
        if ea is eb:
            if diverged_at:
                raise _pair_violation(group, a, b, index, diverged_at)
            continue
        if ea.term == eb.term:
            if diverged_at or ea != eb:
                raise _pair_violation(group, a, b, index, diverged_at or index)
        elif not diverged_at:
            diverged_at = index


def _pair_violation(group: int, a: LogView, b: LogView, index: int, diverged_at: int) -> Violation:
    return Violation(
        LOG_MATCHING,
        f"group {group}: nodes {a.node} and {b.node} both hold term "
        f"{a.entries[index - a.start_index - 1].term} at index {index} but differ at "
        f"index {diverged_at}",
    )
