"""Majority arithmetic over a set of voters (learners never count).

Pure functions on small inputs: a Raft group has a handful of voters, so sorting their match
indexes is cheaper than maintaining any incremental structure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = ["VoteResult", "majority", "committed_index", "vote_result", "quorum_active"]


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(voters: int) -> int:
    """How many of `voters` make a quorum."""
    return voters // 2 + 1


def committed_index(matches: Iterable[int]) -> int:
    """The highest index that a majority of voters hold, given each voter's match index:
    the quorum-th largest value. 0 for no voters."""
    ordered = sorted(matches)
    if not ordered:
        return 0
    # The k-th largest of n values, k = n // 2 + 1, sits at position n - k = (n - 1) // 2.
    return ordered[(len(ordered) - 1) // 2]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer be reached."""
    granted = rejected = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def quorum_active(voters: Collection[int], is_active: Callable[[int], bool]) -> bool:
    """True if a majority of voters are active."""
    return sum(1 for v in voters if is_active(v)) >= majority(len(voters))
