"""RaftNode: one member of one Raft group, sans-IO (the public surface; see messages.py).

INTERFACE CONTRACT (implementation pending): the simulator and the replica driver rely on
exactly these names and signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from broker.raft.messages import ConfChange, Message, ProposeResult, Ready, SoftState
from broker.raft.storage import LogStorage

__all__ = ["RaftConfig", "RaftNode", "ProposeResult", "RandomSource"]


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


class RaftNode:
    def __init__(
        self, *, node_id: int, storage: LogStorage, rng: RandomSource, config: RaftConfig
    ) -> None:
        """Restores term/vote/commit/membership from storage.initial_state() (which must exist:
        a new group is bootstrapped by persisting HardState(term=0, vote=0, commit=0, conf=...))."""
        raise NotImplementedError

    def tick(self) -> None: ...
    def step(self, msg: Message) -> None: ...
    def propose(self, data: bytes) -> ProposeResult: ...
    def propose_conf_change(self, change: ConfChange) -> ProposeResult: ...
    def transfer_leadership(self, to: int) -> None: ...
    def campaign(self) -> None: ...
    def report_unreachable(self, node: int) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, ready: Ready) -> None: ...
    def check_invariants(self) -> None: ...

    @property
    def soft_state(self) -> SoftState: ...
    @property
    def term(self) -> int: ...
    @property
    def commit_index(self) -> int: ...
