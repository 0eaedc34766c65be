"""The Docker deployment (docker/), checked without a Docker engine.

- The Dockerfile is parsed into stages and instructions and checked: wheel build stage, slim
  runtime, non-root user, data volume, `raftlog serve` entry point, health check, ports, and an
  environment made only of `raftlog serve` settings. `.dockerignore` sends the build its inputs.
- The compose file is loaded as YAML (PyYAML, a test-only dependency: skipped without it) with
  `${VAR:-default}` resolved to its default, and each broker's container environment (the
  image's ENV overlaid by the service's) is passed, alone, to `raftlog serve --check-config`.
- The same three-broker topology runs as local processes: each `broker-N` hostname becomes
  loopback address 127.0.0.N with every broker on the same Raft port, as in the containers (or,
  where 127.0.0.2-3 cannot be bound, 127.0.0.1 with distinct ports), and every port a free one.
  The health probe, the compose file's one-shot topic command and a kafka-python round trip
  run against it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.cli import build_parser
from broker.config import BrokerConfig
from tests.integration.processes import REPO_ROOT, BrokerProcess, pick_free_ports, repo_env
from tests.integration.waiting import BrokerDied, NotYet, wait_until

DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
HEALTHCHECK = DOCKER_DIR / "healthcheck.py"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
BROKERS = ("broker-1", "broker-2", "broker-3")
EXPECTED_VOTERS = {"1": "broker-1:9093", "2": "broker-2:9093", "3": "broker-3:9093"}
IDENTITY = ("RAFTLOG_NODE_ID", "RAFTLOG_LISTEN", "RAFTLOG_ADVERTISE", "RAFTLOG_RAFT_LISTEN",
            "RAFTLOG_CONTROLLER_VOTERS")  # what each broker service must set itself
ADDRESS_VARS = ("RAFTLOG_LISTEN", "RAFTLOG_ADVERTISE", "RAFTLOG_RAFT_LISTEN",
                "RAFTLOG_METRICS_LISTEN", "RAFTLOG_BOOTSTRAP")
COMMAND_TIMEOUT_S = 60.0
CLUSTER_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


# ---- Dockerfile ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: str  # upper case
    args: str  # continuation lines joined


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    base: str  # FROM's image with global ARG defaults substituted
    name: str
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=VALUE form"
                out[key] = value
        return out


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with backslash continuations joined; comments and blank lines dropped
    (comment lines inside a continuation too, as Docker does)."""
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield " ".join(pending)
        pending = []
    assert not pending, "the Dockerfile ends inside a continuation"


def parse_dockerfile(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    heads: list[tuple[str, str]] = []  # (base, name) of each stage
    bodies: list[list[Instruction]] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not heads:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = args.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(heads))
            heads.append((base, name))
            bodies.append([])
        else:
            assert heads, f"{keyword} before any FROM"
            bodies[-1].append(Instruction(keyword=keyword, args=args))
    assert heads, "no FROM in the Dockerfile"
    return [Stage(base=base, name=name, instructions=tuple(body))
            for (base, name), body in zip(heads, bodies)]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"expected the JSON (exec) form, got {args!r}"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert parsed[-1].name == "broker", "the broker must be the last (default) stage"
    return {s.name: s for s in parsed}


def image_env(stages: dict[str, Stage]) -> dict[str, str]:
    """The broker image's RAFTLOG_* environment (its base stages set none)."""
    return {k: v for k, v in stages["broker"].env().items() if k.startswith("RAFTLOG_")}


