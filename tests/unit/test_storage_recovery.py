"""Opening a damaged directory: torn tails are cut, corruption is refused, storage errors latch
the log read-only. The damage is done to real files, with the log closed (or, for read-time
checks, behind its back)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from broker.raft.messages import ConfState, Entry, HardState
from broker.storage import (
    LogConfig,
    LogCorruptionError,
    LogDamageError,
    LogReadOnlyError,
    PartitionLog,
)
from broker.storage.format import (
    ENTRY_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    LogStart,
    encode_log_start,
    segment_file_name,
)
from tests.unit.test_storage_batches import Feed

ROOT = Path(__file__).resolve().parents[2]
CONF = ConfState(voters=frozenset({1, 2, 3}))
SMALL: dict[str, Any] = dict(segment_bytes_max=2048, segment_jitter_bytes_max=0,
                             index_interval_bytes=256, trust_segment_summaries=True)


def open_log(path: Path, **overrides: Any) -> PartitionLog:
    log = PartitionLog(path, LogConfig(**{**SMALL, **overrides}))
    log.check_invariants()
    return log


def all_entries(log: PartitionLog) -> list[Entry]:
    return log.entries(log.first_index(), log.last_index() + 1, 1 << 40)


def written_log(path: Path, n: int = 30, **overrides: Any) -> list[Entry]:
    """A synced, closed log of n DATA entries; returns them."""
    entries = Feed().run(1, n, 1, value_bytes=50)
    with open_log(path, **overrides) as log:
        log.append(entries)
    return entries


def segment_paths(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def entry_positions(seg: Path) -> list[int]:
    """Byte positions of the entries of a segment file (read with the documented format)."""
    data = seg.read_bytes()
    out, pos = [], SEGMENT_HEADER_BYTES
    while pos < len(data):
        out.append(pos)
        (length,) = struct.unpack_from(">I", data, pos + 4)
        pos += ENTRY_HEADER_BYTES + length
    return out


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def cut(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


# ---- torn tails --------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [1, ENTRY_HEADER_BYTES - 1, ENTRY_HEADER_BYTES, 40, -1],
                         ids=["1B", "header-1", "header", "payload", "all-but-1"])
def test_a_torn_last_entry_is_cut(tmp_path: Path, keep: int) -> None:
    entries = written_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    start = entry_positions(last)[-1]
    size = os.path.getsize(last)
    cut(last, start + keep if keep > 0 else size + keep)
    log = open_log(tmp_path)
    assert all_entries(log) == entries[:-1]
    assert log.torn_bytes > 0 and os.path.getsize(last) == start
    log.append([Feed(next_offset=29).data(30, 2)])
    log.close()
    with open_log(tmp_path) as log:
        assert log.last_index() == 30 and log.term_at(30) == 2


def test_zeros_after_the_last_entry_are_a_torn_write(tmp_path: Path) -> None:
    entries = written_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    with open(last, "ab") as f:
        f.write(bytes(300))
    with open_log(tmp_path) as log:
        assert all_entries(log) == entries


def marked_log(path: Path, commit: int = 25, n: int = 30) -> list[Entry]:
    """written_log with a hard state (term 1, commit `commit`), as a replica has."""
    entries = Feed().run(1, n, 1, value_bytes=50)
    with open_log(path) as log:
        log.append(entries)
        log.set_hard_state(HardState(term=1, vote=2, commit=commit, conf=CONF))
    return entries


def assert_repaired(path: Path, entries: list[Entry], keep: int, commit: int = 25) -> None:
    """The log kept entries[:keep], marked its hard state `repairing`, commit lowered."""
    with open_log(path) as log:
        assert all_entries(log) == entries[:keep]
        assert log.damage is not None
        hs = log.initial_state()
        assert hs is not None and hs.repairing and hs.term == 1 and hs.vote == 2
        assert hs.commit == min(commit, keep)
        log.append([Feed(next_offset=keep).data(keep + 1, 2)])  # the repair refetches from here
    with open_log(path) as log:  # the cut and the mark are durable; nothing else is damaged
        assert log.damage is None and log.last_index() == keep + 1
        hs = log.initial_state()
        assert hs is not None and hs.repairing


@pytest.mark.parametrize("field_at", [0, 8, 16, 24, 30, -1],
                         ids=["crc", "index", "term", "kind", "payload", "last-byte"])
def test_a_flipped_byte_in_the_last_whole_entry_is_damage(tmp_path: Path, field_at: int) -> None:
    """A whole entry whose CRC fails was written whole: its bytes changed afterwards, and the
    entry may have been acknowledged. Cut and marked for repair, never taken for torn."""
    entries = marked_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    start = entry_positions(last)[-1]
    flip(last, start + field_at if field_at >= 0 else os.path.getsize(last) - 1)
    assert_repaired(tmp_path, entries, len(entries) - 1)


@pytest.mark.parametrize("bit", [8, 14, 23, 31])
def test_a_flipped_bit_in_the_last_entrys_length_is_damage(tmp_path: Path, bit: int) -> None:
    """A length running past the file is what a torn write leaves, but this entry is whole and
    its CRC holds once that one bit is flipped back: it was written, so it is damage."""
    entries = marked_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    at = entry_positions(last)[-1] + 4
    data = bytearray(last.read_bytes())
    data[at:at + 4] = (struct.unpack_from(">I", data, at)[0] ^ (1 << bit)).to_bytes(4, "big")
    last.write_bytes(bytes(data))
    assert_repaired(tmp_path, entries, len(entries) - 1)


def test_a_torn_entry_with_a_length_past_the_file_is_still_torn(tmp_path: Path) -> None:
    """The one-bit check does not turn a torn write into damage: the last entry cut short
    (its length runs past the file) is cut as before, with no repair mark."""
    entries = marked_log(tmp_path, commit=20)
    last = segment_paths(tmp_path)[-1]
    cut(last, os.path.getsize(last) - 3)
    with open_log(tmp_path) as log:
        assert all_entries(log) == entries[:-1]
        hs = log.initial_state()
        assert log.damage is None and hs is not None and not hs.repairing


def test_damage_without_a_hard_state_is_refused(tmp_path: Path) -> None:
    written_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    victim = entry_positions(last)[-1]
    flip(last, victim + 30)
    with pytest.raises(LogCorruptionError) as info:
        PartitionLog(tmp_path, LogConfig(**SMALL))
    assert info.value.path == str(last) and info.value.position == victim


@pytest.mark.parametrize("field_at", [0, 4, 5, 8, 16, 24, 30],
                         ids=["crc", "length-high", "length", "index", "term", "kind", "payload"])
def test_a_flipped_byte_before_valid_entries_is_cut_and_repaired(tmp_path: Path,
                                                                 field_at: int) -> None:
    entries = marked_log(tmp_path)
    last = segment_paths(tmp_path)[-1]
    victim_index = len(entries) - 1  # the second-to-last entry
    flip(last, entry_positions(last)[-2] + field_at)
    assert_repaired(tmp_path, entries, victim_index - 1)


# ---- the repair mark never understates the lost suffix -----------------------------------------
def lone_segment_log(path: Path, commit: int, n: int = 30) -> Path:
    """marked_log in one segment (so the damage below is in the newest one); returns it."""
    entries = Feed().run(1, n, 1, value_bytes=50)
    with open_log(path, segment_bytes_max=1 << 20) as log:
        log.append(entries)
        log.set_hard_state(HardState(term=1, vote=2, commit=commit, conf=CONF))
    (seg,) = segment_paths(path)
    return seg


def repair_index_after_open(path: Path) -> int:
    with open_log(path, segment_bytes_max=1 << 20) as log:
        hs = log.initial_state()
        assert hs is not None and hs.repairing
        return hs.repair_index


def header_bound(kept: int, seg: Path, position: int) -> int:
    """The bound recovery owes: every entry after the last one it can trust takes a header."""
    return kept + (os.path.getsize(seg) - position) // ENTRY_HEADER_BYTES


@pytest.mark.parametrize("bad", [2, 1], ids=["last-two", "last-one-after-a-flip"])
def test_bad_final_entries_do_not_lower_the_repair_index(tmp_path: Path, bad: int) -> None:
    """Damage in the last entries with nothing valid after it: skipping ahead finds no entry,
    yet the mark must still cover index 30 (the log's old last)."""
    seg = lone_segment_log(tmp_path, commit=20)
    positions = entry_positions(seg)
    for p in positions[-2:] if bad == 2 else positions[-2:-1]:
        flip(seg, p + 30)
    if bad == 1:  # the last entry is cut short too: no valid entry follows the damage
        cut(seg, positions[-1] + 10)
    victim = positions[-2]
    bound = header_bound(28, seg, victim)
    assert repair_index_after_open(tmp_path) == bound and bound >= 30


def test_a_long_damaged_run_does_not_hide_the_valid_entries_after_it(tmp_path: Path) -> None:
    """More damaged entries in a row than recovery looks past: the valid entries after them
    are not found, and the byte bound still covers them."""
    seg = lone_segment_log(tmp_path, commit=5)
    positions = entry_positions(seg)
    for p in positions[9:15]:  # entries 10..15
        flip(seg, p + 30)
    bound = header_bound(9, seg, positions[9])
    assert repair_index_after_open(tmp_path) == bound and bound >= 30


def test_a_valid_entry_after_the_damage_starts_the_byte_count(tmp_path: Path) -> None:
    """An entry found valid past the damage bounds everything before it: only the bytes after
    the last one found are counted."""
    seg = lone_segment_log(tmp_path, commit=5)
    positions = entry_positions(seg)
    flip(seg, positions[9] + 30)  # entry 10; 11..30 are found by skipping ahead
    assert repair_index_after_open(tmp_path) == 30


def test_a_torn_tail_below_the_commit_index_bounds_the_mark_by_its_bytes(tmp_path: Path) -> None:
    """The log ends below its commit index after a torn tail was cut (pages that never reached
    the disk, read as zeros): acknowledged entries after the commit index were in those bytes
    too, so the mark counts them rather than stopping at the commit index."""
    seg = lone_segment_log(tmp_path, commit=27)
    positions = entry_positions(seg)
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(positions[26])  # entry 27 on
        f.write(bytes(size - positions[26]))
    bound = header_bound(26, seg, positions[26])
    with open_log(tmp_path, segment_bytes_max=1 << 20) as log:
        hs = log.initial_state()
        assert hs is not None and hs.repairing and hs.commit == 26
        assert hs.repair_index == bound and bound >= 30
        assert log.torn_bytes == size - positions[26] and log.last_index() == 26
    assert os.path.getsize(seg) == positions[26]  # cut after the mark was written


def test_a_file_cut_at_an_entry_boundary_below_the_commit_index_marks_the_commit(
        tmp_path: Path) -> None:
    """Nothing in the files bounds what a file cut short at an entry boundary lost: the mark
    is the commit index (the leader's repair mark covers the rest)."""
    seg = lone_segment_log(tmp_path, commit=27)
    cut(seg, entry_positions(seg)[25])  # entries 26..30 gone
    assert repair_index_after_open(tmp_path) == 27


def find_by_reading(path: Path) -> None:
    """Open a log whose sealed segments are taken from their summaries, and read it all: the
    read meets the damage, raises LogDamageError and latches the log (nothing was cut yet)."""
    log = open_log(path)
    last = log.last_index()
    with pytest.raises(LogDamageError):
        all_entries(log)
    assert log.read_only and log.damage is None
    with pytest.raises(LogReadOnlyError):
        log.append([Feed(next_offset=last).data(last + 1, 2)])
    log.close()


def forget_summaries(path: Path) -> None:
    """Without summaries, opening scans every segment (as a log written before them)."""
    for p in path.glob("*.sum"):
        p.unlink()


@pytest.mark.parametrize("found", ["by-read", "on-open"])
@pytest.mark.parametrize("which", [0, -1], ids=["first-entry", "last-entry"])
def test_a_flipped_byte_in_a_sealed_segment_cuts_every_later_segment(tmp_path: Path,
                                                                     which: int,
                                                                     found: str) -> None:
    entries = marked_log(tmp_path)
    paths = segment_paths(tmp_path)
    sealed = paths[0]
    positions = entry_positions(sealed)
    flip(sealed, positions[which] + 30)
    if found == "on-open":
        forget_summaries(tmp_path)
    else:
        find_by_reading(tmp_path)
    keep = (which % len(positions))  # entries before the victim in the first segment
    assert_repaired(tmp_path, entries, keep)
    assert all(not p.exists() for p in paths[1:])


def test_a_bad_segment_header_drops_that_segment_on(tmp_path: Path) -> None:
    entries = marked_log(tmp_path)
    paths = segment_paths(tmp_path)
    flip(paths[1], 10)
    keep = len(entry_positions(paths[0]))
    assert_repaired(tmp_path, entries, keep)


def test_a_missing_middle_segment_is_cut_and_repaired(tmp_path: Path) -> None:
    entries = marked_log(tmp_path)
    paths = segment_paths(tmp_path)
    assert len(paths) >= 3
    paths[1].unlink()
    assert_repaired(tmp_path, entries, len(entry_positions(paths[0])))


@pytest.mark.parametrize("found", ["by-read", "on-open"])
def test_a_damaged_first_entry_leaves_an_empty_log(tmp_path: Path, found: str) -> None:
    entries = marked_log(tmp_path)
    first = segment_paths(tmp_path)[0]
    flip(first, entry_positions(first)[0] + 30)
    if found == "on-open":
        forget_summaries(tmp_path)
    else:
        find_by_reading(tmp_path)
    assert_repaired(tmp_path, entries, 0)


def test_a_torn_sealed_segment_is_damage(tmp_path: Path) -> None:
    written_log(tmp_path)
    sealed = segment_paths(tmp_path)[0]
    cut(sealed, os.path.getsize(sealed) - 3)
    with pytest.raises(LogCorruptionError):  # no hard state here: refused, nothing cut
        PartitionLog(tmp_path, LogConfig(**SMALL))
    assert os.path.getsize(sealed) > 0 and len(segment_paths(tmp_path)) > 1


def test_half_created_trailing_segments_are_removed(tmp_path: Path) -> None:
    entries = written_log(tmp_path)
    (tmp_path / segment_file_name(31)).write_bytes(b"")
    (tmp_path / segment_file_name(32)).write_bytes(b"RLSG")
    (tmp_path / segment_file_name(33)).write_bytes(bytes(100))  # size on disk, bytes not
    (tmp_path / "hard_state.tmp").write_bytes(b"half")
    with open_log(tmp_path) as log:
        assert all_entries(log) == entries
    assert not (tmp_path / segment_file_name(31)).exists()
    assert not (tmp_path / "hard_state.tmp").exists()


def test_a_corrupt_metadata_file_is_corruption(tmp_path: Path) -> None:
    written_log(tmp_path)
    (tmp_path / "hard_state").write_bytes(b"RLHS" + bytes(40))
    with pytest.raises(LogCorruptionError):
        PartitionLog(tmp_path, LogConfig(**SMALL))


# ---- interrupted structural changes ------------------------------------------------------------
def test_a_log_start_ahead_of_old_segments_deletes_them(tmp_path: Path) -> None:
    """Retention wrote the new start, then stopped before deleting the segments."""
    entries = written_log(tmp_path)
    paths = segment_paths(tmp_path)
    second = int(paths[1].stem)
    start = LogStart(start_index=second + 1, start_term=1, start_offset=second + 1)
    (tmp_path / "log_start").write_bytes(encode_log_start(start))
    with open_log(tmp_path) as log:
        assert log.first_index() == second + 2 and log.log_start_offset == second + 1
        assert all_entries(log) == entries[second + 1 :]
    assert not paths[0].exists()


def test_old_segments_not_continuing_a_reset_are_deleted(tmp_path: Path) -> None:
    """A reset wrote the new start, then stopped before deleting the old segments, whose
    entry at the start has another term: the log restarts empty."""
    written_log(tmp_path)
    start = LogStart(start_index=12, start_term=7, start_offset=99)
    (tmp_path / "log_start").write_bytes(encode_log_start(start))
    with open_log(tmp_path) as log:
        assert (log.first_index(), log.last_index(), log.term_at(12)) == (13, 12, 7)
        assert log.next_offset == 99
    assert len(segment_paths(tmp_path)) == 1


def test_old_segments_continuing_a_reset_are_kept(tmp_path: Path) -> None:
    entries = written_log(tmp_path)
    start = LogStart(start_index=12, start_term=1, start_offset=12)
    (tmp_path / "log_start").write_bytes(encode_log_start(start))
    with open_log(tmp_path) as log:
        assert all_entries(log) == entries[12:]


# ---- corruption found while serving ----------------------------------------------------------
def test_corruption_found_by_a_read_raises_instead_of_serving(tmp_path: Path) -> None:
    log = open_log(tmp_path, cache_bytes_max=1)
    log.append(Feed().run(1, 30, 1, value_bytes=50))
    log.sync()
    log.append([Feed(next_offset=30).data(31, 1)])
    log.sync()  # entries 1..31 are read from the files now
    first = segment_paths(tmp_path)[0]
    position = entry_positions(first)[3]
    with open(first, "r+b") as f:  # bit rot behind the log's back
        f.seek(position + 40)
        f.write(b"\xff")
    with pytest.raises(LogCorruptionError):
        log.entries(1, 10, 1 << 20)
    with pytest.raises(LogCorruptionError):
        log.read(0, 100, 1 << 20)
    assert [e.index for e in log.entries(5, 7, 1 << 20)] == [5, 6]  # the rest still reads
    log.close()


# ---- storage errors latch the log read-only --------------------------------------------------
_LATCH_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from broker.storage import LogConfig, LogReadOnlyError, PartitionLog
    from tests.unit.test_storage_batches import Feed

    directory = sys.argv[1]
    log = PartitionLog(directory, LogConfig(segment_bytes_max=1 << 20))
    feed = Feed()
    durable = feed.run(1, 10, 1, value_bytes=100)
    log.append(durable)
    log.sync()
    # A real write failure: the file-size limit makes pwritev fail with EFBIG part-way.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = os.path.getsize(log.segments()[-1].path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 500, hard))
    log.append(feed.run(11, 20, 1, value_bytes=100))
    try:
        log.sync()
        raise SystemExit("sync did not fail")
    except LogReadOnlyError:
        pass
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert log.read_only and log.last_index() == 10, log.last_index()
    assert log.entries(1, 11, 1 << 20) == durable
    assert log.next_offset == 10 and len(log.read(0, 1000, 1 << 20)) == 10
    for attempt in (lambda: log.append(feed.run(11, 1, 1)), log.sync, lambda: log.reset(5, 5)):
        try:
            attempt()
            raise SystemExit("a write succeeded after the latch")
        except LogReadOnlyError:
            pass
    log.close(sync=False)
    log = PartitionLog(directory, LogConfig(segment_bytes_max=1 << 20))
    log.check_invariants()
    assert log.entries(1, 11, 1 << 20) == durable and log.torn_bytes > 0
    print("ok", log.last_index())
""")


def test_a_write_error_latches_the_log_read_only(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _LATCH_SCRIPT, str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
