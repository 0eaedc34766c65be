"""Range and round-robin assignors: Kafka's results, every partition to exactly one
subscribed member, deterministic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.assignors import ASSIGNORS, range_assign, roundrobin_assign
from consumer.structs import TopicPartition as TP


def test_range_gives_contiguous_runs_extra_to_the_first_members() -> None:
    out = range_assign({"t": 7, "u": 2}, {"c": ["t", "u"], "a": ["t"], "b": ["t", "u"]})
    assert out == {"a": [TP("t", 0), TP("t", 1), TP("t", 2)],
                   "b": [TP("t", 3), TP("t", 4), TP("u", 0)],
                   "c": [TP("t", 5), TP("t", 6), TP("u", 1)]}


def test_roundrobin_deals_in_turn_skipping_unsubscribed_members() -> None:
    out = roundrobin_assign({"t": 3, "u": 3}, {"a": ["t", "u"], "b": ["u"], "c": ["t", "u"]})
    # Kafka's order: t-0 a, t-1 c (b skipped), t-2 a, u-0 b, u-1 c, u-2 a
    assert out == {"a": [TP("t", 0), TP("t", 2), TP("u", 2)], "b": [TP("u", 0)],
                   "c": [TP("t", 1), TP("u", 1)]}


def test_six_partitions_three_members_are_disjoint_and_complete() -> None:
    for assign in ASSIGNORS.values():
        out = assign({"orders": 6}, {m: ["orders"] for m in ("m1", "m2", "m3")})
        assert sorted(len(v) for v in out.values()) == [2, 2, 2]
        assert sorted(tp for v in out.values() for tp in v) == [TP("orders", p) for p in range(6)]


def test_missing_topics_and_members_get_nothing() -> None:
    assert range_assign({}, {"a": ["nope"]}) == {"a": []}
    assert roundrobin_assign({"t": 2}, {}) == {}


SUBSCRIPTIONS = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=3),
    st.lists(st.sampled_from(["t", "u", "v"]), min_size=1, max_size=3, unique=True),
    max_size=6)


@given(SUBSCRIPTIONS, st.fixed_dictionaries({"t": st.integers(0, 9), "u": st.integers(0, 9),
                                             "v": st.integers(0, 9)}))
def test_each_partition_goes_to_exactly_one_subscriber(subs, counts) -> None:
    for assign in ASSIGNORS.values():
        out = assign(counts, subs)
        assert out == assign(counts, dict(reversed(list(subs.items()))))  # order-independent
        owners: dict[TP, str] = {}
        for member, tps in out.items():
            for tp in tps:
                assert tp.topic in subs[member]
                assert tp not in owners
                owners[tp] = member
        wanted = {TP(t, p) for ts in subs.values() for t in ts for p in range(counts[t])}
        assert set(owners) == wanted
        sizes = [len(v) for v in out.values()]
        if subs and all(set(ts) == {"t"} for ts in subs.values()):
            assert max(sizes) - min(sizes) <= 1  # one topic, everyone on it: balanced
