"""Storage errors met outside the write path: a read that fails (damage, EIO) latches the log
without shrinking it, so Raft's own reads of what it appended keep working while the replica
goes offline; a summary that cannot be written on open never fails the open."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import broker.storage.summary as summary_module
from broker.storage import LogDamageError, LogReadOnlyError, PartitionLog
from broker.storage.segment import Segment
from tests.unit.test_storage_batches import Feed
from tests.unit.test_storage_summary import entries_of, flip, open_log, segs, several_terms, sums

UNSYNCED = dict(fsync_policy="interval_ms", fsync_interval_ms=1 << 30)


def with_unsynced_tail(path: Path, *, damaged: bool = False) -> tuple[PartitionLog, int]:
    """A closed log of several sealed segments (with `damaged`, the oldest then damaged),
    opened with fsync_policy interval_ms, plus 10 entries appended and handed to the OS but
    not fsynced. Returns it and its last durable index."""
    several_terms(path)
    if damaged:
        sealed = segs(path)[0]
        flip(sealed, sealed.stat().st_size - 3)  # the payload of its last entry
    log = open_log(path, **UNSYNCED)
    durable = log.last_index()
    feed = Feed(log.next_offset)
    log.append(feed.run(durable + 1, 10, 4, value_bytes=30))
    log.flush()
    log.fsync()
    assert log.last_index() == durable + 10
    return log, durable


def fail_reads(monkeypatch: pytest.MonkeyPatch, err: int = errno.EIO) -> None:
    def pread(self: Segment, position: int, n: int) -> bytes:
        raise OSError(err, "Input/output error", self.path)
    monkeypatch.setattr(Segment, "pread", pread)


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def assert_writes_refused(log: PartitionLog) -> None:
    feed = Feed(log.next_offset)
    for attempt in (lambda: log.append(feed.run(log.last_index() + 1, 1, 4)), log.sync,
                    lambda: log.reset(5, 5)):
        with pytest.raises(LogReadOnlyError):
            attempt()


# ---- damage and failed reads latch without shrinking ---------------------------------------
def test_damage_found_by_a_read_latches_but_keeps_the_unsynced_tail_readable(
        tmp_path: Path) -> None:
    log, durable = with_unsynced_tail(tmp_path, damaged=True)
    last = log.last_index()
    tail = log.entries(durable + 1, last + 1, 1 << 20)
    with pytest.raises(LogDamageError):
        log.read(0, log.next_offset, 1 << 20)
    assert log.read_only
    # What Raft appended is still there for Raft to read until the replica stops.
    assert log.last_index() == last
    assert [log.term_at(i) for i in range(durable + 1, last + 1)] == [4] * 10
    assert log.entries(durable + 1, last + 1, 1 << 20) == tail
    log.check_invariants()
    assert_writes_refused(log)
    log.close(sync=False)
    with open_log(tmp_path) as reopened:  # the next open repairs the damage
        assert reopened.damage is not None and reopened.last_index() < durable


@pytest.mark.parametrize("read", [
    lambda log: log.read(0, log.next_offset, 1 << 20),
    lambda log: log.entries(log.first_index(), log.last_index() + 1, 1 << 20),
    lambda log: list(log.batch_headers(0, log.next_offset)),
    lambda log: log.offset_for_timestamp(0),
    lambda log: log.offset_end_at(3),
], ids=["read", "entries", "batch_headers", "offset_for_timestamp", "offset_end_at"])
def test_an_os_error_from_a_read_latches_and_raises_a_log_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        read: Callable[[PartitionLog], object]) -> None:
    log, durable = with_unsynced_tail(tmp_path)
    last, summaries = log.last_index(), sums(tmp_path)
    tail = log.entries(durable + 1, last + 1, 1 << 20)
    fail_reads(monkeypatch)
    with pytest.raises(LogReadOnlyError) as info:
        read(log)
    assert not isinstance(info.value, LogDamageError)  # not damage: nothing to repair
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EIO
    assert log.read_only and log.last_index() == last
    assert [log.term_at(i) for i in range(durable + 1, last + 1)] == [4] * 10
    log.check_invariants()
    assert_writes_refused(log)
    monkeypatch.undo()  # the disk answers again: Raft's reads of its entries work
    assert log.entries(durable + 1, last + 1, 1 << 20) == tail
    log.close(sync=False)
    assert sums(tmp_path) == summaries  # an I/O error says nothing about the bytes
    with open_log(tmp_path) as reopened:
        assert reopened.damage is None and reopened.last_index() >= durable


# ---- summaries on open ---------------------------------------------------------------------
def test_a_full_disk_on_open_skips_the_summaries_and_the_open_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = several_terms(tmp_path)
    for p in tmp_path.glob("*.sum"):  # e.g. the first open after a repair
        p.unlink()
    with monkeypatch.context() as m:
        m.setattr(summary_module, "write_atomic", no_space)
        log = open_log(tmp_path)
    assert not log.read_only and sums(tmp_path) == []
    assert entries_of(log) == entries
    sealed_on_open = {p.stem for p in segs(tmp_path)[:-1]}
    feed = Feed(log.next_offset)
    first = log.last_index() + 1
    for k in range(0, 30, 5):  # rolls: the newly sealed segments get their summaries
        log.append(feed.run(first + k, 5, 4, value_bytes=60))
        log.sync()
    log.check_invariants()
    # Skipped on open and not retried while running; those sealed since then have theirs.
    sealed_since = {p.stem for p in segs(tmp_path)[:-1]} - sealed_on_open
    assert sealed_since and {Path(s).stem for s in sums(tmp_path)} == sealed_since
    log.close()
    with open_log(tmp_path) as log:  # the skipped ones are written by the next open
        assert len(sums(tmp_path)) == len(segs(tmp_path)) - 1
        assert entries_of(log)[: len(entries)] == entries


def test_a_summary_failing_after_its_rename_on_open_goes_with_its_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    several_terms(tmp_path)
    for p in tmp_path.glob("*.sum"):
        p.unlink()
    real = summary_module.write_atomic

    def renamed_then_failed(*args: Any) -> None:  # the directory fsync fails
        real(*args)
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(summary_module, "write_atomic", renamed_then_failed)
        log = open_log(tmp_path)
    assert not log.read_only and len(sums(tmp_path)) == len(segs(tmp_path)) - 1
    log.reset(100, 5)
    assert sums(tmp_path) == []  # never outlives the bytes it described
    log.close()


def test_a_full_disk_while_running_still_latches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    several_terms(tmp_path)
    log = open_log(tmp_path)
    monkeypatch.setattr(summary_module, "write_atomic", no_space)
    feed = Feed(log.next_offset)
    first = log.last_index() + 1
    with pytest.raises(LogReadOnlyError):
        for k in range(0, 30, 5):  # a roll seals a segment, whose summary fails
            log.append(feed.run(first + k, 5, 4, value_bytes=60))
            log.sync()
    assert log.read_only
    log.close(sync=False)


def test_a_failed_fsync_of_scanned_data_on_open_still_fails_the_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    several_terms(tmp_path)
    for p in tmp_path.glob("*.sum"):
        p.unlink()

    def fsync(self: Segment) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Segment, "fsync", fsync)
    with pytest.raises(LogReadOnlyError):
        open_log(tmp_path)
    monkeypatch.undo()
    with open_log(tmp_path) as log:  # the failed open released the directory
        assert not log.read_only
