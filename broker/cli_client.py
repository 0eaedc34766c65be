"""The client commands of `raftlog`: `topic create|list|describe|delete` and `cluster status`.

Each command makes one admin client from `--bootstrap`, runs one operation on a fresh event
loop, all of it within `--timeout-ms` (env RAFTLOG_TIMEOUT_MS, default 30000) so a command
never hangs, and prints a small aligned table, or with `--json` the shapes API.md fixes (extra
keys are allowed there and some are added). Connecting to a broker or asking it anything waits
at most 10 s or half the budget, so one hung broker cannot use up the whole budget.

Exit status: 0 done; 1 a failure the user can act on, one line on stderr such as
`raftlog topic create: topic 'orders' already exists (TOPIC_ALREADY_EXISTS)`; 2 bad usage.
The client library is imported only when a command runs, to keep `raftlog --help` quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from broker.client import (
        AsyncAdminClient,
        ClusterDescription,
        TopicDescription,
        TopicListing,
    )

__all__ = [
    "configure_topic_command",
    "configure_cluster_status",
    "format_table",
    "describe_json",
    "list_json",
    "status_json",
]

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TIMEOUT_MS_DEFAULT = 30000
REQUEST_TIMEOUT_MS_MAX = 10000  # one request's bound inside a command's budget (or half of it)
TIMEOUT_MS_MAX = 24 * 3600 * 1000
_DEADLINE_SLACK_S = 0.05

Operation = Callable[["AsyncAdminClient", int], Awaitable[T]]


class _UsageError(Exception):
    pass


# ---- wiring into broker.cli's parser ------------------------------------------------------

def _timeout_ms(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= TIMEOUT_MS_MAX:
        raise argparse.ArgumentTypeError(f"must be between 1 and {TIMEOUT_MS_MAX}")
    return value


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("RAFTLOG_TIMEOUT_MS", str(TIMEOUT_MS_DEFAULT))
    parser.add_argument("--timeout-ms", type=_timeout_ms, default=default,
                        help="give up after this many milliseconds (env RAFTLOG_TIMEOUT_MS, "
                             f"default {TIMEOUT_MS_DEFAULT})")


def configure_topic_command(parser: argparse.ArgumentParser, action: str) -> None:
    """Add this module's options to `raftlog topic ACTION` and make it run here."""
    handlers = {"create": topic_create, "list": topic_list, "describe": topic_describe,
                "delete": topic_delete}
    _add_timeout(parser)
    parser.set_defaults(handler=handlers[action])


def configure_cluster_status(parser: argparse.ArgumentParser) -> None:
    _add_timeout(parser)
    parser.set_defaults(handler=cluster_status)


# ---- the commands -------------------------------------------------------------------------

def topic_create(args: argparse.Namespace) -> int:
    try:
        config = _parse_configs(args.config)
    except _UsageError as e:
        return _usage(args, str(e))

    async def create(admin: AsyncAdminClient, timeout_ms: int) -> dict[str, Any]:
        await admin.create_topic(args.name, args.partitions, args.replication_factor, config,
                                 timeout_ms=timeout_ms)
        return {"name": args.name, "partitions": args.partitions,
                "replication_factor": args.replication_factor, "config": config}

    def show(created: dict[str, Any]) -> str:
        return (f"created topic {args.name!r}: {args.partitions} partitions, "
                f"replication factor {args.replication_factor}")

    return _run(args, create, show, lambda created: created)


def topic_list(args: argparse.Namespace) -> int:
    async def list_(admin: AsyncAdminClient, timeout_ms: int) -> list[TopicListing]:
        return await admin.list_topics(timeout_ms=timeout_ms)

    return _run(args, list_, _list_table, list_json)


def topic_describe(args: argparse.Namespace) -> int:
    async def describe(admin: AsyncAdminClient, timeout_ms: int) -> TopicDescription:
        return await admin.describe_topic(args.name, timeout_ms=timeout_ms)

    return _run(args, describe, _describe_table, describe_json)


def topic_delete(args: argparse.Namespace) -> int:
    async def delete(admin: AsyncAdminClient, timeout_ms: int) -> None:
        await admin.delete_topic(args.name, timeout_ms=timeout_ms)

    return _run(args, delete, lambda _: f"deleted topic {args.name!r}",
                lambda _: {"name": args.name, "deleted": True})


def cluster_status(args: argparse.Namespace) -> int:
    async def status(admin: AsyncAdminClient, timeout_ms: int) -> ClusterDescription:
        return await admin.describe_cluster(timeout_ms=timeout_ms)

    return _run(args, status, _status_text, status_json)


# ---- running one command ------------------------------------------------------------------

