"""One frozen configuration object for a broker, resolved from defaults, a TOML file, `RAFTLOG_*`
environment variables and command-line flags (later sources win), then validated.

Every `raftlog serve` flag `--some-flag` is also `RAFTLOG_SOME_FLAG` and `some_flag` in the TOML
file (like uvicorn's env prefix). Units are in the names; public options take integer
milliseconds and bytes.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrokerConfig", "ConfigError", "parse_host_port", "parse_voters", "resolve_config"]

ENV_PREFIX = "RAFTLOG_"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the option and what is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    node_id: int
    data_dir: str
    listen: str  # host:port of the Kafka client port
    raft_listen: str  # host:port of the ZeroMQ peer port
    controller_voters: Mapping[int, str]  # node id -> raft host:port of each controller voter
    advertise: str = ""  # host:port clients are told to use; defaults to `listen`
    metrics_listen: str = ""
    fsync_policy: str = "always"  # "always" | "interval"
    fsync_interval_ms: int = 1000  # with fsync_policy="interval"
    segment_bytes_max: int = 128 << 20
    tick_ms: int = 50  # one Raft tick
    election_ticks: int = 10  # election timeout is [e, 2e) ticks
    heartbeat_ticks: int = 2
    broker_heartbeat_ms: int = 100  # broker-pair liveness and leadership gossip
    session_timeout_ms: int = 6000  # a silent broker is fenced by the controller after this
    request_bytes_max: int = 100 << 20
    batch_bytes_max: int = 1 << 20
    inflight_requests_max: int = 64  # per client connection
    fetch_bytes_max: int = 50 << 20  # per Fetch response
    shutdown_timeout_ms: int = 10000
    default_partitions: int = 1
    default_replication_factor: int = 3
    auto_create_topics: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def advertised(self) -> str:
        return self.advertise or self.listen

    def describe(self) -> dict[str, Any]:
        """The resolved configuration as plain data (for --check-config)."""
        out = dataclasses.asdict(self)
        out["controller_voters"] = {str(k): v for k, v in sorted(self.controller_voters.items())}
        out["advertise"] = self.advertised
        out.pop("extra")
        return out


def parse_host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{option}: expected HOST:PORT, got {value!r}")
    return host, int(port_text)


def parse_voters(value: str) -> dict[int, str]:
    voters: dict[int, str] = {}
    for item in (v.strip() for v in value.split(",") if v.strip()):
        node_text, sep, address = item.partition("@")
        if not sep or not node_text.isdigit() or int(node_text) <= 0:
            raise ConfigError(f"controller-voters: expected ID@HOST:PORT, got {item!r}")
        parse_host_port(address, "controller-voters")
        if int(node_text) in voters:
            raise ConfigError(f"controller-voters: node {node_text} listed twice")
        voters[int(node_text)] = address
    if not voters:
        raise ConfigError("controller-voters: at least one voter is required")
    return voters


_FIELDS = {f.name: f for f in dataclasses.fields(BrokerConfig) if f.name != "extra"}


def _coerce(name: str, raw: object) -> object:
    f = _FIELDS[name]
    if name == "controller_voters":
        if isinstance(raw, Mapping):
            return parse_voters(",".join(f"{k}@{v}" for k, v in raw.items()))
        return parse_voters(str(raw))
    if f.type in ("int",):
        if isinstance(raw, bool) or not (isinstance(raw, int) or str(raw).lstrip("-").isdigit()):
            raise ConfigError(f"{name.replace('_', '-')}: expected an integer, got {raw!r}")
        return int(raw)  # type: ignore[arg-type]
    if f.type == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text not in ("1", "0", "true", "false", "yes", "no"):
            raise ConfigError(f"{name.replace('_', '-')}: expected true/false, got {raw!r}")
        return text in ("1", "true", "yes")
    return str(raw)


def _from_file(path: str) -> dict[str, object]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    section = data.get("broker", data)
    unknown = sorted(set(section) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config: unknown option(s) in {path}: {', '.join(unknown)}")
    return dict(section)


def _from_env(env: Mapping[str, str]) -> dict[str, object]:
    return {
        name: env[ENV_PREFIX + name.upper()]
        for name in _FIELDS
        if env.get(ENV_PREFIX + name.upper(), "") != ""
    }


def resolve_config(
    flags: Mapping[str, object], env: Mapping[str, str] | None = None
) -> BrokerConfig:
    """Merge defaults < TOML file (`config` flag or RAFTLOG_CONFIG) < env < flags; validate."""
    env = os.environ if env is None else env
    config_path = flags.get("config") or env.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, object] = {}
    if config_path:
        merged.update(_from_file(str(config_path)))
    merged.update(_from_env(env))
    merged.update({k: v for k, v in flags.items() if k in _FIELDS and v is not None})
    values = {k: _coerce(k, v) for k, v in merged.items()}
    missing = [n for n in ("node_id", "data_dir", "listen", "raft_listen", "controller_voters")
               if n not in values]
    if missing:
        names = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise ConfigError(f"missing required option(s): {names}")
    config = BrokerConfig(**values)  # type: ignore[arg-type]
    _validate(config)
    return config


def _validate(c: BrokerConfig) -> None:
    if c.node_id <= 0:
        raise ConfigError(f"node-id: must be a positive integer, got {c.node_id}")
    for option in ("listen", "raft_listen"):
        parse_host_port(getattr(c, option), option.replace("_", "-"))
    for option in ("advertise", "metrics_listen"):
        if getattr(c, option):
            parse_host_port(getattr(c, option), option.replace("_", "-"))
    if c.listen == c.raft_listen:
        raise ConfigError("raft-listen: must differ from listen (Raft never shares the client port)")
    if c.fsync_policy not in ("always", "interval"):
        raise ConfigError(f"fsync-policy: expected 'always' or 'interval', got {c.fsync_policy!r}")
    positive = ("fsync_interval_ms", "segment_bytes_max", "tick_ms", "election_ticks",
                "heartbeat_ticks", "broker_heartbeat_ms", "session_timeout_ms",
                "request_bytes_max", "batch_bytes_max", "inflight_requests_max",
                "fetch_bytes_max", "shutdown_timeout_ms", "default_partitions",
                "default_replication_factor")
    for name in positive:
        if getattr(c, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')}: must be positive, got {getattr(c, name)}")
    if c.heartbeat_ticks >= c.election_ticks:
        raise ConfigError("heartbeat-ticks: must be below election-ticks")
    if c.node_id in c.controller_voters and c.controller_voters[c.node_id] != c.raft_listen:
        advertised = c.controller_voters[c.node_id]
        host, port = parse_host_port(advertised, "controller-voters")
        _, own_port = parse_host_port(c.raft_listen, "raft-listen")
        if port != own_port:
            raise ConfigError(
                f"controller-voters: node {c.node_id} is listed at {advertised}, "
                f"but --raft-listen is {c.raft_listen}"
            )
