"""Segment summaries: sealed segments are taken from them on open (not scanned), the log opened
that way is the log a full scan gives, and no summary ever describes a file that changed. The
crash points are made by hand on real files, with the log closed."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from broker.raft.messages import ConfState, Entry, HardState
from broker.storage import LogConfig, LogCorruptionError, LogDamageError, PartitionLog
from broker.storage.format import FormatError, segment_file_name
from broker.storage.summary import decode_summary, encode_summary, summary_file_name
from tests.unit.test_storage_batches import Feed

CONF = ConfState(voters=frozenset({1, 2, 3}))
SMALL: dict[str, Any] = dict(segment_bytes_max=2048, segment_jitter_bytes_max=0,
                             index_interval_bytes=256, cache_bytes_max=1,
                             trust_segment_summaries=True)


def open_log(path: Path, **overrides: Any) -> PartitionLog:
    log = PartitionLog(path, LogConfig(**{**SMALL, **overrides}))
    log.check_invariants()
    return log


def entries_of(log: PartitionLog) -> list[Entry]:
    return log.entries(log.first_index(), log.last_index() + 1, 1 << 40)


def several_terms(path: Path) -> list[Entry]:
    """A closed log of 3 terms (with CONFIG entries) over several segments, and a hard state."""
    feed = Feed()
    entries = (feed.run(1, 20, 1, every_config=7, value_bytes=60)
               + feed.run(21, 25, 3, value_bytes=60) + feed.run(46, 20, 4, every_config=5))
    with open_log(path) as log:
        for k in range(0, len(entries), 6):  # several appends and syncs, as a replica does
            log.append(entries[k : k + 6])
            log.sync()
        log.set_hard_state(HardState(term=4, vote=1, commit=len(entries), conf=CONF))
    return entries


def sums(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.sum"))


def segs(path: Path) -> list[Path]:
    return sorted(path.glob("*.log"))


def view(log: PartitionLog) -> dict[str, Any]:
    """Everything a reader sees of a log (what opening must rebuild, from summaries or not)."""
    lo, hi = log.first_index(), log.last_index()
    return {
        "range": (lo, hi, log.log_start_offset, log.next_offset),
        "terms": [log.term_at(i) for i in range(lo - 1, hi + 1)],
        "offsets": [log.offset_end_at(i) for i in range(lo - 1, hi + 1)],
        "segments": [dataclasses.replace(s, path=Path(s.path).name, durable_bytes=0)
                     for s in log.segments()],
        "entries": entries_of(log),
        "reads": [[bytes(b) for b in log.read(o, log.next_offset, 300)]
                  for o in range(log.log_start_offset, log.next_offset)],
        "times": [log.offset_for_timestamp(t) for t in (0, 1000, 1001)],
    }


def scanned_view(path: Path, tmp: Path) -> dict[str, Any]:
    """The view of a copy of the log opened without summaries (every segment scanned)."""
    copy = tmp / "scanned"
    shutil.copytree(path, copy)
    for p in copy.glob("*.sum"):
        p.unlink()
    (copy / "lock").unlink(missing_ok=True)
    with open_log(copy) as log:
        return view(log)


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


# ---- the format --------------------------------------------------------------------------------
def test_every_sealed_segment_has_a_summary_that_reads_back(tmp_path: Path) -> None:
    several_terms(tmp_path / "log")
    paths = segs(tmp_path / "log")
    assert len(paths) >= 4
    assert sums(tmp_path / "log") == [summary_file_name(int(p.stem)) for p in paths[:-1]]
    data = (tmp_path / "log" / summary_file_name(int(paths[1].stem))).read_bytes()
    s = decode_summary(data)
    assert encode_summary(s) == data and s.base_index == int(paths[1].stem)
    assert s.file_bytes == paths[1].stat().st_size


@pytest.mark.parametrize("at", [0, 10, 40, 100, -5, -1])
def test_a_damaged_summary_does_not_decode(tmp_path: Path, at: int) -> None:
    several_terms(tmp_path)
    data = bytearray((tmp_path / sums(tmp_path)[0]).read_bytes())
    data[at] ^= 0x01
    with pytest.raises(FormatError):
        decode_summary(bytes(data))


def test_a_summary_breaking_the_segment_invariants_does_not_decode(tmp_path: Path) -> None:
    several_terms(tmp_path)
    s = decode_summary((tmp_path / sums(tmp_path)[0]).read_bytes())
    for bad in (dict(point_positions=tuple(reversed(s.point_positions))),
                dict(run_terms=(s.prev_term,) * len(s.run_terms) or (s.prev_term,),
                     run_starts=s.run_starts or (s.base_index,)),
                dict(last_index=s.base_index - 1),
                dict(next_offset=s.base_offset - 1),
                dict(last_position=s.file_bytes)):
        with pytest.raises(FormatError):
            decode_summary(encode_summary(dataclasses.replace(s, **bad)))


# ---- opening from summaries --------------------------------------------------------------------
def test_opening_from_summaries_gives_the_log_a_scan_gives(tmp_path: Path) -> None:
    path = tmp_path / "log"
    entries = several_terms(path)
    expected = scanned_view(path, tmp_path)
    with open_log(path) as log:
        assert view(log) == expected and expected["entries"] == entries


def test_sealed_segments_with_summaries_are_not_scanned(tmp_path: Path) -> None:
    """A payload byte flipped in a sealed segment is not seen on open (its entries were not
    read), only by the read that meets it."""
    entries = several_terms(tmp_path)
    paths = segs(tmp_path)
    flip(paths[1], paths[1].stat().st_size - 3)
    with open_log(tmp_path) as log:
        assert log.damage is None and log.last_index() == len(entries)
        assert [log.term_at(i) for i in range(1, len(entries) + 1)] == [e.term for e in entries]


def test_without_trust_every_segment_is_scanned_and_valid_summaries_are_kept(
        tmp_path: Path) -> None:
    entries = several_terms(tmp_path)
    paths = segs(tmp_path)
    names = sums(tmp_path)
    flip(paths[1], paths[1].stat().st_size - 3)  # the last entry of a sealed segment
    with open_log(tmp_path, trust_segment_summaries=False) as log:
        assert log.damage is not None and log.last_index() == int(paths[2].stem) - 2
        assert entries_of(log) == entries[: log.last_index()]
    assert sums(tmp_path) == names[:1]  # the first one held; the others went with the cut


def test_a_log_without_summaries_is_scanned_and_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "log"
    several_terms(path)
    names = sums(path)
    for p in path.glob("*.sum"):
        p.unlink()
    expected = scanned_view(path, tmp_path)
    with open_log(path) as log:
        assert view(log) == expected
    assert sums(path) == names


@pytest.mark.parametrize("damage", ["crc", "garbage", "empty", "other-segment"])
def test_an_unusable_summary_means_a_scan_and_is_rewritten(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "log"
    several_terms(path)
    victim = path / sums(path)[1]
    good = victim.read_bytes()
    if damage == "crc":
        flip(victim, 50)
    elif damage == "garbage":
        victim.write_bytes(b"RLSS" + bytes(300))
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        victim.write_bytes((path / sums(path)[0]).read_bytes())
    expected = scanned_view(path, tmp_path)
    with open_log(path) as log:
        assert view(log) == expected
    assert victim.read_bytes() == good


def test_a_sealed_segment_cut_short_is_damage_despite_its_summary(tmp_path: Path) -> None:
    entries = several_terms(tmp_path)
    sealed = segs(tmp_path)[1]
    keep = len(decode_summary((tmp_path / sums(tmp_path)[0]).read_bytes()).point_indexes)
    with open(sealed, "r+b") as f:
        f.truncate(sealed.stat().st_size - 5)
    with open_log(tmp_path) as log:
        assert log.damage is not None and log.last_index() < len(entries)
        hs = log.initial_state()
        assert hs is not None and hs.repairing
        assert entries_of(log) == entries[: log.last_index()] and keep > 0
        assert not (tmp_path / summary_file_name(int(sealed.stem))).exists()


def test_a_missing_middle_segment_is_damage_despite_summaries(tmp_path: Path) -> None:
    entries = several_terms(tmp_path)
    paths = segs(tmp_path)
    paths[1].unlink()
    with open_log(tmp_path) as log:
        assert log.damage is not None and log.last_index() == int(paths[1].stem) - 1
        assert entries_of(log) == entries[: log.last_index()]
    assert sums(tmp_path) == []  # the first segment is the last one now


# ---- crash points ------------------------------------------------------------------------------
def test_orphan_temp_and_last_segment_summaries_are_deleted_on_open(tmp_path: Path) -> None:
    """A summary without its segment (deleted, the summary's removal not yet durable), a
    half-written one, and one for the last segment (left by an earlier incarnation of it)."""
    several_terms(tmp_path)
    paths = segs(tmp_path)
    first = (tmp_path / sums(tmp_path)[0]).read_bytes()
    (tmp_path / summary_file_name(99999)).write_bytes(first)
    (tmp_path / (summary_file_name(int(paths[0].stem)) + ".tmp")).write_bytes(b"half")
    (tmp_path / summary_file_name(int(paths[-1].stem))).write_bytes(first)
    with open_log(tmp_path):
        pass
    assert sums(tmp_path) == [summary_file_name(int(p.stem)) for p in paths[:-1]]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_stale_summary_of_a_replaced_segment_is_not_trusted(tmp_path: Path) -> None:
    """The worst crash point for a cut: the summary of the old segment `b` survives while the
    file under its name was cut and filled again with other entries of the same sizes."""
    path = tmp_path / "log"
    entries = several_terms(path)
    paths = segs(path)
    b = int(paths[2].stem)
    stale = (path / summary_file_name(b)).read_bytes()
    with open_log(path) as log:  # a new leader's entries replace everything from b on
        feed = Feed(next_offset=log.offset_end_at(b - 1))
        log.append([dataclasses.replace(e, term=9, data=feed.data(e.index, 9, value_bytes=60).data
                                        if e.kind.name == "DATA" else e.data)
                    for e in entries[b - 1 :]])
    assert (path / summary_file_name(b)).read_bytes() != stale
    (path / summary_file_name(b)).write_bytes(stale)
    expected = scanned_view(path, tmp_path)
    with open_log(path) as log:
        assert view(log) == expected and log.term_at(b) == 9


def test_a_cut_into_a_sealed_segment_removes_its_summary_first(tmp_path: Path) -> None:
    entries = several_terms(tmp_path)
    paths = segs(tmp_path)
    b = int(paths[1].stem)
    with open_log(tmp_path) as log:
        log.append([Feed(next_offset=log.offset_end_at(b + 1)).data(b + 2, 5)])
        # the cut segment is the active one now: no summary describes it or any later one
        assert sums(tmp_path) == [summary_file_name(int(paths[0].stem))]
        log.check_invariants()
    with open_log(tmp_path) as log:
        assert log.last_index() == b + 2 and log.term_at(b + 2) == 5
        assert entries_of(log)[: b + 1] == entries[: b + 1]


def test_retention_and_reset_remove_summaries_with_their_segments(tmp_path: Path) -> None:
    several_terms(tmp_path)
    paths = segs(tmp_path)
    with open_log(tmp_path) as log:
        log.delete_prefix(int(paths[2].stem) - 1)
        assert sums(tmp_path) == [summary_file_name(int(p.stem)) for p in paths[2:-1]]
        log.check_invariants()
    with open_log(tmp_path) as log:
        assert log.first_index() == int(paths[2].stem)
        log.reset(500, 7, 1000)
        assert sums(tmp_path) == []
    with open_log(tmp_path) as log:
        assert (log.first_index(), log.last_index(), log.next_offset) == (501, 500, 1000)


def test_a_segment_rolled_but_not_yet_summarized_is_scanned(tmp_path: Path) -> None:
    """The crash point between sealing a segment and writing its summary."""
    path = tmp_path / "log"
    several_terms(path)
    last_sealed = path / sums(path)[-1]
    last_sealed.unlink()
    expected = scanned_view(path, tmp_path)
    with open_log(path) as log:
        assert view(log) == expected
    assert last_sealed.exists()


# ---- damage found by a read --------------------------------------------------------------------
def test_damage_met_by_a_fetch_latches_and_is_repaired_on_the_next_open(tmp_path: Path) -> None:
    entries = several_terms(tmp_path)
    sealed = segs(tmp_path)[1]
    flip(sealed, sealed.stat().st_size - 3)  # the payload of its last entry
    victim = int(segs(tmp_path)[2].stem) - 1
    log = open_log(tmp_path)
    with pytest.raises(LogDamageError) as info:
        log.read(0, log.next_offset, 1 << 20)
    assert isinstance(info.value, LogCorruptionError) and info.value.path == str(sealed)
    assert log.read_only
    assert not (tmp_path / summary_file_name(int(sealed.stem))).exists()
    log.close()
    with open_log(tmp_path) as log:
        assert log.damage is not None and log.last_index() == victim - 1
        assert entries_of(log) == entries[: victim - 1]
        hs = log.initial_state()
        assert hs is not None and hs.repairing and hs.commit == victim - 1


def test_segment_names_and_summary_names_differ_only_in_suffix() -> None:
    assert summary_file_name(42)[:-4] == segment_file_name(42)[:-4]
