"""The failover benchmark's safety check: every acknowledged record is read back, once, where
the broker said it was written.

The load never re-sends a value: a request that failed or timed out has an unknown outcome, and
the retry carries fresh values. So, whatever the failures, each value may appear in a partition
at most once; a value appearing twice is a duplicate the cluster made. Acknowledged records must
be present at their acknowledged offset with their value; records whose request failed may or
may not be present (both outcomes are allowed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Ack", "CheckResult", "check_history"]

EXAMPLES_MAX = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    acked: int
    read: int
    lost: int  # acknowledged, but absent at its offset (missing or another value there)
    duplicates: int  # extra copies of values read back more than once
    unexpected: int  # values read back that the load never sent
    examples: tuple[str, ...]  # at most EXAMPLES_MAX, for the report

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.unexpected == 0


def check_history(acked: Iterable[Ack], read_back: Mapping[int, Sequence[tuple[int, bytes]]],
                  *, sent: Iterable[bytes] | None = None) -> CheckResult:
    """Compare the acknowledged records with the (offset, value) pairs read back per partition.
    `sent` (every value ever sent, acknowledged or not) enables the `unexpected` count."""
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < EXAMPLES_MAX:
            examples.append(text)

    at: dict[tuple[int, int], bytes] = {}
    duplicates = read = 0
    for partition, records in read_back.items():
        seen: set[bytes] = set()
        for offset, value in records:
            read += 1
            at[(partition, offset)] = value
            if value in seen:
                duplicates += 1
                note(f"partition {partition}: value {value!r} again at offset {offset}")
            seen.add(value)
    lost = count = 0
    for ack in acked:
        count += 1
        found = at.get((ack.partition, ack.offset))
        if found != ack.value:
            lost += 1
            note(f"partition {ack.partition} offset {ack.offset}: acknowledged {ack.value!r}, "
                 f"read back {found!r}")
    unexpected = 0
    if sent is not None:
        known = set(sent)
        for (partition, offset), value in at.items():
            if value not in known:
                unexpected += 1
                note(f"partition {partition} offset {offset}: {value!r} was never sent")
    return CheckResult(acked=count, read=read, lost=lost, duplicates=duplicates,
                       unexpected=unexpected, examples=tuple(examples))
