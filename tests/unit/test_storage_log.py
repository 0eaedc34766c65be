"""PartitionLog, one operation at a time, each checked again after a reopen."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.raft.storage import CompactedError, UnavailableError
from broker.storage import (
    FsyncPolicy,
    InvalidAppendError,
    LogConfig,
    LogConfigError,
    LogError,
    LogLockedError,
    OffsetOutOfRangeError,
    PartitionLog,
)
from broker.wire.records import read_batch_header
from tests.unit.test_storage_batches import Feed, make_batch

SMALL: dict[str, Any] = dict(segment_bytes_max=2048, segment_jitter_bytes_max=0,
                             index_interval_bytes=256)


def open_log(path: Path, **overrides: Any) -> PartitionLog:
    log = PartitionLog(path, LogConfig(**{**SMALL, **overrides}))
    log.check_invariants()
    return log


def reopen(log: PartitionLog, **overrides: Any) -> PartitionLog:
    log.close()
    return open_log(Path(log.directory), **overrides)


def data_of(log: PartitionLog) -> list[Entry]:
    return log.entries(log.first_index(), log.last_index() + 1, 1 << 40)


def batches(entries: list[Entry]) -> list[bytes]:
    return [e.data for e in entries if e.kind is EntryKind.DATA]


def offsets(chunks: list[bytes | memoryview]) -> list[int]:
    return [read_batch_header(c).base_offset for c in chunks]


HS = HardState(term=3, vote=2, commit=7, conf=ConfState(voters=frozenset({1, 2, 3}),
                                                     learners=frozenset({9})))


# ---- a fresh log -----------------------------------------------------------------------------
def test_fresh_log_follows_the_index_conventions(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert log.term_at(0) == 0
    with pytest.raises(CompactedError):
        log.term_at(-1)
    with pytest.raises(UnavailableError):
        log.term_at(1)
    assert log.entries(1, 1, 100) == []
    with pytest.raises(UnavailableError):
        log.entries(1, 2, 100)
    assert log.initial_state() is None
    assert (log.log_start_offset, log.next_offset) == (0, 0)
    assert log.read(0, 10, 1000) == []
    log.close()
    assert os.listdir(tmp_path)  # the directory holds the first segment already


def test_append_then_read_back_before_and_after_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    written = feed.run(1, 40, 1, every_config=5, records=3)
    log.append(written)
    log.check_invariants()
    assert data_of(log) == written
    assert log.next_offset == feed.next_offset
    log.sync()
    log = reopen(log)
    assert data_of(log) == written
    assert (log.first_index(), log.last_index(), log.term_at(40)) == (1, 40, 1)
    assert log.next_offset == feed.next_offset
    assert [bytes(c) for c in log.read(0, feed.next_offset, 1 << 30)] == batches(written)
    assert len(log.segments()) >= 3  # it rolled
    log.close()


def test_appends_in_many_calls_roll_and_keep_terms(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    written: list[Entry] = []
    for term in range(1, 6):
        chunk = [feed.empty(len(written) + 1, term)] + feed.run(len(written) + 2, 9, term)
        log.append(chunk)
        written += chunk
        log.sync()
    log = reopen(log)
    for e in written:
        assert log.term_at(e.index) == e.term
    assert data_of(log) == written
    log.close()


# ---- entries() -------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_bytes_max", [1, 1 << 20], ids=["disk", "cache"])
def test_entries_respect_bytes_max_but_return_at_least_one(tmp_path: Path, cache_bytes_max: int) -> None:
    log = open_log(tmp_path, cache_bytes_max=cache_bytes_max)
    written = Feed().run(1, 30, 1, value_bytes=100)
    log.append(written)
    log.sync()
    size = len(written[0].data)
    assert log.entries(3, 30, 0) == written[2:3]
    assert log.entries(3, 30, size) == written[2:3]
    assert log.entries(3, 30, 3 * size + 1) == written[2:5]
    assert log.entries(3, 6, 1 << 20) == written[2:5]
    assert log.entries(29, 31, 1 << 20) == written[28:30]
    with pytest.raises(UnavailableError):
        log.entries(29, 32, 1 << 20)
    log.close()


# ---- truncating a suffix ---------------------------------------------------------------------
def test_truncate_a_suffix_across_a_segment_boundary(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    old = feed.run(1, 60, 1, value_bytes=60)
    log.append(old)
    log.sync()
    segments_before = len(log.segments())
    assert segments_before >= 4
    cut_at = log.segments()[1].base_index + 2  # inside the second segment
    feed = Feed(next_offset=sum(1 for e in old[: cut_at - 1] if e.kind is EntryKind.DATA))
    new = [feed.empty(cut_at, 2)] + feed.run(cut_at + 1, 3, 2)
    log.append(new)
    log.check_invariants()
    expected = old[: cut_at - 1] + new
    assert data_of(log) == expected
    assert len(log.segments()) == 2
    assert log.term_at(cut_at - 1) == 1 and log.term_at(cut_at) == 2
    assert log.next_offset == feed.next_offset
    log.sync()
    log = reopen(log)
    assert data_of(log) == expected
    assert log.next_offset == feed.next_offset
    assert [bytes(c) for c in log.read(0, log.next_offset, 1 << 30)] == batches(expected)
    log.close()


def test_truncate_inside_the_unwritten_buffer(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    log.append(feed.run(1, 10, 1))
    feed = Feed(next_offset=4)
    replacement = feed.run(5, 2, 2)
    log.append(replacement)  # never synced before: the cut is in memory only
    log.check_invariants()
    assert log.last_index() == 6 and log.next_offset == 6
    log.sync()
    log = reopen(log)
    assert data_of(log)[4:] == replacement
    log.close()


def test_truncate_everything_after_the_log_start(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 20, 1))
    log.sync()
    log.delete_prefix(5)
    log.append([Feed.empty(6, 2)])
    log.check_invariants()
    assert (log.first_index(), log.last_index(), log.term_at(5)) == (6, 6, 1)
    assert log.next_offset == 5
    log.sync()
    log = reopen(log)
    assert (log.first_index(), log.last_index(), log.term_at(5), log.term_at(6)) == (6, 6, 1, 2)
    assert log.next_offset == 5 and log.log_start_offset == 5
    log.close()


# ---- invalid appends ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "gap", "before_start", "not_contiguous", "term_down", "not_a_batch", "two_batches",
    "offset_backwards", "too_big",
])
def test_invalid_appends_raise_and_write_nothing(tmp_path: Path, bad: str) -> None:
    log = open_log(tmp_path, entry_bytes_max=4096)
    feed = Feed()
    log.append(feed.run(1, 5, 2))
    log.delete_prefix(1)
    batch = make_batch(feed.next_offset)
    entries = {
        "gap": [feed.data(7, 2)],
        "before_start": [feed.data(1, 2)],
        "not_contiguous": [Feed.empty(6, 2), Feed.empty(8, 2)],
        "term_down": [Feed.empty(6, 1)],
        "not_a_batch": [Entry(index=6, term=2, kind=EntryKind.DATA, data=b"x" * 70)],
        "two_batches": [Entry(index=6, term=2, kind=EntryKind.DATA, data=batch + batch)],
        "offset_backwards": [Entry(index=6, term=2, kind=EntryKind.DATA, data=make_batch(2))],
        "too_big": [Entry(index=6, term=2, kind=EntryKind.CONFIG, data=b"x" * 5000)],
    }[bad]
    before = data_of(log)
    with pytest.raises(InvalidAppendError):
        log.append(entries)
    log.check_invariants()
    assert data_of(log) == before and log.next_offset == 5
    log.append([Feed(next_offset=5).data(6, 2)])  # still writable
    log.close()


# ---- reset -----------------------------------------------------------------------------------
def test_reset_with_a_start_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 30, 1))
    log.sync()
    log.reset(100, 4, 500)
    log.check_invariants()
    assert (log.first_index(), log.last_index(), log.term_at(100)) == (101, 100, 4)
    assert (log.log_start_offset, log.next_offset) == (500, 500)
    with pytest.raises(CompactedError):
        log.term_at(99)
    feed = Feed(next_offset=500)
    written = feed.run(101, 5, 4)
    log.append(written)
    log.sync()
    log = reopen(log)
    assert (log.first_index(), log.term_at(100)) == (101, 4)
    assert data_of(log) == written
    assert (log.log_start_offset, log.next_offset) == (500, 505)
    assert offsets(log.read(500, 505, 1 << 20)) == [500, 501, 502, 503, 504]
    log.close()


def test_reset_without_a_start_offset_learns_it_from_the_first_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 10, 1))
    log.reset(50, 3)
    log.check_invariants()
    assert (log.log_start_offset, log.next_offset) == (0, 0)  # not known yet
    log.append([Feed.empty(51, 3), Feed.config(52, 3)])
    log.sync()
    log = reopen(log)
    assert (log.log_start_offset, log.next_offset) == (0, 0)
    feed = Feed(next_offset=1000)
    log.append([feed.data(53, 3, records=2), feed.data(54, 3)])
    log.check_invariants()
    assert (log.log_start_offset, log.next_offset) == (1000, 1003)
    assert log.offset_end_at(52) == 1000 and log.offset_end_at(53) == 1002
    log.sync()
    log = reopen(log)
    assert (log.log_start_offset, log.next_offset) == (1000, 1003)
    assert offsets(log.read(1001, 1003, 1)) == [1000]
    log.close()


def test_reset_survives_reopen_before_any_append(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 10, 1))
    log.sync()
    log.reset(7, 2, 9)
    log.close(sync=False)  # the reset itself is durable at once
    log = open_log(tmp_path)
    assert (log.first_index(), log.last_index(), log.term_at(7), log.next_offset) == (8, 7, 2, 9)
    log.close()


# ---- retention -------------------------------------------------------------------------------
def test_retention_by_bytes_deletes_whole_old_segments_only(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    written = feed.run(1, 80, 1, value_bytes=60)
    log.append(written)
    log.sync()
    segs = log.segments()
    total = sum(s.size_bytes for s in segs)
    keep_bytes = total - segs[0].size_bytes - segs[1].size_bytes
    assert log.apply_retention(bytes_max=keep_bytes, now_ms=0, commit_index=80) == 2
    log.check_invariants()
    assert log.first_index() == segs[2].base_index
    assert sum(s.size_bytes for s in log.segments()) >= keep_bytes
    start_offset = log.log_start_offset
    assert start_offset == sum(1 for e in written[: segs[2].base_index - 1]
                               if e.kind is EntryKind.DATA)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(start_offset - 1, 1000, 100)
    assert offsets(log.read(start_offset, 1000, 1)) == [start_offset]
    log = reopen(log)
    assert log.first_index() == segs[2].base_index
    assert log.term_at(log.first_index() - 1) == 1
    assert log.log_start_offset == start_offset
    assert data_of(log) == written[segs[2].base_index - 1 :]
    log.close()


def test_retention_never_passes_the_commit_index_nor_the_active_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 80, 1, value_bytes=60))
    log.sync()
    segs = log.segments()
    assert log.apply_retention(bytes_max=0, now_ms=0, commit_index=segs[2].last_index - 1) == 2
    assert log.first_index() == segs[2].base_index
    assert log.apply_retention(bytes_max=0, now_ms=0, commit_index=10**9) == len(segs) - 3
    assert len(log.segments()) == 1 and log.last_index() == 80
    log.check_invariants()
    log.close()


def test_retention_by_age_uses_each_segments_newest_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    written = [feed.data(i, 1, value_bytes=60, timestamp_ms=i * 100) for i in range(1, 81)]
    log.append(written)
    log.sync()
    segs = log.segments()
    newest_of_second = segs[1].max_timestamp_ms
    assert newest_of_second == segs[1].last_index * 100
    now_ms = 10_000
    # Segments whose newest batch is older than now - age go: exactly the first two.
    age_ms = now_ms - newest_of_second - 1
    assert log.apply_retention(age_ms=age_ms, now_ms=now_ms, commit_index=80) == 2
    assert log.first_index() == segs[2].base_index
    assert log.apply_retention(age_ms=age_ms, now_ms=now_ms, commit_index=80) == 0
    log = reopen(log)
    assert log.first_index() == segs[2].base_index
    log.close()


def test_delete_prefix_inside_a_segment_hides_entries_across_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes_max=1 << 20)
    written = Feed().run(1, 20, 1, records=2)
    log.append(written)
    log.sync()
    log.delete_prefix(7)
    log.check_invariants()
    assert (log.first_index(), log.term_at(7), log.log_start_offset) == (8, 1, 14)
    with pytest.raises(CompactedError):
        log.entries(7, 9, 100)
    log = reopen(log)
    assert (log.first_index(), log.term_at(7), log.log_start_offset) == (8, 1, 14)
    assert data_of(log) == written[7:]
    assert offsets(log.read(14, 1000, 1)) == [14]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(13, 1000, 100)
    assert log.offset_for_timestamp(0) == 14  # hidden batches are not found either
    log.delete_prefix(3)  # behind the start: nothing happens
    assert log.first_index() == 8
    log.close()


def test_delete_prefix_of_everything_keeps_the_end(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 50, 2))
    log.sync()
    log.delete_prefix(10**6)  # capped at the last index
    log.check_invariants()
    assert (log.first_index(), log.last_index(), log.term_at(50)) == (51, 50, 2)
    assert (log.log_start_offset, log.next_offset) == (50, 50)
    log = reopen(log)
    assert (log.first_index(), log.last_index(), log.term_at(50)) == (51, 50, 2)
    assert (log.log_start_offset, log.next_offset) == (50, 50)
    log.append([Feed(next_offset=50).data(51, 3)])
    log.close()


# ---- Kafka reads -----------------------------------------------------------------------------
@pytest.mark.parametrize("cache_bytes_max", [1, 1 << 20], ids=["disk", "cache"])
def test_read_by_offset_with_limit_and_budget(tmp_path: Path, cache_bytes_max: int) -> None:
    log = open_log(tmp_path, cache_bytes_max=cache_bytes_max)
    feed = Feed()
    written = feed.run(1, 40, 1, every_config=4, records=3, value_bytes=40)
    log.append(written)
    log.sync()
    log.append([feed.data(41, 1)])  # unsynced: still readable, from the cache
    size = len(written[0].data)
    data = batches(written)
    assert offsets(log.read(0, 1000, 1 << 20)) == [3 * k for k in range(len(data) + 1)]
    assert offsets(log.read(4, 1000, 1)) == [3]  # the batch holding 4, over budget
    assert offsets(log.read(4, 1000, 2 * size)) == [3, 6]
    assert offsets(log.read(4, 1000, 2 * size - 1)) == [3]
    assert offsets(log.read(4, 9, 1 << 20)) == [3, 6]  # batch 9..11 ends beyond the limit
    assert offsets(log.read(4, 8, 1 << 20)) == [3]  # batch 6..8 ends at the limit
    assert log.read(4, 4, 1 << 20) == []
    assert log.read(log.next_offset, 10**6, 100) == []
    assert [bytes(c) for c in log.read(0, 1000, 1 << 20)][:-1] == data
    with pytest.raises(OffsetOutOfRangeError):
        log.read(log.next_offset + 1, 10**6, 100)
    log.close()


def test_offset_for_timestamp_finds_the_first_batch_reaching_it(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    feed = Feed()
    stamps = [50, 10, 30, 70, 60, 90, 20, 100] * 5  # not monotonic, as producers may send
    written = [feed.data(i + 1, 1, value_bytes=80, timestamp_ms=ts) for i, ts in enumerate(stamps)]
    log.append(written)
    log.sync()
    log = reopen(log)
    for target in (0, 10, 55, 60, 61, 95, 100):
        expected = next(i for i, ts in enumerate(stamps) if ts >= target)
        assert log.offset_for_timestamp(target) == expected
    assert log.offset_for_timestamp(101) is None
    assert log.offset_for_timestamp(95, limit_offset=7) is None
    assert log.offset_for_timestamp(95, limit_offset=8) == 7
    log.close()


def test_offset_end_at_maps_raft_indexes_to_the_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path, cache_bytes_max=1)
    feed = Feed()
    written = feed.run(1, 30, 1, every_config=3, records=2)
    log.append(written)
    log.sync()
    ends, offset = [0], 0
    for e in written:
        if e.kind is EntryKind.DATA:
            offset = read_batch_header(e.data).last_offset + 1
        ends.append(offset)
    assert [log.offset_end_at(i) for i in range(31)] == ends
    assert log.offset_end_at(1000) == feed.next_offset
    log.close()


def test_batch_headers_lists_committed_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 20, 1, every_config=2, records=2))
    headers = list(log.batch_headers(3, 14))
    assert [h.base_offset for h in headers] == [2, 4, 6, 8, 10, 12]  # 12..13 ends below 14
    log.close()


# ---- hard state and durability ---------------------------------------------------------------
def test_hard_state_round_trip(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, HS.commit, 1))
    log.set_hard_state(HS)
    assert log.initial_state() == HS
    log.sync()  # a new term/vote is written at the sync
    log.close(sync=False)
    log = open_log(tmp_path)
    assert log.initial_state() == HS
    log.close()


def test_commit_alone_is_checkpointed_by_interval_or_close(tmp_path: Path) -> None:
    log = open_log(tmp_path, commit_checkpoint_interval_ms=1000)
    log.append(Feed().run(1, 20, 1))
    log.set_hard_state(HS)
    log.sync()
    moved = HardState(term=HS.term, vote=HS.vote, commit=9, conf=HS.conf)
    log.set_hard_state(moved)
    log.sync()  # commit only: not written by sync
    assert log.maybe_sync(now_ms=0)  # the first checkpoint is due at once
    log.set_hard_state(HardState(term=HS.term, vote=HS.vote, commit=11, conf=HS.conf))
    assert not log.maybe_sync(now_ms=999)
    log.close(sync=False)
    log = open_log(tmp_path)
    assert log.initial_state() == moved
    log.set_hard_state(HS)
    log.close()  # close writes whatever changed
    log = open_log(tmp_path)
    assert log.initial_state() == HS
    log.close()


def test_entry_term_max_is_written_at_the_sync_not_left_to_the_checkpoint(
        tmp_path: Path) -> None:
    """It bounds a repairing node's votes: a crash after sync() must find it."""
    log = open_log(tmp_path, commit_checkpoint_interval_ms=60_000)
    log.append(Feed().run(1, 20, 1))
    log.set_hard_state(HS)
    log.sync()
    raised = dataclass_replace(HS, entry_term_max=HS.term + 1)
    log.set_hard_state(raised)
    log.sync()
    log.close(sync=False)  # a process crash right after the sync
    log = open_log(tmp_path)
    assert log.initial_state() == raised
    log.close()


