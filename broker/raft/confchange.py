"""Single-server membership changes: validation, application and the CONFIG entry payload.

Payload of a CONFIG entry (big-endian, deterministic):

    kind    u8    ConfChangeKind
    node    u64   the node the change is about
    -- optional, always written by the core --
    voters  u16   number of voters in the resulting membership
    learners u16  number of learners in the resulting membership
    ids     u64 * (voters + learners)   voters ascending, then learners ascending

The resulting membership is carried so that applying a committed CONFIG entry is idempotent
("membership := result"): a follower moved to the leader's log start (`LogStartRequest`) adopts
the leader's current membership, and the CONFIG entries it then commits must not be re-applied
on top of it as deltas. The leader computes the result when it proposes; that is exact because
it proposes only when every earlier CONFIG entry in its log is committed.
"""

from __future__ import annotations

import struct

from broker.raft.messages import ConfChange, ConfChangeKind, ConfState

__all__ = [
    "ConfChangeError",
    "apply_conf_change",
    "encode_conf_change",
    "decode_conf_change",
    "decode_conf_result",
]

_HEAD = struct.Struct(">BQ")
_COUNTS = struct.Struct(">HH")
_ID = struct.Struct(">Q")
_NODE_MAX = (1 << 64) - 1
_MEMBERS_MAX = 0xFFFF


class ConfChangeError(ValueError):
    """A membership change that does not apply to the current membership, or a malformed
    CONFIG payload."""


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The membership after `change`; raises ConfChangeError if it does not apply."""
    node = change.node
    if not 0 < node <= _NODE_MAX:
        raise ConfChangeError(f"node id out of range: {node}")
    voters, learners = conf.voters, conf.learners
    if change.kind is ConfChangeKind.ADD_LEARNER:
        if node in voters or node in learners:
            raise ConfChangeError(f"node {node} is already a member")
        return ConfState(voters=voters, learners=learners | {node})
    if change.kind is ConfChangeKind.PROMOTE:
        if node not in learners:
            raise ConfChangeError(f"node {node} is not a learner")
        return ConfState(voters=voters | {node}, learners=learners - {node})
    if change.kind is ConfChangeKind.REMOVE:
        if node in learners:
            return ConfState(voters=voters, learners=learners - {node})
        if node not in voters:
            raise ConfChangeError(f"node {node} is not a member")
        if len(voters) == 1:
            raise ConfChangeError(f"cannot remove the last voter {node}")
        return ConfState(voters=voters - {node}, learners=learners)
    raise ConfChangeError(f"unknown change kind {change.kind!r}")


def encode_conf_change(change: ConfChange, result: ConfState | None = None) -> bytes:
    """The CONFIG payload for `change`, with the resulting membership when given."""
    head = _HEAD.pack(int(change.kind), change.node)
    if result is None:
        return head
    voters, learners = sorted(result.voters), sorted(result.learners)
    if len(voters) > _MEMBERS_MAX or len(learners) > _MEMBERS_MAX:
        raise ConfChangeError("membership too large to encode")
    ids = b"".join(_ID.pack(n) for n in voters + learners)
    return head + _COUNTS.pack(len(voters), len(learners)) + ids


def decode_conf_change(data: bytes) -> ConfChange:
    """The change a CONFIG payload describes; raises ConfChangeError if malformed."""
    if len(data) < _HEAD.size:
        raise ConfChangeError(f"CONFIG payload too short: {len(data)} bytes")
    kind, node = _HEAD.unpack_from(data)
    try:
        change_kind = ConfChangeKind(kind)
    except ValueError:
        raise ConfChangeError(f"unknown change kind {kind}") from None
    return ConfChange(kind=change_kind, node=node)


def decode_conf_result(data: bytes) -> ConfState | None:
    """The membership a CONFIG payload results in, or None if the payload does not carry it;
    raises ConfChangeError if malformed."""
    decode_conf_change(data)
    if len(data) == _HEAD.size:
        return None
    if len(data) < _HEAD.size + _COUNTS.size:
        raise ConfChangeError("CONFIG payload truncated in its membership")
    n_voters, n_learners = _COUNTS.unpack_from(data, _HEAD.size)
    offset = _HEAD.size + _COUNTS.size
    if len(data) != offset + _ID.size * (n_voters + n_learners):
        raise ConfChangeError("CONFIG payload length does not match its membership")
    ids = [_ID.unpack_from(data, offset + _ID.size * i)[0] for i in range(n_voters + n_learners)]
    voters, learners = frozenset(ids[:n_voters]), frozenset(ids[n_voters:])
    if not voters or len(voters) != n_voters or len(learners) != n_learners or voters & learners:
        raise ConfChangeError("CONFIG payload holds an invalid membership")
    return ConfState(voters=voters, learners=learners)
