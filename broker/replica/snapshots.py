"""Producer-state snapshots: a replica's committed idempotent-producer state at a Kafka offset,
so creating the replica replays only the batch headers after it instead of the whole log
(Kafka's `<offset>.snapshot` files of the ProducerStateManager).

A snapshot at offset X holds the state of every committed batch ending below X. It is taken
only at an offset the replica has applied (so committed: Raft never truncates below it, and
every replica holds the same batches there), and it is used only when X is at or below the
high watermark the log's durable commit index gives and within the log: a snapshot above it
(a commit index checkpointed before the crash, a log cut by damage repair) is skipped for an
older one, or the full rebuild. A torn or damaged file fails its CRC and is deleted. A snapshot
below the log start offset is deleted too: the batches between it and the log start are gone
(retention, or a crash between a log reset and dropping the snapshots above the reset point), so
the state it leads to would miss them, and a retry of one of them would be taken as new.

Files live in the replica's log directory, owned by this module: `<offset, 20 digits>.producers`.
The storage layer lists only its own file names (segments, summaries, hard state, log start)
and its recovery deletes `*.tmp` files, which a write interrupted by a crash leaves.

Format (big-endian), written with write_atomic:
    magic       4 bytes  b"RLPS"
    version     uint16   1
    offset      int64    the offset the state is at (also the file name)
    producers   uint32   count, <= PRODUCERS_MAX, least recently written first
    per producer:
      producer_id int64, epoch int32, batches uint8 (<= BATCHES_KEPT), then per batch:
      first_seq int64, last_seq int64, base_offset int64
    crc         uint32   CRC-32C of every byte before it
"""

from __future__ import annotations

import logging
import os
import struct
from bisect import insort

from crc32c import crc32c

from broker.replica.producers import (
    BATCHES_KEPT,
    PRODUCERS_MAX,
    BatchSequence,
    ProducerState,
    ProducerTable,
)
from broker.storage.files import open_directory, write_atomic

__all__ = ["ProducerSnapshots", "SnapshotError", "SNAPSHOT_SUFFIX", "SNAPSHOTS_KEPT",
           "encode_snapshot", "decode_snapshot"]

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".producers"
SNAPSHOTS_KEPT = 3  # older ones serve when the newest is above the high watermark on open
_NAME_DIGITS = 20
_MAGIC = b"RLPS"
_VERSION = 1
_HEAD = struct.Struct(">4sHqI")
_PRODUCER = struct.Struct(">qiB")
_BATCH = struct.Struct(">qqq")
_CRC = struct.Struct(">I")
SNAPSHOT_BYTES_MAX = (_HEAD.size + PRODUCERS_MAX * (_PRODUCER.size + BATCHES_KEPT * _BATCH.size)
                      + _CRC.size)


class SnapshotError(Exception):
    """A snapshot file is damaged, torn or not one of ours."""


def snapshot_file_name(offset: int) -> str:
    return f"{offset:0{_NAME_DIGITS}d}{SNAPSHOT_SUFFIX}"


def parse_snapshot_file_name(name: str) -> int | None:
    """The offset a snapshot file name encodes, or None for any other file."""
    stem, dot, suffix = name.partition(".")
    if not dot or "." + suffix != SNAPSHOT_SUFFIX or len(stem) != _NAME_DIGITS \
            or not stem.isdigit():
        return None
    return int(stem)


def encode_snapshot(offset: int, states: list[ProducerState]) -> bytes:
    parts = [_HEAD.pack(_MAGIC, _VERSION, offset, len(states))]
    for st in states:
        parts.append(_PRODUCER.pack(st.producer_id, st.epoch, len(st.batches)))
        parts.extend(_BATCH.pack(b.first_seq, b.last_seq, b.base_offset) for b in st.batches)
    body = b"".join(parts)
    return body + _CRC.pack(crc32c(body))


