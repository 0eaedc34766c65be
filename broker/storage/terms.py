"""Raft terms of a log as runs: (first index, term) at each term change.

Terms change only at elections, so a few runs describe millions of entries and `term_at` is
one bisect (Kafka's leader-epoch cache plays the same role).
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["TermRuns"]


class TermRuns:
    __slots__ = ("starts", "terms")

    def __init__(self, index: int, term: int) -> None:
        """Runs starting with the log-start entry `index` (possibly deleted) at `term`."""
        self.starts: list[int] = [index]  # increasing; starts[0] <= the log-start index
        self.terms: list[int] = [term]  # increasing (a run exists only where the term changes)

    def note(self, index: int, term: int) -> None:
        """Entry `index` (the next one) has `term`."""
        if term != self.terms[-1]:
            self.starts.append(index)
            self.terms.append(term)

    def term_at(self, index: int) -> int:
        k = bisect_right(self.starts, index) - 1
        assert k >= 0, (index, self.starts[0])
        return self.terms[k]

    def truncate_after(self, index: int) -> None:
        """Forget the terms of entries after `index`."""
        while len(self.starts) > 1 and self.starts[-1] > index:
            self.starts.pop()
            self.terms.pop()

    def drop_before(self, index: int) -> None:
        """The log now starts at entry `index`: keep only the runs from the one holding it."""
        k = bisect_right(self.starts, index) - 1
        if k > 0:
            del self.starts[:k], self.terms[:k]

    def check_invariants(self) -> None:
        assert len(self.starts) == len(self.terms) >= 1
        for k in range(1, len(self.starts)):
            assert self.starts[k - 1] < self.starts[k]
            assert self.terms[k - 1] < self.terms[k], self.terms
