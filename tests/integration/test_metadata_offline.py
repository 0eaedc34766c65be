"""A broker whose own replica of the metadata log goes offline (its disk fills up, so a write
fails with ENOSPC) must not answer from the frozen metadata image it is left with.

Three brokers; broker 1's data dir is a small tmpfs (tests/faults/disk.py SmallDisk), filled
while the cluster runs. Topics created meanwhile make every metadata replica write, so broker
1's fails. From then on broker 1, still running, closes the connection on Metadata (every
Kafka client reads that as "ask another broker"), answers RaftlogDescribeCluster with
KAFKA_STORAGE_ERROR and stops registering with the controller, which fences it; the other
brokers keep serving, and clients given broker 1 first in their bootstrap list find them.
Needs root and tmpfs mounts; skipped otherwise.

A broker that cannot open its metadata log at all when it starts (a full disk, a directory
held by another process) exits at once with status 1 and one line saying why.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from broker.client import AdminClient, ClientError, KafkaError
from broker.storage import PartitionLog
from producer import Producer
from tests.faults.disk import SmallDisk, mounts_unavailable
from tests.integration import kafka_wire as wire
from tests.integration.clients import CLIENT_DEFAULTS, create_topic
from tests.integration.cluster import HOST, REPO_ROOT, LocalCluster, NotYet
from tests.integration.processes import pick_free_ports, repo_env

pytestmark = pytest.mark.timeout(180)

OFFLINE = 1  # the broker whose disk fills up
OTHERS = (2, 3)
DISK_BYTES = 16 << 20
SESSION_TIMEOUT_MS = 3000  # how soon the controller fences a broker that stopped registering
RAFTLOG_DESCRIBE_CLUSTER = 10000
KAFKA_STORAGE_ERROR = 56
TOPIC = "before-the-fill"


@pytest.fixture
def cluster_and_disk(tmp_path: Path) -> Iterator[tuple[LocalCluster, SmallDisk]]:
    why = mounts_unavailable()
    if why is not None:
        pytest.skip(why)
    with contextlib.ExitStack() as stack:
        path = tmp_path / f"broker-{OFFLINE}"  # LocalCluster's data dir naming
        path.mkdir()
        disk = stack.enter_context(SmallDisk(path, DISK_BYTES))
        cluster = stack.enter_context(LocalCluster(
            3, data_root=tmp_path,
            env_overrides={"RAFTLOG_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}))
        stack.callback(disk.unfill)  # before the brokers stop: they flush on the way out
        cluster.start()
        cluster.wait_ready()
        yield cluster, disk


def _describe_cluster_error(address: str) -> tuple[int, int]:
    """RaftlogDescribeCluster v0 by hand: (error_code, number of brokers listed)."""
    with wire.KafkaSocket(address, timeout_s=10) as conn:
        conn.send(wire.frame(wire.request_header(RAFTLOG_DESCRIBE_CLUSTER, 0, 11)))
        payload = conn.expect_response()
    correlation_id, _throttle_ms, code, _controller, brokers = struct.unpack_from(
        ">iihii", payload)
    assert correlation_id == 11, payload[:16]
    return code, brokers


def _fail_metadata_replica(cluster: LocalCluster, admin: AdminClient) -> None:
    """Create topics until broker 1 says its metadata log is offline: each is a metadata
    record that every replica of the log appends and syncs (a small append may still fit in
    a page the file already has; the next hard-state checkpoint cannot)."""
    created = iter(range(1_000))

    def refused() -> bool:
        code, _ = _describe_cluster_error(cluster.address(OFFLINE))
        if code == KAFKA_STORAGE_ERROR:
            return True
        with contextlib.suppress(KafkaError, ClientError):  # e.g. broker 1 led the controller
            # Three replicas: two elect a leader even when broker 1 cannot open its own.
            admin.create_topic(f"trigger-{next(created)}", 1, 3, timeout_ms=5000)
        raise NotYet(f"broker {OFFLINE} still describes the cluster (error {code})")

    cluster.wait_until(refused, timeout_s=60,
                       what=f"broker {OFFLINE}'s metadata replica to go offline")


def test_a_broker_without_its_metadata_log_refuses_and_clients_move_on(
        cluster_and_disk: tuple[LocalCluster, SmallDisk]) -> None:
    cluster, disk = cluster_and_disk
    with AdminClient(cluster.bootstrap_of(OTHERS)) as admin:
        admin.create_topic(TOPIC, 3, 3)
        disk.fill()
        _fail_metadata_replica(cluster, admin)
    offline = cluster.address(OFFLINE)
    assert "metadata log is offline" in cluster.log_tail(OFFLINE, 400)

    # Still running and speaking Kafka; Metadata closes the connection; its own API says why.
    wire.check_api_versions(offline)
    with wire.KafkaSocket(offline, timeout_s=10) as conn:
        conn.send(wire.metadata_request(correlation_id=5, topics=None))
        conn.expect_closed()
    assert _describe_cluster_error(offline) == (KAFKA_STORAGE_ERROR, 0)

    # Clients with broker 1 first in their bootstrap list find the others.
    bootstrap = cluster.bootstrap_of([OFFLINE, *OTHERS])
    with AdminClient(bootstrap, request_timeout_ms=10_000) as admin:
        assert TOPIC in {t.name for t in admin.list_topics()}

        def fenced() -> bool:
            c = admin.describe_cluster()
            alive = {b.node_id: b.alive for b in c.brokers}
            if c.controller not in OTHERS or alive != {OFFLINE: False, 2: True, 3: True}:
                raise NotYet(f"controller {c.controller}, alive {alive}")
            leaders = {p.leader for p in admin.describe_topic(TOPIC).partitions}
            if not leaders <= set(OTHERS):
                raise NotYet(f"{TOPIC} led by {leaders}")
            return True

        cluster.wait_until(fenced, timeout_s=30,
                           what=f"the controller to fence broker {OFFLINE}")
    with Producer(bootstrap_servers=bootstrap, request_timeout_ms=10_000) as producer:
        md = producer.send(TOPIC, value=b"after the fill", key=b"k").get(timeout=30)
    assert md.topic == TOPIC and md.offset >= 0

    kafka_admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **CLIENT_DEFAULTS)
    try:
        assert TOPIC in kafka_admin.list_topics()
    finally:
        kafka_admin.close()
    # kafka-python's admin sends CreateTopics to the controller Metadata names, which must be
    # a broker the same answer lists (broker 1, fenced, is in no list).
    leaders = create_topic(bootstrap, "made-by-kafka-python", 2, 2)
    assert set(leaders.values()) <= set(OTHERS)

    # It refused rather than exited, and still shuts down gracefully.
    assert cluster.brokers[OFFLINE].is_running()
    disk.unfill()
    assert cluster.terminate(OFFLINE) == 0, cluster.log_tail(OFFLINE)


# ---- at startup ---------------------------------------------------------------------------------
def _serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`raftlog serve` of a one-broker cluster; it must exit by itself."""
    client_port, raft_port = pick_free_ports(2)
    raft = f"{HOST}:{raft_port}"
    return subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--node-id", "1", "--data-dir", str(data_dir),
         "--listen", f"{HOST}:{client_port}", "--raft-listen", raft,
         "--controller-voters", f"1@{raft}"],
        env=repo_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)


def _assert_refused_to_start(result: subprocess.CompletedProcess[str], data_dir: Path,
                             why: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"raftlog serve: cannot start: cannot open the metadata log in "
                           f"{data_dir / 'controller'}: "), result.stderr[-2000:]
    assert why in last and "Traceback" not in result.stderr, result.stderr[-2000:]


def test_a_broker_that_cannot_open_its_metadata_log_on_a_full_disk_exits(tmp_path: Path) -> None:
    why = mounts_unavailable()
    if why is not None:
        pytest.skip(why)
    data_dir = tmp_path / "broker-1"
    data_dir.mkdir()
    with SmallDisk(data_dir, 1 << 20) as disk:
        disk.fill()
        result = _serve(data_dir)
    _assert_refused_to_start(result, data_dir, "No space left on device")


def test_a_broker_whose_metadata_log_is_held_elsewhere_exits(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker-1"
    with PartitionLog(data_dir / "controller"):  # e.g. a second broker on the same data dir
        result = _serve(data_dir)
    _assert_refused_to_start(result, data_dir, "is open in another PartitionLog")
