"""The checker on synthetic histories: a clean one passes; each kind of violation, planted in an
otherwise clean history, is found and counted; what is allowed stays allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.checker import EXAMPLES_PER_KIND, VIOLATIONS, check
from tests.faults.history import FINAL_READER, History, HistoryError, from_text, to_text

PARTITIONS = 2
PER_PARTITION = 4


class Story:
    """Builds a history: ops in order, as the workload would record them."""

    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.commit_ids: dict[str, int] = {}

    def add(self, kind: str, **fields: object) -> Story:
        self.ops.append({"kind": kind, "t": float(len(self.ops)), "thread": "test", **fields})
        return self

    def send(self, value: str, p: int) -> Story:
        return self.add("send", producer="p0", value=value, partition=p)

    def ack(self, value: str, p: int, o: int) -> Story:
        return self.add("ack", producer="p0", value=value, partition=p, offset=o)

    def fail(self, value: str, *, definite: bool = False) -> Story:
        return self.add("fail", producer="p0", value=value, error="DeliveryTimeoutError",
                        definite=definite)

    def read(self, consumer: str, p: int, o: int, value: str | None) -> Story:
        return self.add("read", consumer=consumer, partition=p, offset=o, value=value)

    def assign(self, consumer: str, partitions: list[int] | None = None) -> Story:
        return self.add("note", what="assign", consumer=consumer, partitions=partitions,
                        reason="test")

    def commit(self, consumer: str, p: int, o: int, *, ok: bool = True) -> Story:
        self.begin_commit(consumer, p, o)
        return self.end_commit(consumer, ok=ok)

    def begin_commit(self, consumer: str, p: int, o: int) -> Story:
        self.commit_ids[consumer] = self.commit_ids.get(consumer, 0) + 1
        return self.add("commit", consumer=consumer, group="g", id=self.commit_ids[consumer],
                        offsets=[[p, o]])

    def end_commit(self, consumer: str, *, ok: bool = True, commit_id: int | None = None
                   ) -> Story:
        cid = self.commit_ids[consumer] if commit_id is None else commit_id
        if ok:
            return self.add("commit_ok", consumer=consumer, group="g", id=cid)
        return self.add("commit_fail", consumer=consumer, group="g", id=cid,
                        error="CommitFailedError", definite=True)

    def final(self, log: dict[int, list[str]], reached: dict[int, int] | None = None) -> Story:
        """The final reader reads every partition's log from offset 0."""
        for p, values in sorted(log.items()):
            self.assign(FINAL_READER, [p])
            for o, value in enumerate(values):
                self.read(FINAL_READER, p, o, value)
            got = len(values) if reached is None else reached[p]
            self.add("note", what="final_end", partition=p, end=len(values), reached=got)
        return self


def value(p: int, o: int) -> str:
    return f"p0-{p * PER_PARTITION + o}"


def clean_log() -> dict[int, list[str]]:
    return {p: [value(p, o) for o in range(PER_PARTITION)] for p in range(PARTITIONS)}


def clean_story(log: dict[int, list[str]] | None = None) -> Story:
    """Every record sent and acked, read by a standalone consumer and a group consumer that
    commits, then read back by the final reader."""
    log = clean_log() if log is None else log
    s = Story()
    for p, values in sorted(clean_log().items()):
        for o, v in enumerate(values):
            s.send(v, p).ack(v, p, o)
    s.assign("s0")
    s.assign("g0", list(range(PARTITIONS)))
    for p, values in sorted(clean_log().items()):
        for o, v in enumerate(values):
            s.read("s0", p, o, v).read("g0", p, o, v)
        s.commit("g0", p, len(values))
    return s.final(log)


def verdict_of(s: Story) -> tuple[bool, dict[str, int], tuple[str, ...]]:
    v = check(s.ops)
    json.dumps(v.to_dict())  # the verdict is always JSON-serialisable
    return v.ok, dict(v.counts), v.problems


def only(counts: dict[str, int], kind: str) -> bool:
    """`kind` is the only violation counted (others could hide a checker that flags anything)."""
    return counts[kind] > 0 and all(counts[k] == 0 for k in VIOLATIONS if k != kind)


def test_clean_history_passes() -> None:
    ok, counts, problems = verdict_of(clean_story())
    assert ok, problems
    assert problems == ()
    n = PARTITIONS * PER_PARTITION
    assert counts["sent"] == counts["acked"] == counts["final_reads"] == n
    assert counts["reads"] == 3 * n
    assert counts["commits_ok"] == PARTITIONS
    assert all(counts[k] == 0 for k in VIOLATIONS)


