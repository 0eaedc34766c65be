"""Small file-system steps whose order matters for crash safety."""

from __future__ import annotations

import fcntl
import os

from broker.storage.errors import LogLockedError

__all__ = ["write_atomic", "lock_directory", "open_directory", "TEMP_SUFFIX"]

TEMP_SUFFIX = ".tmp"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def write_atomic(dir_fd: int, directory: str, name: str, data: bytes) -> None:
    """Replace `name` so that a crash leaves either the old or the new contents, durably:
    write a temp file, fsync it, rename it over, fsync the directory. Raises OSError."""
    final = os.path.join(directory, name)
    temp = final + TEMP_SUFFIX
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, final)
    os.fsync(dir_fd)


def open_directory(directory: str) -> int:
    """A descriptor of the directory itself, to fsync new, renamed and deleted entries."""
    return os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)


def lock_directory(directory: str) -> int:
    """flock `directory/lock` so two PartitionLogs never share a directory (across processes
    too). Returns the descriptor that holds the lock; closing it releases it."""
    path = os.path.join(directory, "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogLockedError(f"{directory} is open in another PartitionLog") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