def serve_flags() -> dict[str, argparse.Action]:
    """`raftlog serve`'s options by flag name, without --help and --check-config."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return {opt[2:]: action for action in serve._actions for opt in action.option_strings
            if opt.startswith("--") and opt not in ("--help", "--check-config")}


def test_dockerfile_builds_wheels_then_installs_them_on_slim_python(
        stages: dict[str, Stage]) -> None:
    names = list(stages)
    for stage in stages.values():
        earlier = names[:names.index(stage.name)]
        assert stage.base == "python:3.11-slim" or stage.base in earlier, stage
    wheels = stages["wheels"]
    assert any("pip wheel" in run for run in wheels.all("RUN"))
    install = " ".join(stages["broker"].all("RUN"))
    assert "--mount=type=bind,from=wheels" in install and "--no-index" in install
    # The broker image gets only the probe from the build context; no source tree, no wheels.
    assert stages["broker"].all("COPY") == ["docker/healthcheck.py /opt/raftlog/healthcheck.py"]
    assert any("pip wheel" in run and "[bench]" in run for run in stages["bench-wheels"].all("RUN"))


def test_dockerfile_runs_raftlog_serve_as_non_root_with_a_data_volume(
        stages: dict[str, Stage]) -> None:
    broker = stages["broker"]
    env = broker.env()
    assert broker.last("USER") not in ("root", "0", "0:0")
    assert exec_form(broker.last("VOLUME")) == [env["RAFTLOG_DATA_DIR"]]
    assert exec_form(broker.last("ENTRYPOINT")) == ["raftlog", "serve"]
    healthcheck = broker.last("HEALTHCHECK")
    assert "CMD" in healthcheck
    command = exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert command == ["python", "/opt/raftlog/healthcheck.py"]
    exposed = {int(p) for p in broker.last("EXPOSE").split()}
    for name in ("RAFTLOG_LISTEN", "RAFTLOG_RAFT_LISTEN"):
        assert int(env[name].rpartition(":")[2]) in exposed, name
    assert stages["bench"].last("USER") not in ("root", "0", "0:0")
    assert "benchmarks /opt/raftlog/benchmarks" in stages["bench"].all("COPY")


def test_image_environment_is_serve_flags_only_and_a_valid_single_broker(
        stages: dict[str, Stage], tmp_path: Path) -> None:
    env = image_env(stages)
    flags = serve_flags()
    for key in env:
        flag = key.removeprefix("RAFTLOG_").lower().replace("_", "-")
        assert flag in flags, f"{key} is not the env form of a `raftlog serve` flag"
    env["RAFTLOG_DATA_DIR"] = str(tmp_path / "data")  # the image's path does not exist here
    resolved = check_config(env)
    assert resolved["node_id"] == 1
    assert resolved["controller_voters"] == {"1": env["RAFTLOG_RAFT_LISTEN"]}
    assert resolved["listen"] == "0.0.0.0:9092"


# ---- .dockerignore --------------------------------------------------------------------------

def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` and `?` within one path element, `**` across elements."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def context_excludes(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negated
    return excluded


def test_dockerignore_sends_the_build_inputs_and_nothing_else(stages: dict[str, Stage]) -> None:
    patterns = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, _ignore_regex(line.lstrip("!").strip("/"))))
    needed = [source for stage in stages.values() for args in stage.all("COPY")
              if not args.startswith("--from") for source in args.split()[:-1]
              if not source.startswith("--")]
    assert needed, "the Dockerfile copies nothing from the context"
    for source in needed:
        files = [source] if (REPO_ROOT / source).is_file() else [
            str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / source).rglob("*.py")
            if "__pycache__" not in p.parts]
        assert files, f"COPY source {source} does not exist"
        for f in files:
            assert not context_excludes(f, patterns), f"{f} is needed but excluded"
    for unwanted in ("tests/conftest.py", ".git/HEAD", "broker/__pycache__/cli.cpython-311.pyc",
                     "raftlog.egg-info/PKG-INFO", "docker/docker-compose.yml"):
        assert context_excludes(unwanted, patterns), f"{unwanted} would be sent to the build"


# ---- compose --------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)")


def interpolate(value: Any) -> Any:
    """Compose's interpolation with no variables set: `${X:-d}` and `${X-d}` give `d`,
    `${X}` and `$X` give '', `$$` gives `$`."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(3) or ""), value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML (a test-only dependency) is needed to read the compose file")
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return interpolate(data)


