"""Raft messages round-trip through the peer-bus codec; malformed frames raise a typed error."""

from __future__ import annotations

import random

import pytest

from broker.raft.messages import (
    AppendRequest, AppendResponse, ConfState, Entry, EntryKind, Heartbeat, HeartbeatResponse,
    LogStartRequest, RepairMark, TimeoutNow, VoteRequest, VoteResponse,
)
from broker.replica.codec import PeerMessageError, decode_message, encode_message, message_type

MESSAGES = [
    VoteRequest(src=1, dst=2, term=7, last_index=10, last_term=6, pre_vote=True),
    VoteRequest(src=1, dst=2, term=7, last_index=10, last_term=6, transfer=True),
    VoteResponse(src=2, dst=1, term=7, granted=True, pre_vote=True),
    VoteResponse(src=2, dst=1, term=8, granted=False),
    AppendRequest(src=1, dst=3, term=9, prev_index=4, prev_term=8, commit=3, entries=()),
    AppendRequest(
        src=1, dst=3, term=9, prev_index=4, prev_term=8, commit=4,
        entries=(
            Entry(index=5, term=8, kind=EntryKind.DATA, data=b"x" * 100_000),
            Entry(index=6, term=9, kind=EntryKind.EMPTY),
            Entry(index=7, term=9, kind=EntryKind.CONFIG, data=b"\x00\x01"),
        ),
    ),
    AppendResponse(src=3, dst=1, term=9, success=False, index=4, hint_index=2, hint_term=5),
    AppendResponse(src=3, dst=1, term=9, success=True, index=7),
    AppendResponse(src=3, dst=1, term=9, success=False, index=7, hint_index=3, repairing=True),
    Heartbeat(src=1, dst=2, term=3, commit=99),
    HeartbeatResponse(src=2, dst=1, term=3),
    TimeoutNow(src=1, dst=2, term=3),
    LogStartRequest(src=1, dst=2, term=3, start_index=50, start_term=2, commit=60),
    LogStartRequest(src=1, dst=2, term=3, start_index=50, start_term=2, commit=60,
                    conf=ConfState(voters=frozenset({1, 2, 3}), learners=frozenset({4})),
                    conf_index=41),
    RepairMark(src=1, dst=2, term=3, index=(1 << 40) + 7, log_term=3),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: object) -> None:
    frames = encode_message(42, message)  # type: ignore[arg-type]
    group, decoded = decode_message(frames)
    assert group == 42
    assert decoded == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_truncated_and_garbage_frames_raise_typed_error(message: object) -> None:
    frames = encode_message(1, message)  # type: ignore[arg-type]
    head = bytes(frames[0])
    for cut in range(len(head)):
        with pytest.raises(PeerMessageError):
            decode_message([head[:cut], *frames[1:]])
    rng = random.Random(5)
    for _ in range(200):
        junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
                for _ in range(rng.randrange(1, 4))]
        try:
            decode_message(junk)
        except PeerMessageError:
            pass


def test_entry_frame_count_and_length_must_match() -> None:
    m = MESSAGES[5]
    frames = encode_message(1, m)  # type: ignore[arg-type]
    with pytest.raises(PeerMessageError):
        decode_message(frames[:-1])
    with pytest.raises(PeerMessageError):
        decode_message([frames[0], frames[1][:-1], *frames[2:]])


def test_a_repair_mark_is_a_message_of_its_own_that_older_peers_drop() -> None:
    """A peer that predates a message type drops just that message, as we drop types newer
    than ours: the appends sent beside a RepairMark are unchanged and still decode."""
    append = MESSAGES[5]
    mark = RepairMark(src=1, dst=3, term=9, index=7, log_term=9)
    frames = encode_message(1, mark)
    assert len(frames) == 1 and message_type(frames) == 9
    unknown = bytearray(frames[0])
    unknown[1] = 10  # a type from a later version
    with pytest.raises(PeerMessageError, match="unknown message type"):
        decode_message([bytes(unknown)])
    assert decode_message(encode_message(1, append)) == (1, append)
