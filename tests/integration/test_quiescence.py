"""Idle partitions are quiesced: once writes stop, no broker ticks any Raft group (each logs
its replica stats every 10 s), and a write to a quiesced partition still commits at once."""

from __future__ import annotations

import ast
import re

import pytest

from tests.integration.cluster import ClusterFactory
from tests.integration.clients import Outgoing, make_producer, send_all
from tests.integration.waiting import wait_until

_STATS = re.compile(r"replicas: (\{.*\})")


def _last_stats(text: str) -> dict[str, int] | None:
    found = _STATS.findall(text)
    return ast.literal_eval(found[-1]) if found else None


@pytest.mark.timeout(180)
def test_idle_groups_stop_ticking_and_wake_on_writes(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    cluster.create_topic("quiet", 6, 3)
    cluster.wait_topic_leaders("quiet", 6)
    producer = make_producer(cluster.bootstrap)
    try:
        send_all(producer, "quiet", [Outgoing(partition=p, key=None, value=b"x") for p in range(6)])
        marks = {i: cluster.brokers[i].log_path.stat().st_size for i in cluster.node_ids}

        def all_quiet() -> bool:
            for i, mark in marks.items():
                with open(cluster.brokers[i].log_path, "rb") as f:
                    f.seek(mark)
                    stats = _last_stats(f.read().decode(errors="replace"))
                # 7 groups: 6 partitions + the controller's metadata group.
                if stats is None or stats["groups"] < 7 or stats["ticking"] != 0:
                    return False
            return True

        wait_until(all_quiet, timeout_s=60, what="every broker to report no ticking groups")
        # Quiesced groups still take writes: the leader appends and replicates at once.
        acked = send_all(producer, "quiet",
                         [Outgoing(partition=p, key=None, value=b"y") for p in range(6)],
                         timeout_s=30)
        assert sorted(a.offset for a in acked) == [1] * 6
    finally:
        producer.close(timeout=10)
