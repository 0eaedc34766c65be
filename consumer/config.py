"""The consumer's options, checked once into a frozen object.

Defaults follow kafka-python / aiokafka where a Kafka user would expect them (API.md fixes the
public ones). Times are integer milliseconds and sizes integer bytes, named with the unit last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.assignors import ASSIGNORS
from consumer.errors import ConsumerConfigError

__all__ = ["ConsumerConfig", "Deserializer", "AUTO_OFFSET_RESETS"]

Deserializer = Callable[[bytes], Any]
AUTO_OFFSET_RESETS = ("earliest", "latest", "none")
_MS_MAX = 24 * 3600 * 1000
_BYTES_MAX = (1 << 31) - 1


def _check(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConsumerConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    group_id: str | None = None  # None: no group (assign() only, no commits)
    client_id: str = "raftlog-consumer"
    auto_offset_reset: str = "latest"  # where to start without a (valid) committed offset
    enable_auto_commit: bool = True  # commit consumed positions in the background
    auto_commit_interval_ms: int = 5000
    max_poll_records: int = 500  # records one poll()/getmany() returns at most
    session_timeout_ms: int = 10000  # the group drops a member silent this long
    heartbeat_interval_ms: int = 3000
    # How long the coordinator waits for members to rejoin during a rebalance. Kafka uses
    # max.poll.interval.ms (5 min) because its members rejoin from poll(); ours rejoin from a
    # background task, so a minute is plenty.
    rebalance_timeout_ms: int = 60000
    fetch_max_wait_ms: int = 500  # long poll: the broker holds a fetch this long for data
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 50 << 20  # per fetch response; also bounds all prefetched bytes
    max_partition_fetch_bytes: int = 1 << 20  # per partition per fetch; prefetch <= 2x this
    request_timeout_ms: int = 30000
    retry_backoff_ms: int = 100
    metadata_max_age_ms: int = 300000
    partition_assignment_strategy: tuple[str, ...] = ("range", "roundrobin")
    key_deserializer: Deserializer | None = None
    value_deserializer: Deserializer | None = None
    consumer_timeout_ms: int | None = None  # sync iteration stops after this long idle

    def __post_init__(self) -> None:
        if self.group_id is not None and (not isinstance(self.group_id, str)
                                          or not 0 < len(self.group_id) <= 255):
            raise ConsumerConfigError("group_id must be None or a string of 1-255 characters")
        if self.auto_offset_reset not in AUTO_OFFSET_RESETS:
            raise ConsumerConfigError(f"auto_offset_reset must be one of {AUTO_OFFSET_RESETS}, "
                                      f"got {self.auto_offset_reset!r}")
        _check("auto_commit_interval_ms", self.auto_commit_interval_ms, 1, _MS_MAX)
        _check("max_poll_records", self.max_poll_records, 1, 1_000_000)
        _check("session_timeout_ms", self.session_timeout_ms, 1, _MS_MAX)
        _check("heartbeat_interval_ms", self.heartbeat_interval_ms, 1,
               self.session_timeout_ms - 1 if self.session_timeout_ms > 1 else 1)
        _check("rebalance_timeout_ms", self.rebalance_timeout_ms, 1, _MS_MAX)
        _check("fetch_max_wait_ms", self.fetch_max_wait_ms, 0, _MS_MAX)
        _check("fetch_min_bytes", self.fetch_min_bytes, 0, _BYTES_MAX)
        _check("fetch_max_bytes", self.fetch_max_bytes, 1, _BYTES_MAX)
        _check("max_partition_fetch_bytes", self.max_partition_fetch_bytes, 1, _BYTES_MAX)
        _check("request_timeout_ms", self.request_timeout_ms, 1, _MS_MAX)
        _check("retry_backoff_ms", self.retry_backoff_ms, 0, _MS_MAX)
        _check("metadata_max_age_ms", self.metadata_max_age_ms, 1, _MS_MAX)
        if self.consumer_timeout_ms is not None:
            _check("consumer_timeout_ms", self.consumer_timeout_ms, 0, _MS_MAX)
        strategies: Sequence[str] = self.partition_assignment_strategy
        if not strategies or any(s not in ASSIGNORS for s in strategies):
            raise ConsumerConfigError(f"partition_assignment_strategy must name assignors out "
                                      f"of {sorted(ASSIGNORS)}, got {strategies!r}")
        for name in ("key_deserializer", "value_deserializer"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConsumerConfigError(f"{name} must be callable, got {value!r}")
        if self.group_id is None and self.enable_auto_commit:
            object.__setattr__(self, "enable_auto_commit", False)  # nothing to commit to

    @property
    def join_timeout_ms(self) -> int:
        """A JoinGroup answer may take the whole rebalance timeout (Kafka adds 5 s too)."""
        return max(self.request_timeout_ms, self.rebalance_timeout_ms + 5000)