def test_lost_ack_is_found() -> None:
    log = clean_log()
    log[1] = log[1][:2] + [value(1, 3)]  # offset 2 vanished: the later record moved down
    ok, counts, problems = verdict_of(clean_story(log))
    assert not ok
    assert counts["lost"] == 2  # value(1, 2) is missing, value(1, 3) is not at its offset
    assert any("lost" in p for p in problems)


def test_truncated_log_is_loss_but_a_short_read_is_unverified() -> None:
    log = clean_log()
    log[0] = log[0][:3]  # the log ends before the last acknowledged offset
    ok, counts, _ = verdict_of(clean_story(log))
    assert not ok and only(counts, "lost") and counts["lost"] == 1

    s = clean_story()
    s.ops = [op for op in s.ops if not (op["kind"] == "read" and op["consumer"] == FINAL_READER
                                        and op["partition"] == 0 and op["offset"] == 3)]
    for op in s.ops:
        if op.get("what") == "final_end" and op["partition"] == 0:
            op["reached"] = 3  # the final reader ran out of time before offset 3
    ok, counts, problems = verdict_of(s)
    assert not ok and only(counts, "unverified"), problems


def test_no_final_read_leaves_acks_unverified() -> None:
    s = clean_story()
    s.ops = [op for op in s.ops if op.get("consumer") != FINAL_READER
             and op.get("what") != "final_end"]
    ok, counts, _ = verdict_of(s)
    assert not ok and only(counts, "unverified")
    assert counts["unverified"] == PARTITIONS * PER_PARTITION


def test_duplicate_value_at_two_offsets() -> None:
    log = clean_log()
    log[0].append(value(0, 1))  # the cluster wrote value(0, 1) twice
    ok, counts, problems = verdict_of(clean_story(log))
    assert not ok and counts["duplicates"] == 1
    assert any("duplicates" in p for p in problems)


def test_same_offset_two_values_across_readers() -> None:
    s = clean_story()
    s.assign("s1").read("s1", 0, 2, value(1, 2))  # another reader sees a different record there
    ok, counts, problems = verdict_of(s)
    assert not ok and counts["inconsistent"] == 1
    assert any("inconsistent" in p for p in problems)


def test_ack_and_read_disagree() -> None:
    s = Story().send("a", 0).ack("a", 0, 0).send("b", 0).ack("b", 0, 1)
    s.assign("s0").read("s0", 0, 0, "b")  # b read where a was acknowledged
    s.final({0: ["a", "b"]})
    ok, counts, _ = verdict_of(s)
    assert not ok
    assert counts["inconsistent"] == 1 and counts["ack_mismatch"] == 1
    assert counts["duplicates"] == 1 and counts["lost"] == 0

    s = Story().send("a", 0).ack("a", 1, 0)  # acknowledged in another partition than sent to
    s.final({0: [], 1: ["a"]})
    ok, counts, _ = verdict_of(s)
    assert not ok and only(counts, "ack_mismatch")


def test_consumer_going_backwards_within_an_assignment() -> None:
    s = clean_story()
    s.read("g0", 0, 1, value(0, 1))  # g0 read offset 3 last, with no rebalance since
    ok, counts, problems = verdict_of(s)
    assert not ok and only(counts, "unordered")
    assert any("unordered" in p for p in problems)


def test_repeating_an_offset_is_unordered_too() -> None:
    s = clean_story()
    s.read("s0", 1, PER_PARTITION - 1, value(1, PER_PARTITION - 1))
    ok, counts, _ = verdict_of(s)
    assert not ok and only(counts, "unordered")


@pytest.mark.parametrize("partitions", [None, [0], [0, 1]])
def test_going_back_after_a_reassignment_or_seek_is_fine(partitions: list[int] | None) -> None:
    s = clean_story()
    s.assign("g0", partitions).read("g0", 0, 1, value(0, 1))
    ok, _counts, problems = verdict_of(s)
    assert ok, problems


def test_reassigning_another_partition_does_not_excuse_this_one() -> None:
    s = clean_story()
    s.assign("g0", [1]).read("g0", 0, 1, value(0, 1))
    assert only(verdict_of(s)[1], "unordered")
    s = clean_story()
    s.assign("s0").read("g0", 0, 1, value(0, 1))  # another consumer's assignment
    assert only(verdict_of(s)[1], "unordered")


def test_skipping_forward_is_fine() -> None:
    s = Story().send("a", 0).ack("a", 0, 0).send("b", 0).ack("b", 0, 5)
    s.assign("s0").read("s0", 0, 0, "a").read("s0", 0, 5, "b")
    s.assign(FINAL_READER).read(FINAL_READER, 0, 0, "a").read(FINAL_READER, 0, 5, "b")
    s.add("note", what="final_end", partition=0, end=6, reached=6)
    ok, _counts, problems = verdict_of(s)
    assert ok, problems


