"""Producer-state snapshots: a replica made over a log holding one gets the same idempotent
producer state as a rebuild from the whole log, a snapshot it must not trust (damaged, above
the high watermark, beyond the log's end) means an older one or the full rebuild, cuts and
resets drop the snapshots above the log's new end, and only a few are kept. Real logs on real
files, real Replicas and RaftNodes."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

import broker.replica.partition as partition
from broker.raft.core import RaftNode
from broker.raft.messages import ConfState, Entry, EntryKind, HardState, Ready
from broker.replica.partition import Replica
from broker.replica.producers import BatchSequence, ProducerState, ProducerTable
from broker.replica.snapshots import (
    SNAPSHOT_SUFFIX,
    SNAPSHOTS_KEPT,
    ProducerSnapshots,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from broker.storage import LogConfig, PartitionLog
from broker.wire.records import Record, encode_batch, stamp_batch

PRODUCERS = 4
CONFIG = LogConfig(segment_bytes_max=4096, segment_jitter_bytes_max=0, index_interval_bytes=256,
                   cache_bytes_max=1, trust_segment_summaries=True)


def batch(i: int, producer: int | None = None) -> bytes:
    """Batch number i (offset i): producer 100 + i % PRODUCERS, sequence i // PRODUCERS; a
    producer that restarts its epoch every 7 batches shows epochs are kept too."""
    pid = 100 + i % PRODUCERS if producer is None else producer
    epoch = (i // PRODUCERS) // 7 if pid == 100 else 0
    seq = (i // PRODUCERS) % 7 if pid == 100 else i // PRODUCERS
    buf = bytearray(encode_batch([Record(b"k", b"v%d" % i, [], 1_700_000_000_000)],
                                 producer_id=pid, producer_epoch=epoch, base_sequence=seq))
    stamp_batch(buf, 0, i, 1)
    return bytes(buf)


def write_log(path: Path, batches: int, *, commit: int | None = None) -> None:
    """A closed log of `batches` DATA entries (index i + 1 holds offset i) in term 1."""
    with PartitionLog(path, CONFIG) as log:
        append(log, 0, batches)
        log.set_hard_state(HardState(term=1, vote=1, conf=ConfState(voters=frozenset({1})),
                                     commit=batches if commit is None else commit))


def append(log: PartitionLog, first: int, end: int) -> None:
    log.append([Entry(index=i + 1, term=1, kind=EntryKind.DATA, data=batch(i))
                for i in range(first, end)])
    log.sync()


def open_replica(path: Path) -> Replica:
    log = PartitionLog(path, CONFIG)
    node = RaftNode(node_id=1, storage=log, rng=random.Random(1))
    return Replica(group_id=1, topic="t", partition=0, node=node, log=log)


def state_of(path: Path) -> list[ProducerState]:
    replica = open_replica(path)
    try:
        return replica.producers.committed_states()
    finally:
        replica.close()


def rebuilt_from_scratch(path: Path) -> list[ProducerState]:
    for name in snapshots_in(path):
        os.unlink(path / name)
    return state_of(path)


def snapshots_in(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(SNAPSHOT_SUFFIX))


@pytest.fixture
def interval(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(partition, "SNAPSHOT_INTERVAL_BATCHES", 10)
    return 10


def test_the_codec_round_trips_and_any_damage_is_refused() -> None:
    states = [ProducerState(producer_id=7, epoch=2, batches=tuple(
                  BatchSequence(epoch=2, first_seq=s, last_seq=s + 1, base_offset=10 * s)
                  for s in range(5))),
              ProducerState(producer_id=(1 << 62), epoch=0, batches=())]
    data = encode_snapshot(1234, states)
    assert decode_snapshot(data) == (1234, states)
    for position in range(0, len(data), 7):
        bad = bytearray(data)
        bad[position] ^= 0x10
        with pytest.raises(SnapshotError):
            decode_snapshot(bytes(bad))
    with pytest.raises(SnapshotError):
        decode_snapshot(data[:-5])


def test_a_snapshot_gives_the_state_a_full_rebuild_gives(tmp_path: Path) -> None:
    write_log(tmp_path, 60)
    first = open_replica(tmp_path)  # nothing to load: a rebuild
    assert first.snapshot_producers()
    first.close()
    assert snapshots_in(tmp_path) == [f"{60:020d}{SNAPSHOT_SUFFIX}"]
    with PartitionLog(tmp_path, CONFIG) as log:  # 25 batches more, committed
        append(log, 60, 85)
        log.set_hard_state(HardState(term=1, vote=1, commit=85,
                                     conf=ConfState(voters=frozenset({1}))))
    from_snapshot = state_of(tmp_path)
    assert from_snapshot == rebuilt_from_scratch(tmp_path)
    assert len(from_snapshot) == PRODUCERS


def test_a_replica_snapshots_as_it_applies_and_keeps_a_few(tmp_path: Path, interval: int) -> None:
    write_log(tmp_path, 0)
    replica = open_replica(tmp_path)
    node = replica.node
    node.campaign()
    drive(replica)
    assert replica.leader_ready
    for i in range(65):
        raw = bytearray(batch(i))
        replica.append(raw, partition.read_batch_header(raw), 0)
        drive(replica)
    assert replica.high_watermark == 65
    offsets = [int(n.split(".")[0]) for n in snapshots_in(tmp_path)]
    assert len(offsets) == SNAPSHOTS_KEPT and offsets[-1] >= 60 - 1
    state = replica.producers.committed_states()
    replica.close()
    assert state_of(tmp_path) == state == rebuilt_from_scratch(tmp_path)


def drive(replica: Replica) -> None:
    node = replica.node
    while node.has_ready():
        rd = node.ready()
        replica.write(rd)
        replica.log.sync()
        replica.finish(rd)
        node.advance(rd)


def test_a_snapshot_above_the_high_watermark_is_not_used(tmp_path: Path) -> None:
    """The commit index on disk may lag what was applied (it is checkpointed): a snapshot
    above the high watermark it gives would hold batches not known to be committed."""
    write_log(tmp_path, 40, commit=40)
    snaps = ProducerSnapshots(str(tmp_path))
    table = ProducerTable()
    for i in range(40):  # a state that claims producer 999 wrote at offset 30
        table.commit(100 + i % PRODUCERS, BatchSequence(epoch=0, first_seq=0, last_seq=0,
                                                        base_offset=i))
    table.commit(999, BatchSequence(epoch=0, first_seq=0, last_seq=0, base_offset=30))
    assert snaps.write(40, table)
    with PartitionLog(tmp_path, CONFIG) as log:
        append(log, 40, 50)
        log.set_hard_state(HardState(term=1, vote=1, commit=30,
                                     conf=ConfState(voters=frozenset({1}))))
    replica = open_replica(tmp_path)
    assert replica.high_watermark == 30
    assert 999 not in {s.producer_id for s in replica.producers.committed_states()}
    replica.close()
    assert snapshots_in(tmp_path) == [f"{40:020d}{SNAPSHOT_SUFFIX}"]  # kept: it may serve later


def test_a_damaged_snapshot_falls_back_to_an_older_one_and_is_deleted(tmp_path: Path) -> None:
    write_log(tmp_path, 30)
    replica = open_replica(tmp_path)
    assert replica.snapshot_producers()
    replica.close()
    with PartitionLog(tmp_path, CONFIG) as log:
        append(log, 30, 50)
        log.set_hard_state(HardState(term=1, vote=1, commit=50,
                                     conf=ConfState(voters=frozenset({1}))))
    replica = open_replica(tmp_path)
    assert replica.snapshot_producers()
    replica.close()
    newest = tmp_path / f"{50:020d}{SNAPSHOT_SUFFIX}"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 1
    newest.write_bytes(bytes(data))
    assert state_of(tmp_path) == rebuilt_from_scratch_copy(tmp_path)
    assert snapshots_in(tmp_path) == [f"{30:020d}{SNAPSHOT_SUFFIX}"]


def rebuilt_from_scratch_copy(path: Path) -> list[ProducerState]:
    """The full rebuild's state, leaving the directory's snapshots alone."""
    saved = {n: (path / n).read_bytes() for n in snapshots_in(path)}
    try:
        return rebuilt_from_scratch(path)
    finally:
        for n, data in saved.items():
            (path / n).write_bytes(data)


def test_snapshots_beyond_the_log_end_are_deleted_on_creation(tmp_path: Path) -> None:
    write_log(tmp_path, 20)
    snaps = ProducerSnapshots(str(tmp_path))
    assert snaps.write(15, ProducerTable()) and snaps.write(25, ProducerTable())
    replica = open_replica(tmp_path)
    replica.close()
    assert snapshots_in(tmp_path) == [f"{15:020d}{SNAPSHOT_SUFFIX}"]


def _ready(**fields: Any) -> Ready:
    base: dict[str, Any] = dict(soft_state=None, hard_state=None, log_reset=None, entries=(),
                                must_sync=False, messages=(), messages_after_persist=(),
                                committed=())
    return Ready(**{**base, **fields})


def test_a_cut_and_a_reset_drop_the_snapshots_above_the_new_end(tmp_path: Path) -> None:
    write_log(tmp_path, 30, commit=10)
    snaps = ProducerSnapshots(str(tmp_path))
    for offset in (5, 20, 28):
        assert snaps.write(offset, ProducerTable())
    replica = open_replica(tmp_path)
    # A new leader's entry replaces the uncommitted suffix from index 23 (offset 22) on.
    replica.write(_ready(entries=(Entry(index=23, term=2, kind=EntryKind.DATA,
                                        data=batch_at(22, term=2)),)))
    assert snapshots_in(tmp_path) == [f"{o:020d}{SNAPSHOT_SUFFIX}" for o in (5, 20)]
    replica.write(_ready(log_reset=(50, 2)))  # offsets unknown until the next batch: none kept
    assert snapshots_in(tmp_path) == []
    replica.close()


def batch_at(offset: int, *, term: int) -> bytes:
    buf = bytearray(batch(offset))
    stamp_batch(buf, 0, offset, term)
    return bytes(buf)


def producer_batch(offset: int, producer: int, seq: int) -> bytes:
    buf = bytearray(encode_batch([Record(b"k", b"v", [], 1_700_000_000_000)],
                                 producer_id=producer, producer_epoch=0, base_sequence=seq))
    stamp_batch(buf, 0, offset, 1)
    return bytes(buf)


def test_a_snapshot_below_the_log_start_is_deleted_not_loaded(tmp_path: Path) -> None:
    """Producer 7 writes offsets 0..19 (sequences 0..19), snapshotted at 10; producer 8 then
    writes offsets 20..39; retention moves the log start to 20. The snapshot leads to a state
    without 7's batches 10..19 (deleted with their segments): a retry of one of them must not
    be taken for a new batch, as it was when that snapshot was loaded."""
    with PartitionLog(tmp_path, CONFIG) as log:
        log.append([Entry(index=i + 1, term=1, kind=EntryKind.DATA,
                          data=producer_batch(i, 7, i)) for i in range(10)])
        log.set_hard_state(HardState(term=1, vote=1, conf=ConfState(voters=frozenset({1})),
                                     commit=10))
    replica = open_replica(tmp_path)
    assert replica.snapshot_producers()
    replica.close()
    with PartitionLog(tmp_path, CONFIG) as log:
        log.append([Entry(index=i + 1, term=1, kind=EntryKind.DATA,
                          data=producer_batch(i, 7, i)) for i in range(10, 20)]
                   + [Entry(index=i + 1, term=1, kind=EntryKind.DATA,
                            data=producer_batch(i, 8, i - 20)) for i in range(20, 40)])
        log.set_hard_state(HardState(term=1, vote=1, conf=ConfState(voters=frozenset({1})),
                                     commit=40))
        log.sync()
        log.delete_prefix(20)
        assert log.log_start_offset == 20
    assert snapshots_in(tmp_path) == [f"{10:020d}{SNAPSHOT_SUFFIX}"]

    replica = open_replica(tmp_path)
    try:
        retry = replica.producers.check(7, 0, 10, 10)
        assert not retry.accept, f"a retry of a batch in the deleted range accepted: {retry}"
        assert replica.producers.check(8, 0, 19, 19).duplicate_of == 39  # 8's state is whole
    finally:
        replica.close()
    assert snapshots_in(tmp_path) == []
