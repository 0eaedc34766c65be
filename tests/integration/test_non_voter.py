"""A broker outside the controller quorum joins as a learner of the metadata log, hosts and
leads partitions, and serves clients like any other broker."""

from __future__ import annotations

import json

import pytest

from tests.integration.cluster import ClusterFactory
from tests.integration.clients import Outgoing, make_producer, mismatches, read_all, send_all

TOPIC = "four"
PARTITIONS = 8


@pytest.mark.timeout(240)
def test_fourth_broker_outside_the_quorum_takes_part(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(4, voters=3)
    status = cluster.run_cli("cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    brokers = {b["id"]: b["alive"] for b in json.loads(status.stdout)["brokers"]}
    assert brokers == {1: True, 2: True, 3: True, 4: True}

    cluster.create_topic(TOPIC, PARTITIONS, 3)
    cluster.wait_topic_leaders(TOPIC, PARTITIONS)
    described = json.loads(cluster.run_cli("topic", "describe", TOPIC, "--json").stdout)
    assert any(4 in p["replicas"] for p in described["partitions"]), described

    # Clients bootstrapping from the non-voter alone can write and read everything.
    only_4 = cluster.bootstrap_of([4])
    producer = make_producer(only_4)
    try:
        items = [Outgoing(partition=None, key=f"k{i}".encode(), value=f"v{i}".encode())
                 for i in range(400)]
        acked = send_all(producer, TOPIC, items)
    finally:
        producer.close(timeout=10)
    stored = read_all(only_4, TOPIC, range(PARTITIONS))
    problems = mismatches(acked, stored)
    assert not problems, "\n".join(problems)