def test_commit_going_backwards() -> None:
    s = clean_story()
    s.commit("g1", 0, 2)  # below the PER_PARTITION that g0 committed earlier
    ok, counts, problems = verdict_of(s)
    assert not ok and only(counts, "commit_backwards")
    assert any("commit_backwards" in p for p in problems)


def test_overlapping_or_failed_commits_may_land_in_any_order() -> None:
    s = clean_story()
    s.begin_commit("g1", 0, PER_PARTITION + 1)  # begun before g0's higher commit succeeded:
    s.commit("g0", 0, PER_PARTITION + 2)         # the two may land in either order
    s.end_commit("g1", commit_id=1)
    s.commit("g1", 0, 1, ok=False)  # refused: the group's offset did not change
    ok, counts, problems = verdict_of(s)
    assert ok, problems
    assert counts["commits_failed"] == 1


def test_unexpected_value() -> None:
    s = clean_story()
    s.assign("s1").read("s1", 0, 9, "never-sent")
    ok, counts, problems = verdict_of(s)
    assert not ok and only(counts, "unexpected")
    assert any("never-sent" in p for p in problems)


def test_a_value_refused_by_send_must_not_appear() -> None:
    s = Story().send("a", 0).fail("a", definite=True)
    s.final({0: ["a"]})
    ok, counts, _ = verdict_of(s)
    assert not ok and only(counts, "unexpected")


@pytest.mark.parametrize("present", [False, True])
def test_failed_or_unknown_sends_may_be_present_or_absent(present: bool) -> None:
    s = clean_story(None)
    s.send("x", 0).fail("x")  # unknown outcome (a delivery timeout)
    s.send("y", 1)  # never answered
    log = clean_log()
    if present:
        log[0].append("x")
        log[1].append("y")
    s.final(log)
    ok, counts, problems = verdict_of(s)
    assert ok, problems
    assert counts["unknown"] == 1 and counts["unresolved"] == 1
    assert counts["unacked_present"] == (2 if present else 0)


def test_examples_are_bounded_and_counts_complete() -> None:
    s = clean_story()
    for i in range(3 * EXAMPLES_PER_KIND):
        s.read("s9", 5, i, f"ghost-{i}")
    ok, counts, problems = verdict_of(s)
    assert not ok and counts["unexpected"] == 3 * EXAMPLES_PER_KIND
    assert len(problems) == EXAMPLES_PER_KIND


def test_malformed_op_raises_a_typed_error() -> None:
    with pytest.raises(HistoryError):
        check([{"kind": "ack", "value": "a"}])


def test_history_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    raw = bytes(range(256))
    with History(path) as h:
        h.record("send", producer="p0", value=to_text(raw), partition=0)
        h.record("ack", producer="p0", value=to_text(raw), partition=0, offset=0)
        h.record("fault", name="kill-leader", targets=[1])
        assert h.counts() == {"send": 1, "ack": 1, "fault": 1}
        with pytest.raises(HistoryError):
            h.record("bogus")
        with pytest.raises(HistoryError):
            h.record("note", t=1.0)
        with pytest.raises(HistoryError):
            h.record("note", what=object())
    h.record("note", what="late")  # after close: dropped and counted, never raised
    assert h.dropped == 1
    with path.open("a", encoding="utf-8") as f:
        f.write('{"kind": "read", "consu')  # a writer that died mid-line
    ops = History.load(path)
    assert [op["kind"] for op in ops] == ["send", "ack", "fault"]
    assert from_text(ops[0]["value"]) == raw
    assert all(isinstance(op["t"], float) and op["thread"] for op in ops)
    assert check(ops).counts["acked"] == 1


def test_only_a_last_line_without_its_newline_passes_for_a_torn_write(tmp_path: Path) -> None:
    """iter_ops streams the file: a torn tail is told apart by its missing newline, and a bad
    line anywhere else (the last one included, when whole) is an error."""
    good = '{"kind": "fault", "t": 1.0, "thread": "main", "name": "pause"}\n'
    torn = tmp_path / "torn.jsonl"
    torn.write_text(good * 3 + '{"kind": "ack", "val')
    assert [op["kind"] for op in History.iter_ops(torn)] == ["fault"] * 3
    for name, text in (("middle", good + "{oops\n" + good), ("last", good + "{oops\n")):
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text(text)
        ops = History.iter_ops(bad)
        assert next(ops)["kind"] == "fault"  # what precedes the bad line is read first
        with pytest.raises(HistoryError, match=f"{bad}:2: not JSON"):
            next(ops)