def service_env(compose: Mapping[str, Any], name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment", {})
    assert isinstance(env, dict), f"{name}: use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}


def container_env(compose: Mapping[str, Any], stages: dict[str, Stage],
                  name: str) -> dict[str, str]:
    """What `raftlog serve` sees in the container: the image's ENV, then the service's."""
    return {**image_env(stages), **service_env(compose, name)}


def check_config(env: Mapping[str, str]) -> dict[str, Any]:
    """`python -m broker serve --check-config` configured by `env` alone."""
    proc = subprocess.run([sys.executable, "-m", "broker", "serve", "--check-config"],
                          env=repo_env(dict(env)), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, f"--check-config refused {dict(env)}: {proc.stderr.strip()}"
    resolved = json.loads(proc.stdout)
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any], stages: dict[str, Stage]) -> dict[str, dict[str, Any]]:
    return {name: check_config(container_env(compose, stages, name)) for name in BROKERS}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match.group(1)) * units[match.group(2)]


def test_compose_brokers_have_stable_names_own_volumes_and_published_ports(
        compose: dict[str, Any], stages: dict[str, Stage]) -> None:
    data_dir = image_env(stages)["RAFTLOG_DATA_DIR"]
    volumes_seen = set()
    for name in BROKERS:
        service = compose["services"][name]
        env = service_env(compose, name)
        assert service["hostname"] == name and service["networks"] == ["raftlog"]
        assert service["restart"] in ("always", "unless-stopped")
        shutdown_timeout_ms = int(container_env(compose, stages, name).get(
            "RAFTLOG_SHUTDOWN_TIMEOUT_MS", _default("shutdown_timeout_ms")))
        assert _seconds(service["stop_grace_period"]) * 1000 > shutdown_timeout_ms
        assert service["build"]["target"] == "broker"
        missing = [k for k in IDENTITY if k not in env]
        assert not missing, f"{name} leaves {missing} to the image's single-broker defaults"
        (volume,) = service["volumes"]
        source, _, target = volume.partition(":")
        assert target == data_dir and source in compose["volumes"]
        volumes_seen.add(source)
        (published,) = service["ports"]
        _ip, host_port, container_port = published.rsplit(":", 2)
        assert container_port == env["RAFTLOG_LISTEN"].rpartition(":")[2]
        assert host_port == env["RAFTLOG_ADVERTISE"].rpartition(":")[2]
    assert len(volumes_seen) == len(BROKERS), "each broker needs its own volume"
    assert not compose["networks"]["raftlog"].get("internal", False), "published ports need it"


@pytest.mark.parametrize("name", BROKERS)
def test_compose_broker_environment_passes_check_config(
        resolved: dict[str, dict[str, Any]], compose: dict[str, Any], name: str) -> None:
    config = resolved[name]
    node_id = int(name.rpartition("-")[2])
    env = service_env(compose, name)
    assert config["node_id"] == node_id
    assert config["controller_voters"] == EXPECTED_VOTERS
    assert config["raft_listen"] == EXPECTED_VOTERS[str(node_id)]
    assert config["listen"] == env["RAFTLOG_LISTEN"] == f"0.0.0.0:{19091 + node_id}"
    assert config["advertise"] == f"127.0.0.1:{19091 + node_id}"
    assert config["fsync_policy"] == "always"


def test_compose_voters_agree_and_node_ids_are_distinct(
        resolved: dict[str, dict[str, Any]]) -> None:
    voters = {json.dumps(c["controller_voters"], sort_keys=True) for c in resolved.values()}
    assert len(voters) == 1
    ids = sorted(c["node_id"] for c in resolved.values())
    assert ids == sorted(int(i) for i in json.loads(voters.pop()))
    assert len({c["advertise"] for c in resolved.values()}) == len(BROKERS)


def test_compose_one_shot_topic_and_locust_services(
        compose: dict[str, Any], resolved: dict[str, dict[str, Any]],
        stages: dict[str, Stage]) -> None:
    services = compose["services"]
    init = services["create-demo-topic"]
    assert init["restart"] == "no" and init["network_mode"] == "host"
    assert {n: d["condition"] for n, d in init["depends_on"].items()} == dict.fromkeys(
        BROKERS, "service_healthy")
    bootstrap = set(service_env(compose, "create-demo-topic")["RAFTLOG_BOOTSTRAP"].split(","))
    assert bootstrap == {c["advertise"] for c in resolved.values()}
    assert "topic create demo --partitions 6 --replication-factor 3" in init["command"][0]
    locustfile = "/opt/raftlog/benchmarks/locustfile.py"
    for name in ("locust-master", "locust-worker"):
        service = services[name]
        assert service["profiles"] == ["locust"] and service["build"]["target"] == "bench"
        assert service["command"][:2] == ["-f", locustfile]
        assert set(service_env(compose, name)["RAFTLOG_BOOTSTRAP"].split(",")) == bootstrap
    assert "--master" in services["locust-master"]["command"]
    assert "--worker" in services["locust-worker"]["command"]
    assert exec_form(stages["bench"].last("ENTRYPOINT")) == ["locust"]


