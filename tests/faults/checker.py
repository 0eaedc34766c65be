"""Safety checks over a recorded history (history.py), after Jepsen's Kafka workload.

Violations, each counted (and a few examples kept for the report):

- lost: acknowledged, but the final reader did not find that value at the acknowledged offset
  (another value is there, or nothing although the final reader read past that offset or the
  log ends before it).
- unverified: acknowledged at an offset the final reader never reached (its read was cut
  short, or there was none): nothing can be said, so the run does not pass.
- duplicates: one value read at two (partition, offset) positions. Values are unique per send
  and the producers are idempotent, so the cluster made the copy.
- inconsistent: one (partition, offset) seen with two different values, by any readers at any
  time, or acknowledged with one value and read with another.
- ack_mismatch: a value read somewhere else than where its acknowledgement put it, or
  acknowledged in another partition than its send named.
- unordered: a consumer's reads of a partition go backwards (or repeat an offset) within one
  assignment. A recorded "assign" note (new assignment, rebalance, seek, new consumer) starts
  the partition over; skipping forward is always fine (control batches take offsets too).
- commit_backwards: a group's commit for a partition succeeded with a lower offset than a commit
  of that partition that had already succeeded before this one began (real-time order: commits
  whose calls overlap may land in either order).
- unexpected: a value read that was never sent, or whose send() refused it outright.

Sends that failed with an unknown outcome, or never got an answer, may be present or absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.faults.history import FINAL_READER, HistoryError

__all__ = ["EXAMPLES_PER_KIND", "VIOLATIONS", "Verdict", "check"]

EXAMPLES_PER_KIND = 5  # examples kept per violation kind; the counts are always complete
VIOLATIONS = ("lost", "unverified", "duplicates", "inconsistent", "ack_mismatch", "unordered",
              "commit_backwards", "unexpected")

Position = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    ok: bool  # no violation of any kind
    counts: Mapping[str, int]  # every VIOLATIONS key, plus what was seen (sent, acked, read, ...)
    problems: tuple[str, ...]  # at most EXAMPLES_PER_KIND examples per violation kind

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": dict(self.counts), "problems": list(self.problems)}


@dataclass(slots=True)
class _State:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("sent", "acked", "failed", "unknown", "unresolved", "reads", "final_reads",
         "commits", "commits_ok", "commits_failed", "assignments", "faults",
         "unacked_present", *VIOLATIONS), 0))
    examples: dict[str, list[str]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # value -> partition sent to
    refused: set[str] = field(default_factory=set)  # send() refused: certainly never written
    resolved: set[str] = field(default_factory=set)  # acked or failed
    acked: dict[str, Position] = field(default_factory=dict)
    seen_at: dict[Position, str] = field(default_factory=dict)  # first value seen there
    inconsistent_at: set[Position] = field(default_factory=set)
    read_at: dict[str, list[Position]] = field(default_factory=dict)  # value -> positions read
    final_at: dict[Position, str] = field(default_factory=dict)
    final_end: dict[int, tuple[int, int]] = field(default_factory=dict)  # p -> (end, reached)
    last_read: dict[tuple[str, int], int] = field(default_factory=dict)  # (consumer, p) -> o
    # (consumer, commit id) -> [(partition, offset, committed before it began or None)]
    commit_pending: dict[tuple[str, int], list[tuple[int, int, int | None]]] = field(
        default_factory=dict)
    committed_max: dict[tuple[str, int], int] = field(default_factory=dict)  # (group, p) -> o

    def violation(self, kind: str, text: str, n: int = 1) -> None:
        self.counts[kind] += n
        examples = self.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES_PER_KIND:
            examples.append(f"{kind}: {text}")


def check(ops: Iterable[dict]) -> Verdict:
    """Check a history (ops in recorded order, as History.load returns them)."""
    st = _State()
    for number, op in enumerate(ops, 1):
        try:
            _step(st, op)
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError(f"op {number} is malformed ({type(e).__name__}: {e}): "
                               f"{str(op)[:200]}") from None
    _finish(st)
    problems = tuple(text for kind in VIOLATIONS for text in st.examples.get(kind, ()))
    ok = all(st.counts[kind] == 0 for kind in VIOLATIONS)
    return Verdict(ok=ok, counts=st.counts, problems=problems)


def _step(st: _State, op: dict) -> None:
    match op["kind"]:
        case "send":
            st.counts["sent"] += 1
            st.sent[op["value"]] = int(op["partition"])
        case "ack":
            _ack(st, op)
        case "fail":
            st.resolved.add(op["value"])
            if op.get("definite"):
                st.counts["failed"] += 1
                st.refused.add(op["value"])
            else:
                st.counts["unknown"] += 1
        case "read":
            _read(st, op)
        case "commit":
            _commit(st, op)
        case "commit_ok":
            _commit_ok(st, op)
        case "commit_fail":
            st.counts["commits_failed"] += 1
            st.commit_pending.pop((op["consumer"], int(op["id"])), None)
        case "note":
            _note(st, op)
        case "fault":
            st.counts["faults"] += 1
        case _:
            pass


def _observe(st: _State, pos: Position, value: str, what: str) -> None:
    """One (partition, offset) -> value observation, by an ack or a read."""
    first = st.seen_at.setdefault(pos, value)
    if first != value and pos not in st.inconsistent_at:
        st.inconsistent_at.add(pos)
        st.violation("inconsistent", f"partition {pos[0]} offset {pos[1]}: {first!r} and "
                                     f"{value!r} ({what})")


def _ack(st: _State, op: dict) -> None:
    value, pos = op["value"], (int(op["partition"]), int(op["offset"]))
    st.counts["acked"] += 1
    st.resolved.add(value)
    st.acked[value] = pos
    sent_to = st.sent.get(value)
    if sent_to is not None and sent_to != pos[0]:
        st.violation("ack_mismatch", f"{value!r} sent to partition {sent_to}, acknowledged "
                                     f"in partition {pos[0]}")
    _observe(st, pos, value, f"acknowledged by {op.get('producer')}")


def _read(st: _State, op: dict) -> None:
    consumer, value = op["consumer"], op["value"]
    pos = (int(op["partition"]), int(op["offset"]))
    st.counts["reads"] += 1
    if value is None:
        st.violation("unexpected", f"{consumer} read a null value at partition {pos[0]} "
                                   f"offset {pos[1]}")
        return
    _observe(st, pos, value, f"read by {consumer}")
    positions = st.read_at.setdefault(value, [])
    if pos not in positions:
        positions.append(pos)
        if len(positions) == 2:
            st.violation("duplicates", f"{value!r} at partition/offset {positions[0]} and {pos}")
        elif len(positions) > 2:
            st.counts["duplicates"] += 1
    if consumer == FINAL_READER:
        st.counts["final_reads"] += 1
        st.final_at.setdefault(pos, value)
    key = (consumer, pos[0])
    last = st.last_read.get(key)
    if last is not None and pos[1] <= last:
        st.violation("unordered", f"{consumer} read partition {pos[0]} offset {pos[1]} after "
                                  f"offset {last} with no new assignment or seek recorded")
    st.last_read[key] = pos[1]


def _note(st: _State, op: dict) -> None:
    what = op.get("what")
    if what == "assign":
        st.counts["assignments"] += 1
        consumer, partitions = op["consumer"], op.get("partitions")
        for key in [k for k in st.last_read if k[0] == consumer
                    and (partitions is None or k[1] in partitions)]:
            del st.last_read[key]
    elif what == "final_end":
        p = int(op["partition"])
        end, reached = int(op["end"]), int(op["reached"])
        _old_end, old_reached = st.final_end.get(p, (end, reached))
        st.final_end[p] = (end, max(reached, old_reached))


def _commit(st: _State, op: dict) -> None:
    """A commit begins: each offset must not be below what had already been committed."""
    st.counts["commits"] += 1
    group = op["group"]
    pending = [(int(p), int(offset), st.committed_max.get((group, int(p))))
               for p, offset in op["offsets"]]
    st.commit_pending[(op["consumer"], int(op["id"]))] = pending


def _commit_ok(st: _State, op: dict) -> None:
    st.counts["commits_ok"] += 1
    group, consumer = op["group"], op["consumer"]
    pending = st.commit_pending.pop((consumer, int(op["id"])), None)
    for p, offset, floor in pending or ():  # an outcome without its commit: nothing to compare
        if floor is not None and offset < floor:
            st.violation("commit_backwards", f"group {group!r} partition {p}: {consumer} "
                                             f"committed {offset} after {floor} had been "
                                             "committed")
        st.committed_max[(group, p)] = max(offset, st.committed_max.get((group, p), offset))


def _finish(st: _State) -> None:
    for value, pos in st.acked.items():
        _check_acked(st, value, pos)
    for value, positions in st.read_at.items():
        if value not in st.sent or value in st.refused:
            why = "never sent" if value not in st.sent else "its send() was refused"
            st.violation("unexpected", f"{value!r} read at {positions[0]}: {why}")
        elif value not in st.acked:
            st.counts["unacked_present"] += 1
    st.counts["unresolved"] = sum(1 for v in st.sent if v not in st.resolved)


def _check_acked(st: _State, value: str, pos: Position) -> None:
    elsewhere = [at for at in st.read_at.get(value, ()) if at != pos]
    if elsewhere:
        st.violation("ack_mismatch", f"{value!r} acknowledged at partition/offset {pos}, "
                                     f"read at {elsewhere}")
    found = st.final_at.get(pos)
    if found == value:
        return
    p, offset = pos
    if found is not None:
        st.violation("lost", f"{value!r} acknowledged at partition {p} offset {offset}; "
                             f"the final read found {found!r} there")
        return
    end, reached = st.final_end.get(p, (-1, -1))
    if offset < reached or (reached >= end >= 0 and offset >= end):
        st.violation("lost", f"{value!r} acknowledged at partition {p} offset {offset}; the "
                             f"final read (end offset {end}, reached {reached}) did not find it")
    else:
        st.violation("unverified", f"{value!r} acknowledged at partition {p} offset {offset}; "
                                   f"the final read did not get there (end offset {end}, "
                                   f"reached {reached})")
