"""Leadership moving between live brokers (the leader balancer giving a restarted broker back
the partitions it is preferred for) never shows a client a leaderless partition.

Kafka's brokers name the previous leader until the controller's change reaches them, so a
healthy cluster's Metadata never says "no leader" (-1) for a planned move, and some clients
depend on it: kafka-python's `end_offsets` silently leaves such a partition out of its answer.
Here two brokers that stay up are asked for Metadata over raw sockets, as fast as they answer,
while the third restarts and takes its preferred leaderships back; every answer must name a
leader for every partition, and the test checks that leaderships did move meanwhile (else it
proved nothing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet
from tests.integration.kafka_wire import KafkaSocket, metadata_request, parse_metadata_v1

pytestmark = pytest.mark.timeout(240)

TOPIC = "moves"
PARTITIONS = 6
POLLS_MAX = 200_000  # bounds the pollers (they stop at the moves' end, normally far sooner)


class _MetadataPoller:
    """Asks one broker for the topic's Metadata in a loop; keeps every leaderless answer and
    every leader seen per partition."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.leaderless: list[tuple[int, int, int]] = []  # (partition, error code, leader id)
        self.leaders_seen: dict[int, list[int]] = {}  # partition -> leaders in order seen
        self.polls = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll {address}", daemon=True)

    def start(self) -> _MetadataPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            with KafkaSocket(self.address) as sock:
                while not self._stop.is_set() and self.polls < POLLS_MAX:
                    self.polls += 1
                    sock.send(metadata_request(self.polls, [TOPIC]))
                    self._note(parse_metadata_v1(sock.expect_response()))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _note(self, answer) -> None:  # type: ignore[no-untyped-def]
        for (_topic, index), p in answer.partitions.items():
            if p.leader_id < 0 or p.error_code != 0:
                self.leaderless.append((index, p.error_code, p.leader_id))
            seen = self.leaders_seen.setdefault(index, [])
            if not seen or seen[-1] != p.leader_id:
                seen.append(p.leader_id)


def _preferred(cluster: LocalCluster, bootstrap: str) -> dict[int, int]:
    with KafkaSocket(bootstrap.split(",")[0]) as sock:
        sock.send(metadata_request(1, [TOPIC]))
        answer = parse_metadata_v1(sock.expect_response())
    return {index: p.replicas[0] for (_t, index), p in answer.partitions.items()}


def test_balancer_moves_never_show_a_leaderless_partition(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    cluster = cluster_factory()
    cluster.create_topic(TOPIC, PARTITIONS, 3)
    victim = cluster.node_ids[0]
    others = [i for i in cluster.node_ids if i != victim]
    survivors = cluster.bootstrap_of(others)
    preferred = _preferred(cluster, survivors)
    coming_back = sorted(p for p, n in preferred.items() if n == victim)
    assert coming_back, f"broker {victim} is preferred for no partition: {preferred}"

    cluster.terminate(victim)
    cluster.wait_topic_leaders(TOPIC, PARTITIONS, excluded=[victim], bootstrap=survivors)
    pollers = [_MetadataPoller(cluster.address(n)).start() for n in others]
    try:
        started_s = time.monotonic()
        cluster.restart(victim)

        def moved_back() -> bool:
            leaders = cluster.leaders(TOPIC, bootstrap=survivors)
            if any(leaders.get(p) != victim for p in coming_back):
                raise NotYet(f"leaders {leaders}; broker {victim} should lead {coming_back}")
            return True

        cluster.wait_until(moved_back, timeout_s=90,
                           what=f"the balancer to give broker {victim} back {coming_back}")
        time.sleep(0.5)  # the pollers see the last move settle everywhere
        moved_s = time.monotonic() - started_s
    finally:
        for poller in pollers:
            poller.stop()

    for poller in pollers:
        assert poller.error is None, f"polling {poller.address}: {poller.error!r}"
        assert not poller.leaderless, (
            f"{poller.address} answered Metadata without a leader "
            f"{len(poller.leaderless)} times in {poller.polls} polls, e.g. (partition, error, "
            f"leader) {poller.leaderless[:10]}\n{cluster.diagnostics()}")
        for p in coming_back:
            assert poller.leaders_seen[p][-1] == victim, (
                f"{poller.address} never saw partition {p} move to broker {victim}: "
                f"{poller.leaders_seen[p]}")
    report_figure(f"{len(coming_back)} leaderships moved back to restarted broker {victim} "
                  f"within {moved_s:.1f} s of its restart; Metadata polls answered "
                  f"{[p.polls for p in pollers]}, none leaderless")


def test_a_restarted_broker_names_every_leader_in_its_first_metadata_answer(
        cluster_factory: ClusterFactory) -> None:
    """A broker opens its client port once the running peers have told it which partitions
    they lead: the first Metadata it answers after a restart names a leader for each."""
    cluster = cluster_factory()
    cluster.create_topic(TOPIC, PARTITIONS, 3)
    victim = cluster.node_ids[-1]
    others = [i for i in cluster.node_ids if i != victim]
    cluster.terminate(victim)
    cluster.wait_topic_leaders(TOPIC, PARTITIONS, excluded=[victim],
                               bootstrap=cluster.bootstrap_of(others))
    cluster.restart(victim)  # returns once the client port accepts connections
    with KafkaSocket(cluster.address(victim)) as sock:
        sock.send(metadata_request(1, [TOPIC]))
        answer = parse_metadata_v1(sock.expect_response())
    assert answer.topic_errors == {TOPIC: 0}, answer
    leaderless = {index: (p.error_code, p.leader_id) for (_t, index), p in
                  answer.partitions.items() if p.error_code != 0 or p.leader_id < 0}
    assert len(answer.partitions) == PARTITIONS and not leaderless, (
        f"restarted broker {victim}'s first Metadata: partitions without a leader "
        f"(error, leader) {leaderless}\n{cluster.diagnostics()}")
    assert {p.leader_id for p in answer.partitions.values()} <= set(others)
