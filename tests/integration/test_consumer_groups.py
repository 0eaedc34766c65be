"""Consumer groups across real processes: three consumer processes share a 6-partition topic,
one is SIGKILLed (the others take its partitions once its session expires and every record
is still consumed), one leaves cleanly (the last takes everything at once); and committed
offsets survive a SIGKILL of the coordinator's broker.

The consumer processes run `_worker_main` below and report on stdout, one JSON object a line:
{"assigned": [[topic, partition], ...]} when their assignment changes, {"read": [[p, o], ...]}
for the records each poll returned."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from consumer import Consumer, TopicPartition
from tests.integration.clients import Outgoing, create_topic, make_producer, send_all
from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet
from tests.integration.processes import REPO_ROOT, repo_env

pytestmark = pytest.mark.timeout(240)

SESSION_MS = 6000
HEARTBEAT_MS = 500


def _worker_main() -> None:
    """A group member in its own process: argv = bootstrap topic group."""
    bootstrap, topic, group = sys.argv[1:4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = Consumer(topic, bootstrap_servers=bootstrap, group_id=group,
                        auto_offset_reset="earliest", session_timeout_ms=SESSION_MS,
                        heartbeat_interval_ms=HEARTBEAT_MS, auto_commit_interval_ms=200,
                        client_id=f"worker-{group}")
    assigned: frozenset[TopicPartition] | None = None
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=100)
        read = [[r.partition, r.offset] for records in batch.values() for r in records]
        if read:
            print(json.dumps({"read": read}), flush=True)
        now = consumer.assignment()
        if now != assigned:
            assigned = now
            print(json.dumps({"assigned": sorted(now)}), flush=True)
    consumer.close()  # commits, then leaves the group: the others rebalance at once
    print(json.dumps({"closed": True}), flush=True)


class Worker:
    """One consumer process and what it reported."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        code = "from tests.integration.test_consumer_groups import _worker_main; _worker_main()"
        self.proc = subprocess.Popen([sys.executable, "-c", code, bootstrap, topic, group],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=REPO_ROOT, env=repo_env())
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.read: set[tuple[int, int]] = set()
        self.closed = False
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._lock:
                if "assigned" in event:
                    self.assigned = frozenset((t, p) for t, p in event["assigned"])
                elif "read" in event:
                    self.read.update((p, o) for p, o in event["read"])
                elif "closed" in event:
                    self.closed = True

    def state(self) -> tuple[frozenset[tuple[str, int]], set[tuple[int, int]]]:
        with self._lock:
            return self.assigned, set(self.read)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _split(workers: list[Worker], topic: str, partitions: int) -> Callable[[], bool]:
    """Predicate: the workers' assignments are disjoint, non-empty and cover the topic."""
    def check() -> bool:
        sets = [w.state()[0] for w in workers]
        union = set().union(*sets)
        if any(not s for s in sets) or sum(map(len, sets)) != len(union) or \
                union != {(topic, p) for p in range(partitions)}:
            raise NotYet(f"assignments {[sorted(p for _, p in s) for s in sets]}")
        return True
    return check


def _produce(cluster: LocalCluster, topic: str, start: int, count: int) -> set[tuple[int, int]]:
    producer = make_producer(cluster.bootstrap)
    try:
        acked = send_all(producer, topic, [Outgoing(partition=None, key=b"k%d" % i,
                                                    value=b"v%d" % i)
                                           for i in range(start, start + count)])
    finally:
        producer.close(timeout=10)
    return {(a.partition, a.offset) for a in acked}


def test_three_processes_share_partitions_survive_a_kill_and_a_leave(
        cluster: LocalCluster, report_figure: Callable[[str], None]) -> None:
    topic, group, partitions = "cg-six", "cg-workers", 6
    create_topic(cluster.bootstrap, topic, partitions, 3)
    written = _produce(cluster, topic, 0, 600)
    workers = [Worker(cluster.bootstrap, topic, group) for _ in range(3)]
    try:
        cluster.wait_until(_split(workers, topic, partitions), timeout_s=60,
                           what="three members to split the six partitions")
        for w in workers:
            assert len(w.state()[0]) == 2, "range over 6 partitions and 3 members: 2 each"

        killed, leaver, last = workers
        killed.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        written |= _produce(cluster, topic, 600, 600)
        cluster.wait_until(_split([leaver, last], topic, partitions),
                           timeout_s=SESSION_MS / 1000 + 30,
                           what="the two survivors to take the killed member's partitions")
        after_kill_s = time.monotonic() - killed_at

        leaver.proc.send_signal(signal.SIGTERM)
        left_at = time.monotonic()
        cluster.wait_until(_split([last], topic, partitions), timeout_s=30,
                           what="the last member to take every partition after a clean leave")
        after_leave_s = time.monotonic() - left_at
        assert after_leave_s < SESSION_MS / 1000, \
            "a clean leave rebalances at once, without waiting for a session to expire"
        assert leaver.proc.wait(30) == 0, "the leaving member exits cleanly"

        written |= _produce(cluster, topic, 1200, 300)

        def everything_read() -> bool:
            read = set().union(*(w.state()[1] for w in workers))
            missing = written - read
            if missing:
                raise NotYet(f"{len(missing)} of {len(written)} records not read yet, "
                             f"e.g. {sorted(missing)[:5]}")
            return True

        cluster.wait_until(everything_read, timeout_s=60, what="every record to be read")
        report_figure(f"rebalance after SIGKILL of a member: {after_kill_s:.1f} s "
                      f"(session timeout {SESSION_MS / 1000:g} s); after a clean leave: "
                      f"{after_leave_s:.2f} s")
    finally:
        for w in workers:
            w.stop()


def test_committed_offsets_survive_a_kill_of_the_coordinator(
        cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    topic, group, partitions = "cg-durable", "cg-durable-group", 3
    create_topic(cluster.bootstrap, topic, partitions, 3)
    _produce(cluster, topic, 0, 300)
    first = Consumer(topic, bootstrap_servers=cluster.bootstrap, group_id=group,
                     auto_offset_reset="earliest", enable_auto_commit=False,
                     session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
    try:
        consumed: dict[int, list[int]] = {}

        def some_of_each() -> bool:
            for tp, records in first.poll(timeout_ms=200, max_records=7).items():
                consumed.setdefault(tp.partition, []).extend(r.offset for r in records)
            if len(consumed) < partitions:
                raise NotYet(f"read from partitions {sorted(consumed)}")
            return True

        cluster.wait_until(some_of_each, timeout_s=60, what="records from every partition")
        first.commit()
        committed = {p: first.committed(TopicPartition(topic, p)) for p in range(partitions)}
        assert committed == {p: max(offsets) + 1 for p, offsets in consumed.items()}
    finally:
        first.close()

    coordinator = cluster.cli_json("group", "describe", group)["coordinator"]
    cluster.kill(coordinator)
    survivors = [n for n in cluster.node_ids if n != coordinator]
    bootstrap = cluster.bootstrap_of(survivors)
    second = Consumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                      request_timeout_ms=10000)
    try:
        firsts: dict[int, int] = {}

        def resumed() -> bool:
            for tp, records in second.poll(timeout_ms=200).items():
                firsts.setdefault(tp.partition, records[0].offset)
            if len(firsts) < partitions:
                raise NotYet(f"first offsets so far {firsts}")
            return True

        cluster.wait_until(resumed, timeout_s=90,
                           what="a new member to resume after the coordinator's broker died")
        assert firsts == committed, "the new member resumes exactly after the last commit"
        assert {p: second.committed(TopicPartition(topic, p))
                for p in range(partitions)} == committed
    finally:
        second.close()
