"""LogConfig: every knob of a partition log, with its unit in its name."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from broker.storage.errors import LogConfigError

__all__ = ["FsyncPolicy", "LogConfig"]

_KIB = 1024
_MIB = 1024 * 1024


class FsyncPolicy(enum.Enum):
    """When appended bytes reach the disk.

    ALWAYS: `sync()` (or `flush()` then `fsync()`) writes every buffered entry and fsyncs it
    before returning; an acknowledgement sent after it survives a power failure.
    INTERVAL_MS: `sync()` only hands the bytes to the operating system (they survive a crash
    of the process, not of the machine); `maybe_sync(now_ms)` fsyncs once `fsync_interval_ms`
    has passed. A power failure loses up to that interval of acknowledged writes on this
    replica, which is Kafka's default trade (`log.flush.interval.ms` unset): the other
    replicas are the durability. Term and vote changes are fsynced at once in both modes.
    """

    ALWAYS = "always"
    INTERVAL_MS = "interval_ms"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    segment_bytes_max: int = 128 * _MIB  # a segment is rolled before it would exceed this
    # Each segment rolls at segment_bytes_max minus a deterministic jitter in
    # [0, segment_jitter_bytes_max], derived from jitter_seed and the segment's first index, so
    # partitions created together do not roll (and get deleted) in lockstep.
    # None means segment_bytes_max // 20; 0 turns the jitter off.
    segment_jitter_bytes_max: int | None = None
    jitter_seed: int = 0  # e.g. a hash of topic and partition
    index_interval_bytes: int = 4 * _KIB  # one sparse index point per this many bytes
    fsync_policy: FsyncPolicy | str = FsyncPolicy.ALWAYS
    fsync_interval_ms: int = 1000  # INTERVAL_MS only: the longest a write stays unsynced
    # A hard state that differs from the stored one only in `commit` is written at most this
    # often (by maybe_sync) and on close, like Kafka's high-watermark checkpoint: a crash may
    # bring back an older commit, which Raft re-learns from the leader.
    commit_checkpoint_interval_ms: int = 5000
    cache_bytes_max: int = 8 * _MIB  # recent entries kept in memory (never-flushed ones always)
    write_buffer_bytes_max: int = 8 * _MIB  # buffered appends beyond this are written at once
    read_chunk_bytes: int = 256 * _KIB  # one pread when scanning (an entry may need more)
    entry_bytes_max: int = 64 * _MIB  # payload bound: larger appends are refused
    # Open takes sealed segments from their summaries instead of scanning them (see
    # broker.storage.summary); damage inside them then surfaces as LogDamageError from any
    # read, which the caller must answer by taking the replica offline (broker.replica does,
    # and reopens the log to repair it). Off: every segment is scanned on open (summaries are
    # still written and kept, so turning it on costs nothing).
    trust_segment_summaries: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.fsync_policy, str):
            try:
                object.__setattr__(self, "fsync_policy", FsyncPolicy(self.fsync_policy))
            except ValueError:
                raise LogConfigError(
                    f"fsync_policy {self.fsync_policy!r}: expected 'always' or 'interval_ms'"
                ) from None
        self._check_positive("segment_bytes_max", "index_interval_bytes", "fsync_interval_ms",
                             "cache_bytes_max", "write_buffer_bytes_max", "read_chunk_bytes",
                             "entry_bytes_max")
        if self.commit_checkpoint_interval_ms < 0:
            raise LogConfigError("commit_checkpoint_interval_ms must be >= 0")
        jitter = self.segment_jitter_bytes_max
        if jitter is not None and not 0 <= jitter < self.segment_bytes_max:
            raise LogConfigError("segment_jitter_bytes_max must be in [0, segment_bytes_max)")

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise LogConfigError(f"{name} must be a positive int, got {value!r}")

    @property
    def policy(self) -> FsyncPolicy:
        """`fsync_policy` as the enum (strings are converted on construction)."""
        assert isinstance(self.fsync_policy, FsyncPolicy)
        return self.fsync_policy

    def roll_bytes_for(self, base_index: int) -> int:
        """The size at which the segment starting at `base_index` rolls (jitter applied)."""
        jitter = self.segment_jitter_bytes_max
        if jitter is None:
            jitter = self.segment_bytes_max // 20
        if jitter == 0:
            return self.segment_bytes_max
        # A fixed integer mix (splitmix64's finaliser): deterministic across runs and
        # processes, unlike hash(), and good enough to spread partitions apart.
        x = (self.jitter_seed * 0x9E3779B97F4A7C15 + base_index) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
        return self.segment_bytes_max - x % (jitter + 1)
