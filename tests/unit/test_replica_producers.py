"""Idempotent-producer state of a partition: duplicates get their original offset, gaps and
stale epochs are refused, uncommitted state is dropped with leadership."""

from __future__ import annotations

from broker.replica.producers import BATCHES_KEPT, BatchSequence, ProducerTable
from broker.wire.errors import ErrorCode


def seq(first: int, last: int, offset: int, epoch: int = 0) -> BatchSequence:
    return BatchSequence(epoch=epoch, first_seq=first, last_seq=last, base_offset=offset)


def test_new_producer_must_start_at_sequence_zero() -> None:
    t = ProducerTable()
    assert t.check(7, 0, 0, 9).accept
    assert t.check(7, 0, 5, 9).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_duplicate_answers_with_original_offset_from_either_layer() -> None:
    t = ProducerTable()
    t.commit(7, seq(0, 9, 100))
    t.append_pending(7, seq(10, 19, 110))
    assert t.check(7, 0, 0, 9).duplicate_of == 100  # committed
    assert t.check(7, 0, 10, 19).duplicate_of == 110  # appended, not yet committed
    assert t.check(7, 0, 20, 29).accept
    assert t.check(7, 0, 25, 29).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_only_the_last_five_batches_are_remembered() -> None:
    t = ProducerTable()
    for i in range(BATCHES_KEPT + 1):
        t.commit(7, seq(i * 10, i * 10 + 9, i * 100))
    assert t.check(7, 0, 0, 9).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # forgotten
    assert t.check(7, 0, 10, 19).duplicate_of == 100


def test_epochs() -> None:
    t = ProducerTable()
    t.commit(7, seq(0, 9, 100, epoch=3))
    assert t.check(7, 2, 10, 19).error == ErrorCode.INVALID_PRODUCER_EPOCH
    assert t.check(7, 4, 0, 4).accept  # a new epoch restarts at zero
    assert t.check(7, 4, 10, 19).error == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_sequence_wraps_at_int32() -> None:
    t = ProducerTable()
    last = (1 << 31) - 1
    t.commit(7, seq(0, 9, 0))
    t.commit(7, seq(10, last, 10))
    assert t.check(7, 0, 0, 9).duplicate_of == 0  # an exact retry is still a duplicate
    assert t.check(7, 0, 0, 4).accept  # otherwise the sequence wraps to zero
    t2 = ProducerTable()
    t2.commit(8, seq(0, last, 0))
    assert t2.check(8, 0, 0, 5).accept  # wraps
    t3 = ProducerTable()
    t3.commit(9, seq(100, last, 0))  # (state rebuilt after retention)
    assert t3.check(9, 0, 0, 5).accept


def test_leadership_loss_forgets_uncommitted_batches() -> None:
    t = ProducerTable()
    t.commit(7, seq(0, 9, 100))
    t.append_pending(7, seq(10, 19, 110))
    t.drop_pending()
    assert t.check(7, 0, 10, 19).accept  # may be retried: it was never committed
    t.append_pending(7, seq(10, 19, 120))
    t.commit(7, seq(10, 19, 120))
    assert t.check(7, 0, 10, 19).duplicate_of == 120