def decode_snapshot(data: bytes) -> tuple[int, list[ProducerState]]:
    """(offset, states). Raises SnapshotError."""
    if not _HEAD.size + _CRC.size <= len(data) <= SNAPSHOT_BYTES_MAX:
        raise SnapshotError(f"{len(data)} bytes")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    body = memoryview(data)[:len(data) - _CRC.size]
    if crc32c(body) != crc:
        raise SnapshotError("bad CRC")
    magic, version, offset, count = _HEAD.unpack_from(body, 0)
    if magic != _MAGIC or version != _VERSION or offset < 0 or count > PRODUCERS_MAX:
        raise SnapshotError(f"header {magic!r} v{version} offset {offset} count {count}")
    states: list[ProducerState] = []
    position = _HEAD.size
    try:
        for _ in range(count):
            producer_id, epoch, n = _PRODUCER.unpack_from(body, position)
            position += _PRODUCER.size
            if n > BATCHES_KEPT:
                raise SnapshotError(f"producer {producer_id}: {n} batches")
            batches = []
            for _ in range(n):
                first, last, base = _BATCH.unpack_from(body, position)
                position += _BATCH.size
                batches.append(BatchSequence(epoch=epoch, first_seq=first, last_seq=last,
                                             base_offset=base))
            states.append(ProducerState(producer_id=producer_id, epoch=epoch,
                                        batches=tuple(batches)))
    except struct.error as e:
        raise SnapshotError(f"truncated: {e}") from None
    if position != len(body):
        raise SnapshotError(f"{len(body) - position} bytes after the last producer")
    return offset, states


class ProducerSnapshots:
    """The snapshot files of one replica directory (at most SNAPSHOTS_KEPT after a write).
    Every file error is logged and absorbed: snapshots only make the replica's creation
    faster; without one the state is rebuilt from the whole log."""

    __slots__ = ("_dir", "offsets")

    def __init__(self, directory: str) -> None:
        self._dir = directory
        try:
            names = os.listdir(directory)
        except OSError as e:
            log.warning("%s: cannot list producer snapshots: %s", directory, e)
            names = []
        # ascending; invariant: the files this object wrote or found and did not delete
        self.offsets: list[int] = sorted(o for o in map(parse_snapshot_file_name, names)
                                         if o is not None)

    @property
    def newest(self) -> int:
        """The highest snapshot offset, -1 when there is none."""
        return self.offsets[-1] if self.offsets else -1

    def load(self, table: ProducerTable, limit_offset: int, start_offset: int) -> int | None:
        """Restore `table` from the newest valid snapshot in [`start_offset`, `limit_offset`]
        (the log start and the high watermark) and return its offset; None when there is none
        (the table is then untouched). Damaged files, and those below `start_offset` (the
        batches after them are not all in the log any more: see the module docstring), are
        deleted on the way."""
        self._delete([o for o in self.offsets if o < start_offset])
        for offset in reversed(self.offsets):
            if offset > limit_offset:
                continue
            path = os.path.join(self._dir, snapshot_file_name(offset))
            try:
                with open(path, "rb") as f:
                    data = f.read(SNAPSHOT_BYTES_MAX + 1)
                stored, states = decode_snapshot(data)
                if stored != offset:
                    raise SnapshotError(f"holds offset {stored}")
            except (OSError, SnapshotError) as e:
                log.warning("%s: producer snapshot skipped: %s", path, e)
                self._delete([offset])
                continue
            table.restore(states)
            return offset
        return None

    def write(self, offset: int, table: ProducerTable) -> bool:
        """Store the committed state of `table` at `offset`; keep the newest SNAPSHOTS_KEPT.
        Returns whether it was written."""
        data = encode_snapshot(offset, table.committed_states())
        try:
            dir_fd = open_directory(self._dir)
            try:
                write_atomic(dir_fd, self._dir, snapshot_file_name(offset), data)
            finally:
                os.close(dir_fd)
        except OSError as e:
            log.warning("%s: cannot write a producer snapshot at %d: %s", self._dir, offset, e)
            return False
        if offset not in self.offsets:
            insort(self.offsets, offset)
        if len(self.offsets) > SNAPSHOTS_KEPT:
            self._delete(self.offsets[:-SNAPSHOTS_KEPT])
        return True

    def drop_above(self, offset: int) -> None:
        """The log was cut or reset to end at `offset`: snapshots beyond it describe batches it
        no longer holds."""
        if self.newest > offset:
            self._delete([o for o in self.offsets if o > offset])

    def _delete(self, offsets: list[int]) -> None:
        """Unlink (not fsynced: a snapshot that comes back after a crash is judged again by
        the same rules on load)."""
        for offset in offsets:
            try:
                os.unlink(os.path.join(self._dir, snapshot_file_name(offset)))
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("%s: cannot delete producer snapshot %d: %s", self._dir, offset, e)
                continue
            self.offsets.remove(offset)
