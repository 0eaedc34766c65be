"""The nemesis schedule is pure data: the same seed gives the same schedule, it survives a JSON
round trip, every requested kind appears, and faults overlap only in the ways the module allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.nemesis import (
    COMBINABLE_KINDS,
    EXCLUSIVE_KINDS,
    FAULT_KINDS,
    NETWORK_KINDS,
    Schedule,
    ScheduleError,
    generate,
    parse_kinds,
)


def _make(seed: int, *, brokers: int = 3, duration_s: float = 120.0,
          kinds: tuple[str, ...] = FAULT_KINDS) -> Schedule:
    return generate(seed=seed, duration_s=duration_s, kinds=kinds, brokers=brokers,
                    voters=3, partitions=6, disk_broker=2)


@pytest.mark.parametrize("seed", range(20))
def test_same_seed_same_schedule_and_json_round_trip(seed: int, tmp_path: Path) -> None:
    schedule = _make(seed)
    assert _make(seed) == schedule
    assert _make(seed + 1000) != schedule
    path = tmp_path / "schedule.json"
    schedule.write(path)
    assert Schedule.read(path) == schedule, f"seed {seed}"


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("brokers", [3, 5])
def test_every_kind_appears_and_overlaps_are_safe(seed: int, brokers: int) -> None:
    schedule = _make(seed, brokers=brokers, duration_s=5.0)  # shorter than one of each
    assert set(schedule.kinds) <= {s.kind for s in schedule.steps}, f"seed {seed}"
    steps = schedule.steps
    assert [s.at_s for s in steps] == sorted(s.at_s for s in steps), f"seed {seed}"
    for i, step in enumerate(steps):
        assert step.duration_s >= 0 and step.at_s > 0, (seed, step)
        assert all(1 <= b <= brokers for b in step.targets), (seed, step)
        overlapping = [(j, other) for j, other in enumerate(steps) if j != i
                       and other.at_s < step.heal_at_s and step.at_s < other.heal_at_s]
        for j, other in overlapping:
            # the only overlap: a combined step on the broker of the step it joins
            first, second = (step, other) if i < j else (other, step)
            assert second.combined_with == min(i, j), (seed, first, second)
            assert first.kind in COMBINABLE_KINDS, (seed, first, second)
            assert second.targets == first.targets and second.role == first.role
            assert {first.kind, second.kind}.isdisjoint(EXCLUSIVE_KINDS)
            assert not (first.kind in NETWORK_KINDS and second.kind in NETWORK_KINDS)


def test_majority_kinds_take_a_majority_and_partitions_split_everyone() -> None:
    for seed in range(20):
        for brokers in (3, 5):
            for step in _make(seed, brokers=brokers, duration_s=60.0).steps:
                match step.kind:
                    case "kill-majority":
                        assert len(set(step.targets)) == brokers // 2 + 1, step
                    case "partition-majority":
                        assert sorted(step.targets) == list(range(1, brokers + 1)), step
                    case "full-restart" | "rolling-restart":
                        assert sorted(step.targets) == list(range(1, brokers + 1)), step
                    case "kill-leader" | "partition-leader" | "partition-one-way":
                        assert step.role == "controller" or step.role.startswith("leader:")
                    case "disk-full":
                        assert step.targets == (2,)
                    case "corrupt-segment":
                        assert len(step.targets) == 1 and step.mode in ("flip", "truncate")


def test_combinations_happen_for_some_seeds() -> None:
    combined = [s for seed in range(20)
                for s in _make(seed, kinds=("pause", "partition-leader", "disk-full")).steps
                if s.combined_with >= 0]
    assert combined, "no seed of 20 combined two faults"


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(ScheduleError, match="unknown fault kinds"):
        parse_kinds("kill-leader,flood")
    assert parse_kinds(" pause , kill-leader") == ("kill-leader", "pause")
    with pytest.raises(ScheduleError):
        Schedule.from_json('{"version": 1}')
    with pytest.raises(ScheduleError):
        Schedule.from_json("not json")
    with pytest.raises(ScheduleError, match="disk"):
        generate(seed=1, duration_s=10, kinds=("disk-full",), brokers=3, partitions=6)
    text = _make(1).to_json().replace('"kill-leader"', '"kill-everything"')
    with pytest.raises(ScheduleError, match="unknown fault kinds"):
        Schedule.from_json(text)
