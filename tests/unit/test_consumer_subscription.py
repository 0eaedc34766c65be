"""The consumer's subscription state and its option checks (pure parts)."""

from __future__ import annotations

import pytest

from consumer import ConsumerConfig, ConsumerConfigError, IllegalStateError
from consumer.structs import TopicPartition as TP
from consumer.subscription import Reset, SubscriptionState


def test_subscribe_and_assign_exclude_each_other() -> None:
    s = SubscriptionState(default_reset="latest", group=True)
    assert s.subscribe(["a", "b"]) is True
    assert s.subscribe(["b", "a"]) is False
    with pytest.raises(IllegalStateError):
        s.assign([TP("a", 0)])
    s.unsubscribe()
    s.assign([TP("a", 0)])
    with pytest.raises(IllegalStateError):
        s.subscribe(["a"])


def test_subscribe_needs_a_group() -> None:
    with pytest.raises(IllegalStateError):
        SubscriptionState(default_reset="latest", group=False).subscribe(["a"])


def test_new_partitions_start_from_committed_offsets_or_the_reset_policy() -> None:
    grouped = SubscriptionState(default_reset="earliest", group=True)
    grouped.assign([TP("a", 0)])
    assert grouped.needs_reset() == {TP("a", 0): Reset.COMMITTED}
    alone = SubscriptionState(default_reset="none", group=False)
    alone.assign([TP("a", 0)])
    assert alone.needs_reset() == {TP("a", 0): Reset.NONE}


def test_seek_and_reset_bump_the_epoch_and_unassigned_partitions_are_refused() -> None:
    s = SubscriptionState(default_reset="latest", group=False)
    s.assign([TP("a", 0), TP("a", 1)])
    st = s.assignment[TP("a", 0)]
    epoch = st.epoch
    s.seek(TP("a", 0), 5)
    assert (st.position, st.reset, st.epoch) == (5, None, epoch + 1)
    s.request_reset(TP("a", 0), Reset.EARLIEST)
    assert st.position is None and st.epoch == epoch + 2
    assert s.needs_reset()[TP("a", 0)] is Reset.EARLIEST
    with pytest.raises(IllegalStateError, match="not assigned"):
        s.seek(TP("b", 0), 1)
    with pytest.raises(ValueError):
        s.seek(TP("a", 0), -1)
    s.seek(TP("a", 1), 9)
    s.assign([TP("a", 1), TP("a", 2)])  # a kept partition keeps its position
    assert s.assignment[TP("a", 1)].position == 9 and TP("a", 0) not in s.assignment


def test_group_assignment_keeps_only_subscribed_topics() -> None:
    s = SubscriptionState(default_reset="latest", group=True)
    s.subscribe(["a"])
    s.set_group_assignment([TP("a", 0), TP("other", 0)])
    assert set(s.assignment) == {TP("a", 0)}
    s.revoke_all()
    assert not s.assignment


@pytest.mark.parametrize("options", [
    {"auto_offset_reset": "middle"},
    {"session_timeout_ms": 1000, "heartbeat_interval_ms": 1000},
    {"max_poll_records": 0},
    {"partition_assignment_strategy": ("sticky",)},
    {"group_id": ""},
    {"value_deserializer": "not callable"},
    {"fetch_max_wait_ms": -1},
])
def test_bad_options_are_refused(options) -> None:
    with pytest.raises(ConsumerConfigError):
        ConsumerConfig(**options)


def test_auto_commit_is_off_without_a_group() -> None:
    assert ConsumerConfig().enable_auto_commit is False
    assert ConsumerConfig(group_id="g").enable_auto_commit is True