def _command(args: argparse.Namespace) -> str:
    sub = getattr(args, "topic_command", None) or getattr(args, "cluster_command", None)
    return f"raftlog {args.command} {sub}"


def _usage(args: argparse.Namespace, message: str) -> int:
    print(f"{_command(args)}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"{_command(args)}: {_one_line(message)}", file=sys.stderr)
    return EXIT_FAILURE


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _parse_configs(items: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"--config expects KEY=VALUE, got {item!r}")
        config[key.strip()] = value
    return config


def _run(args: argparse.Namespace, operation: Operation[T], text: Callable[[T], str],
         as_json: Callable[[T], Any]) -> int:
    from broker.client import ClientConfigError, ClientError, KafkaError

    try:
        result = asyncio.run(_session(args, operation))
    except (ClientConfigError, ValueError) as e:  # bad --bootstrap, empty name, ...
        return _usage(args, str(e))
    except KafkaError as e:
        return _fail(args, f"{e.message} ({e.code.name})")
    except ClientError as e:
        return _fail(args, str(e))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    output = json.dumps(as_json(result)) if args.json else text(result)
    print(output)
    return EXIT_OK


def _request_timeout_ms(timeout_ms: int) -> int:
    return max(1, min(REQUEST_TIMEOUT_MS_MAX, timeout_ms // 2))


async def _session(args: argparse.Namespace, operation: Operation[T]) -> T:
    from broker.client import AsyncAdminClient, RequestTimedOutError

    timeout_ms = int(args.timeout_ms)  # argparse has checked it
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    admin = AsyncAdminClient(args.bootstrap, client_id="raftlog-cli",
                             request_timeout_ms=_request_timeout_ms(timeout_ms))
    try:
        async with asyncio.timeout_at(deadline):
            await admin.start()
            remaining_ms = max(1, int((deadline - loop.time()) * 1000))
            return await operation(admin, remaining_ms)
    except (TimeoutError, RequestTimedOutError) as e:
        # The operation's own deadline is the command's remaining budget: whichever fires
        # first, past the budget the user is told about the budget they set.
        if isinstance(e, TimeoutError) or loop.time() >= deadline - _DEADLINE_SLACK_S:
            raise RequestTimedOutError(
                f"no answer within {timeout_ms} ms (--timeout-ms)") from None
        raise
    finally:
        await admin.close()


# ---- output -------------------------------------------------------------------------------

def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)


def _nodes(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids) or "-"


def list_json(topics: Sequence[TopicListing]) -> list[dict[str, Any]]:
    return [{"name": t.name, "partitions": t.partitions,
             "replication_factor": t.replication_factor} for t in topics]


def _list_table(topics: Sequence[TopicListing]) -> str:
    if not topics:
        return "no topics"
    return format_table(("TOPIC", "PARTITIONS", "REPLICATION"),
                        [(t.name, t.partitions, t.replication_factor) for t in topics])


def describe_json(d: TopicDescription) -> dict[str, Any]:
    return {"name": d.name, "partitions": [
        {"partition": p.partition, "leader": p.leader, "replicas": list(p.replicas),
         "isr": list(p.isr), "high_watermark": p.high_watermark,
         "leader_epoch": p.leader_epoch} for p in d.partitions]}


def _describe_table(d: TopicDescription) -> str:
    rows = [(p.partition, "-" if p.leader is None else p.leader, _nodes(p.replicas),
             _nodes(p.isr), "?" if p.high_watermark < 0 else p.high_watermark)
            for p in d.partitions]
    header = f"topic {d.name!r}: {len(d.partitions)} partitions"
    table = format_table(("PARTITION", "LEADER", "REPLICAS", "ISR", "HIGH-WATERMARK"), rows)
    return f"{header}\n{table}"


def status_json(c: ClusterDescription) -> dict[str, Any]:
    return {
        "controller": c.controller,
        "brokers": [{"id": b.node_id, "address": b.address, "alive": b.alive,
                     "partitions_led": c.partitions_led(b.node_id)} for b in c.brokers],
        "under_replicated": c.under_replicated,
        "offline_partitions": c.offline,
        "partitions": len(c.partitions),
    }


def _status_text(c: ClusterDescription) -> str:
    rows = [(b.node_id, b.address, "yes" if b.alive else "NO", c.partitions_led(b.node_id))
            for b in c.brokers]
    lines = [f"controller: {'none' if c.controller is None else c.controller}",
             format_table(("BROKER", "ADDRESS", "ALIVE", "LEADS"), rows),
             f"partitions: {len(c.partitions)}, under-replicated: {c.under_replicated}, "
             f"without a leader: {c.offline}"]
    if not c.complete:
        lines.append("(the broker has no cluster-status API: showing live brokers only)")
    return "\n".join(lines)
