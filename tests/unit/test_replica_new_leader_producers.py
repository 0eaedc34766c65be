"""A new leader judges idempotent batches only with every earlier term's batch applied to its
producer state.

A leader elected with an uncommitted tail of an earlier term commits that tail together with
its own first entry. Its commit index covers the tail before the tail is handed out as
committed when both followers acknowledge that entry while the leader is still persisting it
(a slow fsync), or when the tail is handed out in pages (message_bytes_max). A leader that
took produce requests then judged retries against state that lacked the tail: a retry of a
tail batch was appended again (a duplicate), or refused as out of order, which the producer
treats as a lost sequence (a new producer id, and every batch it had in flight sent again:
duplicates).

The leader is a real Replica over a real PartitionLog and RaftNode (voters 1, 2, 3); the test
plays the two followers by stepping their messages into it.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from broker.raft.core import RaftConfig, RaftNode
from broker.raft.messages import AppendResponse, ConfState, HardState, Heartbeat, VoteResponse
from broker.replica.partition import AppendResult, Replica
from broker.replica.producers import BatchSequence, ProducerTable, SequenceCheck
from broker.storage import PartitionLog
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import Record, encode_batch, read_batch_header
from tests.unit.test_replica_duplicates import drive as _drive

PRODUCER_ID = 7


def _win_election(replica: Replica) -> None:
    node = replica.node
    node.campaign()
    _drive(replica)
    node.step(VoteResponse(src=2, dst=1, term=node.term + 1, granted=True, pre_vote=True))
    _drive(replica)
    node.step(VoteResponse(src=2, dst=1, term=node.term, granted=True))


def _leader(tmp_path: Path, config: RaftConfig = RaftConfig()) -> Replica:
    log = PartitionLog(tmp_path)
    log.set_hard_state(HardState(term=0, vote=0, commit=0,
                                 conf=ConfState(voters=frozenset({1, 2, 3}))))
    node = RaftNode(node_id=1, storage=log, rng=random.Random(1), config=config)
    replica = Replica(group_id=5, topic="t", partition=0, node=node, log=log)
    _win_election(replica)
    _drive(replica)
    _ack(replica, 2)
    assert replica.leader_ready
    return replica


def _ack(replica: Replica, follower: int) -> None:
    node = replica.node
    node.step(AppendResponse(src=follower, dst=1, term=node.term, success=True,
                             index=node.last_index))
    _drive(replica)


def _send(replica: Replica, sequence: int) -> asyncio.Future[AppendResult] | AppendResult:
    raw = bytearray(encode_batch([Record(b"k", b"v%d" % sequence, [], 1_700_000_000_000)],
                                 producer_id=PRODUCER_ID, producer_epoch=0,
                                 base_sequence=sequence))
    return replica.append(raw, read_batch_header(raw), -1)


def _step_down(replica: Replica) -> None:
    node = replica.node
    node.step(Heartbeat(src=3, dst=1, term=node.term + 1, commit=0))
    _drive(replica)
    assert not replica.leader_ready


def _regain_with_slow_sync(replica: Replica) -> None:
    """Both followers acknowledge the new term's first entry while the leader is still
    persisting it (the manager steps peer messages during the fsync, between write() and
    finish())."""
    node = replica.node
    _step_down(replica)
    _win_election(replica)
    rd = node.ready()  # carries the new term's EMPTY entry
    replica.write(rd)
    for follower in (2, 3):
        node.step(AppendResponse(src=follower, dst=1, term=node.term, success=True,
                                 index=node.last_index))
    replica.log.sync()
    replica.finish(rd)
    node.advance(rd)


def _regain_with_paged_commits(replica: Replica) -> None:
    """The tail and the new term's first entry are handed out as committed one page (here:
    one entry) per Ready."""
    node = replica.node
    _step_down(replica)
    _win_election(replica)
    _drive(replica)
    node.step(AppendResponse(src=2, dst=1, term=node.term, success=True, index=node.last_index))
    rd = node.ready()  # the first page of committed entries only
    assert rd.committed and rd.committed[-1].index < node.commit_index
    replica.write(rd)
    replica.log.sync()
    replica.finish(rd)
    node.advance(rd)


_PAGED = RaftConfig(message_bytes_max=1)  # at least one entry per page
WAYS = {"slow_sync": (RaftConfig(), _regain_with_slow_sync),
        "paged_commits": (_PAGED, _regain_with_paged_commits)}


def _retry_until_answered(replica: Replica, sequence: int
                          ) -> asyncio.Future[AppendResult] | AppendResult:
    """What a producer does: a NOT_LEADER answer is retried (after the leader's next cycle)."""
    for _ in range(10):
        try:
            return _send(replica, sequence)
        except KafkaError as e:
            assert e.code == ErrorCode.NOT_LEADER_OR_FOLLOWER, e
            _drive(replica)
    raise AssertionError("the leader never took the retry")


def _sequences_in_log(replica: Replica) -> list[int]:
    return [h.base_sequence for h in replica.log.batch_headers(0, replica.log.next_offset)]


@pytest.mark.parametrize("way", sorted(WAYS))
@pytest.mark.parametrize("retried", [(1, 2), (2,)])
def test_a_retry_of_an_earlier_terms_batch_is_a_duplicate_at_a_new_leader(
        tmp_path: Path, retried: tuple[int, ...], way: str) -> None:
    """(2,): the retry of a later tail batch alone must not be refused as out of order."""
    config, regain = WAYS[way]

    async def run() -> None:
        replica = _leader(tmp_path, config)
        first = _send(replica, 0)
        _drive(replica)
        _ack(replica, 2)
        assert isinstance(first, asyncio.Future) and first.result().base_offset == 0
        tail = [_send(replica, s) for s in (1, 2)]  # appended, never acknowledged
        _drive(replica)
        regain(replica)
        for fut in tail:
            assert isinstance(fut, asyncio.Future) and isinstance(fut.exception(), KafkaError)

        retries = [_retry_until_answered(replica, s) for s in retried]
        _drive(replica)
        _ack(replica, 2)
        results = [r if isinstance(r, AppendResult) else r.result() for r in retries]
        assert [r.base_offset for r in results] == list(retried)
        assert _sequences_in_log(replica) == [0, 1, 2], "a retry was appended a second time"
        assert replica.leader_ready

    asyncio.run(run())


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_new_batch_after_the_tail_continues_the_sequence(tmp_path: Path, way: str) -> None:
    """The tail's batches, committed by the new leader, count for sequence checks: the next
    batch is accepted, and a retry of a tail batch is still a duplicate afterwards."""
    config, regain = WAYS[way]

    async def run() -> None:
        replica = _leader(tmp_path, config)
        _send(replica, 0)
        _drive(replica)
        _ack(replica, 2)
        _send(replica, 1)  # the tail
        _drive(replica)
        regain(replica)
        nxt = _retry_until_answered(replica, 2)
        _drive(replica)
        _ack(replica, 2)
        assert isinstance(nxt, asyncio.Future) and nxt.result().base_offset == 2
        again = _send(replica, 1)
        assert isinstance(again, AppendResult) and again.base_offset == 1
        assert _sequences_in_log(replica) == [0, 1, 2]

    asyncio.run(run())


def test_committed_batches_leave_the_pending_layer() -> None:
    """Once committed, a batch is answered from the committed layer (index 0: no waiting on
    an entry of this leadership), and nothing of it stays pending to go stale."""
    t = ProducerTable()
    t.commit(7, BatchSequence(epoch=0, first_seq=0, last_seq=4, base_offset=100))
    t.append_pending(7, BatchSequence(epoch=0, first_seq=5, last_seq=9, base_offset=105,
                                      index=12))
    assert t.check(7, 0, 5, 9) == SequenceCheck(duplicate_of=105, duplicate_index=12)
    t.commit(7, BatchSequence(epoch=0, first_seq=5, last_seq=9, base_offset=105))
    assert t.check(7, 0, 5, 9) == SequenceCheck(duplicate_of=105, duplicate_index=0)
    assert t.check(7, 0, 0, 4) == SequenceCheck(duplicate_of=100, duplicate_index=0)
    assert t.check(7, 0, 10, 14).accept
