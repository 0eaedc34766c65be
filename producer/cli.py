"""`raftlog produce TOPIC [--key-separator SEP] [--acks 0/1/all] [--partition P]`.

One record per line of stdin (the line without its end-of-line; bytes, not decoded). With
`--key-separator SEP` the text before the first SEP is the key and the rest the value; a line
without SEP has no key. Records go out as they are read (so an interactive session sends each
line at once) and the command exits after every record is acknowledged (with `--acks 0`:
written to the socket).

Time bounds: `RAFTLOG_TIMEOUT_MS` (default 30000), as for the other client commands, bounds
each record's delivery and each wait of `send()` (topic metadata, buffer room), so the command
never hangs on a dead cluster; the input itself may stream for as long as it likes.

Exit status: 0 all acknowledged; 1 a failure, one line on stderr (e.g. the topic does not
exist, a record is too large, or how many records failed and the first error); 130 on
Ctrl-C. Nothing is printed on success.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from producer.sync_producer import Producer

__all__ = ["produce_command", "split_line"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
TIMEOUT_MS_DEFAULT = 30000
_REQUEST_TIMEOUT_MS_MAX = 30000
_LINGER_MS = 5


def split_line(line: bytes, separator: bytes | None) -> tuple[bytes | None, bytes]:
    """(key, value) of one input line, its end-of-line already removed."""
    if separator is None:
        return None, line
    key, found, value = line.partition(separator)
    return (key, value) if found else (None, line)


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        yield line


def _timeout_ms() -> int:
    text = os.environ.get("RAFTLOG_TIMEOUT_MS", "")
    try:
        value = int(text) if text else TIMEOUT_MS_DEFAULT
    except ValueError:
        value = TIMEOUT_MS_DEFAULT
    return max(_LINGER_MS + 1, value)


class _Outcome:
    """Counts failed records from their futures' callbacks (the producer's I/O thread)."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: BaseException | None = None

    def record_failed(self, error: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = error


def produce_command(args: argparse.Namespace) -> int:
    """The handler of `raftlog produce` (wired in broker/cli.py)."""
    from broker.client import ClientError
    from broker.wire.errors import KafkaError
    from producer.sync_producer import Producer

    timeout_ms = _timeout_ms()
    request_timeout_ms = min(_REQUEST_TIMEOUT_MS_MAX, timeout_ms - _LINGER_MS)
    separator = None if args.key_separator is None else args.key_separator.encode("utf-8")
    if separator == b"":
        return _fail("--key-separator must not be empty")
    try:
        producer = Producer(args.bootstrap, acks=args.acks, linger_ms=_LINGER_MS,
                            request_timeout_ms=request_timeout_ms,
                            delivery_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
                            client_id="raftlog-cli")
    except (ClientError, KafkaError, ValueError) as e:
        return _fail(str(e))
    try:
        return _produce_lines(producer, args, separator)
    except KeyboardInterrupt:
        producer.close(timeout=0)
        return EXIT_INTERRUPTED
    except (ClientError, KafkaError, ValueError, TypeError) as e:
        producer.close(timeout=0)
        return _fail(str(e))


def _produce_lines(producer: Producer, args: argparse.Namespace,
                   separator: bytes | None) -> int:
    outcome = _Outcome()
    sent = 0
    for line in _lines(sys.stdin.buffer):
        key, value = split_line(line, separator)
        future = producer.send(args.topic, value=value, key=key, partition=args.partition)
        future.add_errback(outcome.record_failed)
        sent += 1
    producer.close()  # sends what is queued and waits for every answer
    if outcome.failed:
        return _fail(f"{outcome.failed} of {sent} records failed; first error: "
                     f"{outcome.first_error}")
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"raftlog produce: {message}", file=sys.stderr)
    return EXIT_FAILURE