# ---- `raftlog serve` reads every flag from RAFTLOG_<FLAG> ---------------------------------

def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(BrokerConfig) if f.name == name)


def _env_value(flag: str, tmp_path: Path) -> str:
    """A valid, non-default value for `--flag`, as the text of its environment variable."""
    fixed = {"node-id": "7", "data-dir": str(tmp_path / "data"), "listen": "127.0.0.1:39001",
             "raft-listen": "127.0.0.1:39002", "advertise": "kafka.example:39001",
             "controller-voters": "7@127.0.0.1:39002,8@127.0.0.1:39003",
             "metrics-listen": "127.0.0.1:39004", "fsync-policy": "interval"}
    if flag in fixed:
        return fixed[flag]
    f = {x.name: x for x in dataclasses.fields(BrokerConfig)}[flag.replace("-", "_")]
    if f.type == "bool":
        return str(not f.default).lower()
    assert f.type == "int", f"no test value for --{flag}: add one above"
    return str(f.default + 1)  # type: ignore[operator]


def test_serve_reads_every_flag_and_setting_from_its_environment_variable(
        tmp_path: Path) -> None:
    fields = {f.name for f in dataclasses.fields(BrokerConfig)} - {"extra"}
    flags = serve_flags()
    assert set(flags) - {"config"} <= {f.replace("_", "-") for f in fields}
    names = sorted({f.replace("_", "-") for f in fields} | set(flags) - {"config"})
    env = {"RAFTLOG_" + n.upper().replace("-", "_"): _env_value(n, tmp_path) for n in names}
    config = check_config(env)
    for name in names:
        key = name.replace("-", "_")
        expected = _env_value(name, tmp_path)
        if key == "controller_voters":
            assert config[key] == {"7": "127.0.0.1:39002", "8": "127.0.0.1:39003"}
        else:
            assert str(config[key]).lower() == expected.lower(), f"RAFTLOG_{key.upper()}"
    # --config is RAFTLOG_CONFIG: a TOML file supplies what the environment does not.
    toml = tmp_path / "broker.toml"
    toml.write_text("tick_ms = 77\n", encoding="utf-8")
    del env["RAFTLOG_TICK_MS"]
    assert check_config({**env, "RAFTLOG_CONFIG": str(toml)})["tick_ms"] == 77


def test_a_flag_overrides_its_environment_variable(tmp_path: Path) -> None:
    """`docker run IMAGE --node-id 2` beats the image's RAFTLOG_NODE_ID."""
    env = {"RAFTLOG_NODE_ID": "1", "RAFTLOG_DATA_DIR": str(tmp_path),
           "RAFTLOG_LISTEN": "127.0.0.1:39001", "RAFTLOG_RAFT_LISTEN": "127.0.0.1:39002",
           "RAFTLOG_CONTROLLER_VOTERS": "2@127.0.0.1:39002"}
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--check-config", "--node-id", "2"],
        env=repo_env(env), cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["node_id"] == 2


# ---- the health probe -----------------------------------------------------------------------

