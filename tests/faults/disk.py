"""Disk faults for real brokers: a small disk that can be filled, and damaged segment files.

SmallDisk mounts a size-limited tmpfs over a directory (a broker's data dir, before the
broker first starts: whatever the directory held is hidden while it is mounted, and what the
tmpfs holds is gone once it is unmounted). fill() takes the free space with a ballast file so
the broker's next writes fail with ENOSPC; unfill() gives it back.

damage_segment() changes a segment file of a stopped broker's partition log. The layout it
relies on is the broker's (broker/server.py, broker/storage/format.py): a partition's log lives
in `<data dir>/partitions/<topic>-<partition>.g<raft group id>/`, in segment files named by
the raft index of their first entry (20 digits + ".log"); each file is a 34-byte header and
then entries back to back, each a 25-byte header (crc, length, index, term, kind) and its
payload.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from broker.storage.format import (
    ENTRY_HEADER,
    ENTRY_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    parse_segment_file_name,
)

__all__ = [
    "BALLAST_NAME",
    "DiskError",
    "SmallDisk",
    "damage_segment",
    "mounts_unavailable",
    "partition_dir",
]

BALLAST_NAME = "ballast.fill"
MOUNT_TIMEOUT_S = 30.0
FILL_CHUNK_BYTES = 1 << 20  # write ballast in pieces this size when fallocate is refused
_REPLICA_DIR = re.compile(r"^(?P<name>.+)\.g(?P<group>\d+)$")


class DiskError(Exception):
    """A mount or unmount failed, or there is no segment to damage."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise DiskError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")
    return r


def mounts_unavailable() -> str | None:
    """None if this process can mount a tmpfs; else why not (for pytest.skip)."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    for tool in ("mount", "umount"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    with tempfile.TemporaryDirectory(prefix="raftlog-mount-probe-") as probe:
        try:
            _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe)
        except (DiskError, OSError, subprocess.SubprocessError) as e:
            return f"cannot mount a tmpfs here: {e}"
        _run("umount", probe, check=False)
    return None


class SmallDisk:
    """A tmpfs of `size_bytes` (rounded up to whole pages) mounted at `path` while in use."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        if size_bytes <= 0:
            raise ValueError(f"size_bytes must be positive, got {size_bytes}")
        self.path = Path(path)
        self.size_bytes = size_bytes
        self.mounted = False

    @property
    def ballast(self) -> Path:
        return self.path / BALLAST_NAME

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        if any(self.path.iterdir()):
            raise DiskError(f"{self.path} is not empty: mounting over it would hide its files")
        _run("mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755",
             "raftlog-smalldisk", str(self.path))
        self.mounted = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Unmount (lazily if a process still holds files there: it detaches now and the
        memory is freed when the last file closes). Idempotent."""
        if not self.mounted:
            return
        if _run("umount", str(self.path), check=False).returncode != 0:
            _run("umount", "-l", str(self.path))
        self.mounted = False

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        """Grow the ballast file until at most `leave_bytes` (rounded down to whole pages)
        stay free; calling it again takes what was freed since."""
        if not self.mounted:
            raise DiskError(f"{self.path} is not mounted")
        if leave_bytes < 0:
            raise ValueError(f"leave_bytes must be >= 0, got {leave_bytes}")
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            grow = self.free_bytes() - leave_bytes
            if grow > 0:
                _allocate(fd, size, grow)
        finally:
            os.close(fd)

    def unfill(self) -> None:
        """Remove the ballast: the space it took is free again."""
        self.ballast.unlink(missing_ok=True)


def _allocate(fd: int, offset: int, length: int) -> None:
    """Make [offset, offset + length) of the file take real space; stop quietly at ENOSPC
    (another writer may have taken some of the space meanwhile)."""
    try:
        os.posix_fallocate(fd, offset, length)
        return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSPC):
            raise
    chunk = bytes(FILL_CHUNK_BYTES)
    os.lseek(fd, offset, os.SEEK_SET)
    left = length
    with contextlib.suppress(OSError):  # ENOSPC: full, which is what we want
        while left > 0:
            left -= os.write(fd, chunk[:left])


# ---- damaged segments ---------------------------------------------------------------------------
def partition_dir(data_dir: Path, topic: str, partition: int) -> Path:
    """The directory of `topic`/`partition`'s log in a broker's data dir (the newest raft
    group's, if the topic was deleted and created again)."""
    parent = Path(data_dir) / "partitions"
    found = []
    for d in parent.iterdir() if parent.is_dir() else ():
        m = _REPLICA_DIR.match(d.name)
        if m and m["name"] == f"{topic}-{partition}" and d.is_dir():
            found.append((int(m["group"]), d))
    if not found:
        raise DiskError(f"no log of {topic}-{partition} under {parent}")
    return max(found)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    position: int  # of its header in the file
    end: int  # position after its payload
    index: int  # raft index


def _entries(data: bytes) -> list[_Entry]:
    """The entries of a segment's bytes, as far as their headers hold together."""
    out = []
    pos = SEGMENT_HEADER_BYTES
    while pos + ENTRY_HEADER_BYTES <= len(data):
        _crc, length, index, _term, _kind = ENTRY_HEADER.unpack_from(data, pos)
        end = pos + ENTRY_HEADER_BYTES + length
        if end > len(data):
            break
        out.append(_Entry(position=pos, end=end, index=index))
        pos = end
    return out


def _where(entries: list[_Entry], position: int) -> str:
    for e in entries:
        if e.position <= position < e.end:
            part = "header" if position < e.position + ENTRY_HEADER_BYTES else "payload"
            return f"in the {part} of entry {e.index} (bytes {e.position}..{e.end - 1})"
    return "after the last whole entry"


def damage_segment(data_dir: Path, topic: str, partition: int, *,
                   mode: Literal["truncate", "flip"], rng: random.Random) -> str:
    """Damage one segment of a STOPPED broker's log of `topic`/`partition` and describe it.

    "flip": one random bit of a random byte past the segment header of a random segment
    that has entries (anywhere: any segment, any entry, header or payload).
    "truncate": a random segment that has entries is cut at a random position past its
    header, so at least one byte of its entries is gone (mid-entry or at an entry boundary).
    """
    if mode not in ("truncate", "flip"):
        raise ValueError(f"mode must be 'truncate' or 'flip', got {mode!r}")
    directory = partition_dir(data_dir, topic, partition)
    segments = sorted((p for p in directory.iterdir()
                       if parse_segment_file_name(p.name) is not None
                       and p.stat().st_size > SEGMENT_HEADER_BYTES), key=lambda p: p.name)
    if not segments:
        raise DiskError(f"no segment with entries in {directory}")
    path = rng.choice(segments)
    data = path.read_bytes()
    position = rng.randrange(SEGMENT_HEADER_BYTES, len(data))
    where = _where(_entries(data), position)
    label = f"{path} ({segments.index(path) + 1} of {len(segments)} segments, {len(data)} bytes)"
    if mode == "flip":
        bit = rng.randrange(8)
        new = data[position] ^ (1 << bit)
        _write_byte(path, position, new)
        return (f"flip: bit {bit} of byte {position} {where} of {label}: "
                f"0x{data[position]:02x} -> 0x{new:02x}")
    os.truncate(path, position)
    _fsync(path)
    return f"truncate: cut at byte {position} {where} of {label}: {len(data)} -> {position} bytes"


def _write_byte(path: Path, position: int, value: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.pwrite(fd, bytes([value]), position)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
