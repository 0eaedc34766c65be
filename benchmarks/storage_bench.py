"""Partition log throughput against the raw disk, measured in one run on one disk.

    python -m benchmarks.storage_bench [--quick] [--dir D]

Append: PartitionLog.append, one batch per call (the worst case: a Raft Ready usually carries
several), then one sync() per 1 MiB appended (group commit), against os.write + os.fsync of
the same bytes at the same cadence into a plain file. Both sides take turns in rounds, in
alternating order, so disk noise hits them alike; only the storage calls are timed (the
batches are made beforehand). Interval figures are page-cache copies, so they swing with the
kernel's dirty-page throttling and with other load on the machine.
With fsync_policy=interval_ms the log's sync() hands the bytes to the OS and maybe_sync()
fsyncs once the interval passed; the raw side writes per 1 MiB and fsyncs at the same interval.

Read: read(offset, limit, 1 MiB) from the start to the end of a reopened log (served by
pread from the files, every entry's CRC checked; the files are in the page cache), against
os.pread of the raw file in 1 MiB chunks; and tail reads served from the log's memory cache.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

from broker.raft.messages import Entry, EntryKind
from broker.storage import FsyncPolicy, LogConfig, PartitionLog
from broker.wire.records import Record, encode_batch, read_batch_header, stamp_batch

__all__ = ["main"]

KIB = 1024
MIB = 1024 * KIB
SYNC_BYTES = MIB  # one sync per this many bytes appended
READ_BYTES_MAX = MIB
INTERVAL_MS = 1000


@dataclass(slots=True)
class Timing:
    seconds: float = 0.0
    bytes: int = 0
    batches: int = 0
    append_seconds: float = 0.0  # log only: the part spent in append() (CPU, no I/O)

    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def _template(batch_bytes: int) -> bytes:
    """One uncompressed batch of about `batch_bytes` holding one record."""
    overhead = len(encode_batch([Record(key=None, value=b"", headers=[], timestamp_ms=0)]))
    value = os.urandom(max(batch_bytes - overhead - 4, 1))
    return encode_batch([Record(key=None, value=value, headers=[], timestamp_ms=0)])


def _group(template: bytes, first_index: int, first_offset: int, count: int) -> list[Entry]:
    """`count` entries whose batches carry consecutive offsets (made outside the timing)."""
    out = []
    for k in range(count):
        buf = bytearray(template)
        stamp_batch(buf, 0, first_offset + k, 1)
        out.append(Entry(index=first_index + k, term=1, kind=EntryKind.DATA, data=bytes(buf)))
    return out


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class _LogSide:
    def __init__(self, directory: str, policy: FsyncPolicy) -> None:
        self.policy = policy
        self.log = PartitionLog(directory, LogConfig(fsync_policy=policy,
                                                     fsync_interval_ms=INTERVAL_MS))
        self.timing = Timing()

    def run(self, entries: list[Entry]) -> None:
        log = self.log
        t0 = time.perf_counter()
        for e in entries:
            log.append((e,))
        t1 = time.perf_counter()
        log.sync()
        if self.policy is FsyncPolicy.INTERVAL_MS:
            log.maybe_sync(_now_ms())
        self.timing.seconds += time.perf_counter() - t0
        self.timing.append_seconds += t1 - t0
        self.timing.bytes += sum(len(e.data) for e in entries)
        self.timing.batches += len(entries)


class _RawSide:
    def __init__(self, path: str, policy: FsyncPolicy) -> None:
        self.policy = policy
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.timing = Timing()
        self.last_fsync_ms: int | None = None

    def run(self, payload: bytes) -> None:
        t0 = time.perf_counter()
        view = memoryview(payload)
        while view:
            view = view[os.write(self.fd, view):]
        if self.policy is FsyncPolicy.ALWAYS:
            os.fsync(self.fd)
        else:
            now = _now_ms()
            if self.last_fsync_ms is None or now - self.last_fsync_ms >= INTERVAL_MS:
                os.fsync(self.fd)
                self.last_fsync_ms = now
        self.timing.seconds += time.perf_counter() - t0
        self.timing.bytes += len(payload)

    def close(self) -> None:
        os.close(self.fd)


def bench_append(root: str, batch_bytes: int, policy: FsyncPolicy, volume_bytes: int,
                 rounds: int, keep: bool = False) -> tuple[Timing, Timing, str]:
    """Append `volume_bytes` to a log and to a raw file, alternating in `rounds`."""
    template = _template(batch_bytes)
    per_sync = max(1, SYNC_BYTES // len(template))
    groups = max(rounds, volume_bytes // (per_sync * len(template)))
    log_dir = os.path.join(root, f"log-{batch_bytes}-{policy.value}")
    raw_path = os.path.join(root, f"raw-{batch_bytes}-{policy.value}")
    log_side, raw_side = _LogSide(log_dir, policy), _RawSide(raw_path, policy)
    index, offset = 1, 0
    try:
        for r in range(rounds):
            n = groups // rounds + (1 if r < groups % rounds else 0)
            for side in ("log", "raw") if r % 2 == 0 else ("raw", "log"):  # neither always first
                for _ in range(n):
                    if side == "log":
                        log_side.run(_group(template, index, offset, per_sync))
                        index, offset = index + per_sync, offset + per_sync
                    else:
                        raw_side.run(b"".join(e.data for e in _group(template, 0, 0, per_sync)))
    finally:
        log_side.log.close()
        raw_side.close()
    if not keep:
        shutil.rmtree(log_dir, ignore_errors=True)
        os.unlink(raw_path)
    return log_side.timing, raw_side.timing, log_dir


def bench_read_files(log_dir: str, raw_path: str | None) -> tuple[Timing, Timing]:
    """Read a whole log by offset from its files, and the raw file by pread, 1 MiB a call."""
    log_timing, raw_timing = Timing(), Timing()
    with PartitionLog(log_dir) as log:
        offset, end = log.log_start_offset, log.next_offset
        t0 = time.perf_counter()
        while offset < end:
            chunks = log.read(offset, end, READ_BYTES_MAX)
            log_timing.bytes += sum(len(c) for c in chunks)
            log_timing.batches += len(chunks)
            offset = read_batch_header(chunks[-1]).last_offset + 1
        log_timing.seconds = time.perf_counter() - t0
    if raw_path is not None:
        fd = os.open(raw_path, os.O_RDONLY)
        try:
            size, position = os.fstat(fd).st_size, 0
            t0 = time.perf_counter()
            while position < size:
                position += len(os.pread(fd, READ_BYTES_MAX, position))
            raw_timing.seconds = time.perf_counter() - t0
            raw_timing.bytes = size
        finally:
            os.close(fd)
    return log_timing, raw_timing


def bench_read_cache(root: str, batch_bytes: int, volume_bytes: int) -> Timing:
    """Tail reads: append then read back what the memory cache holds (no syscalls)."""
    template = _template(batch_bytes)
    count = max(1, volume_bytes // len(template))
    directory = os.path.join(root, "log-tail")
    timing = Timing()
    with PartitionLog(directory, LogConfig(cache_bytes_max=volume_bytes + MIB)) as log:
        log.append(_group(template, 1, 0, count))
        log.sync()
        offset, end = 0, log.next_offset
        t0 = time.perf_counter()
        while offset < end:
            chunks = log.read(offset, end, READ_BYTES_MAX)
            timing.bytes += sum(len(c) for c in chunks)
            offset = read_batch_header(chunks[-1]).last_offset + 1
        timing.seconds = time.perf_counter() - t0
    shutil.rmtree(directory, ignore_errors=True)
    return timing


def _row(label: str, log: Timing, raw: Timing) -> str:
    ratio = log.mb_per_s() / raw.mb_per_s() if raw.mb_per_s() else 0.0
    rate = f"{log.batches / log.seconds:>10,.0f}" if log.batches and log.seconds else " " * 10
    cpu = (f" {log.append_seconds / log.batches * 1e6:>14.1f}"
           if log.append_seconds and log.batches else "")
    return (f"  {label:<10} {log.mb_per_s():>9.1f} {raw.mb_per_s():>9.1f} {ratio:>8.0%}"
            f" {rate}{cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds (a demo)")
    parser.add_argument("--dir", help="directory on the disk to measure (default: a temp dir)")
    args = parser.parse_args(argv)
    volume_bytes, rounds = (16 * MIB, 2) if args.quick else (256 * MIB, 8)
    root = tempfile.mkdtemp(prefix="raftlog-storage-bench-", dir=args.dir)
    try:
        _run(root, volume_bytes, rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _warm_up(root: str, volume_bytes: int) -> None:
    """Write and delete a scratch file first: in a VM the first touch of guest memory (page
    cache included) is slow, and whichever side met it first would pay for both."""
    path = os.path.join(root, "warm-up")
    chunk = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(volume_bytes // MIB):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def _run(root: str, volume_bytes: int, rounds: int) -> None:
    print(f"storage_bench: {volume_bytes // MIB} MiB per case, {rounds} alternating rounds, "
          f"in {root}")
    _warm_up(root, 2 * volume_bytes)
    header = f"  {'batch':<10} {'log MB/s':>9} {'raw MB/s':>9} {'log/raw':>8} {'batches/s':>10}"
    append_header = header + f" {'append us/batch':>14}"
    read_source = None
    for policy, what in ((FsyncPolicy.ALWAYS, "one sync() per 1 MiB = write + fsync"),
                         (FsyncPolicy.INTERVAL_MS, f"write per 1 MiB, fsync every {INTERVAL_MS} ms")):
        print(f"\nappend, fsync_policy={policy.value} ({what}):")
        print(append_header)
        for batch_bytes, label in ((16 * KIB, "16 KiB"), (MIB, "1 MiB")):
            keep = policy is FsyncPolicy.ALWAYS and batch_bytes == 16 * KIB
            log_t, raw_t, log_dir = bench_append(root, batch_bytes, policy, volume_bytes,
                                                 rounds, keep=keep)
            print(_row(label, log_t, raw_t), flush=True)
            if keep:
                read_source = log_dir
    print(f"\nread by offset, {READ_BYTES_MAX // MIB} MiB per read() (16 KiB batches):")
    print(header)
    assert read_source is not None
    raw_copy = os.path.join(root, "raw-read")
    with open(raw_copy, "wb") as f:  # the same number of bytes, for the pread baseline
        for name in sorted(os.listdir(read_source)):
            if name.endswith(".log"):
                with open(os.path.join(read_source, name), "rb") as src:
                    shutil.copyfileobj(src, f, MIB)
    log_t, raw_t = bench_read_files(read_source, raw_copy)
    print(_row("files", log_t, raw_t))
    tail = bench_read_cache(root, 16 * KIB, min(volume_bytes, 64 * MIB))
    print(_row("cache", tail, raw_t) + "   (tail reads from memory vs pread)")


if __name__ == "__main__":
    raise SystemExit(main())