def run_healthcheck(*args: str, env: Mapping[str, str] | None = None
                    ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], env=repo_env(dict(env or {})),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def test_healthcheck_fails_on_a_closed_port() -> None:
    (port,) = pick_free_ports(1)
    proc = run_healthcheck(f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert "unhealthy" in proc.stderr and str(port) in proc.stderr


def test_healthcheck_fails_on_a_server_that_answers_the_wrong_correlation_id() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer_wrongly() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x00\x06" + b"\x7f\xff\xff\xff" + b"\x00\x00")

        thread = threading.Thread(target=answer_wrongly, daemon=True)
        thread.start()
        proc = run_healthcheck(f"127.0.0.1:{server.getsockname()[1]}")
        thread.join(timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == 1 and "correlation id" in proc.stderr


# ---- the compose topology as local processes ------------------------------------------------

def _loopback_aliases_work(port: int) -> bool:
    """Can 127.0.0.2 and 127.0.0.3 be bound (Linux routes all of 127/8 to lo)?"""
    with contextlib.ExitStack() as stack:
        for host in ("127.0.0.2", "127.0.0.3"):
            s = stack.enter_context(socket.socket())
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


@dataclass(slots=True, kw_only=True)
class AddressMap:
    """Rewrites the compose file's addresses to this machine: hostname broker-N -> 127.0.0.N
    (shared ports, as in containers) or 127.0.0.1 (distinct ports); 0.0.0.0 -> 127.0.0.1;
    each port -> a free one."""

    aliases: bool
    ports: dict[object, int] = field(default_factory=dict)

    def host(self, host: str) -> str:
        match = re.fullmatch(r"broker-(\d+)", host)
        if match and self.aliases:
            return f"127.0.0.{match.group(1)}"
        return "127.0.0.1"

    def address(self, address: str) -> str:
        host, _, port = address.rpartition(":")
        key: object = int(port) if self.aliases or not host.startswith("broker-") else address
        if key not in self.ports:
            self.ports[key] = pick_free_ports(1)[0]
        return f"{self.host(host)}:{self.ports[key]}"

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = dict(env)
        for key in ADDRESS_VARS:
            if key in out:
                out[key] = ",".join(self.address(a) for a in out[key].split(","))
        if "RAFTLOG_CONTROLLER_VOTERS" in out:
            out["RAFTLOG_CONTROLLER_VOTERS"] = ",".join(
                f"{n}@{self.address(a)}" for n, _, a in
                (v.partition("@") for v in out["RAFTLOG_CONTROLLER_VOTERS"].split(",")))
        return out


@dataclass(slots=True, kw_only=True)
class Topology:
    brokers: dict[str, BrokerProcess]
    envs: dict[str, dict[str, str]]  # each broker's rewritten environment
    addresses: AddressMap
    bootstrap: str  # the advertised addresses, as a client on the host would use them

    def check_alive(self) -> None:
        for b in self.brokers.values():
            if not b.is_running():
                raise BrokerDied(f"{b.status_line()}\n{b.log_since_start(40)}")

    def diagnostics(self) -> str:
        return "\n".join(f"{b.status_line()}\n{b.log_since_start(20)}"
                         for b in self.brokers.values())


def _stop(brokers: list[BrokerProcess]) -> None:
    """SIGTERM every broker we started, then SIGKILL any still running after the deadline."""
    for b in brokers:
        b.signal(signal.SIGTERM)
    for b in brokers:
        if b.wait_exit(STOP_TIMEOUT_S) is None:
            b.signal(signal.SIGKILL)
            b.wait_exit(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def topology(compose: dict[str, Any], stages: dict[str, Stage],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("compose")
    addresses = AddressMap(aliases=_loopback_aliases_work(pick_free_ports(1)[0]))
    brokers: dict[str, BrokerProcess] = {}
    envs: dict[str, dict[str, str]] = {}
    for name in BROKERS:
        env = addresses.env(container_env(compose, stages, name))
        env["RAFTLOG_DATA_DIR"] = str(root / name)
        envs[name] = env
        brokers[name] = BrokerProcess(
            node_id=int(env["RAFTLOG_NODE_ID"]),
            client_port=int(env["RAFTLOG_LISTEN"].rpartition(":")[2]),
            raft_port=int(env["RAFTLOG_RAFT_LISTEN"].rpartition(":")[2]),
            data_dir=root / name, log_path=root / f"{name}.log")
    bootstrap = ",".join(envs[n]["RAFTLOG_ADVERTISE"] for n in BROKERS)
    topo = Topology(brokers=brokers, envs=envs, addresses=addresses, bootstrap=bootstrap)
    try:
        for name, b in brokers.items():
            b.spawn("broker", ["serve"], repo_env(envs[name]))  # env only, no flags
        yield topo
    finally:
        _stop(list(brokers.values()))


def _healthy(topo: Topology, name: str) -> bool:
    listen = topo.envs[name]["RAFTLOG_LISTEN"]
    proc = run_healthcheck(env={"RAFTLOG_LISTEN": listen})  # the probe's own default target
    if proc.returncode != 0:
        raise NotYet(proc.stderr.strip())
    return True


def test_healthcheck_passes_against_each_running_broker(topology: Topology) -> None:
    for name in BROKERS:
        wait_until(lambda: _healthy(topology, name), timeout_s=CLUSTER_TIMEOUT_S,
                   what=f"{name} to answer the health probe", on_poll=topology.check_alive,
                   describe_failure=topology.diagnostics)


def _raftlog_shim(directory: Path) -> Path:
    """A `raftlog` on PATH that runs this checkout, as the console script does in the image."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "raftlog"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m broker "$@"\n',
                    encoding="utf-8")
    shim.chmod(0o755)
    return directory


def test_one_shot_service_creates_the_demo_topic(
        topology: Topology, compose: dict[str, Any], tmp_path: Path) -> None:
    service = compose["services"]["create-demo-topic"]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    env = topology.addresses.env(service_env(compose, "create-demo-topic"))
    assert set(env["RAFTLOG_BOOTSTRAP"].split(",")) == set(topology.bootstrap.split(","))
    env["PATH"] = f"{_raftlog_shim(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}"
    for run in ("first", "again"):  # a second `up` finds the topic and succeeds at once
        proc = subprocess.run(["/bin/sh", "-c", service["command"][0]], env=repo_env(env),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{run} run: {proc.stderr[-2000:]}\n{topology.diagnostics()}"
    assert "topic demo is ready" in proc.stdout
    described = subprocess.run(
        [sys.executable, "-m", "broker", "topic", "describe", "demo", "--json",
         "--bootstrap", topology.bootstrap], env=repo_env(), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert described.returncode == 0, described.stderr
    partitions = json.loads(described.stdout)["partitions"]
    assert len(partitions) == 6
    assert all(sorted(p["replicas"]) == [1, 2, 3] for p in partitions)


def _create_topic(bootstrap: list[str], name: str, partitions: int) -> bool:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, 3)])
    except TopicAlreadyExistsError:
        pass  # an earlier attempt that timed out on our side made it
    finally:
        admin.close()
    return True


def _leaders_known(topology: Topology, name: str, partitions: int) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "broker", "topic", "describe", name, "--json",
         "--bootstrap", topology.bootstrap], env=repo_env(), cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if proc.returncode != 0:
        raise NotYet(proc.stderr.strip())
    leaders = [p["leader"] for p in json.loads(proc.stdout)["partitions"]]
    if len(leaders) != partitions or None in leaders:
        raise NotYet(f"leaders {leaders}")
    return True


def test_kafka_python_round_trip_through_the_advertised_addresses(topology: Topology) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic, partitions, count = "docker-round-trip", 3, 60
    bootstrap = topology.bootstrap.split(",")
    wait_until(lambda: _create_topic(bootstrap, topic, partitions), timeout_s=CLUSTER_TIMEOUT_S,
               what=f"topic {topic} to be created", on_poll=topology.check_alive,
               describe_failure=topology.diagnostics)
    wait_until(lambda: _leaders_known(topology, topic, partitions), timeout_s=CLUSTER_TIMEOUT_S,
               what=f"a leader for every partition of {topic}", on_poll=topology.check_alive,
               describe_failure=topology.diagnostics)
    sent = {(f"key-{i}".encode(), f"value-{i}".encode()) for i in range(count)}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10,
                             request_timeout_ms=10000)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in sorted(sent)]
        producer.flush(timeout=COMMAND_TIMEOUT_S)
        offsets = [f.get(timeout=COMMAND_TIMEOUT_S) for f in futures]
    finally:
        producer.close(timeout=10)
    assert len(offsets) == count
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    received: list[tuple[bytes, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)

        def all_read() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.key, r.value) for r in records)
            if len(received) < count:
                raise NotYet(f"{len(received)} of {count} records read")
            return True

        wait_until(all_read, timeout_s=CLUSTER_TIMEOUT_S, what="every record read back",
                   interval_s=0.0, on_poll=topology.check_alive,
                   describe_failure=topology.diagnostics)
    finally:
        consumer.close()
    assert len(received) == count and set(received) == sent
