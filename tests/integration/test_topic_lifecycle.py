"""Topic administration through the `raftlog` command line against three brokers: create,
describe, list and delete with API.md's `--json` shapes, placement across brokers, and clear
one-line failures (exit 1) for what the user can fix."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from tests.integration.cluster import LocalCluster, NotYet

pytestmark = pytest.mark.timeout(240)

BROKERS = {1, 2, 3}


def _create(cluster: LocalCluster, name: str, partitions: int | str,
            replication_factor: int | str = 3) -> subprocess.CompletedProcess[str]:
    return cluster.run_cli("topic", "create", name, "--partitions", str(partitions),
                           "--replication-factor", str(replication_factor))


def _assert_user_error(r: subprocess.CompletedProcess[str], what: str) -> str:
    """Exit 1 with exactly one line on stderr and no traceback; returns that line."""
    assert r.returncode == 1, (f"{what}: expected exit 1, got {r.returncode}; "
                               f"stderr {r.stderr!r} stdout {r.stdout!r}")
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected one line on stderr, got {r.stderr!r}"
    assert "Traceback" not in r.stderr
    return lines[0]


def _listed(cluster: LocalCluster) -> dict[str, dict]:
    topics = cluster.topic_list()
    assert isinstance(topics, list), topics
    for t in topics:
        assert isinstance(t["name"], str), t
        assert isinstance(t["partitions"], int) and isinstance(t["replication_factor"], int), t
    return {t["name"]: t for t in topics}


def _assert_describe_shape(d: dict, name: str, partitions: int, rf: int) -> None:
    assert d["name"] == name
    assert isinstance(d["partitions"], list)
    assert sorted(p["partition"] for p in d["partitions"]) == list(range(partitions)), d
    for p in d["partitions"]:
        assert isinstance(p["partition"], int), p
        assert p["leader"] is None or isinstance(p["leader"], int), p
        assert isinstance(p["high_watermark"], int) and p["high_watermark"] >= 0, p
        replicas = p["replicas"]
        assert all(isinstance(r, int) for r in replicas), p
        assert len(replicas) == rf and len(set(replicas)) == rf, f"replicas not distinct: {p}"
        assert set(replicas) <= BROKERS, p
        assert p["leader"] is None or p["leader"] in replicas, f"leader outside replicas: {p}"


def test_create_places_replicas_and_leaders_evenly(cluster: LocalCluster) -> None:
    r = _create(cluster, "orders", 6, 3)
    assert r.returncode == 0, r.stderr
    d = cluster.wait_topic_leaders("orders", 6)
    _assert_describe_shape(d, "orders", 6, 3)
    assert all(p["high_watermark"] == 0 for p in d["partitions"]), d

    def balanced() -> Counter:
        led = Counter(p["leader"] for p in cluster.describe("orders")["partitions"])
        if set(led) != BROKERS or not all(1 <= led[b] <= 3 for b in BROKERS):
            raise NotYet(f"leaders per broker {dict(led)}")
        return led

    led = cluster.wait_until(balanced, timeout_s=60,
                             what="each broker to lead 2 (+-1) of the 6 partitions")
    print(f"leaders per broker: {dict(led)}")

    listed = _listed(cluster)
    assert listed["orders"]["partitions"] == 6 and listed["orders"]["replication_factor"] == 3


def test_list_shows_replication_factor_below_broker_count(cluster: LocalCluster) -> None:
    assert _create(cluster, "payments", 3, 2).returncode == 0
    d = cluster.wait_topic_leaders("payments", 3)
    _assert_describe_shape(d, "payments", 3, 2)
    listed = _listed(cluster)
    assert listed["payments"]["partitions"] == 3
    assert listed["payments"]["replication_factor"] == 2


def test_creating_an_existing_topic_fails(cluster: LocalCluster) -> None:
    assert _create(cluster, "twice", 2, 3).returncode == 0
    line = _assert_user_error(_create(cluster, "twice", 2, 3), "second create")
    assert "exist" in line.lower(), line
    assert _listed(cluster)["twice"]["partitions"] == 2


def test_replication_factor_above_live_brokers_fails(cluster: LocalCluster) -> None:
    line = _assert_user_error(_create(cluster, "too-wide", 1, 4), "RF 4 on 3 brokers")
    assert "4" in line and "3" in line, f"the message should name both numbers: {line!r}"
    assert "too-wide" not in _listed(cluster)


@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_names_with_path_characters_are_rejected(cluster: LocalCluster, name: str) -> None:
    _assert_user_error(_create(cluster, name, 1, 3), f"topic name {name!r}")
    assert name not in _listed(cluster)
    entries = {p.name for p in cluster.data_root.iterdir()}
    expected = {f"broker-{i}" for i in BROKERS} | {f"broker-{i}.log" for i in BROKERS}
    assert entries <= expected, f"something escaped the data directories: {entries - expected}"


def test_zero_partitions_is_rejected(cluster: LocalCluster) -> None:
    _assert_user_error(_create(cluster, "empty", 0, 3), "--partitions 0")
    assert "empty" not in _listed(cluster)


def test_delete_removes_the_topic(cluster: LocalCluster) -> None:
    assert _create(cluster, "doomed", 3, 3).returncode == 0
    cluster.wait_topic_leaders("doomed", 3)
    r = cluster.run_cli("topic", "delete", "doomed")
    assert r.returncode == 0, r.stderr

    def gone() -> bool:
        if "doomed" in _listed(cluster):
            raise NotYet("still listed")
        return True

    cluster.wait_until(gone, timeout_s=30, what="'doomed' to disappear from topic list")
    _assert_user_error(cluster.run_cli("topic", "describe", "doomed", "--json"),
                       "describe after delete")


def test_cluster_status_shape(cluster: LocalCluster) -> None:
    def settled() -> dict:
        s = cluster.cluster_status()
        if s["under_replicated"] != 0:
            raise NotYet(f"under_replicated {s['under_replicated']}")
        return s

    s = cluster.wait_until(settled, timeout_s=60, what="no under-replicated partitions")
    assert s["controller"] in BROKERS, s
    assert isinstance(s["under_replicated"], int)
    brokers = {b["id"]: b for b in s["brokers"]}
    assert set(brokers) == BROKERS, s
    for i, b in brokers.items():
        assert b["alive"] is True, s
        assert b["address"] == cluster.address(i), s


def test_the_harness_looks_in_process_print_what_the_command_prints(cluster: LocalCluster) -> None:
    """The harness runs its frequent looks in the test process (cli_calls); they must see
    what `python -m broker` prints."""
    assert _create(cluster, "listed", 2, 3).returncode == 0
    args = ("topic", "list", "--json", "--timeout-ms", "30000")
    as_process, in_process = cluster.run_cli(*args), cluster.call_cli(*args)
    assert as_process.returncode == in_process.returncode == 0, (as_process, in_process)
    assert in_process.stderr == as_process.stderr == ""
    listed = sorted(json.loads(in_process.stdout), key=lambda t: t["name"])
    assert listed == sorted(json.loads(as_process.stdout), key=lambda t: t["name"])
    assert "listed" in {t["name"] for t in listed}
