"""Bounded polling for real-process tests, and the errors the harness raises.

A test never passes or fails because the machine is fast or slow: it polls for what it expects
until a generous deadline, and a timeout says what was awaited and what was last observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "BrokerDied",
    "CliUnavailable",
    "ClusterError",
    "FatalClusterError",
    "NotYet",
    "POLL_INTERVAL_S",
    "shorten",
    "wait_until",
]

# Between polls. The harness's probes are cheap (a connect, an in-process CLI call), so a
# short pause mostly shortens the time from a state being reached to a test noticing it.
POLL_INTERVAL_S = 0.1

T = TypeVar("T")


class ClusterError(Exception):
    """A wait timed out or a broker misbehaved; the message carries the brokers' log tails."""


class FatalClusterError(ClusterError):
    """Waiting longer cannot help (a broker died, a command is not implemented): fail now."""


class BrokerDied(FatalClusterError):
    """A broker we expect to be running has exited."""


class CliUnavailable(FatalClusterError):
    """The `raftlog` command reports that it is not available yet in this release."""


class NotYet(Exception):
    """Raised by a polled predicate to say what it saw; `wait_until` keeps polling."""


def wait_until(predicate: Callable[[], T], *, timeout_s: float, what: str,
               interval_s: float = POLL_INTERVAL_S,
               on_poll: Callable[[], None] | None = None,
               describe_failure: Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns a truthy value, which is returned.

    Exceptions from the predicate count as "not yet" (the last one is reported), except
    FatalClusterError, which ends the wait at once. `on_poll` runs before every attempt (the
    cluster uses it to notice dead brokers); `describe_failure` adds context to the timeout.
    """
    __tracebackhide__ = True  # pytest: report the caller's line and our message, not this loop
    deadline = time.monotonic() + timeout_s
    last: object = None
    last_error: BaseException | None = None
    attempts = 0
    while True:
        if on_poll is not None:
            on_poll()
        attempts += 1
        try:
            result = predicate()
        except FatalClusterError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of a probe means "not yet"
            last_error, last = e, None
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    lines = [f"timed out after {timeout_s:g} s ({attempts} attempts) waiting for {what}"]
    if last is not None:
        lines.append(f"last result: {shorten(repr(last))}")
    if last_error is not None:
        lines.append(f"last error: {type(last_error).__name__}: {shorten(str(last_error))}")
    if describe_failure is not None:
        lines.append(describe_failure())
    raise ClusterError("\n".join(lines))


def shorten(text: str, chars_max: int = 2000) -> str:
    """`text`, cut to `chars_max` characters with a note of its full length."""
    return text if len(text) <= chars_max else text[:chars_max] + f"... ({len(text)} chars)"
