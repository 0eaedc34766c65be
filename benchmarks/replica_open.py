"""How long creating a replica over an existing log takes, step by step.

    python -m benchmarks.replica_open [--records N] [--record-bytes B] [--producers P]
                                      [--segment-bytes S] [--rounds R] [--dir D]

Writes one log of N small idempotent DATA batches (one record each, P producers taking turns,
all committed) with the real storage, then times, in rounds: opening the PartitionLog (sealed
segments from their summaries), making the RaftNode, and making the Replica (its high
watermark and its idempotent-producer state). "full" deletes every producer snapshot first
(the state is rebuilt from every batch header in the log); "snapshot" rewrites the log with
one taken `--tail` batches before its end (only the headers after it are replayed). The files stay
in the page cache: the figures are CPU, not disk. Prints best and median; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import statistics
import tempfile
import time

from broker.raft.core import RaftNode
from broker.raft.messages import ConfState, Entry, EntryKind, HardState
from broker.replica.partition import Replica
from broker.replica.snapshots import SNAPSHOT_SUFFIX
from broker.storage import LogConfig, PartitionLog
from broker.wire.records import Record, encode_batch, stamp_batch

__all__ = ["main"]

MIB = 1024 * 1024
APPEND_ENTRIES = 1000  # entries per append() call
SYNC_ENTRIES = 20_000  # one sync() per this many entries


def _write(directory: str, config: LogConfig, records: int, record_bytes: int,
           producers: int) -> None:
    value = os.urandom(record_bytes)
    with PartitionLog(directory, config) as log:
        index = 0
        while index < records:
            n = min(APPEND_ENTRIES, records - index)
            log.append([Entry(index=i + 1, term=1, kind=EntryKind.DATA,
                              data=_batch(value, i, producers)) for i in range(index, index + n)])
            index += n
            if index % SYNC_ENTRIES < APPEND_ENTRIES:
                log.sync()
        log.set_hard_state(HardState(term=1, vote=1, commit=records,
                                     conf=ConfState(voters=frozenset({1}))))


def _batch(value: bytes, i: int, producers: int) -> bytes:
    buf = bytearray(encode_batch([Record(key=None, value=value, headers=[],
                                         timestamp_ms=1_700_000_000_000)],
                                 producer_id=1000 + i % producers, producer_epoch=0,
                                 base_sequence=i // producers))
    stamp_batch(buf, 0, i, 1)
    return bytes(buf)


def _snapshot_at(directory: str, config: LogConfig, records: int, record_bytes: int,
                 producers: int, tail: int) -> None:
    """Rewrite the log with a producer snapshot `tail` batches before its end: a replica made
    over the first records - tail batches takes it, then the tail is appended."""
    shutil.rmtree(directory)
    _write(directory, config, records - tail, record_bytes, producers)
    with PartitionLog(directory, config) as log:
        node = RaftNode(node_id=1, storage=log, rng=random.Random(1))
        replica = Replica(group_id=1, topic="t", partition=0, node=node, log=log)
        if not any(n.endswith(SNAPSHOT_SUFFIX) for n in os.listdir(directory)):
            replica.snapshot_producers()
        value = os.urandom(record_bytes)
        log.append([Entry(index=i + 1, term=1, kind=EntryKind.DATA,
                          data=_batch(value, i, producers)) for i in range(records - tail, records)])
        log.set_hard_state(HardState(term=1, vote=1, commit=records,
                                     conf=ConfState(voters=frozenset({1}))))


def _drop_snapshots(directory: str) -> None:
    for name in os.listdir(directory):
        if name.endswith(SNAPSHOT_SUFFIX):
            os.unlink(os.path.join(directory, name))


def _open_once(directory: str, config: LogConfig) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    log = PartitionLog(directory, config)
    t1 = time.perf_counter()
    node = RaftNode(node_id=1, storage=log, rng=random.Random(1))
    t2 = time.perf_counter()
    Replica(group_id=1, topic="t", partition=0, node=node, log=log)
    t3 = time.perf_counter()
    log.close()
    return t1 - t0, t2 - t1, t3 - t2


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--record-bytes", type=int, default=100)
    p.add_argument("--producers", type=int, default=10)
    p.add_argument("--segment-bytes", type=int, default=8 * MIB)
    p.add_argument("--tail", type=int, default=10_000, help="batches after the snapshot")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="parent directory for the log (default: a temp dir)")
    args = p.parse_args(argv)
    parent = tempfile.mkdtemp(prefix="raftlog-replica-open-", dir=args.dir)
    try:
        directory = os.path.join(parent, "log")
        config = LogConfig(segment_bytes_max=args.segment_bytes, trust_segment_summaries=True)
        t0 = time.perf_counter()
        _write(directory, dataclasses.replace(config, trust_segment_summaries=False),
               args.records, args.record_bytes, args.producers)
        print(f"log: {args.records} records of {args.record_bytes} B from {args.producers} "
              f"producers (written in {time.perf_counter() - t0:.1f} s)")
        for mode in ("full", "snapshot"):
            if mode == "snapshot":
                _snapshot_at(directory, config, args.records, args.record_bytes,
                             args.producers, args.tail)
            runs = []
            for _ in range(args.rounds):
                if mode == "full":  # (a creation that replays that much takes a snapshot)
                    _drop_snapshots(directory)
                runs.append(_open_once(directory, config))
            for k, step in enumerate(("log open", "raft node", "replica")):
                ts = [r[k] for r in runs]
                print(f"{mode:>8}: {step:>9}: best {min(ts) * 1000:8.1f} ms, "
                      f"median {statistics.median(ts) * 1000:8.1f} ms")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
