"""Membership changes: validation, application and the CONFIG payload encoding."""

from __future__ import annotations

import pytest

from broker.raft.confchange import (
    ConfChangeError,
    apply_conf_change,
    decode_conf_change,
    decode_conf_result,
    encode_conf_change,
)
from broker.raft.messages import ConfChange, ConfChangeKind, ConfState

ADD, PROMOTE, REMOVE = ConfChangeKind.ADD_LEARNER, ConfChangeKind.PROMOTE, ConfChangeKind.REMOVE


def cs(voters: set[int], learners: set[int] = set()) -> ConfState:  # noqa: B006
    return ConfState(voters=frozenset(voters), learners=frozenset(learners))


def test_add_promote_remove() -> None:
    conf = cs({1, 2, 3})
    conf = apply_conf_change(conf, ConfChange(kind=ADD, node=4))
    assert conf == cs({1, 2, 3}, {4})
    conf = apply_conf_change(conf, ConfChange(kind=PROMOTE, node=4))
    assert conf == cs({1, 2, 3, 4})
    conf = apply_conf_change(conf, ConfChange(kind=REMOVE, node=1))
    assert conf == cs({2, 3, 4})
    conf = apply_conf_change(conf, ConfChange(kind=ADD, node=9))
    assert apply_conf_change(conf, ConfChange(kind=REMOVE, node=9)) == cs({2, 3, 4})


@pytest.mark.parametrize(
    "change",
    [
        ConfChange(kind=ADD, node=1),  # already a voter
        ConfChange(kind=ADD, node=5),  # already a learner
        ConfChange(kind=PROMOTE, node=2),  # not a learner
        ConfChange(kind=PROMOTE, node=9),
        ConfChange(kind=REMOVE, node=9),  # not a member
        ConfChange(kind=ADD, node=0),  # not a node id
    ],
)
def test_invalid_changes_raise(change: ConfChange) -> None:
    with pytest.raises(ConfChangeError):
        apply_conf_change(cs({1, 2}, {5}), change)


def test_cannot_remove_last_voter() -> None:
    with pytest.raises(ConfChangeError):
        apply_conf_change(cs({1}), ConfChange(kind=REMOVE, node=1))


def test_encoding_round_trip_and_determinism() -> None:
    change = ConfChange(kind=PROMOTE, node=7)
    result = cs({3, 1, 7}, {12, 10})
    data = encode_conf_change(change, result)
    assert data == encode_conf_change(change, cs({7, 3, 1}, {10, 12}))
    assert decode_conf_change(data) == change
    assert decode_conf_result(data) == result
    assert data[:9] == b"\x01" + (7).to_bytes(8, "big")
    bare = encode_conf_change(change)
    assert len(bare) == 9 and decode_conf_change(bare) == change
    assert decode_conf_result(bare) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        b"\x09" + bytes(8),  # unknown kind
        encode_conf_change(ConfChange(kind=ADD, node=1), cs({1}))[:-1],  # truncated
        encode_conf_change(ConfChange(kind=ADD, node=1), cs({1})) + b"\x00",  # trailing
        encode_conf_change(ConfChange(kind=ADD, node=1))
        + b"\x00\x00\x00\x00",  # no voters
    ],
)
def test_malformed_payloads_raise(data: bytes) -> None:
    with pytest.raises(ConfChangeError):
        decode_conf_result(data)
