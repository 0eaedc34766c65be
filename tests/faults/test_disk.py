"""Disk faults: a filled SmallDisk refuses writes with ENOSPC until unfilled and is unmounted
on exit; damage_segment changes a stopped real broker's segment file exactly as it says."""

from __future__ import annotations

import errno
import os
import random
import re
from pathlib import Path

import pytest

from tests.faults.disk import (
    DiskError,
    SmallDisk,
    damage_segment,
    mounts_unavailable,
    partition_dir,
)
from tests.integration.clients import make_producer
from tests.integration.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)

MOUNT_REASON = mounts_unavailable()
needs_mounts = pytest.mark.skipif(MOUNT_REASON is not None, reason=MOUNT_REASON or "")

SIZE_BYTES = 1 << 20
SEGMENT_HEADER_BYTES = 34


def _write(path: Path, size_bytes: int) -> None:
    with open(path, "wb") as f:
        f.write(os.urandom(size_bytes))
        f.flush()
        os.fsync(f.fileno())


@needs_mounts
def test_filled_disk_refuses_writes_until_unfilled(tmp_path: Path) -> None:
    disk_dir = tmp_path / "disk"
    with SmallDisk(disk_dir, SIZE_BYTES) as disk:
        assert os.path.ismount(disk_dir)
        assert disk.free_bytes() == SIZE_BYTES
        _write(disk_dir / "before", 100_000)
        disk.fill()
        assert disk.free_bytes() == 0
        with pytest.raises(OSError) as raised:
            _write(disk_dir / "during", 10_000)
        assert raised.value.errno == errno.ENOSPC
        disk.unfill()
        _write(disk_dir / "after", 100_000)
        assert (disk_dir / "before").stat().st_size == 100_000


@needs_mounts
def test_fill_can_leave_some_space_and_exit_unmounts_even_with_a_file_open(
        tmp_path: Path) -> None:
    disk_dir = tmp_path / "disk"
    with SmallDisk(disk_dir, SIZE_BYTES) as disk:
        disk.fill(leave_bytes=64 << 10)
        assert disk.free_bytes() == 64 << 10
        _write(disk_dir / "fits", 32 << 10)
        held = open(disk_dir / "held", "wb")  # a process still using the disk: lazy unmount
    try:
        assert not os.path.ismount(disk_dir)
        assert list(disk_dir.iterdir()) == []
    finally:
        held.close()


@needs_mounts
def test_a_non_empty_directory_is_not_hidden(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("keep")
    with pytest.raises(DiskError, match="not empty"):
        with SmallDisk(tmp_path, SIZE_BYTES):
            pass
    assert not os.path.ismount(tmp_path) and (tmp_path / "data").read_text() == "keep"


def _segments(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.log"))}


def _stopped_broker_log(tmp_path: Path) -> Path:
    """A single broker whose topic's log spans several small segments, stopped."""
    cluster = LocalCluster(1, data_root=tmp_path,
                           env_overrides={"RAFTLOG_SEGMENT_BYTES_MAX": "4096"})
    with cluster:
        cluster.start()
        cluster.wait_ready()
        cluster.create_topic("damaged", 1, replication_factor=1)
        producer = make_producer(cluster.bootstrap, linger_ms=0, compression_type=None)
        try:
            for i in range(40):
                producer.send("damaged", b"record-%03d:" % i + bytes(300)).get(timeout=30)
        finally:
            producer.close()
        assert cluster.terminate(1) == 0
    return cluster.brokers[1].data_dir


def test_damage_segment_flips_one_bit_or_cuts_one_segment(tmp_path: Path) -> None:
    data_dir = _stopped_broker_log(tmp_path)
    directory = partition_dir(data_dir, "damaged", 0)
    before = _segments(directory)
    assert len(before) >= 3, f"expected several segments, got {sorted(before)}"

    described = damage_segment(data_dir, "damaged", 0, mode="flip", rng=random.Random(5))
    after = _segments(directory)
    changed = [name for name in before if before[name] != after[name]]
    assert len(changed) == 1 and changed[0] in described, described
    old, new = before[changed[0]], after[changed[0]]
    diffs = [i for i in range(len(old)) if old[i] != new[i]]
    assert len(old) == len(new) and len(diffs) == 1, diffs
    (position,) = diffs
    assert position >= SEGMENT_HEADER_BYTES
    assert bin(old[position] ^ new[position]).count("1") == 1
    assert f"byte {position} " in described
    assert f"0x{old[position]:02x} -> 0x{new[position]:02x}" in described

    described = damage_segment(data_dir, "damaged", 0, mode="truncate", rng=random.Random(6))
    cut = _segments(directory)
    changed = [name for name in after if after[name] != cut[name]]
    assert len(changed) == 1 and changed[0] in described, described
    old, new = after[changed[0]], cut[changed[0]]
    assert SEGMENT_HEADER_BYTES <= len(new) < len(old) and old.startswith(new)
    assert re.search(rf"cut at byte {len(new)} .*: {len(old)} -> {len(new)} bytes", described)


def test_damage_segment_needs_a_log(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="no log of"):
        damage_segment(tmp_path, "missing", 0, mode="flip", rng=random.Random(1))
    with pytest.raises(ValueError, match="mode"):
        damage_segment(tmp_path, "missing", 0, mode="melt",  # type: ignore[arg-type]
                       rng=random.Random(1))
