"""An error while the manager drives one replica (a tick, applying a committed entry, stepping a
message) takes that replica alone offline: the manager's loops go on driving every other
group. The errors here are not storage errors the manager expects (LogError, OSError): a log
that latched and shrank to its durable part used to answer reads of the cut range with the
Raft storage's UnavailableError (a LookupError), and an apply callback may have a bug.

Real logs on real files and a real ReplicaManager running its loops; the peer bus is an outbox.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from broker.raft.messages import ConfState, Entry, EntryKind, HardState, Heartbeat
from broker.raft.storage import UnavailableError
from broker.replica.codec import encode_message
from broker.replica.manager import ReplicaManager
from broker.replica.partition import Replica
from broker.storage import PartitionLog
from broker.wire.records import Record, encode_batch, read_batch_header
from tests.unit.test_replica_snapshots import CONFIG, write_log
from tests.unit.test_replica_storage_errors import make_manager, wait_for


class UnreadableTerms(PartitionLog):
    """A real log whose term reads fail, once `broken` is set, the way a log cut back to its
    durable part answered reads of the cut range."""

    broken = False

    def term_at(self, index: int) -> int:
        if self.broken:
            raise UnavailableError(index)
        return super().term_at(index)


def two_voter_log(path: Path) -> None:
    """A log of voters {1, 2} with nothing in it: node 1 campaigns after an election timeout
    (reading its last term) and never wins (nobody answers)."""
    with PartitionLog(path, CONFIG) as log:
        log.set_hard_state(HardState(term=1, vote=0, commit=0,
                                     conf=ConfState(voters=frozenset({1, 2}))))


def fresh_single_voter_log(path: Path) -> PartitionLog:
    """A new group of voter {1} only: it needs ticks to elect itself."""
    log = PartitionLog(path, CONFIG)
    log.set_hard_state(HardState(term=0, vote=0, commit=0, conf=ConfState(voters=frozenset({1}))))
    return log


async def append_one(replica: Replica) -> None:
    """Produce one batch with acks=all and wait for its commit: a cycle ran for it."""
    batch = bytearray(encode_batch([Record(b"k", b"v", [], 1_700_000_000_000)]))
    result = replica.append(batch, read_batch_header(batch), acks=-1)
    assert isinstance(result, asyncio.Future)
    await asyncio.wait_for(result, timeout=20)


def test_an_error_in_a_tick_takes_only_that_replica_offline(tmp_path: Path) -> None:
    two_voter_log(tmp_path / "a")

    async def main() -> None:
        manager, _outbox, offline = make_manager()
        a_log = UnreadableTerms(tmp_path / "a", CONFIG)
        a = manager.add(group_id=1, topic="a", partition=0, log_=a_log)
        await manager.start()
        try:
            a_log.broken = True  # its election timer runs out: the campaign reads its last term
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a] and isinstance(a.failure, UnavailableError)
            # The ticks go on: a group added now elects itself (ticks only) and commits.
            b = manager.add(group_id=2, topic="b", partition=0,
                            log_=fresh_single_voter_log(tmp_path / "b"))
            await wait_for(lambda: b.leader_ready, "group 2 to elect itself")
            await append_one(b)
        finally:
            await manager.stop()

    asyncio.run(main())


def test_an_error_applying_a_committed_entry_takes_only_that_replica_offline(
        tmp_path: Path) -> None:
    write_log(tmp_path / "a", 5)
    write_log(tmp_path / "b", 5)

    def broken_apply(replica: Replica, entry: Entry) -> None:
        raise RuntimeError(f"a bug applying entry {entry.index}")

    async def main() -> None:
        manager, _outbox, offline = make_manager()
        a = manager.add(group_id=1, topic="a", partition=0,
                        log_=PartitionLog(tmp_path / "a", CONFIG), on_committed=broken_apply)
        b = manager.add(group_id=2, topic="b", partition=0,
                        log_=PartitionLog(tmp_path / "b", CONFIG))
        await manager.start()
        try:
            # a's first commit as leader (the entry of its term) is applied: that raises
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a] and isinstance(a.failure, RuntimeError)
            await wait_for(lambda: b.leader_ready, "group 2 led")
            await append_one(b)  # the cycles go on
        finally:
            await manager.stop()

    asyncio.run(main())


def test_an_error_stepping_a_message_takes_only_that_replica_offline(tmp_path: Path) -> None:
    write_log(tmp_path / "a", 5)
    with PartitionLog(tmp_path / "a", CONFIG) as log:  # a follower of node 2
        log.set_hard_state(HardState(term=1, vote=2, commit=5,
                                     conf=ConfState(voters=frozenset({1, 2}))))
    write_log(tmp_path / "b", 5)

    async def main() -> None:
        manager, _outbox, offline = make_manager()
        a_log = UnreadableTerms(tmp_path / "a", CONFIG)
        a = manager.add(group_id=1, topic="a", partition=0, log_=a_log)
        b = manager.add(group_id=2, topic="b", partition=0,
                        log_=PartitionLog(tmp_path / "b", CONFIG))
        await manager.start()
        try:
            await wait_for(lambda: b.leader_ready, "group 2 led")
            a_log.broken = True
            # A heartbeat of a newer term from node 2 whose commit is beyond node 1's log: node
            # 1 answers with a rejection at its last entry, reading that entry's term.
            heartbeat = Heartbeat(src=2, dst=1, term=2, commit=9)
            manager.on_peer_message(2, [bytes(f) for f in encode_message(1, heartbeat)])
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a] and isinstance(a.failure, LookupError)
            await append_one(b)
        finally:
            await manager.stop()

    asyncio.run(main())


class FullDisk(PartitionLog):
    """A real log whose fsyncs fail with ENOSPC once `full` is set."""

    full = False

    def fsync(self) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        super().fsync()


def test_a_failed_fsync_takes_the_replica_offline_with_its_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The fsync's error is the replica's failure (what Metadata, the offline listeners and
    the log line report), not an unexplained "error: None"."""
    async def main() -> None:
        manager, _outbox, offline = make_manager()
        log_ = FullDisk(tmp_path / "a", CONFIG)
        log_.set_hard_state(HardState(term=0, vote=0, commit=0,
                                      conf=ConfState(voters=frozenset({1}))))
        a = manager.add(group_id=1, topic="a", partition=0, log_=log_)
        await manager.start()
        try:
            await wait_for(lambda: a.leader_ready, "group 1 to elect itself")
            log_.full = True
            batch = bytearray(encode_batch([Record(b"k", b"v", [], 1_700_000_000_000)]))
            future = a.append(batch, read_batch_header(batch), acks=-1)
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a]
            assert isinstance(a.failure, OSError) and a.failure.errno == 28
            assert isinstance(future, asyncio.Future) and future.done()
            assert isinstance(future.exception(), Exception)  # never acknowledged
        finally:
            await manager.stop()

    with caplog.at_level(logging.ERROR, logger="broker.replica.manager"):
        asyncio.run(main())
    offline_lines = [r.getMessage() for r in caplog.records if "is offline after" in r.getMessage()]
    assert offline_lines and all("a storage error" in m and "No space left" in m
                                 for m in offline_lines), offline_lines
