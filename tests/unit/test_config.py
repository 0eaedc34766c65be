"""Broker configuration: sources merge in order (file < env < flags) and bad values are refused
with a message naming the option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import ConfigError, resolve_config

BASE = {
    "node_id": 1, "data_dir": "/tmp/x", "listen": "127.0.0.1:9092",
    "raft_listen": "127.0.0.1:9192", "controller_voters": "1@127.0.0.1:9192",
}


def test_flags_resolve() -> None:
    c = resolve_config(BASE, env={})
    assert c.node_id == 1 and c.controller_voters == {1: "127.0.0.1:9192"}
    assert c.advertised == "127.0.0.1:9092"


def test_env_maps_one_to_one_and_flags_win(tmp_path: Path) -> None:
    env = {f"RAFTLOG_{k.upper()}": str(v) for k, v in BASE.items()}
    env["RAFTLOG_TICK_MS"] = "20"
    env["RAFTLOG_NODE_ID"] = "2"
    env["RAFTLOG_CONTROLLER_VOTERS"] = "2@127.0.0.1:9192"
    c = resolve_config({"node_id": None}, env=env)
    assert c.tick_ms == 20 and c.node_id == 2
    c = resolve_config({"node_id": 3, "controller_voters": "3@127.0.0.1:9192"}, env=env)
    assert c.node_id == 3


def test_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text('[broker]\nnode_id = 4\nfsync_policy = "interval"\n'
                 'controller_voters = {4 = "127.0.0.1:9192"}\n')
    c = resolve_config({**BASE, "node_id": None, "controller_voters": None, "config": str(f)},
                       env={})
    assert c.node_id == 4 and c.fsync_policy == "interval"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"node_id": 0}, "node-id"),
        ({"listen": "nohost"}, "listen"),
        ({"listen": "h:99999"}, "listen"),
        ({"raft_listen": "127.0.0.1:9092"}, "raft-listen"),
        ({"controller_voters": "x@h:1"}, "controller-voters"),
        ({"controller_voters": "1@h:1,1@h:2"}, "twice"),
        ({"fsync_policy": "sometimes"}, "fsync-policy"),
        ({"tick_ms": -5}, "tick-ms"),
        ({"tick_ms": "fast"}, "tick-ms"),
    ],
)
def test_bad_values_name_the_option(override: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        resolve_config({**BASE, **override}, env={})


def test_bad_file_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "b.toml"
    f.write_text("node_id = [")
    with pytest.raises(ConfigError, match="TOML"):
        resolve_config({**BASE, "config": str(f)}, env={})
    f.write_text("colour = 'blue'")
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_config({**BASE, "config": str(f)}, env={})


def test_check_config_command() -> None:
    args = [sys.executable, "-m", "broker", "serve", "--node-id", "1", "--data-dir", "/tmp/x",
            "--listen", "127.0.0.1:9092", "--raft-listen", "127.0.0.1:9192",
            "--controller-voters", "1@127.0.0.1:9192", "--check-config"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '"node_id": 1' in r.stdout
    r = subprocess.run(args[:-3] + ["--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "controller-voters" in r.stderr
