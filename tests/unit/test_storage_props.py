"""Property tests: random histories of appends, suffix truncations, retention, resets, syncs and
crashes, checked against MemoryStorage fed the same operations; and single flipped bytes.

A crash closes the log without syncing, then cuts each file somewhere between what was fsynced
and what was written (a power failure), or flips a byte in an unsynced last entry. After the
reopen the log must equal the model cut at some index no lower than what was durable.
Hypothesis prints the failing history (and its seed) when a property fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.raft.storage import MemoryStorage
from broker.storage import LogConfig, LogCorruptionError, LogDamageError, PartitionLog
from broker.storage.format import ENTRY_HEADER_BYTES, SEGMENT_HEADER_BYTES
from broker.wire.records import read_batch_header
from tests.unit.test_storage_batches import make_batch

CONFIG: dict[str, Any] = dict(
    segment_bytes_max=700, segment_jitter_bytes_max=100, index_interval_bytes=64,
    cache_bytes_max=300, write_buffer_bytes_max=900, read_chunk_bytes=256,
    trust_segment_summaries=True)

kinds = st.sampled_from([EntryKind.DATA, EntryKind.DATA, EntryKind.DATA, EntryKind.CONFIG,
                         EntryKind.EMPTY])
shapes = st.lists(st.tuples(kinds, st.integers(1, 4), st.integers(0, 60), st.integers(0, 99)),
                  min_size=1, max_size=8)


def make_entries(first: int, term: int, shape: list[tuple[EntryKind, int, int, int]],
                 next_offset: int, seed: int) -> list[Entry]:
    """Entries from `first` in `term`, one per (kind, records, value bytes, timestamp) of
    `shape`; DATA batches take offsets from `next_offset` on."""
    out = []
    for index, (kind, records, value_bytes, ts) in enumerate(shape, first):
        if kind is EntryKind.DATA:
            value = bytes([(index + seed) % 256]) * value_bytes
            data = make_batch(next_offset, [value] * records, timestamp_ms=ts * 10)
            next_offset += records
        else:
            data = b"" if kind is EntryKind.EMPTY else b"c%d" % index
        out.append(Entry(index=index, term=term, kind=kind, data=data))
    return out


class Model:
    """What the log must hold: MemoryStorage for the Raft side, plus Kafka offsets."""

    def __init__(self) -> None:
        self.raft = MemoryStorage()
        self.start_offset = 0  # -1: unknown (reset without one, no DATA yet)
        self.durable = 0  # entries <= this survive any crash

    def all(self) -> list[Entry]:
        return self.raft.entries(self.raft.first_index(), self.raft.last_index() + 1, 1 << 40)

    def next_offset(self) -> int:
        for e in reversed(self.all()):
            if e.kind is EntryKind.DATA:
                return read_batch_header(e.data).last_offset + 1
        return self.start_offset

    def max_term(self) -> int:
        return self.raft.term_at(self.raft.last_index())


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="storage-props-"))
        self.model = Model()
        self.log = self._open()
        # A replica always has a hard state: with it, damage found on open is cut and marked for
        # repair instead of refused (commit 0: the cut may go anywhere above the synced part).
        self.log.set_hard_state(HardState(term=0, vote=0, commit=0,
                                          conf=ConfState(voters=frozenset({1}))))
        self.log.sync()

    def _open(self) -> PartitionLog:
        log = PartitionLog(self.dir, LogConfig(**CONFIG))
        log.check_invariants()
        return log

    def teardown(self) -> None:
        self.log.close(sync=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(seed=st.integers(0, 2**16))
    def configure(self, seed: int) -> None:
        self.seed = seed  # varies the data bytes between runs

    # ---- operations ------------------------------------------------------------------------
    def _append(self, at: int, term: int, shape: list[Any], fresh_base: int) -> None:
        m = self.model
        prefix = [e for e in m.all() if e.index < at]
        base = m.start_offset
        for e in reversed(prefix):
            if e.kind is EntryKind.DATA:
                base = read_batch_header(e.data).last_offset + 1
                break
        if base < 0:
            base = fresh_base  # the log's offsets are unknown: the first batch decides
        entries = make_entries(at, term, shape, base, self.seed)
        self.log.append(entries)
        m.raft.append(entries)
        if m.start_offset < 0 and any(e.kind is EntryKind.DATA for e in entries):
            m.start_offset = base
        m.durable = min(m.durable, at - 1)

    @rule(shape=shapes, bump=st.booleans(), fresh_base=st.integers(0, 10**6))
    def append(self, shape: list[Any], bump: bool, fresh_base: int) -> None:
        m = self.model
        self._append(m.raft.last_index() + 1, m.max_term() + bump, shape, fresh_base)

    @precondition(lambda self: self.model.raft.last_index() >= self.model.raft.first_index())
    @rule(data=st.data(), shape=shapes)
    def replace_suffix(self, data: st.DataObject, shape: list[Any]) -> None:
        m = self.model
        at = data.draw(st.integers(m.raft.first_index(), m.raft.last_index()))
        self._append(at, m.max_term() + 1, shape, 0)

    @rule()
    def sync(self) -> None:
        self.log.sync()
        self.model.durable = self.model.raft.last_index()

    @rule(data=st.data())
    def delete_prefix(self, data: st.DataObject) -> None:
        m = self.model
        index = data.draw(st.integers(m.raft.first_index() - 1, m.raft.last_index()))
        self._delete_prefix_to(index)
        self.log.delete_prefix(index)

    def _delete_prefix_to(self, index: int) -> None:
        m = self.model
        if index <= m.raft.first_index() - 1:
            return
        if m.start_offset >= 0:
            m.start_offset = self._offset_after(index)
        m.raft.delete_prefix(index)

    def _offset_after(self, index: int) -> int:
        m = self.model
        offset = m.start_offset
        for e in m.all():
            if e.index > index:
                break
            if e.kind is EntryKind.DATA:
                offset = read_batch_header(e.data).last_offset + 1
        return offset

    @rule(share=st.floats(0, 1.2))
    def retention(self, share: float) -> None:
        total = sum(s.size_bytes for s in self.log.segments())
        deleted = self.log.apply_retention(bytes_max=int(total * share), now_ms=0,
                                           commit_index=self.model.raft.last_index())
        new_start = self.log.first_index() - 1
        assert deleted == 0 or new_start in {s.base_index - 1 for s in self.log.segments()}
        self._delete_prefix_to(new_start)

    @rule(ahead=st.integers(-3, 20), term_bump=st.integers(0, 2),
          offset=st.one_of(st.none(), st.integers(0, 10**6)))
    def reset(self, ahead: int, term_bump: int, offset: int | None) -> None:
        m = self.model
        start = max(0, m.raft.last_index() + ahead)
        term = m.max_term() + term_bump
        self.log.reset(start, term, offset)
        m.raft.reset(start, term)
        m.start_offset = -1 if offset is None else offset
        m.durable = start

    @rule(data=st.data(), flip_last_entry=st.booleans())
    def crash(self, data: st.DataObject, flip_last_entry: bool) -> None:
        segments = self.log.segments()
        self.log.close(sync=False)
        for info in segments:
            size = os.path.getsize(info.path)
            if size > info.durable_bytes:  # unsynced bytes: any prefix of them may survive
                cut = data.draw(st.integers(info.durable_bytes, size), label="cut")
                os.truncate(info.path, cut)
        flipped = flip_last_entry and self._flip_unsynced_last_entry(segments, data)
        self.log = self._open()
        # An unsynced entry that survived whole but with other bytes cannot be told from one
        # damaged after it was synced: it is cut and the log marked for repair either way.
        assert self.log.damage is None or flipped, self.log.damage
        self._check_recovered()

    def _flip_unsynced_last_entry(self, segments: list[Any], data: st.DataObject) -> bool:
        for info in reversed(segments):
            size = os.path.getsize(info.path)
            if size <= SEGMENT_HEADER_BYTES:
                continue
            last = _entry_positions(Path(info.path))
            if last and last[-1] >= info.durable_bytes:
                at = data.draw(st.integers(last[-1], size - 1), label="flip")
                with open(info.path, "r+b") as f:
                    f.seek(at)
                    byte = f.read(1)
                    f.seek(at)
                    f.write(bytes([byte[0] ^ 0x01]))
                return True
            return False
        return False

    def _check_recovered(self) -> None:
        m, log = self.model, self.log
        assert log.first_index() == m.raft.first_index()
        assert log.term_at(log.first_index() - 1) == m.raft.term_at(m.raft.first_index() - 1)
        floor = max(m.durable, m.raft.first_index() - 1)
        assert floor <= log.last_index() <= m.raft.last_index()
        if log.last_index() < m.raft.last_index():
            kept = m.all()[: log.last_index() - m.raft.first_index() + 1]
            m.raft = _rebuilt(m.raft, kept)
        m.durable = log.last_index()

    # ---- what must always hold -------------------------------------------------------------
    @invariant()
    def same_as_the_model(self) -> None:
        m, log = self.model, self.log
        log.check_invariants()
        assert (log.first_index(), log.last_index()) == (m.raft.first_index(), m.raft.last_index())
        start = log.first_index() - 1
        assert log.term_at(start) == m.raft.term_at(start)
        entries = m.all()
        assert log.entries(log.first_index(), log.last_index() + 1, 1 << 40) == entries
        assert log.next_offset == max(m.next_offset(), 0)
        assert log.log_start_offset == max(m.start_offset, 0)

    @invariant()
    def kafka_reads_return_exactly_the_batches(self) -> None:
        m, log = self.model, self.log
        batches = [e.data for e in m.all() if e.kind is EntryKind.DATA]
        got = log.read(log.log_start_offset, log.next_offset, 1 << 30)
        assert [bytes(b) for b in got] == batches
        for b in batches[:: max(1, len(batches) // 3)]:
            h = read_batch_header(b)
            one = log.read(h.last_offset, log.next_offset, 1)
            assert [bytes(x) for x in one] == [b]
            assert log.offset_end_at(log.last_index()) == log.next_offset


def _rebuilt(old: MemoryStorage, kept: list[Entry]) -> MemoryStorage:
    """A MemoryStorage with old's start and only `kept`."""
    new = MemoryStorage()
    start = old.first_index() - 1
    new.reset(start, old.term_at(start))
    new.append(kept)
    return new