def test_fsync_policy_always_makes_sync_durable(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(Feed().run(1, 10, 1))
    (seg,) = log.segments()
    assert seg.durable_bytes < seg.size_bytes
    log.sync()
    (seg,) = log.segments()
    assert seg.durable_bytes == seg.size_bytes
    log.close()


def test_fsync_policy_interval_writes_at_sync_and_fsyncs_when_due(tmp_path: Path) -> None:
    log = open_log(tmp_path, fsync_policy="interval_ms", fsync_interval_ms=100)
    assert log.config.fsync_policy is FsyncPolicy.INTERVAL_MS
    log.append(Feed().run(1, 10, 1))
    log.sync()  # handed to the OS, not fsynced
    (seg,) = log.segments()
    assert seg.durable_bytes < seg.size_bytes
    assert log.maybe_sync(now_ms=1000)
    (seg,) = log.segments()
    assert seg.durable_bytes == seg.size_bytes
    log.append([Feed(next_offset=10).data(11, 1)])
    log.sync()
    assert not log.maybe_sync(now_ms=1050)  # interval not over
    assert log.maybe_sync(now_ms=1100)
    log.close(sync=False)  # a process crash: what sync() wrote survives
    log = open_log(tmp_path)
    assert log.last_index() == 11
    log.close()


def test_interval_policy_never_stores_a_commit_beyond_durable_entries(tmp_path: Path) -> None:
    log = open_log(tmp_path, fsync_policy="interval_ms", commit_checkpoint_interval_ms=0)
    log.append(Feed().run(1, 10, 1))
    log.set_hard_state(HardState(term=2, vote=1, commit=10, conf=HS.conf))
    log.sync()  # the vote is stored at once, the entries are not fsynced yet
    log.close(sync=False)
    os.truncate(log.segments()[-1].path, 34)  # a power failure loses the unsynced entries
    log = open_log(tmp_path)
    assert log.last_index() == 0
    assert log.initial_state() == HardState(term=2, vote=1, commit=0, conf=HS.conf)
    log.close()


def test_close_without_sync_drops_what_was_never_written(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    written = Feed().run(1, 10, 1)
    log.append(written[:6])
    log.sync()
    log.append(written[6:])
    log.close(sync=False)
    log = open_log(tmp_path)
    assert data_of(log) == written[:6]
    log.close()


def test_flush_then_fsync_in_another_thread(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    written = Feed().run(1, 20, 1)
    log.append(written)
    assert log.flush()
    worker = threading.Thread(target=log.fsync)
    worker.start()
    assert data_of(log) == written  # reads while the fsync runs
    worker.join()
    assert all(seg.durable_bytes == seg.size_bytes for seg in log.segments())
    assert not log.flush()  # nothing new
    log.close()


def test_maybe_sync_between_flush_and_fsync_leaves_nothing_unsynced(tmp_path: Path) -> None:
    log = open_log(tmp_path, commit_checkpoint_interval_ms=0)
    log.append(Feed().run(1, 20, 1))
    log.set_hard_state(HS)
    assert log.flush()
    newer = HardState(term=HS.term + 1, vote=0, commit=9, conf=HS.conf)
    log.set_hard_state(newer)
    assert log.maybe_sync(now_ms=5)  # takes over what flush() captured, and more
    log.fsync()  # finds nothing left to do
    assert all(seg.durable_bytes == seg.size_bytes for seg in log.segments())
    log.close(sync=False)
    with open_log(tmp_path) as log:
        assert log.initial_state() == newer and log.last_index() == 20


def test_write_buffer_is_bounded(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes_max=1 << 20, write_buffer_bytes_max=1000)
    log.append(Feed().run(1, 30, 1, value_bytes=100))
    (seg,) = log.segments()
    assert seg.size_bytes - os.path.getsize(seg.path) <= 1000
    log.close()


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    with pytest.raises(LogLockedError):
        PartitionLog(tmp_path, LogConfig(**SMALL))
    log.close()
    open_log(tmp_path).close()


def test_closed_log_refuses_writes(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogError):
        log.append([Feed.empty(1, 1)])


def test_context_manager_syncs_on_exit(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        log.append(Feed().run(1, 5, 1))
    with open_log(tmp_path) as log:
        assert log.last_index() == 5


# ---- configuration ---------------------------------------------------------------------------
def test_segment_roll_jitter_is_deterministic_and_bounded() -> None:
    a = LogConfig(segment_bytes_max=100_000, segment_jitter_bytes_max=5000, jitter_seed=1)
    b = LogConfig(segment_bytes_max=100_000, segment_jitter_bytes_max=5000, jitter_seed=2)
    rolls_a = [a.roll_bytes_for(i) for i in range(1, 50)]
    assert rolls_a == [a.roll_bytes_for(i) for i in range(1, 50)]
    assert rolls_a != [b.roll_bytes_for(i) for i in range(1, 50)]
    assert all(95_000 <= r <= 100_000 for r in rolls_a)
    assert LogConfig(segment_bytes_max=1000, segment_jitter_bytes_max=0).roll_bytes_for(7) == 1000
    assert 950 <= LogConfig(segment_bytes_max=1000).roll_bytes_for(7) <= 1000


@pytest.mark.parametrize("bad", [
    dict(fsync_policy="sometimes"), dict(segment_bytes_max=0), dict(index_interval_bytes=-1),
    dict(segment_bytes_max=100, segment_jitter_bytes_max=100), dict(cache_bytes_max=1.5),
])
def test_config_rejects_out_of_range_values(bad: dict[str, Any]) -> None:
    with pytest.raises(LogConfigError):
        LogConfig(**bad)


def test_hard_state_keeps_conf_index_and_reads_older_files() -> None:
    from broker.raft.messages import ConfState, HardState
    from broker.storage.format import decode_hard_state, encode_hard_state

    hs = HardState(term=4, vote=2, commit=9, conf=ConfState(voters=frozenset({1, 2, 3}),
                   learners=frozenset({5})), conf_index=7)
    assert decode_hard_state(encode_hard_state(hs)) == hs
    older = HardState(term=4, vote=2, commit=9, conf=hs.conf)  # conf_index defaults to 0
    assert decode_hard_state(encode_hard_state(older)) == older


def test_hard_state_keeps_the_repair_marks_and_reads_files_without_them() -> None:
    import struct

    from broker.raft.messages import ConfState, HardState
    from broker.storage.format import decode_hard_state, encode_hard_state

    conf = ConfState(voters=frozenset({1, 2, 3}))
    hs = HardState(term=4, vote=2, commit=9, conf=conf, conf_index=3, repair_index=40,
                   repair_term=4)
    assert decode_hard_state(encode_hard_state(hs)) == hs and hs.repairing
    # a file written before the repair fields: the same bytes without them (and without
    # entry_term_max, which came later), CRC redone
    body = encode_hard_state(dataclass_replace(hs, repair_index=0, repair_term=0))[:-4 - 24]
    from crc32c import crc32c
    old_file = body + struct.pack(">I", crc32c(body))
    back = decode_hard_state(old_file)
    assert back == HardState(term=4, vote=2, commit=9, conf=conf, conf_index=3)
    assert not back.repairing


def test_hard_state_keeps_entry_term_max_and_reads_files_without_it() -> None:
    import struct

    from crc32c import crc32c

    from broker.raft.messages import ConfState, HardState
    from broker.storage.format import decode_hard_state, encode_hard_state

    conf = ConfState(voters=frozenset({1, 2, 3}))
    hs = HardState(term=7, vote=1, commit=9, conf=conf, conf_index=3, repair_index=13,
                   repair_term=7, entry_term_max=6)
    assert decode_hard_state(encode_hard_state(hs)) == hs
    assert hs.repair_mark == (6, 13)  # the lower of the two term bounds
    # a file written before entry_term_max: it reads as 0 (unknown), the mark keeps the term
    body = encode_hard_state(hs)[:-4 - 8]
    back = decode_hard_state(body + struct.pack(">I", crc32c(body)))
    assert back == dataclass_replace(hs, entry_term_max=0)
    assert back.repair_mark == (7, 13)


def dataclass_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses
    return dataclasses.replace(obj, **changes)
