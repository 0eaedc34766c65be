"""A partition leader answers an idempotent producer's retry with the original's offset, but
never before the original is committed: a retry that reaches a leader whose first copy is still
uncommitted (a paused leader resuming, a slow quorum) must not acknowledge a write that a lost
leadership can still truncate.

The leader here is a real Replica over a real PartitionLog and RaftNode (voters 1, 2, 3); the
test plays the two followers by stepping their messages into it.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from broker.raft.core import RaftNode
from broker.raft.messages import AppendResponse, ConfState, HardState, Heartbeat, VoteResponse
from broker.replica.partition import AppendResult, Replica
from broker.storage import PartitionLog
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import Record, encode_batch, read_batch_header


def drive(replica: Replica) -> None:
    """Run the replica's Readies as the manager does (persist, sync, apply, advance)."""
    node = replica.node
    while node.has_ready():
        rd = node.ready()
        replica.write(rd)
        replica.log.sync()
        replica.finish(rd)
        node.advance(rd)


def _leader(tmp_path: Path) -> Replica:
    log = PartitionLog(tmp_path)
    log.set_hard_state(HardState(term=0, vote=0, commit=0,
                                 conf=ConfState(voters=frozenset({1, 2, 3}))))
    node = RaftNode(node_id=1, storage=log, rng=random.Random(1))
    replica = Replica(group_id=5, topic="t", partition=0, node=node, log=log)
    node.campaign()
    drive(replica)
    node.step(VoteResponse(src=2, dst=1, term=node.term + 1, granted=True, pre_vote=True))
    drive(replica)
    node.step(VoteResponse(src=2, dst=1, term=node.term, granted=True))
    drive(replica)
    node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=node.last_index))
    drive(replica)
    assert replica.leader_ready
    return replica


def _batch() -> tuple[bytearray, object]:
    raw = bytearray(encode_batch([Record(b"k", b"v", [], 1_700_000_000_000)], producer_id=7, producer_epoch=0,
                                 base_sequence=0))
    return raw, read_batch_header(raw)


def _send(replica: Replica) -> asyncio.Future[AppendResult] | AppendResult:
    raw, header = _batch()
    return replica.append(raw, header, -1)  # type: ignore[arg-type]


def test_a_retry_of_an_uncommitted_batch_waits_for_the_commit(tmp_path: Path) -> None:
    async def run() -> None:
        replica = _leader(tmp_path)
        first = _send(replica)
        drive(replica)
        retry = _send(replica)
        assert isinstance(first, asyncio.Future) and isinstance(retry, asyncio.Future)
        assert not retry.done(), "a retry was acknowledged before its original was committed"
        node = replica.node
        node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=node.last_index))
        drive(replica)
        assert first.result() == retry.result()
        again = _send(replica)  # committed now: answered at once, same offset
        assert again == first.result()
        assert replica.log.last_index() == node.last_index  # the retries appended nothing

    asyncio.run(run())


def test_a_retry_behind_later_writes_is_answered_in_index_order(tmp_path: Path) -> None:
    """A retry of an early batch waits behind later, uncommitted writes of another producer;
    a partial commit answers exactly the writes it covers, the retry with its original."""
    async def run() -> None:
        replica = _leader(tmp_path)
        node = replica.node
        first = _send(replica)
        drive(replica)
        first_index = node.last_index
        later = []
        for pid in (8, 9):
            raw = bytearray(encode_batch([Record(b"k", b"w", [], 1_700_000_000_000)],
                                         producer_id=pid, producer_epoch=0, base_sequence=0))
            later.append(replica.append(raw, read_batch_header(raw), -1))
            drive(replica)
        retry = _send(replica)  # waits on first_index, behind the two later writes
        node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=first_index))
        drive(replica)
        assert isinstance(first, asyncio.Future) and isinstance(retry, asyncio.Future)
        assert retry.done() and retry.result() == first.result()
        assert not any(f.done() for f in later)  # type: ignore[union-attr]
        node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=node.last_index))
        drive(replica)
        offsets = [f.result().base_offset for f in later]  # type: ignore[union-attr]
        assert offsets == [first.result().base_offset + 1, first.result().base_offset + 2]

    asyncio.run(run())


def test_a_retry_fails_with_its_original_when_leadership_is_lost(tmp_path: Path) -> None:
    async def run() -> None:
        replica = _leader(tmp_path)
        first = _send(replica)
        drive(replica)
        retry = _send(replica)
        node = replica.node
        node.step(Heartbeat(src=3, dst=1, term=node.term + 1, commit=0))  # a new leader
        drive(replica)
        for fut in (first, retry):
            assert isinstance(fut, asyncio.Future)
            with pytest.raises(KafkaError):
                fut.result()

    asyncio.run(run())


def test_a_fetch_past_the_high_watermark_within_the_log_reads_nothing_yet(tmp_path: Path) -> None:
    """Kafka's leader answers OFFSET_OUT_OF_RANGE only outside [log start, log end]; an offset
    appended but not yet committed reads empty (the fetch long-polls), so a consumer never
    resets its position over a commit that is merely late."""
    async def run() -> None:
        replica = _leader(tmp_path)
        committed = replica.high_watermark
        first = _send(replica)
        drive(replica)  # appended, no follower has acknowledged it
        assert replica.high_watermark == committed
        assert replica.log.next_offset == committed + 1
        assert replica.read(committed, 1 << 20) == []
        assert replica.read(committed + 1, 1 << 20) == []  # the log end itself
        with pytest.raises(KafkaError) as past:
            replica.read(committed + 2, 1 << 20)
        assert past.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
        node = replica.node
        node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=node.last_index))
        drive(replica)
        assert isinstance(first, asyncio.Future) and first.done()
        assert replica.high_watermark == committed + 1
        assert [read_batch_header(b).base_offset for b in replica.read(committed, 1 << 20)] \
            == [committed]

    asyncio.run(run())