def _entry_positions(seg: Path) -> list[int]:
    data = seg.read_bytes()
    out, pos = [], SEGMENT_HEADER_BYTES
    while pos + ENTRY_HEADER_BYTES <= len(data):
        out.append(pos)
        pos += ENTRY_HEADER_BYTES + int.from_bytes(data[pos + 4 : pos + 8], "big")
    return out


TestLogMachine = LogMachine.TestCase
TestLogMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])


# ---- a single flipped byte is always caught ----------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.tuples(kinds, st.integers(1, 3), st.integers(0, 80), st.integers(0, 9)),
                      min_size=1, max_size=30),
       pick=st.floats(0, 1, exclude_max=True), which=st.floats(0, 1, exclude_max=True))
def test_a_flipped_byte_is_cut_as_torn_or_repaired(tmp_path_factory: pytest.TempPathFactory,
                                                   shape: list[Any], pick: float, which: float) -> None:
    """Wherever a bit flips, the log keeps exactly the entries before the damaged one. Only a
    flip in the last entry's length (which a torn write also explains) passes for torn; every
    other flip marks the hard state for repair. A flip inside a sealed segment taken from its
    summary is found by the first read that meets it instead (LogDamageError, nothing served),
    and the next open scans that segment and repairs it the same way."""
    directory = tmp_path_factory.mktemp("flip")
    written = make_entries(1, 1, shape, 0, seed=0)
    conf = ConfState(voters=frozenset({1, 2, 3}))
    with PartitionLog(directory, LogConfig(**CONFIG)) as log:
        log.append(written)
        log.set_hard_state(HardState(term=9, vote=1, commit=len(written), conf=conf))
    paths = sorted(directory.glob("*.log"))
    k = int(which * len(paths))
    path = paths[k]
    at = int(pick * os.path.getsize(path))
    positions = _entry_positions(path)
    before = sum(len(_entry_positions(p)) for p in paths[:k])
    victim = before + sum(1 for q in positions if q <= at) - (1 if at >= SEGMENT_HEADER_BYTES
                                                               and positions else 0)
    if at < SEGMENT_HEADER_BYTES:
        victim = before
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))
    in_last_length = (k == len(paths) - 1 and bool(positions)
                      and positions[-1] + 4 <= at < positions[-1] + 8)
    sealed_entries = k < len(paths) - 1 and at >= SEGMENT_HEADER_BYTES
    log = PartitionLog(directory, LogConfig(**CONFIG))
    try:
        log.entries(1, log.last_index() + 1, 1 << 40)
    except LogDamageError as e:
        assert sealed_entries and log.damage is None and log.read_only, e
        assert e.path == str(path)
        log.close()
        log = PartitionLog(directory, LogConfig(**CONFIG))
    with log:
        log.check_invariants()
        assert log.entries(1, log.last_index() + 1, 1 << 40) == written[:victim]
        hs = log.initial_state()
        assert hs is not None and hs.commit == min(len(written), victim)
        if log.damage is None:
            assert in_last_length and not hs.repairing
        else:
            assert hs.repairing and (hs.term, hs.vote) == (9, 1)
