"""The simulated network and event queue: seeded fates, partitions that heal, time order."""

from __future__ import annotations

import random

from tests.sim.events import EventQueue
from tests.sim.network import Network, NetworkConfig

FAULTY = NetworkConfig(
    drop_probability=0.2, duplicate_probability=0.2, delay_probability=0.2, delay_us_max=50_000
)


def test_same_seed_same_fates() -> None:
    def fates(seed: int) -> list[tuple[int, ...]]:
        net = Network(FAULTY, random.Random(seed))
        return [net.fate(1, 2) for _ in range(500)]

    assert fates(7) == fates(7)
    assert fates(7) != fates(8)


def test_faults_happen_at_their_rates_and_stop() -> None:
    net = Network(FAULTY, random.Random(3))
    copies = [len(net.fate(1, 2)) for _ in range(5_000)]
    assert 800 < copies.count(0) < 1_200  # ~20% dropped
    assert copies.count(2) > 500  # duplicated
    assert net.stats["delayed"] > 500
    net.faulty = False
    assert all(len(net.fate(1, 2)) == 1 for _ in range(1_000))


def test_partitions_cut_both_ways_and_overlapping_ones_heal_independently() -> None:
    net = Network(NetworkConfig(), random.Random(1))
    p1 = net.partition([1], [2, 3])
    p2 = net.cut([(2, 1)])  # one-way, overlapping p1 on 2 -> 1
    assert net.is_cut(1, 2) and net.is_cut(2, 1) and net.is_cut(3, 1)
    assert not net.is_cut(2, 3)
    assert net.fate(1, 3) == ()
    net.heal(p1)
    assert not net.is_cut(1, 2) and net.is_cut(2, 1)
    net.heal(p2)
    assert not net.is_cut(2, 1) and net.partitions_active == 0
    net.partition([1, 2], [3])
    net.heal_all()
    assert not net.is_cut(3, 1)


def test_event_queue_orders_by_time_then_scheduling_order() -> None:
    q = EventQueue()
    q.push(20, 0, 1)
    q.push(10, 0, 2)
    q.push(20, 0, 3)
    q.push(10, 0, 4)
    order = [q.pop() for _ in range(4)]
    assert [ev[3] for ev in order] == [2, 4, 1, 3]
    assert q.now_us == 20 and len(q) == 0
