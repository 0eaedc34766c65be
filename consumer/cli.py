"""`raftlog consume` and `raftlog group list|describe`.

    raftlog consume TOPIC [--group G] [--from-beginning] [--max-messages N] [--timeout-ms T]
                          [--format text|json]

Without --group every partition of the topic is read (no commits); with --group the command
joins the group, reads what it is assigned and commits what it printed (auto-commit, and on
exit). It starts at the end of each partition (a group: at its committed offsets), or at the
beginning with --from-beginning. It prints one record per line: the value (text), or
`{"topic","partition","offset","key","value","timestamp_ms","headers"}` (json; keys and values
decoded as UTF-8, undecodable bytes replaced). It stops after N records, or once no record has
arrived for T ms; otherwise it runs until Ctrl-C. A one-line summary goes to stderr.

    raftlog group list [--json]            every group: id, protocol type, state
    raftlog group describe G [--json]      members and their assignments; per partition the
                                           committed offset, log end offset and lag

Exit status: 0 done (also when --timeout-ms ends the run); 1 a failure the user can act on (an
unknown topic or group, no broker reachable), one line on stderr; 2 bad usage; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from consumer.group_admin import GroupDescription, GroupListing
    from consumer.structs import ConsumerRecord
    from consumer.sync_consumer import Consumer

__all__ = ["consume_command", "group_command", "record_json", "configure_group_parser"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TIMEOUT_MS_DEFAULT = 30000
_POLL_MS = 500
_REQUEST_TIMEOUT_MS_MAX = 10000


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def record_json(r: ConsumerRecord) -> str:
    return json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset,
                       "key": _text(r.key), "value": _text(r.value),
                       "timestamp_ms": r.timestamp_ms,
                       "headers": [[k, _text(v)] for k, v in r.headers]})


def _fail(command: str, message: str) -> int:
    print(f"raftlog {command}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_FAILURE


def _usage(command: str, message: str) -> int:
    print(f"raftlog {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _budget_ms() -> int:
    try:
        return max(1, int(os.environ.get("RAFTLOG_TIMEOUT_MS", "") or TIMEOUT_MS_DEFAULT))
    except ValueError:
        return TIMEOUT_MS_DEFAULT


# ---- consume --------------------------------------------------------------------------------

def consume_command(args: argparse.Namespace) -> int:
    """The handler of `raftlog consume` (wired in broker/cli.py)."""
    from broker.client import ClientError
    from broker.wire.errors import KafkaError
    from consumer.errors import ConsumerError

    if args.max_messages is not None and args.max_messages < 1:
        return _usage("consume", "--max-messages must be at least 1")
    if args.timeout_ms is not None and args.timeout_ms < 1:
        return _usage("consume", "--timeout-ms must be at least 1")
    try:
        consumer = _open(args)
    except (ClientError, KafkaError, ConsumerError, ValueError) as e:
        return _fail("consume", _message(e))
    count = 0
    try:
        count = _consume(consumer, args, sys.stdout)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        _quiet_stdout()
    except (ClientError, KafkaError, ConsumerError) as e:
        return _fail("consume", _message(e))
    finally:
        try:
            consumer.close()
        except (ClientError, KafkaError, ConsumerError):
            pass
    print(f"consumed {count} record{'s' if count != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _message(e: BaseException) -> str:
    from broker.wire.errors import KafkaError

    if isinstance(e, KafkaError):
        return f"{e.message} ({e.code.name})"
    return str(e)


def _open(args: argparse.Namespace) -> Consumer:
    from consumer.errors import UnknownTopicError
    from consumer.structs import TopicPartition
    from consumer.sync_consumer import Consumer

    reset = "earliest" if args.from_beginning else "latest"
    request_timeout_ms = min(_REQUEST_TIMEOUT_MS_MAX, _budget_ms())
    common: dict[str, Any] = {"bootstrap_servers": args.bootstrap, "client_id": "raftlog-cli",
                              "auto_offset_reset": reset,
                              "request_timeout_ms": request_timeout_ms}
    if args.group:
        return Consumer(args.topic, group_id=args.group, enable_auto_commit=True,
                        auto_commit_interval_ms=1000, **common)
    consumer = Consumer(**common)
    try:
        partitions = consumer.partitions_for_topic(args.topic)
        if partitions is None:
            raise UnknownTopicError(frozenset({args.topic}))
        consumer.assign([TopicPartition(args.topic, p) for p in sorted(partitions)])
    except BaseException:
        consumer.close()
        raise
    return consumer


def _consume(consumer: Consumer, args: argparse.Namespace, out: TextIO) -> int:
    import time

    count = 0
    limit = args.max_messages
    idle_since = time.monotonic()
    as_json = args.format == "json"
    while limit is None or count < limit:
        wait_ms = _POLL_MS
        if args.timeout_ms is not None:
            left_ms = args.timeout_ms - (time.monotonic() - idle_since) * 1000
            if left_ms <= 0:
                break
            wait_ms = max(1, min(wait_ms, int(left_ms)))
        batch = consumer.poll(timeout_ms=wait_ms,
                              max_records=None if limit is None else limit - count)
        if not batch:
            continue
        idle_since = time.monotonic()
        lines = []
        for records in batch.values():
            for r in records:
                lines.append(record_json(r) if as_json else (_text(r.value) or ""))
        out.write("\n".join(lines) + "\n")
        out.flush()
        count += len(lines)
    return count


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# ---- group list / describe -----------------------------------------------------------------

def configure_group_parser(group: argparse.ArgumentParser,
                           add_bootstrap: Any, parser_class: Any) -> None:
    """`raftlog group list|describe` (wired in broker/cli.py)."""
    sub = group.add_subparsers(dest="group_command", metavar="ACTION", parser_class=parser_class)
    listing = sub.add_parser("list", help="every consumer group")
    describe = sub.add_parser("describe", help="members, assignments, offsets and lag")
    describe.add_argument("group")
    for p in (listing, describe):
        add_bootstrap(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=group_command)


def group_command(args: argparse.Namespace) -> int:
    from broker.client import ClientConfigError, ClientError
    from broker.wire.errors import ErrorCode, KafkaError

    command = f"group {args.group_command}"
    try:
        result = asyncio.run(_group_session(args))
    except ClientConfigError as e:
        return _usage(command, str(e))
    except KafkaError as e:
        if e.code == ErrorCode.GROUP_ID_NOT_FOUND:
            return _fail(command, f"group {args.group!r} does not exist")
        return _fail(command, _message(e))
    except ClientError as e:
        return _fail(command, str(e))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.group_command == "list":
        print(json.dumps(list_json(result)) if args.json else _list_text(result))
    else:
        print(json.dumps(describe_json(result)) if args.json else _describe_text(result))
    return EXIT_OK


async def _group_session(args: argparse.Namespace) -> Any:
    from broker.client import ClusterClient
    from consumer.group_admin import describe_group, list_groups

    budget_ms = _budget_ms()
    cluster = ClusterClient(args.bootstrap, client_id="raftlog-cli",
                            request_timeout_ms=min(_REQUEST_TIMEOUT_MS_MAX, budget_ms))
    try:
        async with asyncio.timeout(budget_ms / 1000):
            await cluster.start()
            if args.group_command == "list":
                return await list_groups(cluster, timeout_ms=budget_ms)
            return await describe_group(cluster, args.group, timeout_ms=budget_ms)
    except TimeoutError:
        from broker.client import RequestTimedOutError

        raise RequestTimedOutError(f"no answer within {budget_ms} ms") from None
    finally:
        await cluster.close()


def list_json(groups: list[GroupListing]) -> list[dict[str, Any]]:
    return [{"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state}
            for g in groups]


def _list_text(groups: list[GroupListing]) -> str:
    from broker.cli_client import format_table

    if not groups:
        return "no groups"
    return format_table(("GROUP", "PROTOCOL-TYPE", "STATE"),
                        [(g.group_id, g.protocol_type or "-", g.state or "?") for g in groups])


def describe_json(d: GroupDescription) -> dict[str, Any]:
    return {
        "group": d.group_id, "state": d.state, "protocol_type": d.protocol_type,
        "protocol": d.protocol, "coordinator": d.coordinator,
        "members": [{"member_id": m.member_id, "client_id": m.client_id,
                     "client_host": m.client_host,
                     "assignment": [{"topic": t, "partition": p} for t, p in m.assignment]}
                    for m in d.members],
        "partitions": [{"topic": p.partition.topic, "partition": p.partition.partition,
                        "committed": p.committed, "log_end": p.log_end, "lag": p.lag,
                        "member_id": p.member_id} for p in d.partitions],
    }


def _describe_text(d: GroupDescription) -> str:
    from broker.cli_client import format_table

    def dash(v: object) -> object:
        return "-" if v is None else v

    head = (f"group {d.group_id!r}: {d.state}, {len(d.members)} member"
            f"{'s' if len(d.members) != 1 else ''}"
            + (f", assignor {d.protocol}" if d.protocol else "") + f", coordinator {d.coordinator}")
    rows = [(p.partition.topic, p.partition.partition, dash(p.committed), dash(p.log_end),
             dash(p.lag), dash(p.member_id)) for p in d.partitions]
    parts = [head]
    if rows:
        parts.append(format_table(("TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG",
                                   "MEMBER"), rows))
    if d.members:
        parts.append(format_table(
            ("MEMBER", "CLIENT-ID", "ASSIGNMENT"),
            [(m.member_id, m.client_id, ",".join(f"{t}-{p}" for t, p in m.assignment) or "-")
             for m in d.members]))
    return "\n".join(parts)
