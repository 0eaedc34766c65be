"""Damage inside a sealed segment that opening trusted (from its summary, unscanned) is never
served: the first read that meets it latches the log, and reopening the replica repairs it.

Scenario: one partition on three brokers, its log in many small segments. The preferred leader
X is stopped cleanly and one bit flipped in the payload of an entry of its FIRST sealed segment:
the segment's length, header and last entry header stay intact, so the summary's checks pass
and the restart opens the log without scanning that segment.

Which read meets the damage first depends on the producer snapshots. Creating a replica
rebuilds the idempotent producers' state from the newest producer snapshot, or from the log
start when there is none, and that replay reads (and CRC-checks) every batch after it.
- Past SNAPSHOT_INTERVAL_BATCHES batches X has a snapshot past the damage, so creation leaves
  the first segment unread. X takes its leadership back and a consumer reads from offset 0,
  which makes X read the damaged entry: the log latches (LogDamageError), the replica goes
  offline, and REPAIR_DELAY_S later the broker reopens it; the scan finds the damage, cuts the
  log before it, marks the hard state repairing, and the replica refetches the rest from the
  new leader.
- Below it, the replay at creation meets the damage, and the broker reopens the log at once.
Either way every acknowledged record is read back intact, X rejoins the ISR, and X, leading
again, serves the whole partition from its repaired log.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.replica.partition import SNAPSHOT_INTERVAL_BATCHES
from broker.replica.snapshots import SNAPSHOT_SUFFIX
from broker.storage.format import ENTRY_HEADER_BYTES, parse_segment_file_name
from broker.storage.summary import summary_file_name
from producer import AsyncProducer
from tests.faults.disk import _entries, _write_byte, partition_dir
from tests.integration.clients import Acked, mismatches, read_all
from tests.integration.cluster import ClusterFactory, LocalCluster, NotYet

pytestmark = pytest.mark.timeout(240)

TOPIC = "damaged"
SEGMENT_BYTES_MAX = 65536
PRODUCERS = 4  # each with up to five batches in flight: enough to keep the brokers busy
VALUE_PAD = b"." * 80
FLIPPED_BIT = 0x10


def _value(i: int) -> bytes:
    return b"d-%010d" % i + VALUE_PAD


async def _write_share(bootstrap: str, first: int, records: int) -> list[Acked]:
    """Every PRODUCERS-th record of `records` from `first`, one record per batch (batch_size
    0, linger 0), so the log holds about as many batches as records."""
    async with AsyncProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=0, batch_size=0, compression_type="none") as producer:
        sent = []
        for i in range(first, records, PRODUCERS):
            key, value = b"k%d" % i, _value(i)
            future = await producer.send(TOPIC, value=value, key=key, partition=0)
            sent.append((key, value, time.monotonic(), future))
        acked = []
        for key, value, sent_s, future in sent:
            md = await asyncio.wait_for(future, timeout=120)
            acked.append(Acked(partition=md.partition, offset=md.offset, key=key, value=value,
                               headers=(), sent_s=sent_s, acked_s=time.monotonic()))
        return acked


async def _write_all(bootstrap: str, records: int) -> list[Acked]:
    shares = await asyncio.gather(*(_write_share(bootstrap, j, records)
                                    for j in range(PRODUCERS)))
    return [a for share in shares for a in share]


def _flip_payload_bit(log_dir: Path) -> tuple[int, int, Path]:
    """Flip one bit in the middle of the payload of the middle entry of the first segment of
    a stopped broker's log. Returns (segment count, raft index of the entry, segment path)."""
    segments = sorted(p for p in log_dir.iterdir() if parse_segment_file_name(p.name) is not None)
    assert len(segments) >= 4, f"want at least 3 sealed segments, have {len(segments)}"
    first = segments[0]
    base_index = parse_segment_file_name(first.name)
    assert base_index is not None
    summary = log_dir / summary_file_name(base_index)
    assert summary.is_file(), f"{first.name} has no summary {summary.name}: open would scan it"
    data = first.read_bytes()
    entries = _entries(data)
    assert len(entries) >= 3, f"{first.name}: only {len(entries)} entries"
    entry = entries[len(entries) // 2]
    payload_start = entry.position + ENTRY_HEADER_BYTES
    assert entry.end - payload_start > 0, entry
    position = payload_start + (entry.end - payload_start) // 2
    _write_byte(first, position, data[position] ^ FLIPPED_BIT)
    return len(segments), entry.index, first


def _wait_led_by(cluster: LocalCluster, node_id: int, what: str,
                 timeout_s: float = 90) -> dict:
    def led() -> dict:
        (p,) = cluster.describe(TOPIC)["partitions"]
        if p["leader"] != node_id:
            raise NotYet(f"partition: {p}")
        return p

    return cluster.wait_until(led, timeout_s=timeout_s, what=what)


def _wait_log_lines(cluster: LocalCluster, node_id: int, patterns: list[str],
                    timeout_s: float = 60) -> str:
    """Wait until this incarnation's log of `node_id` matches every regex, in that order."""
    broker = cluster.brokers[node_id]

    def found() -> str:
        text = broker.log_since_start(lines=2000)
        at = 0
        for pattern in patterns:
            m = re.compile(pattern).search(text, at)
            if m is None:
                raise NotYet(f"no line matching {pattern!r} after byte {at} of broker "
                             f"{node_id}'s log since its restart")
            at = m.end()
        return text

    return cluster.wait_until(found, timeout_s=timeout_s,
                              what=f"broker {node_id}'s log to show {patterns}")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Damaged:
    """A cluster whose broker `x` (the partition's preferred leader) was stopped, had one bit
    of its first segment flipped and was started again."""

    cluster: LocalCluster
    x: int
    acked: list[Acked]
    segments: int  # in x's log when it was damaged
    index: int  # raft index of the damaged entry
    crc: str  # a regex matching how the storage layer names the damage
    replica: str  # a regex matching "group G (topic-0)" as the broker logs it
    written_s: float


def _damage_preferred_leader(cluster_factory: ClusterFactory, records: int) -> _Damaged:
    cluster = cluster_factory(env_overrides={"RAFTLOG_SEGMENT_BYTES_MAX": str(SEGMENT_BYTES_MAX)})
    (partition,) = cluster.create_topic(TOPIC, 1, 3)["partitions"]
    x = partition["replicas"][0]
    started_s = time.monotonic()
    acked = asyncio.run(_write_all(cluster.bootstrap, records))
    written_s = time.monotonic() - started_s
    assert len(acked) == records
    cluster.terminate(x)
    log_dir = partition_dir(cluster.brokers[x].data_dir, TOPIC, 0)
    has_snapshot = any(p.name.endswith(SNAPSHOT_SUFFIX) for p in log_dir.iterdir())
    assert has_snapshot == (records > SNAPSHOT_INTERVAL_BATCHES), (
        f"broker {x}: producer snapshot present: {has_snapshot}, after {records} records")
    segments, index, damaged = _flip_payload_bit(log_dir)
    cluster.restart(x)
    group = log_dir.name.rsplit(".g", 1)[1]
    return _Damaged(cluster=cluster, x=x, acked=acked, segments=segments, index=index,
                    crc=rf"{re.escape(damaged.name)} @ byte \d+: CRC mismatch in entry {index}",
                    replica=rf"group {group} \({re.escape(TOPIC)}-0\)", written_s=written_s)


def _check_repaired_and_whole(d: _Damaged) -> None:
    """x is back in the ISR with the high watermark of every acknowledged record, leads again
    (the balancer gives the preferred leader its partition back) and serves every record from
    its repaired log."""
    cluster, x, records = d.cluster, d.x, len(d.acked)
    others = cluster.bootstrap_of(i for i in cluster.node_ids if i != x)

    def rejoined() -> dict:
        (p,) = cluster.describe(TOPIC, bootstrap=others)["partitions"]
        if x not in p["isr"] or p["high_watermark"] != records:
            raise NotYet(f"partition: {p}")
        return p

    cluster.wait_until(rejoined, timeout_s=90, what=f"broker {x} back in the ISR")
    before = _wait_led_by(cluster, x, f"broker {x} to lead {TOPIC}-0 after its repair")
    assert before["high_watermark"] == records, before
    assert sorted(before["isr"]) == cluster.node_ids, before
    again = read_all(cluster.address(x), TOPIC, [0], timeout_s=90)
    after = _wait_led_by(cluster, x, f"broker {x} to still lead {TOPIC}-0", timeout_s=5)
    assert after["leader_epoch"] == before["leader_epoch"], (
        f"leadership moved during the read from broker {x}: {before} -> {after}")
    problems = mismatches(d.acked, again)
    assert not problems, f"read from broker {x} after its repair:\n" + "\n".join(problems)
    assert len(again) == records, f"{len(again)} records read from broker {x}, want {records}"


def test_damage_in_a_trusted_segment_is_found_on_read_and_repaired_by_reopen(
        cluster_factory: ClusterFactory, report_figure: Callable[[str], None]) -> None:
    records = SNAPSHOT_INTERVAL_BATCHES + 2_000  # past one snapshot, with room for merged batches
    d = _damage_preferred_leader(cluster_factory, records)
    cluster, x = d.cluster, d.x
    _wait_led_by(cluster, x, f"broker {x} to lead {TOPIC}-0 again (leader balancer)")

    # The read that meets the damage: x leads, so the consumer fetches offset 0 from x. It is
    # answered KAFKA_STORAGE_ERROR, and reads on from the leader elected meanwhile.
    stored = read_all(cluster.bootstrap, TOPIC, [0], timeout_s=90)
    problems = mismatches(d.acked, stored)
    assert not problems, f"reading while broker {x} met the damage:\n" + "\n".join(problems)

    text = _wait_log_lines(cluster, x, [
        rf"storage error, the log is now read-only: .*{d.crc}",
        rf"replica of {d.replica} is offline after a storage error: .*{d.crc}",
        rf"reopening the replica of {d.replica} to repair its log",
        rf"damage: .*{d.crc}; the log keeps indexes up to {d.index - 1} and is repaired from "
        r"the leader",
    ])
    assert "reading its log failed" not in text, (
        f"broker {x} met the damage while creating its replica, not on a read:\n{text}")
    _check_repaired_and_whole(d)
    report_figure(f"{records} records written in {d.written_s:.1f} s; broker {x}'s log of "
                  f"{d.segments} segments damaged in entry {d.index} of the first: found on "
                  "read, reopened and repaired; every record read back from it")


def test_damage_met_while_creating_the_replica_is_repaired_by_reopen(
        cluster_factory: ClusterFactory) -> None:
    """Below SNAPSHOT_INTERVAL_BATCHES batches there is no producer snapshot, so creating the
    replica replays every batch from the log start: that read meets the damage at once, and the
    broker reopens the log (scan, cut, repair) before the replica takes part."""
    d = _damage_preferred_leader(cluster_factory, 2_000)
    cluster, x = d.cluster, d.x
    _wait_log_lines(cluster, x, [
        rf"storage error, the log is now read-only: .*{d.crc}",
        rf"replica of {d.replica}: reading its log failed \(reopening it\): .*{d.crc}",
        rf"damage: .*{d.crc}; the log keeps indexes up to {d.index - 1} and is repaired from "
        r"the leader",
    ])
    _check_repaired_and_whole(d)
