"""Majority arithmetic: committed index, vote tallies, active quorums."""

from __future__ import annotations

import pytest

from broker.raft.quorum import (
    VoteResult,
    committed_index,
    majority,
    quorum_active,
    vote_result,
)


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        ([], 0),
        ([7], 7),
        ([3, 9], 3),  # both needed
        ([1, 5, 9], 5),
        ([9, 1, 5], 5),
        ([2, 2, 8, 8], 2),  # three of four
        ([1, 4, 6, 8], 4),
        ([10, 1, 7, 3, 9], 7),  # three of five
        ([0, 0, 0, 5, 5], 0),
    ],
)
def test_committed_index_is_the_quorum_th_largest(matches: list[int], expected: int) -> None:
    assert committed_index(matches) == expected


def test_majority() -> None:
    assert [majority(n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


def test_vote_result() -> None:
    voters = {1, 2, 3}
    assert vote_result(voters, {1: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 2: False}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: False, 3: False}) is VoteResult.LOST
    # Answers from non-voters (learners, removed nodes) do not count.
    assert vote_result(voters, {1: True, 4: True, 5: True}) is VoteResult.PENDING
    assert vote_result({1}, {1: True}) is VoteResult.WON
    four = {1, 2, 3, 4}
    assert vote_result(four, {1: True, 2: True}) is VoteResult.PENDING
    assert vote_result(four, {1: False, 2: False}) is VoteResult.LOST


def test_quorum_active() -> None:
    active = {1, 3}
    assert quorum_active({1, 2, 3}, active.__contains__)
    assert not quorum_active({1, 2, 3, 4}, active.__contains__)
    assert quorum_active({1}, active.__contains__)
