"""A replica whose log meets damage on read goes offline on its own: the read is answered with
KAFKA_STORAGE_ERROR (never bytes), the manager's cycle and its other replicas keep running,
and the offline listeners learn it was damage (which a reopen repairs). Creating a replica
over a damaged log (the metadata apply) reopens the log once, which repairs it.

Real logs on real files (sealed segments trusted from their summaries, one byte flipped in
the oldest), a real ReplicaManager running its loops; the peer bus is an outbox, and the test
plays the other voter by stepping encoded messages into the manager."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from broker.config import BrokerConfig
from broker.controller.metadata import PartitionAdded, PartitionInfo
from broker.raft.core import RaftConfig
from broker.raft.messages import AppendRequest, AppendResponse, ConfState, HardState, \
    Message, VoteRequest, VoteResponse
from broker.replica.codec import decode_message, encode_message
from broker.replica.manager import ReplicaManager
from broker.replica.partition import Replica
from broker.server import Broker
from broker.storage import LogDamageError, PartitionLog
from broker.storage.format import SEGMENT_HEADER_BYTES, segment_file_name
from broker.wire.errors import ErrorCode, KafkaError
from tests.unit.test_replica_snapshots import CONFIG, open_replica, write_log

BATCHES = 60
DEADLINE_S = 20.0


def damage_oldest_segment(path: Path) -> None:
    seg = path / segment_file_name(1)
    data = bytearray(seg.read_bytes())
    data[SEGMENT_HEADER_BYTES + 40] ^= 0x04
    seg.write_bytes(bytes(data))


def damaged_log(path: Path, *, voters: frozenset[int], snapshot: bool) -> None:
    """60 committed batches over several segments, the oldest damaged after the log closed.
    With `snapshot`, a producer snapshot at the end: creating the replica reads nothing."""
    write_log(path, BATCHES)
    if voters != frozenset({1}):
        with PartitionLog(path, CONFIG) as log:
            log.set_hard_state(HardState(term=1, vote=1, commit=BATCHES,
                                         conf=ConfState(voters=voters)))
    if snapshot:
        replica = open_replica(path)
        assert replica.snapshot_producers()
        replica.close()
    damage_oldest_segment(path)


class Outbox:
    """The peer bus, as the manager uses it: messages it sends are decoded and kept."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, dst: int, frames: list[Any]) -> None:
        self.sent.append(decode_message(frames)[1])


async def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def make_manager() -> tuple[ReplicaManager, Outbox, list[Replica]]:
    outbox = Outbox()
    manager = ReplicaManager(node_id=1, bus=outbox, raft_config=RaftConfig(),  # type: ignore[arg-type]
                             tick_ms=5, seed=1)
    offline: list[Replica] = []
    manager.offline_listeners.append(offline.append)
    return manager, outbox, offline


def test_a_read_meeting_damage_answers_storage_error_and_takes_the_replica_offline(
        tmp_path: Path) -> None:
    damaged_log(tmp_path / "a", voters=frozenset({1}), snapshot=True)
    write_log(tmp_path / "b", 5)

    async def main() -> None:
        manager, _outbox, offline = make_manager()
        a = manager.add(group_id=1, topic="a", partition=0,
                        log_=PartitionLog(tmp_path / "a", CONFIG))
        b = manager.add(group_id=2, topic="b", partition=0,
                        log_=PartitionLog(tmp_path / "b", CONFIG))
        await manager.start()
        try:
            await wait_for(lambda: a.leader_ready and b.leader_ready, "both leaders")
            with pytest.raises(KafkaError) as caught:
                a.read(0, 1 << 20)
            assert caught.value.code == ErrorCode.KAFKA_STORAGE_ERROR
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a] and isinstance(a.failure, LogDamageError)
            assert manager.replicas[2] is b and b.read(0, 1 << 20)  # the other one serves
        finally:
            await manager.stop()

    asyncio.run(main())
    with PartitionLog(tmp_path / "a", CONFIG) as log:  # the reopen repairs
        assert log.damage is not None and log.last_index() < BATCHES


def test_a_leader_shipping_damaged_entries_goes_offline_and_the_cycle_goes_on(
        tmp_path: Path) -> None:
    damaged_log(tmp_path / "a", voters=frozenset({1, 2}), snapshot=True)
    write_log(tmp_path / "b", 5)

    async def main() -> None:
        manager, outbox, offline = make_manager()
        a = manager.add(group_id=1, topic="a", partition=0,
                        log_=PartitionLog(tmp_path / "a", CONFIG))
        b = manager.add(group_id=2, topic="b", partition=0,
                        log_=PartitionLog(tmp_path / "b", CONFIG))
        await manager.start()
        try:
            await play_follower(manager, outbox)
            await wait_for(lambda: 1 not in manager.replicas, "group 1 offline")
            assert offline == [a] and isinstance(a.failure, LogDamageError)
            assert not any(isinstance(m, AppendRequest) and m.entries and m.prev_index == 0
                           for m in outbox.sent)  # nothing from the damaged segment left
            await wait_for(lambda: b.leader_ready, "group 2 still led")
            assert manager.replicas[2] is b
        finally:
            await manager.stop()

    asyncio.run(main())


async def play_follower(manager: ReplicaManager, outbox: Outbox) -> None:
    """Vote for node 1, then answer its first append with "my log is empty": it must ship
    everything from index 1, which is in the damaged segment."""
    seen = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and 1 in manager.replicas:
        for m in outbox.sent[seen:]:
            seen += 1
            answer: Message | None = None
            match m:
                case VoteRequest(dst=2, term=term, pre_vote=pre):
                    answer = VoteResponse(src=2, dst=1, term=term, granted=True, pre_vote=pre)
                case AppendRequest(dst=2, term=term, prev_index=prev) if prev > 0:
                    answer = AppendResponse(src=2, dst=1, term=term, success=False,
                                            index=prev, hint_index=0, hint_term=0)
            if answer is not None:
                manager.on_peer_message(2, list(encode_message(1, answer)))
        await asyncio.sleep(0.005)


def test_creating_a_replica_over_damage_reopens_and_repairs_its_log(tmp_path: Path) -> None:
    """No snapshot: making the replica reads every batch header and meets the damage (when
    the open trusted the summaries), or the open scanned it; either way the replica exists
    and its log was cut at the damage."""
    config = BrokerConfig(node_id=1, data_dir=str(tmp_path), listen="127.0.0.1:0",
                          raft_listen="127.0.0.1:0", controller_voters={1: "127.0.0.1:0"},
                          segment_bytes_max=CONFIG.segment_bytes_max)
    broker = Broker(config)
    p = PartitionInfo(topic="t", partition=0, group_id=1000, replicas=(1, 2, 3))
    directory = tmp_path / "partitions" / "t-0.g1000"
    damaged_log(directory, voters=frozenset({1, 2, 3}), snapshot=False)

    async def main() -> None:
        broker._on_metadata_changes([PartitionAdded(partition=p)])
        replica = broker.manager.replicas[1000]
        assert replica.log.damage is not None and replica.log.last_index() < BATCHES
        assert replica.log.initial_state() is not None
        await broker.manager.stop()

    asyncio.run(main())
