"""What a leader knows about each follower's log, and the flow control that bounds what it sends.

A follower's `Progress` is in one of two states (as in etcd's raft `tracker`):

- PROBE: the leader does not know where the follower's log matches its own. It sends one append
  at a time (`probe_sent` pauses it until a response or a heartbeat response arrives) and walks
  `next` back on rejections, guided by the follower's hints.
- REPLICATE: the follower's log is known to match up to `match`. The leader streams appends
  optimistically (`next` moves as soon as a message leaves), bounded by `Inflights`: at most
  `count_max` unacknowledged messages and, once `bytes_max` payload bytes are outstanding, no more.

Invariants (checked by `check`): match < next; in PROBE nothing is in flight; in-flight indexes
are increasing, above `match` and below `next`.
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Inflights", "Progress", "ProgressState"]


class Inflights:
    """The unacknowledged appends to one follower: last entry index and payload bytes of each,
    oldest first. Full when `count_max` messages or at least `bytes_max` bytes are in flight
    (so one message may take the byte total past the limit, as a message always carries at
    least one entry); the leader sends nothing more until acknowledgements free some."""

    __slots__ = ("count_max", "bytes_max", "_indexes", "_sizes", "bytes")

    def __init__(self, count_max: int, bytes_max: int) -> None:
        assert count_max >= 1 and bytes_max >= 1
        self.count_max = count_max
        self.bytes_max = bytes_max
        self._indexes: deque[int] = deque()
        self._sizes: deque[int] = deque()
        self.bytes = 0  # sum of _sizes

    def __len__(self) -> int:
        return len(self._indexes)

    def full(self) -> bool:
        return len(self._indexes) >= self.count_max or self.bytes >= self.bytes_max

    def add(self, index: int, size: int) -> None:
        """Record a message whose last entry is `index`, carrying `size` payload bytes."""
        assert not self.full(), "add to full inflights"
        assert not self._indexes or index > self._indexes[-1], (index, self._indexes[-1])
        self._indexes.append(index)
        self._sizes.append(size)
        self.bytes += size

    def free_le(self, index: int) -> None:
        """Forget every message whose last entry is <= `index` (acknowledged)."""
        indexes = self._indexes
        while indexes and indexes[0] <= index:
            indexes.popleft()
            self.bytes -= self._sizes.popleft()

    def reset(self) -> None:
        self._indexes.clear()
        self._sizes.clear()
        self.bytes = 0

    def first(self) -> int:
        """Last entry index of the oldest message in flight; 0 when empty."""
        return self._indexes[0] if self._indexes else 0

    def last(self) -> int:
        """Last entry index of the newest message in flight; 0 when empty."""
        return self._indexes[-1] if self._indexes else 0

    def check(self) -> None:
        assert len(self._indexes) == len(self._sizes)
        assert len(self._indexes) <= self.count_max, (len(self._indexes), self.count_max)
        assert self.bytes == sum(self._sizes), (self.bytes, sum(self._sizes))
        # Only a message that found the window not full was added: without the newest one
        # the window was below the byte limit.
        if self._sizes:
            assert self.bytes - self._sizes[-1] < self.bytes_max, (self.bytes, self.bytes_max)
        prev = 0
        for index in self._indexes:
            assert index > prev, list(self._indexes)
            prev = index


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"


class Progress:
    """The leader's view of one member (itself included). Read-only outside the core."""

    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "recent_active",
        "is_learner",
        "sent_commit",
        "inflights",
        "repair_index",
        "repair_term",
    )

    def __init__(
        self, *, next_index: int, is_learner: bool, count_max: int, bytes_max: int
    ) -> None:
        self.match = 0  # highest index known to match the leader's log
        self.next = next_index  # index of the next entry to send
        self.state = ProgressState.PROBE
        self.probe_sent = False  # PROBE: an append is out, wait for its answer (or a heartbeat's)
        self.recent_active = True  # heard from within the current check-quorum period
        self.is_learner = is_learner
        self.sent_commit = 0  # highest commit index sent to this follower
        self.inflights = Inflights(count_max, bytes_max)
        # The follower lost entries counted in `match`: (repair_term, repair_index), the
        # leader's last entry when it learnt so, is sent to it with every append (RepairMark)
        # until `match` reaches it. 0: none owed.
        self.repair_index = 0
        self.repair_term = 0

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"probe_sent={self.probe_sent}, inflight={len(self.inflights)}, "
            f"learner={self.is_learner}, repair_index={self.repair_index})"
        )

    def is_paused(self) -> bool:
        """True when the leader must not send this follower another append now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        return self.inflights.full()

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """A success response says the follower matches up to `index`. Returns True if that
        raised `match` (a stale or duplicate response returns False)."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        if self.next <= index:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append anchored at `rejected`; the follower's log can match at
        most up to `match_hint`. Returns False if the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # an append older than what has since matched
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, last_index: int, size: int) -> None:
        """An append carrying entries up to `last_index` (`size` payload bytes) left."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        else:
            self.probe_sent = True

    def check(self, last_index: int) -> None:
        assert 0 <= self.match < self.next, self
        assert self.repair_index <= last_index and (self.repair_index > self.match
                                                    or not self.repair_index), (self, last_index)
        assert self.match <= last_index, (self, last_index)
        assert self.next <= last_index + 1, (self, last_index)
        self.inflights.check()
        if self.state is ProgressState.PROBE:
            assert len(self.inflights) == 0, self
        elif len(self.inflights):
            assert self.inflights.first() > self.match, self
            assert self.inflights.last() < self.next, self
