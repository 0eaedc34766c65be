"""Idempotent-producer state of one partition: per producer id, its epoch and its last five
batches' sequence ranges with the offsets they were given (Kafka's ProducerStateManager).

Two layers, as the Raft log has two parts: `committed` is built from committed batches on every
replica (so a new leader has it), `pending` holds only the batches the current leader appended
that are not yet committed (cleared when leadership is lost). A batch is judged against the
committed window with the pending batches after it, so batches committed after the leader's
first append (an earlier term's tail) still count. A retried batch found there gets its
original offset; a gap gets OUT_OF_ORDER_SEQUENCE_NUMBER.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from broker.wire.errors import ErrorCode

__all__ = ["BatchSequence", "ProducerTable", "ProducerState", "SequenceCheck", "BATCHES_KEPT",
           "PRODUCERS_MAX"]

BATCHES_KEPT = 5  # Kafka's max.in.flight.requests.per.connection bound for idempotence
PRODUCERS_MAX = 100_000  # beyond this, the least recently written producer is forgotten
_SEQ_MOD = 1 << 31


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSequence:
    epoch: int
    first_seq: int
    last_seq: int
    base_offset: int
    index: int = 0  # Raft index of its entry when this leader appended it (0: committed/unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerState:
    """One producer's committed window, as a snapshot stores it."""

    producer_id: int
    epoch: int
    batches: tuple[BatchSequence, ...]  # oldest first, at most BATCHES_KEPT, index 0


@dataclass(slots=True)
class _Producer:
    epoch: int
    batches: deque[BatchSequence] = field(default_factory=lambda: deque(maxlen=BATCHES_KEPT))


@dataclass(frozen=True, slots=True)
class SequenceCheck:
    """The verdict on an incoming batch: append it, answer it as a duplicate, or refuse it."""

    error: ErrorCode = ErrorCode.NONE
    duplicate_of: int | None = None  # base offset of the original batch
    duplicate_index: int = 0  # its Raft index if this leader appended it (maybe uncommitted)

    @property
    def accept(self) -> bool:
        return self.error == ErrorCode.NONE and self.duplicate_of is None


class ProducerTable:
    __slots__ = ("_committed", "_pending")

    def __init__(self) -> None:
        self._committed: dict[int, _Producer] = {}
        self._pending: dict[int, _Producer] = {}

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> SequenceCheck:
        state = self._view(producer_id)
        if state is None:
            if first_seq == 0:
                return SequenceCheck()
            return SequenceCheck(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        if epoch < state.epoch:
            return SequenceCheck(ErrorCode.INVALID_PRODUCER_EPOCH)
        if epoch > state.epoch:
            ok = first_seq == 0
            return SequenceCheck() if ok else SequenceCheck(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        for b in state.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return SequenceCheck(duplicate_of=b.base_offset, duplicate_index=b.index)
        last = state.batches[-1].last_seq if state.batches else -1
        if first_seq != (last + 1) % _SEQ_MOD:
            return SequenceCheck(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER)
        return SequenceCheck()

    def _view(self, producer_id: int) -> _Producer | None:
        """The committed window with this leader's uncommitted batches after it."""
        committed = self._committed.get(producer_id)
        pending = self._pending.get(producer_id)
        if pending is None:
            return committed
        view = _Producer(epoch=pending.epoch)
        if committed is not None and committed.epoch == pending.epoch:
            view.batches.extend(committed.batches)
        view.batches.extend(pending.batches)
        return view

    def append_pending(self, producer_id: int, batch: BatchSequence) -> None:
        """The leader appended `batch` (not yet committed)."""
        _record(self._pending, producer_id, batch)

    def commit(self, producer_id: int, batch: BatchSequence) -> None:
        """`batch` is committed (called on every replica, in log order)."""
        _record(self._committed, producer_id, batch)
        pending = self._pending.get(producer_id)
        if pending is None:
            return
        # Batches commit in log order: the committed one and any appended before it are no
        # longer pending (the pending ones carry their Raft index, the committed one not).
        while pending.batches and pending.batches[0].base_offset <= batch.base_offset:
            pending.batches.popleft()
        if not pending.batches:
            del self._pending[producer_id]

    def drop_pending(self) -> None:
        """Leadership lost or taken anew: uncommitted batches may be truncated, forget them."""
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._committed)

    def committed_states(self) -> list[ProducerState]:
        """The committed layer, least recently written first (the order restore() keeps)."""
        return [ProducerState(producer_id=pid, epoch=p.epoch, batches=tuple(p.batches))
                for pid, p in self._committed.items()]

    def restore(self, states: list[ProducerState]) -> None:
        """Replace the committed layer by `states` (from committed_states(), maybe of another
        table); the pending layer is left as it is."""
        assert len(states) <= PRODUCERS_MAX, len(states)
        committed: dict[int, _Producer] = {}
        for st in states:
            state = committed[st.producer_id] = _Producer(epoch=st.epoch)
            state.batches.extend(st.batches)
        self._committed = committed


def _record(table: dict[int, _Producer], producer_id: int, batch: BatchSequence) -> None:
    state = table.get(producer_id)
    if state is None:
        if len(table) >= PRODUCERS_MAX:
            del table[next(iter(table))]
        state = table[producer_id] = _Producer(epoch=batch.epoch)
    else:
        table[producer_id] = table.pop(producer_id)  # keep dict order = least recently written
        if batch.epoch != state.epoch:
            state.epoch = batch.epoch
            state.batches.clear()
    state.batches.append(batch)
