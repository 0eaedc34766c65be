"""The history of a fault-injection run: every send, acknowledgement, read, commit and fault, as
JSON lines written while the run goes on.

Each line is one operation: an object with `kind` (one of KINDS), `t` (seconds since the
history was opened, time.monotonic), `thread` (the recording thread's name) and the kind's own
fields. The workload (workload.py) documents the fields of the kinds it writes; the checker
(checker.py) reads them.

Record values are bytes on the wire; in the history they are strings: the bytes decoded as
latin-1, which maps every byte to the code point of the same number, so any value round-trips
(`to_text` / `from_text`) and the ASCII values the workload sends read as themselves.

The kinds and their fields (every offset and partition an int, every value a string as above):

    send        producer, value, partition          before the producer is handed the record
    ack         producer, value, partition, offset  the broker acknowledged it there (acks=all)
    fail        producer, value, error, definite    error: the exception's type name; definite:
                                                    True only when the record certainly was not
                                                    written (send() refused it before queueing),
                                                    False for an unknown outcome (timeouts, a
                                                    lost connection, a producer closed with the
                                                    record in flight)
    read        consumer, partition, offset, value  one record handed out to a consumer
    commit      consumer, group, id, offsets        id: per consumer, pairs the outcome with it;
                                                    offsets: [[partition, offset], ...]
    commit_ok   consumer, group, id
    commit_fail consumer, group, id, error, definite
    note        what, ...                           what="assign": consumer, partitions (a list,
                                                    or None for all), reason: that consumer's
                                                    reads of those partitions start over (a new
                                                    assignment, a rebalance, a seek, a new
                                                    consumer object); what="final_end":
                                                    partition, end (the end offset when the
                                                    final read began), reached (the position
                                                    the final reader got to); other notes
                                                    (errors, phases) are for people
    fault/heal  whatever the nemesis records

The final reader (Workload.drain_and_read_all) reads as consumer FINAL_READER.

Memory stays small however long the run: lines go to the file as they are recorded (flushed at
least every FLUSH_INTERVAL_S), and the recorder keeps only a count per kind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["FINAL_READER", "KINDS", "FLUSH_INTERVAL_S", "History", "HistoryError", "Op", "from_text", "to_text"]

KINDS = frozenset({"send", "ack", "fail", "read", "commit", "commit_ok", "commit_fail",
                   "fault", "heal", "note"})
FINAL_READER = "final"
FLUSH_INTERVAL_S = 0.5  # at most this much of the history is lost if the process dies
_RESERVED = frozenset({"kind", "t", "thread"})


class HistoryError(ValueError):
    """An operation that cannot be recorded (unknown kind, reserved or unserialisable field),
    or a history file that cannot be read back."""


def to_text(value: bytes | None) -> str | None:
    """A record value as the history stores it (latin-1: byte n is code point n)."""
    return None if value is None else value.decode("latin-1")


def from_text(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One recorded operation; `fields` holds the kind's own JSON-serialisable fields."""

    kind: str
    t: float  # seconds since the history was opened
    thread: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "t": round(self.t, 6), "thread": self.thread,
                           **self.fields}, separators=(",", ":"))


class History:
    """Thread-safe, append-only; a context manager that closes the file on exit."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._start_s = time.monotonic()
        self._flushed_s = self._start_s
        self._counts: dict[str, int] = {}
        self.dropped = 0  # records that arrived after close() (a late callback): not written

    def record(self, kind: str, **fields: Any) -> None:
        """Append one operation. Raises HistoryError for an unknown kind or a field that JSON
        cannot hold, before anything is written."""
        if kind not in KINDS:
            raise HistoryError(f"unknown history kind {kind!r} (known: {sorted(KINDS)})")
        if _RESERVED & fields.keys():
            raise HistoryError(f"fields {sorted(_RESERVED & fields.keys())} are set by the "
                               "history itself")
        now_s = time.monotonic()
        op = Op(kind=kind, t=now_s - self._start_s, thread=threading.current_thread().name,
                fields=fields)
        try:
            line = op.to_json()
        except (TypeError, ValueError) as e:
            raise HistoryError(f"{kind} op has a field JSON cannot hold: {e}") from None
        with self._lock:
            if self._file is None:
                self.dropped += 1
                return
            self._file.write(line + "\n")
            self._counts[kind] = self._counts.get(kind, 0) + 1
            if now_s - self._flushed_s >= FLUSH_INTERVAL_S:
                self._file.flush()
                self._flushed_s = now_s

    def counts(self) -> dict[str, int]:
        """Operations recorded so far, per kind."""
        with self._lock:
            return dict(self._counts)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def flushed_size(self) -> int:
        """Flush, and the file's size then: a line boundary (no record can be half-written
        while the lock is held)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
            return self.path.stat().st_size

    def close(self) -> None:
        """Flush and close; idempotent. Later records are dropped and counted in `dropped`."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def load(path: Path) -> list[dict]:
        """Every operation of a history file, in recorded order (see iter_ops)."""
        return list(History.iter_ops(path))

    @staticmethod
    def iter_ops(path: Path) -> Iterator[dict]:
        """The operations of a history file one at a time, in recorded order: a long run's
        history (millions of operations) is checked without holding it in memory. A last line
        cut short (the writer died mid-line: no newline after it) is ignored; a malformed line
        elsewhere raises HistoryError."""
        with Path(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    op = json.loads(line)
                except json.JSONDecodeError as e:
                    if not line.endswith("\n"):
                        return  # a torn tail
                    raise HistoryError(f"{path}:{number}: not JSON ({e})") from None
                if not isinstance(op, dict) or op.get("kind") not in KINDS:
                    raise HistoryError(f"{path}:{number}: not a history operation: "
                                       f"{line[:200]}")
                yield op
