"""Storage faults as the broker meets them: damage in the metadata log never stops the start
(it is scanned on open, and a failed read while adding the controller is a StartupError, the
log closed); damage found on read in a partition whose only voter is this broker is not
"repaired" by cutting the log (nobody could refetch what the cut drops): the replica stays
offline; and Metadata never names as leader a replica of ours that went offline, nor a peer
long after it stopped leading.

Real single-node brokers in this process (ZeroMQ peer bus and Kafka port on free local
ports), real logs on real files with one byte flipped in the oldest sealed segment."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from broker.config import BrokerConfig
from broker.replica.partition import Replica
from broker.server import Broker, StartupError
from broker.storage import PartitionLog
from broker.storage.format import parse_segment_file_name
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.records import Record, encode_batch, read_batch_header
from tests.integration.processes import pick_free_ports
from tests.unit.test_replica_snapshots import write_log
from tests.unit.test_replica_storage_errors import damage_oldest_segment

pytestmark = pytest.mark.timeout(120)

DEADLINE_S = 20.0
SEGMENT_BYTES_MAX = 4096
BATCHES = 60
TOPIC = "solo"


def broker_config(data_dir: Path) -> BrokerConfig:
    client, raft = pick_free_ports(2)
    voter = f"127.0.0.1:{raft}"
    return BrokerConfig(node_id=1, data_dir=str(data_dir), listen=f"127.0.0.1:{client}",
                        raft_listen=voter, controller_voters={1: voter},
                        segment_bytes_max=SEGMENT_BYTES_MAX)


@asynccontextmanager
async def running_broker(data_dir: Path) -> AsyncIterator[Broker]:
    broker = Broker(broker_config(data_dir))
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()


T = TypeVar("T")


async def wait_for(predicate: Callable[[], T | None], what: str) -> T:
    deadline = time.monotonic() + DEADLINE_S
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


# ---- the metadata log ----------------------------------------------------------------------

def test_damage_in_a_sealed_metadata_segment_does_not_stop_the_start(tmp_path: Path) -> None:
    write_log(tmp_path / "controller", BATCHES)  # sealed segments with trusted summaries
    damage_oldest_segment(tmp_path / "controller")

    async def main() -> None:
        async with running_broker(tmp_path) as broker:
            assert broker.controller.offline_reason is None
            assert 0 in broker.manager.replicas  # the metadata replica runs
            assert broker.manager.replicas[0].log.damage is not None  # the scan found it

    asyncio.run(main())


def test_a_failed_read_adding_the_controller_is_a_startup_error(tmp_path: Path) -> None:
    """The replica made over the metadata log reads it (the batch headers it replays): damage
    appearing after the open (the scan passed) reaches that read."""
    write_log(tmp_path / "controller", BATCHES)
    broker = Broker(broker_config(tmp_path))
    plog, fresh = broker._open_controller_log()
    damage_oldest_segment(tmp_path / "controller")
    with pytest.raises(StartupError, match="metadata log"):
        broker._add_controller(plog, fresh)
    assert 0 not in broker.manager.replicas
    PartitionLog(tmp_path / "controller").close()  # it was closed (else: LogLockedError)


# ---- a partition whose only voter is this broker -------------------------------------------

async def create_solo_topic(broker: Broker) -> int:
    await wait_for(lambda: broker.controller.is_leader and broker.controller.state.broker(1),
                   "broker 1 registered with its controller")
    await broker.controller_request("create_topic", {"name": TOPIC, "partitions": 1,
                                                     "replication_factor": 1}, 10_000)
    return await wait_for(lambda: broker.by_partition.get((TOPIC, 0)), "the partition")


def led(broker: Broker, group_id: int) -> Replica | None:
    replica = broker.manager.replicas.get(group_id)
    return replica if replica is not None and replica.leader_ready else None


async def fill(broker: Broker, group_id: int, *, snapshot: bool) -> None:
    """BATCHES committed batches over several segments; with `snapshot`, a producer snapshot
    at the end (so making the replica again reads none of them, and a later read meets the
    damage; without, making it meets the damage)."""
    replica = await wait_for(lambda: led(broker, group_id), "the partition's leader")
    for i in range(BATCHES):
        batch = bytearray(encode_batch([Record(b"k", b"v%d" % i + b"." * 100, [],
                                               1_700_000_000_000)]))
        result = replica.append(batch, read_batch_header(batch), acks=-1)
        assert isinstance(result, asyncio.Future)
        await asyncio.wait_for(result, DEADLINE_S)
    if snapshot:
        assert replica.snapshot_producers()


def segments_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()
                  if parse_segment_file_name(p.name) is not None)


SOLE_VOTER_OFFLINE = "stays offline: its log is damaged and this broker is the group's only voter"


@pytest.mark.parametrize("found_by", ["read", "creation"])
def test_damage_in_a_sole_voter_partition_is_not_cut_away_and_not_named_leader(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, found_by: str) -> None:
    async def first_run() -> tuple[int, Path]:
        async with running_broker(tmp_path) as broker:
            group_id = await create_solo_topic(broker)
            await fill(broker, group_id, snapshot=found_by == "read")
            directory = tmp_path / "partitions" / f"{TOPIC}-0.g{group_id}"
            return group_id, directory

    group_id, directory = asyncio.run(first_run())
    segments = segments_in(directory)
    assert len(segments) >= 3, segments
    damage_oldest_segment(directory)

    async def second_run() -> None:
        async with running_broker(tmp_path) as broker:
            if found_by == "read":
                replica = await wait_for(lambda: led(broker, group_id), "the leader again")
                with pytest.raises(KafkaError) as caught:
                    replica.read(0, 1 << 20)  # meets the damage
                assert caught.value.code == ErrorCode.KAFKA_STORAGE_ERROR
            await wait_for(lambda: SOLE_VOTER_OFFLINE in caplog.text, "the replica offline")
            assert group_id not in broker.manager.replicas
            # No reopen (it would cut the log at the damage): the replica stays offline.
            assert not [t for t in broker._tasks if t.get_name() == f"repair-{group_id}"]
            # Nor is this broker named its leader any more.
            assert broker.partition_leadership(group_id, (1,)) == (0, -1, [])
            assert broker.leader_of(group_id) == 0

    with caplog.at_level(logging.ERROR, logger="raftlog.broker"):
        asyncio.run(second_run())
    assert segments_in(directory) == segments  # nothing cut
    assert "reopening it" not in caplog.text


# ---- the leader hint for a peer ------------------------------------------------------------

def test_a_peer_is_named_last_leader_only_for_an_election_timeout(tmp_path: Path) -> None:
    broker = Broker(broker_config(tmp_path))
    group_id = 1000
    broker.peer_last_heard[2] = time.monotonic()
    broker._heard_leaders(2, [(group_id, 5, [2, 1])])
    assert broker.partition_leadership(group_id, (1, 2))[:2] == (2, 5)
    broker._heard_leaders(2, [])  # broker 2 stopped leading it (a hand-off under way)
    assert broker.partition_leadership(group_id, (1, 2))[:2] == (2, 5)  # the hint
    # An election timeout later (the stored moment moved back by one) with no new leader
    # heard of: broker 2, alive, is not named any more.
    broker._last_leader_gone_s[group_id] -= broker._peer_timeout_s
    broker.peer_last_heard[2] = time.monotonic()
    assert broker.partition_leadership(group_id, (1, 2)) == (0, -1, [])
    broker._heard_leaders(2, [(group_id, 6, [2, 1])])  # it leads again
    assert broker.partition_leadership(group_id, (1, 2))[:2] == (2, 6)
