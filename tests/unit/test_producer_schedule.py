"""The accumulator's schedule: which partitions a drain looks at (touched ones, and those
whose timer ran out), one live timer per partition, and a heap that stays bounded."""

from __future__ import annotations

from producer.schedule import Schedule


def test_touched_partitions_are_looked_at_once() -> None:
    s: Schedule[str] = Schedule()
    s.touch("a")
    s.touch("b")
    s.touch("a")
    assert s.due(0.0) == ["a", "b"]
    assert s.due(0.0) == []
    assert "a" in s and "b" in s
    s.check_invariants()


def test_a_timer_makes_a_partition_due_at_its_time_and_the_earliest_wins() -> None:
    s: Schedule[str] = Schedule()
    s.touch("a")
    s.due(0.0)
    s.schedule("a", 5.0)
    s.schedule("a", 3.0)  # earlier: replaces
    s.schedule("a", 9.0)  # later: the earlier look stands
    s.schedule("a", None)  # only an event: nothing changes
    assert s.next_s() == 3.0
    assert s.due(2.9) == []
    assert s.due(3.0) == ["a"]
    assert s.next_s() is None, "the replaced entry is stale, not a timer"
    s.check_invariants()


def test_forgotten_partitions_leave_no_timer_and_everything_lists_the_rest() -> None:
    s: Schedule[str] = Schedule()
    for p in "abc":
        s.touch(p)
        s.schedule(p, 1.0)
    s.forget("b")
    assert s.everything() == ["a", "c"]
    assert s.due(0.0) == []
    assert s.due(1.0) == ["a", "c"]
    s.check_invariants()


def test_stale_heap_entries_stay_bounded() -> None:
    s: Schedule[int] = Schedule()
    s.touch(1)
    for i in range(500):
        s.schedule(1, 1e6 - i)  # each earlier than the last: the previous goes stale
        s.check_invariants()
    assert s.next_s() == 1e6 - 499
