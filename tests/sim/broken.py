"""A Raft core with a broken commit rule, for proving that the simulator catches unsafe cores.

`BrokenCommitNode` commits the quorum's match index whatever the term of the entry there, so a
leader may commit an entry of an earlier term by counting its replicas, which the Raft paper's
figure 8 shows can later be overwritten: committed (and acknowledged) entries get lost.
"""

from __future__ import annotations

from broker.raft import quorum
from broker.raft.core import RaftNode

__all__ = ["BrokenCommitNode", "VotesWhileRepairingNode"]


class BrokenCommitNode(RaftNode):
    __slots__ = ()

    def _maybe_commit(self) -> bool:
        index = quorum.committed_index(self._progress[v].match for v in self._conf.voters)
        log = self._log
        if index <= log.commit:
            return False
        log.commit_to(index)  # missing: `and log.term_at(index) == self._term`
        return True


class VotesWhileRepairingNode(RaftNode):
    """Broken on purpose: a node whose damaged log was cut votes by what it kept (forgetting
    its repair mark) and campaigns at once, as if nothing had been lost, so its vote can elect
    a leader lacking an entry it acknowledged."""

    __slots__ = ()

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._repair_index = self._repair_term = 0
