"""A consumer-offsets partition whose load meets a read error is not served from the part it
read: its groups stay COORDINATOR_LOAD_IN_PROGRESS (served, they would hand out older
committed offsets than the log holds).

A real leader replica of `__consumer_offsets-0` over a real log whose oldest sealed segment is
damaged (trusted from its summary, so only the load's read finds it), driven by hand, and a
real GroupCoordinator of an unstarted broker."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from broker.config import BrokerConfig
from broker.controller.metadata import CONSUMER_OFFSETS_TOPIC
from broker.groups.coordinator import GroupCoordinator
from broker.raft.core import RaftNode
from broker.replica.partition import Replica
from broker.server import Broker
from broker.storage import PartitionLog
from broker.wire.errors import ErrorCode
from tests.unit.test_replica_snapshots import CONFIG, drive
from tests.unit.test_replica_storage_errors import damaged_log

DEADLINE_S = 20.0


def test_a_load_that_meets_a_read_error_leaves_the_partition_loading(tmp_path: Path) -> None:
    damaged_log(tmp_path / "log", voters=frozenset({1}), snapshot=True)
    config = BrokerConfig(node_id=1, data_dir=str(tmp_path / "data"), listen="127.0.0.1:0",
                          raft_listen="127.0.0.1:0", controller_voters={1: "127.0.0.1:0"})
    coordinator = GroupCoordinator(Broker(config))

    async def main() -> None:
        log = PartitionLog(tmp_path / "log", CONFIG)
        state = log.initial_state()
        assert state is not None
        node = RaftNode(node_id=1, storage=log, rng=random.Random(1), applied=state.commit)
        replica = Replica(group_id=1, topic=CONSUMER_OFFSETS_TOPIC, partition=0, node=node,
                          log=log, on_role=coordinator.on_role)
        try:
            node.campaign()
            drive(replica)  # sole voter: leads, commits its term's entry, starts the load
            assert replica.leader_ready
            deadline = time.monotonic() + DEADLINE_S
            while not log.read_only:  # the load's read met the damage (its task went on)
                assert time.monotonic() < deadline, "the load never read the damaged segment"
                await asyncio.sleep(0.005)
            code, groups = coordinator.list_groups()
            assert code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS and groups == []
        finally:
            await coordinator.stop()
            replica.close_failed()

    asyncio.run(main())
