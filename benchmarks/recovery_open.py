"""How long opening a replica's log takes: every segment scanned vs sealed ones from summaries.

    python -m benchmarks.recovery_open [--records N] [--record-bytes B] [--segment-bytes S]
                                       [--rounds R] [--dir D]

Writes one log of N small DATA batches (one record each, a few terms) with the real storage,
rolled at S bytes, then times PartitionLog(...) on it in alternating rounds: "scan" first
deletes the summaries (so every segment is scanned and CRC-checked, as before summaries
existed; the open writes them again), "summaries" opens with them in place (only the last
segment is scanned). The files stay in the page cache, so both figures are CPU, not disk.
Prints the best and median of each and their ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time

from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.storage import LogConfig, PartitionLog
from broker.wire.records import Record, encode_batch, stamp_batch

__all__ = ["main"]

MIB = 1024 * 1024
APPEND_ENTRIES = 1000  # entries per append() call
SYNC_ENTRIES = 20_000  # one sync() per this many entries


def _write(directory: str, config: LogConfig, records: int, record_bytes: int) -> None:
    batch = encode_batch([Record(key=None, value=os.urandom(record_bytes), headers=[],
                                 timestamp_ms=1_700_000_000_000)])
    term_every = max(records // 4, 1)
    with PartitionLog(directory, config) as log:
        index = 0
        while index < records:
            n = min(APPEND_ENTRIES, records - index)
            entries = [Entry(index=i + 1, term=1 + i // term_every, kind=EntryKind.DATA,
                             data=_stamped(batch, i, 1 + i // term_every))
                       for i in range(index, index + n)]
            log.append(entries)
            index += n
            if index % SYNC_ENTRIES < APPEND_ENTRIES:
                log.sync()
        log.set_hard_state(HardState(term=1 + (records - 1) // term_every, vote=1,
                                     commit=records, conf=ConfState(voters=frozenset({1}))))


def _stamped(batch: bytes, offset: int, term: int) -> bytes:
    buf = bytearray(batch)
    stamp_batch(buf, 0, offset, term)
    return bytes(buf)


def _open_s(directory: str, config: LogConfig, *, scan: bool) -> float:
    if scan:
        for name in os.listdir(directory):
            if name.endswith(".sum"):
                os.unlink(os.path.join(directory, name))
    config = dataclasses.replace(config, trust_segment_summaries=True)
    start = time.perf_counter()
    log = PartitionLog(directory, config)
    elapsed = time.perf_counter() - start
    log.close()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--record-bytes", type=int, default=100)
    p.add_argument("--segment-bytes", type=int, default=8 * MIB)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="parent directory for the log (default: a temp dir)")
    args = p.parse_args(argv)
    parent = tempfile.mkdtemp(prefix="raftlog-recovery-", dir=args.dir)
    try:
        directory = os.path.join(parent, "log")
        config = LogConfig(segment_bytes_max=args.segment_bytes)
        t0 = time.perf_counter()
        _write(directory, config, args.records, args.record_bytes)
        segments = sum(1 for n in os.listdir(directory) if n.endswith(".log"))
        size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory)
                   if n.endswith(".log"))
        print(f"log: {args.records} records of {args.record_bytes} B, {segments} segments, "
              f"{size / MIB:.0f} MiB (written in {time.perf_counter() - t0:.1f} s)")
        times: dict[str, list[float]] = {"scan": [], "summaries": []}
        for r in range(args.rounds):
            order = ("scan", "summaries") if r % 2 == 0 else ("summaries", "scan")
            for mode in order:
                times[mode].append(_open_s(directory, config, scan=mode == "scan"))
        for mode, ts in times.items():
            print(f"open, {mode:>9}: best {min(ts) * 1000:8.1f} ms, "
                  f"median {statistics.median(ts) * 1000:8.1f} ms")
        print(f"ratio (scan / summaries, best): {min(times['scan']) / min(times['summaries']):.1f}x")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
