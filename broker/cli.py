"""The `raftlog` command line: one parser, one function per command.

Exit status: 0 success, 1 a failure the user can act on (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from broker import cli_client
from broker.version import __version__

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _serve(args: argparse.Namespace) -> int:
    import json

    from broker.config import ConfigError, resolve_config

    flags = {k: v for k, v in vars(args).items() if k not in ("handler", "command")}
    try:
        config = resolve_config(flags)
    except ConfigError as e:
        print(f"raftlog serve: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.check_config:
        print(json.dumps(config.describe(), indent=2, sort_keys=True))
        return EXIT_OK
    from broker.server import run_broker

    return run_broker(config)


def _dev(args: argparse.Namespace) -> int:
    from broker.dev import run_dev

    if not 1 <= args.brokers <= 9:
        print("raftlog dev: --brokers must be between 1 and 9", file=sys.stderr)
        return EXIT_USAGE
    return run_dev(brokers=args.brokers, data_dir=args.data_dir, base_port=args.base_port,
                   demo=args.demo)


def _produce(args: argparse.Namespace) -> int:
    from producer.cli import produce_command

    return produce_command(args)


def _consume(args: argparse.Namespace) -> int:
    from consumer.cli import consume_command

    return consume_command(args)


def _bench(args: argparse.Namespace) -> int:
    from benchmarks.perf import main as bench_main

    return bench_main(args.bench_args)


def _add_bootstrap(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument(
        "--bootstrap",
        default=os.environ.get("RAFTLOG_BOOTSTRAP", "127.0.0.1:9092"),
        help="HOST:PORT[,HOST:PORT...] of any brokers (env RAFTLOG_BOOTSTRAP)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raftlog", description="raftlog: a Kafka-compatible log replicated by Raft")
    parser.add_argument("--version", action="version", version=f"raftlog {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    serve = sub.add_parser("serve", help="run one broker in the foreground")
    serve.add_argument("--node-id", type=int, help="this broker's id (> 0) [RAFTLOG_NODE_ID]")
    serve.add_argument("--data-dir", help="where the logs live [RAFTLOG_DATA_DIR]")
    serve.add_argument("--listen", help="Kafka client port HOST:PORT [RAFTLOG_LISTEN]")
    serve.add_argument("--raft-listen", help="peer port HOST:PORT [RAFTLOG_RAFT_LISTEN]")
    serve.add_argument("--controller-voters", metavar="ID@H:P,...",
                       help="Raft addresses of the controller quorum [RAFTLOG_CONTROLLER_VOTERS]")
    serve.add_argument("--advertise", help="address given to clients [RAFTLOG_ADVERTISE]")
    serve.add_argument("--metrics-listen", help="HOST:PORT for metrics [RAFTLOG_METRICS_LISTEN]")
    serve.add_argument("--config", help="TOML file with any of these options [RAFTLOG_CONFIG]")
    serve.add_argument("--fsync-policy", choices=("always", "interval"),
                       help="'always' (default): fsync before acknowledging [RAFTLOG_FSYNC_POLICY]")
    serve.add_argument("--check-config", action="store_true",
                       help="validate the configuration, print it resolved, exit 0 or 1")
    serve.set_defaults(handler=_serve)

    dev = sub.add_parser("dev", help="run a local cluster of N brokers until Ctrl-C")
    dev.add_argument("--brokers", type=int, default=3)
    dev.add_argument("--data-dir")
    dev.add_argument("--base-port", type=int, default=9092,
                     help="client ports from here; peer ports from here + 100")
    dev.add_argument("--demo", action="store_true",
                     help="run a short produce/consume demo, then stop the cluster")
    dev.set_defaults(handler=_dev)

    topic = sub.add_parser("topic", help="create, list, describe and delete topics")
    tsub = topic.add_subparsers(dest="topic_command", metavar="ACTION", parser_class=_Parser)
    for name in ("create", "list", "describe", "delete"):
        t = tsub.add_parser(name)
        _add_bootstrap(t)
        t.add_argument("--json", action="store_true")
        if name != "list":
            t.add_argument("name")
        if name == "create":
            t.add_argument("--partitions", type=int, required=True)
            t.add_argument("--replication-factor", type=int, required=True)
            t.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
        cli_client.configure_topic_command(t, name)

    produce = sub.add_parser("produce", help="write one record per line of stdin")
    _add_bootstrap(produce)
    produce.add_argument("topic")
    produce.add_argument("--key-separator")
    produce.add_argument("--acks", choices=("0", "1", "all", "-1"), default="all")
    produce.add_argument("--partition", type=int)
    produce.set_defaults(handler=_produce)

    consume = sub.add_parser("consume", help="print records, one per line")
    _add_bootstrap(consume)
    consume.add_argument("topic")
    consume.add_argument("--group")
    consume.add_argument("--from-beginning", action="store_true")
    consume.add_argument("--max-messages", type=int)
    consume.add_argument("--timeout-ms", type=int)
    consume.add_argument("--format", choices=("text", "json"), default="text")
    consume.set_defaults(handler=_consume)

    group = sub.add_parser("group", help="list and describe consumer groups")
    from consumer.cli import configure_group_parser

    configure_group_parser(group, _add_bootstrap, _Parser)

    cluster = sub.add_parser("cluster", help="cluster-wide views")
    csub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", parser_class=_Parser)
    status = csub.add_parser("status", help="brokers, controller, leadership, under-replication")
    _add_bootstrap(status)
    status.add_argument("--json", action="store_true")
    cli_client.configure_cluster_status(status)

    # Every argument after `bench` goes to the benchmark's own parser (benchmarks.perf).
    bench = sub.add_parser("bench", help="throughput and latency benchmarks (raftlog bench -h)",
                           add_help=False, prefix_chars="\0")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return handler(args)
