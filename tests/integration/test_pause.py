"""SIGSTOP a partition leader under load for longer than an election timeout, then SIGCONT it:
the resumed broker must stay alive (libzmq once aborted it here, see
broker.transport.sockets), rejoin as a follower and catch up, while writes go on."""

from __future__ import annotations

import time

import pytest

from tests.faults.history import History
from tests.faults.workload import Workload
from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet

pytestmark = pytest.mark.timeout(180)

TOPIC = "paused"
PARTITIONS = 3
ELECTION_TIMEOUT_S_MIN = 5.0  # 100 ticks of 50 ms, the brokers' defaults
PAUSE_S = ELECTION_TIMEOUT_S_MIN + 2.0
# The abort came 1-2 s after the resume; the wait for the rejoin below is longer than that,
# and every wait of the harness fails at once if a broker dies.
LOAD_S = 3.0


def _wait_rejoined(cluster: LocalCluster, node_id: int) -> None:
    """The resumed broker answers, the cluster sees it alive, and it is back in the ISR of
    every partition with nothing under-replicated (writes go on, so high watermarks are not
    compared)."""
    others = [i for i in cluster.node_ids if i != node_id]

    def caught_up() -> bool:
        status = cluster.cluster_status()
        if status["under_replicated"] != 0:
            raise NotYet(f"under_replicated {status['under_replicated']}")
        theirs = cluster.describe(TOPIC, bootstrap=cluster.bootstrap_of(others))
        outside = [p["partition"] for p in theirs["partitions"] if node_id not in p["isr"]]
        if outside:
            raise NotYet(f"broker {node_id} not in the ISR of partitions {outside}")
        cluster.describe(TOPIC, bootstrap=cluster.address(node_id))  # it answers itself
        return True

    cluster.wait_ready(60)
    cluster.wait_until(caught_up, timeout_s=60, what=f"broker {node_id} to rejoin the ISRs")


def _wait_acked_more(cluster: LocalCluster, workload: Workload, than: int) -> None:
    def more() -> bool:
        acked = workload.stats()["acked"]
        if acked <= than:
            raise NotYet(f"{acked} acknowledged, {than} before")
        return True

    cluster.wait_until(more, timeout_s=60, what="writes acknowledged after the resume")


# Opt-in (--run-slow): the default suite pauses leaders under load in tests/faults (the 5-broker
# run) and proves the transport survives a resume in tests/unit/test_transport_sockets.py.
@pytest.mark.slow
def test_paused_leader_survives_resume_and_rejoins(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3)
    cluster.create_topic(TOPIC, PARTITIONS)
    with History(cluster.data_root / "history.jsonl") as history, \
            Workload(cluster.bootstrap, history, topic=TOPIC, partitions=PARTITIONS,
                     rate_per_s=300.0) as workload:
        workload.start()
        time.sleep(LOAD_S)  # load running: producers, group consumers committing
        leader = cluster.leader_of(TOPIC, 0)
        assert leader is not None
        cluster.pause(leader)
        time.sleep(PAUSE_S)
        cluster.resume(leader)
        acked_at_resume = workload.stats()["acked"]
        _wait_rejoined(cluster, leader)
        _wait_acked_more(cluster, workload, acked_at_resume)
        cluster.check_alive()
