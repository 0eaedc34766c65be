"""Flow control per follower: Inflights (count and byte bounds) and Progress transitions."""

from __future__ import annotations

import pytest

from broker.raft.progress import Inflights, Progress, ProgressState


def test_inflights_full_by_count() -> None:
    inf = Inflights(3, 1000)
    for i in (5, 7, 9):
        assert not inf.full()
        inf.add(i, 10)
    assert inf.full() and len(inf) == 3 and inf.bytes == 30
    inf.free_le(6)
    assert not inf.full() and len(inf) == 2 and inf.first() == 7 and inf.last() == 9
    inf.free_le(100)
    assert len(inf) == 0 and inf.bytes == 0 and inf.first() == 0
    inf.check()


def test_inflights_full_by_bytes_lets_one_message_overshoot() -> None:
    inf = Inflights(100, 25)
    inf.add(1, 10)
    inf.add(2, 10)
    assert not inf.full()
    inf.add(3, 10)  # 30 >= 25: full now
    assert inf.full()
    inf.check()
    with pytest.raises(AssertionError):
        inf.add(4, 1)
    inf.free_le(1)
    assert not inf.full() and inf.bytes == 20


def test_inflights_reset_and_free_nothing() -> None:
    inf = Inflights(2, 10)
    inf.add(4, 3)
    inf.free_le(3)
    assert len(inf) == 1
    inf.reset()
    assert len(inf) == 0 and inf.bytes == 0


def new_progress(next_index: int = 10, count_max: int = 2) -> Progress:
    return Progress(next_index=next_index, is_learner=False, count_max=count_max, bytes_max=1000)


def test_probe_pauses_after_one_append_until_answer() -> None:
    pr = new_progress()
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(12, 5)
    assert pr.is_paused() and pr.next == 10  # a probe does not move next optimistically
    assert pr.maybe_update(12)
    assert pr.match == 12 and pr.next == 13 and not pr.is_paused()


def test_replicate_streams_until_window_full() -> None:
    pr = new_progress()
    pr.maybe_update(9)
    pr.become_replicate()
    assert pr.next == 10
    pr.sent_entries(11, 5)
    pr.sent_entries(13, 5)
    assert pr.next == 14 and pr.is_paused()
    assert pr.maybe_update(11)
    pr.inflights.free_le(11)
    assert not pr.is_paused()
    pr.check(last_index=13)


def test_maybe_update_ignores_stale_ack() -> None:
    pr = new_progress()
    pr.maybe_update(15)
    assert not pr.maybe_update(12)
    assert pr.match == 15 and pr.next == 16


def test_probe_rejection_uses_hint_and_ignores_stale() -> None:
    pr = new_progress(next_index=20)
    pr.sent_entries(25, 1)
    # A rejection of some other probe is stale.
    assert not pr.maybe_decr_to(rejected=15, match_hint=3)
    assert pr.is_paused()
    # The rejection of our probe (prev index 19): jump to the hint.
    assert pr.maybe_decr_to(rejected=19, match_hint=7)
    assert pr.next == 8 and not pr.is_paused()
    # Never below match + 1, never above the rejected index.
    pr.match = 5
    pr.next = 9
    assert pr.maybe_decr_to(rejected=8, match_hint=2)
    assert pr.next == 6
    pr.next = 9
    assert pr.maybe_decr_to(rejected=8, match_hint=100)
    assert pr.next == 8


def test_replicate_rejection_falls_back_to_match() -> None:
    pr = new_progress()
    pr.maybe_update(9)
    pr.become_replicate()
    pr.sent_entries(12, 3)
    assert not pr.maybe_decr_to(rejected=8, match_hint=0)  # older than match: stale
    assert pr.maybe_decr_to(rejected=12, match_hint=0)
    assert pr.next == 10
    pr.become_probe()
    assert pr.state is ProgressState.PROBE and len(pr.inflights) == 0 and pr.next == 10


def test_progress_check_catches_broken_state() -> None:
    pr = new_progress()
    pr.match = 10  # match must stay below next
    with pytest.raises(AssertionError):
        pr.check(last_index=20)
