"""`raftlog topic ...` and `raftlog cluster status` against a scripted cluster: API.md's JSON
shapes, the human tables, one-line failures with exit 1, bad usage with exit 2, and a bounded
run time when the cluster does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Any

import pytest

from broker.cli import main
from broker.cli_client import format_table
from broker.wire.kafka import ApiKey
from tests.unit.test_client_peer import NO_ANSWER, FakeCluster, cluster_in_thread, on_loop


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = _cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def _one_line_failure(code: int, out: str, err: str, exit_code: int = 1) -> str:
    assert code == exit_code, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _orders(cluster: FakeCluster) -> None:
    cluster.add_topic("orders", 3, 3)
    for p, hw in enumerate((5, 0, 12)):
        cluster.topics["orders"][p].high_watermark = hw


def test_topic_commands_print_api_md_json(capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(3) as (cluster, engine):
        b = ("--bootstrap", cluster.bootstrap)
        created = _json(capsys, "topic", "create", "orders", "--partitions", "3",
                        "--replication-factor", "2", "--config", "retention.ms=5", *b)
        assert created["name"] == "orders" and created["config"] == {"retention.ms": "5"}
        on_loop(engine, lambda: cluster.topics["orders"][2].__setattr__("high_watermark", 9))

        assert _json(capsys, "topic", "list", *b) == [
            {"name": "orders", "partitions": 3, "replication_factor": 2}]

        d = _json(capsys, "topic", "describe", "orders", *b)
        assert d["name"] == "orders"
        assert [{k: p[k] for k in ("partition", "leader", "replicas", "high_watermark")}
                for p in d["partitions"]] == [
            {"partition": 0, "leader": 1, "replicas": [1, 2], "high_watermark": 0},
            {"partition": 1, "leader": 2, "replicas": [2, 3], "high_watermark": 0},
            {"partition": 2, "leader": 3, "replicas": [3, 1], "high_watermark": 9}]

        assert _json(capsys, "topic", "delete", "orders", *b) == {"name": "orders",
                                                                 "deleted": True}
        assert _json(capsys, "topic", "list", *b) == []


def test_describe_json_types(capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(3) as (cluster, engine):
        def setup() -> None:
            _orders(cluster)
            cluster.topics["orders"][1].leader = None
        on_loop(engine, setup)
        d = _json(capsys, "topic", "describe", "orders", "--bootstrap", cluster.bootstrap)
        for p in d["partitions"]:
            assert isinstance(p["partition"], int)
            assert p["leader"] is None or isinstance(p["leader"], int)
            assert all(isinstance(r, int) for r in p["replicas"])
            assert isinstance(p["high_watermark"], int)
        assert [p["leader"] for p in d["partitions"]] == [1, None, 3]


def test_cluster_status_json(capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(3) as (cluster, engine):
        def setup() -> None:
            _orders(cluster)
            cluster.dead.add(2)
            cluster.topics["orders"][0].isr = [1]
            cluster.controller = 3
        on_loop(engine, setup)
        s = _json(capsys, "cluster", "status", "--bootstrap", cluster.bootstrap)
        assert s["controller"] == 3 and s["under_replicated"] == 1
        assert [{k: b[k] for k in ("id", "address", "alive")} for b in s["brokers"]] == [
            {"id": i, "address": cluster.brokers[i].address, "alive": i != 2} for i in (1, 2, 3)]
        assert [b["partitions_led"] for b in s["brokers"]] == [1, 1, 1]

        on_loop(engine, lambda: setattr(cluster, "controller", None))
        assert _json(capsys, "cluster", "status", "--bootstrap", cluster.bootstrap)[
            "controller"] is None


def test_human_output_is_an_aligned_table(capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(3) as (cluster, engine):
        on_loop(engine, lambda: _orders(cluster))
        code, out, _ = _cli(capsys, "topic", "describe", "orders", "--bootstrap",
                            cluster.bootstrap)
        assert code == 0
        assert out.splitlines() == [
            "topic 'orders': 3 partitions",
            "PARTITION  LEADER  REPLICAS  ISR    HIGH-WATERMARK",
            "0          1       1,2,3     1,2,3  5",
            "1          2       2,3,1     2,3,1  0",
            "2          3       3,1,2     3,1,2  12"]
        code, out, _ = _cli(capsys, "cluster", "status", "--bootstrap", cluster.bootstrap)
        assert code == 0 and out.splitlines()[0] == "controller: 1"
        assert out.splitlines()[1].split() == ["BROKER", "ADDRESS", "ALIVE", "LEADS"]
        code, out, _ = _cli(capsys, "topic", "list", "--bootstrap", cluster.bootstrap)
        assert out.splitlines() == ["TOPIC   PARTITIONS  REPLICATION", "orders  3           3"]


def test_format_table() -> None:
    assert format_table(("A", "LONGER"), [("xyz", 1), ("", 22)]).splitlines() == [
        "A    LONGER", "xyz  1", "     22"]


@pytest.mark.parametrize("args, words", [
    (("topic", "create", "orders", "--partitions", "1", "--replication-factor", "1"),
     "raftlog topic create: topic 'orders' already exists (TOPIC_ALREADY_EXISTS)"),
    (("topic", "create", "wide", "--partitions", "1", "--replication-factor", "4"),
     "raftlog topic create: replication factor 4 exceeds the 3 live brokers "
     "(INVALID_REPLICATION_FACTOR)"),
    (("topic", "describe", "nope"),
     "raftlog topic describe: topic 'nope' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"),
    (("topic", "delete", "nope"),
     "raftlog topic delete: topic 'nope' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"),
])
def test_broker_refusals_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                                  args: tuple[str, ...], words: str) -> None:
    with cluster_in_thread(3) as (cluster, engine):
        on_loop(engine, lambda: _orders(cluster))
        line = _one_line_failure(*_cli(capsys, *args, "--bootstrap", cluster.bootstrap))
        assert line == words


def test_a_silent_controller_ends_within_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(1) as (cluster, engine):
        on_loop(engine, lambda: cluster.brokers[1].script.__setitem__(
            ApiKey.CREATE_TOPICS, lambda *_: NO_ANSWER))
        line = _one_line_failure(*_cli(capsys, "topic", "create", "t", "--partitions", "1",
                                       "--replication-factor", "1", "--bootstrap",
                                       cluster.bootstrap, "--timeout-ms", "300"))
        assert line == "raftlog topic create: no answer within 300 ms (--timeout-ms)"


def test_a_silent_broker_is_given_up_on_within_the_timeout(
        capsys: pytest.CaptureFixture[str]) -> None:
    with cluster_in_thread(1) as (cluster, engine):
        on_loop(engine, lambda: cluster.brokers[1].script.__setitem__(
            ApiKey.API_VERSIONS, lambda *_: NO_ANSWER))
        line = _one_line_failure(*_cli(capsys, "cluster", "status", "--bootstrap",
                                       cluster.bootstrap, "--timeout-ms", "300"))
        assert line.startswith(f"raftlog cluster status: cannot reach any broker at "
                               f"{cluster.bootstrap} (API_VERSIONS to {cluster.bootstrap}: "
                               "no answer within 150 ms")


@pytest.mark.parametrize("args, words", [
    (("topic", "list", "--bootstrap", "nohost"), "bad broker address 'nohost'"),
    (("topic", "create", "t", "--partitions", "1", "--replication-factor", "1",
      "--config", "novalue"), "--config expects KEY=VALUE"),
    (("topic", "describe", "t", "--timeout-ms", "0"), "--timeout-ms"),
    (("topic", "create", "t", "--partitions", "x", "--replication-factor", "1"), "invalid int"),
])
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                           words: str) -> None:
    try:
        result = _cli(capsys, *args)
    except SystemExit as e:  # argparse's own errors exit from inside main
        out, err = capsys.readouterr()
        result = (int(e.code or 0), out, err)
    line = _one_line_failure(*result, exit_code=2)
    assert words in line, line


def test_unreachable_cluster_from_a_real_process() -> None:
    """The installed command, end to end: one line, exit 1, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        address = f"127.0.0.1:{s.getsockname()[1]}"
        r = subprocess.run([sys.executable, "-m", "broker", "cluster", "status", "--json",
                            "--bootstrap", address], capture_output=True, text=True,
                           timeout=60)
    line = _one_line_failure(r.returncode, r.stdout, r.stderr)
    assert line.startswith(f"raftlog cluster status: cannot reach any broker at {address}")
    assert r.stdout == ""
