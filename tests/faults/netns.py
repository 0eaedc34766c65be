"""A network of broker hosts in Linux network namespaces, and a cluster whose brokers run there.

Layout (every name carries the test process's PID modulo 10000, so parallel runs never collide):

    root namespace (the test, its clients, the CLI)        namespace rlf<tag>-<i>, i = 1..n
    bridge rlf<tag>-br, 10.77.<x>.254/24  --  veth rlf<tag>-h<i>  ==  eth0, 10.77.<x>.<i>/24

Hosts reach each other and the root namespace only through the bridge. Nothing routes or
forwards (each namespace has just the on-link route of its /24), so a host reaches no address
outside that subnet. <x> is picked under a lock file so that concurrent fabrics get different
subnets. An owner record (full PID and process start time) names the process that made each
set of names, so leftovers of a dead test run are recognised and removed by the next fabric.

How packets are dropped: host a stops reaching host b when a's namespace gets a permanent
neighbour (ARP) entry mapping b's address to a MAC address that no interface has. a's kernel
still sends the packets; the bridge floods them and every interface discards them, so they
are lost silently, as on a cut cable. Only the a->b direction is affected, which makes
one-way drops possible; a cut both ways is two entries. A blackhole route would not do here:
a local sender gets EINVAL at once, so peers would see fast errors, not lost packets. This
machine has no qdiscs or packet filters to drop packets any other way.

`python -m tests.faults.netns exec NAME MODULE ARGS...` enters namespace NAME and becomes
`python -m MODULE ARGS...` in the same process: NetnsCluster starts brokers through it, after
the harness's launcher, so the PID the harness holds stays the broker's.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.integration.cluster import LocalCluster, _AddressInUse
from tests.integration.processes import BrokerProcess
from tests.integration.waiting import BrokerDied, NotYet, wait_until

__all__ = [
    "CLIENT_PORT",
    "RAFT_PORT",
    "Fabric",
    "FabricError",
    "NetnsBrokerProcess",
    "NetnsCluster",
    "netns_socket",
    "netns_unavailable",
    "remove_leftovers",
]

CLIENT_PORT = 9092  # every broker's Kafka port (each namespace has its own port space)
RAFT_PORT = 9093
STATE_DIR = Path("/run/raftlog-fabric")  # owner records and the allocation lock
NETNS_DIR = Path("/run/netns")  # where `ip netns add` mounts named namespaces
DEAD_MAC = "02:72:6c:66:de:ad"  # locally administered; never given to an interface
SUBNET_FORMAT = "10.77.{x}.{host}"
CLIENT_HOST = 254  # the root namespace's address on the bridge: 10.77.<x>.254
HOSTS_MAX = 250
IFNAME_CHARS_MAX = 15  # Linux IFNAMSIZ - 1
IP_TIMEOUT_S = 30.0  # one `ip` command; it never takes long unless the kernel is stuck
CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"^(?P<tag>[a-z]+\d{1,4})-(?P<part>[a-z0-9]+)$")


class FabricError(Exception):
    """An `ip` command failed or the fabric's names are taken by a live process."""


# ---- running `ip` -------------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; its stdout. Raises FabricError with stderr on failure if `check`."""
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise FabricError(f"`ip {' '.join(args)}` exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def _netns_names() -> set[str]:
    out = _ip("-json", "netns", "list")
    return {e["name"] for e in json.loads(out or "[]")}


def _link_names() -> set[str]:
    return {e["ifname"] for e in json.loads(_ip("-json", "link", "show") or "[]")}


def _root_subnets_in_use() -> set[int]:
    """Third octets of every 10.77.x.y address in the root namespace."""
    used = set()
    for link in json.loads(_ip("-json", "-4", "addr", "show") or "[]"):
        for a in link.get("addr_info", []):
            parts = a.get("local", "").split(".")
            if parts[:2] == ["10", "77"]:
                used.add(int(parts[2]))
    return used


# ---- ownership of names -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class _Owner:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused PID from the original
    subnet: int  # x in 10.77.x.0/24


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # fields after "pid (comm)" start at 3


def _owner_alive(owner: _Owner) -> bool:
    return _start_ticks(owner.pid) == owner.start_ticks


def _owner_path(tag: str) -> Path:
    return STATE_DIR / f"{tag}.json"


def _read_owner(tag: str) -> _Owner | None:
    try:
        data = json.loads(_owner_path(tag).read_text())
        return _Owner(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]),
                      subnet=int(data["subnet"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tag_alive(tag: str, prefix: str) -> bool:
    """Whether the process that made names `tag` may still run. Without an owner record
    (made under the lock before any name, so only a probe lacks one) any live process whose
    PID the tag could stand for counts."""
    owner = _read_owner(tag)
    if owner is not None:
        return _owner_alive(owner)
    number = int(tag[len(prefix):])
    return any(int(d) % 10000 == number for d in os.listdir("/proc") if d.isdigit())


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    """Serialises leftover removal and subnet allocation between processes."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_DIR / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_leftovers(prefix: str = "rlf") -> list[str]:
    """Remove the namespaces, links and owner records named `<prefix><digits>-...` whose
    owning process is dead (a test run that was killed). Returns what was removed."""
    with _state_lock():
        return _remove_leftovers_locked(prefix)


def _remove_leftovers_locked(prefix: str) -> list[str]:
    def stale(name: str) -> bool:
        m = _NAME.match(name)
        return (m is not None and m["tag"].startswith(prefix)
                and m["tag"][len(prefix):].isdigit() and not _tag_alive(m["tag"], prefix))

    removed = []
    for link in sorted(n for n in _link_names() if stale(n)):
        if link.split("-")[1] != "br":  # veths first: a namespace's end goes lazily with it
            _ip("link", "del", link, check=False)
            removed.append(link)
    for link in sorted(n for n in _link_names() if stale(n)):
        _ip("link", "del", link, check=False)
        removed.append(link)
    for ns in sorted(n for n in _netns_names() if stale(n)):
        _ip("netns", "del", ns, check=False)
        removed.append(ns)
    for record in STATE_DIR.glob(f"{prefix}*.json"):
        tag = record.name.removesuffix(".json")
        if tag[len(prefix):].isdigit() and not _tag_alive(tag, prefix):
            record.unlink(missing_ok=True)
            removed.append(str(record))
    return removed


# ---- availability -------------------------------------------------------------------------------
def netns_unavailable() -> str | None:
    """None if this process can build a fabric; else why not (for pytest.skip)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    try:
        with _state_lock():  # no leftover sweep may take the probe's names meanwhile
            _probe(f"rlf{os.getpid() % 10000}")
    except (FabricError, OSError, subprocess.SubprocessError) as e:
        return f"cannot build a namespace, veth pair and bridge here: {e}"
    return None


def _probe(tag: str) -> None:
    ns, bridge, veth = f"{tag}-probe", f"{tag}-pb", f"{tag}-pv"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", bridge)
        _ip("-n", ns, "neigh", "replace", "10.77.0.1", "lladdr", DEAD_MAC, "nud", "permanent",
            "dev", "eth0")
    finally:
        _ip("link", "del", veth, check=False)
        _ip("link", "del", bridge, check=False)
        _ip("netns", "del", ns, check=False)


# ---- the fabric ---------------------------------------------------------------------------------
class Fabric:
    """n broker hosts (namespaces) on one bridge that the root namespace is also on.

    Use as a context manager: __enter__ builds everything (removing leftovers of dead runs
    first), __exit__ removes everything, also after errors and also if building failed half
    way; close() is idempotent. Stop processes running inside the namespaces first.
    """

    def __init__(self, n: int, *, prefix: str = "rlf") -> None:
        if not 1 <= n <= HOSTS_MAX:
            raise ValueError(f"a fabric has 1..{HOSTS_MAX} hosts, not {n}")
        if not prefix.isalpha() or not prefix.islower():
            raise ValueError(f"prefix must be lowercase letters, got {prefix!r}")
        self.n = n
        self.prefix = prefix
        self.tag = f"{prefix}{os.getpid() % 10000}"
        if len(self._veth_name(n)) > IFNAME_CHARS_MAX:
            raise ValueError(f"prefix {prefix!r} makes interface names too long")
        self._subnet: int | None = None  # x of 10.77.x.0/24 while the fabric exists
        self._dropped: set[tuple[int, int]] = set()  # (src, dst): src's packets to dst are lost

    # ---- names and addresses --------------------------------------------------------------------
    def netns_name(self, i: int) -> str:
        self._check_host(i)
        return f"{self.tag}-{i}"

    def host_ip(self, i: int) -> str:
        self._check_host(i)
        return SUBNET_FORMAT.format(x=self._require_subnet(), host=i)

    def client_ip(self) -> str:
        return SUBNET_FORMAT.format(x=self._require_subnet(), host=CLIENT_HOST)

    def exec_prefix(self, i: int) -> list[str]:
        """argv prefix that runs a command inside host i's namespace (`ip netns exec` execs
        the command, so its PID is the one Popen returns)."""
        return ["ip", "netns", "exec", self.netns_name(i)]

    @property
    def bridge_name(self) -> str:
        return f"{self.tag}-br"

    def _veth_name(self, i: int) -> str:
        return f"{self.tag}-h{i}"

    def _check_host(self, i: int) -> None:
        if not (isinstance(i, int) and 1 <= i <= self.n):
            raise ValueError(f"host {i!r} is not in 1..{self.n}")

    def _require_subnet(self) -> int:
        if self._subnet is None:
            raise FabricError("the fabric is not built (use it as a context manager)")
        return self._subnet

    # ---- life cycle -----------------------------------------------------------------------------
    def __enter__(self) -> Fabric:
        try:
            self._claim()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _claim(self) -> None:
        """Under the lock: clear dead runs' leftovers, refuse names a live process holds,
        take a free subnet and record ourselves as the owner."""
        with _state_lock():
            _remove_leftovers_locked(self.prefix)
            owner = _read_owner(self.tag)
            if owner is not None:
                raise FabricError(f"fabric names {self.tag}-* belong to live process "
                                  f"{owner.pid} (one fabric per process at a time)")
            taken = _root_subnets_in_use() | self._subnets_recorded()
            free = [x for x in range(1, 255) if x not in taken]
            if not free:
                raise FabricError("every 10.77.x.0/24 subnet is in use")
            pid = os.getpid()
            start = _start_ticks(pid)
            assert start is not None, "our own /proc/<pid>/stat must be readable"
            record = {"pid": pid, "start_ticks": start, "subnet": free[0]}
            _owner_path(self.tag).write_text(json.dumps(record))
            self._subnet = free[0]

    def _subnets_recorded(self) -> set[int]:
        subnets = set()
        for record in STATE_DIR.glob("*.json"):
            owner = _read_owner(record.name.removesuffix(".json"))
            if owner is not None and _owner_alive(owner):
                subnets.add(owner.subnet)
        return subnets

    def _build(self) -> None:
        bridge = self.bridge_name
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{self.client_ip()}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i in range(1, self.n + 1):
            ns, veth = self.netns_name(i), self._veth_name(i)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.host_ip(i)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        """Remove every link and namespace of this fabric and its owner record; idempotent.
        Raises FabricError (after trying everything) if one of them is still there."""
        if self._subnet is None:  # never claimed the names (or already closed): nothing is ours
            return
        links, namespaces = _link_names(), _netns_names()
        for i in range(1, self.n + 1):  # the veth first: deleting a namespace frees it lazily
            if self._veth_name(i) in links:
                _ip("link", "del", self._veth_name(i), check=False)
            if self.netns_name(i) in namespaces:
                _ip("netns", "del", self.netns_name(i), check=False)
        if self.bridge_name in links:
            _ip("link", "del", self.bridge_name, check=False)
        self._dropped.clear()
        left = sorted(self._names() & (_link_names() | _netns_names()))
        if left:
            raise FabricError(f"could not remove {left}")
        _owner_path(self.tag).unlink(missing_ok=True)
        self._subnet = None

    def _names(self) -> set[str]:
        hosts = range(1, self.n + 1)
        return ({self.bridge_name} | {self._veth_name(i) for i in hosts}
                | {f"{self.tag}-{i}" for i in hosts})

    # ---- faults ---------------------------------------------------------------------------------
    def partition(self, groups: Sequence[Collection[int]]) -> None:
        """Hosts in different groups exchange no packets, both ways (added to the current
        rules). Hosts in no group keep their links; clients still reach every host."""
        seen: dict[int, int] = {}
        for g, group in enumerate(groups):
            for i in group:
                self._check_host(i)
                if seen.setdefault(i, g) != g:
                    raise ValueError(f"host {i} is in two groups of {groups!r}")
        for a, b in itertools.permutations(seen, 2):
            if seen[a] != seen[b]:
                self._drop(a, b)

    def drop_one_way(self, src: int, dst: int) -> None:
        """Packets from src to dst are lost; dst's packets to src still arrive."""
        self._check_host(src)
        self._check_host(dst)
        if src == dst:
            raise ValueError(f"a host cannot be cut from itself ({src})")
        self._drop(src, dst)

    def isolate(self, i: int) -> None:
        """Host i exchanges nothing with any other host; clients still reach it."""
        self.partition([[i], [j for j in range(1, self.n + 1) if j != i]])

    def heal(self) -> None:
        """Every rule removed: hosts resolve each other's real MAC addresses again."""
        for src, dst in sorted(self._dropped):
            _ip("-n", self.netns_name(src), "neigh", "del", self.host_ip(dst), "dev", "eth0",
                check=False)
        self._dropped.clear()

    def rules(self) -> list[str]:
        """The current rules, e.g. ["cut 1<->2", "drop 3->1"] (cut: both directions)."""
        out = []
        for src, dst in sorted(self._dropped):
            if (dst, src) in self._dropped:
                if src < dst:
                    out.append(f"cut {src}<->{dst}")
            else:
                out.append(f"drop {src}->{dst}")
        return out

    def _drop(self, src: int, dst: int) -> None:
        _ip("-n", self.netns_name(src), "neigh", "replace", self.host_ip(dst), "lladdr",
            DEAD_MAC, "nud", "permanent", "dev", "eth0")
        self._dropped.add((src, dst))


# ---- a cluster inside the fabric ----------------------------------------------------------------
@dataclass(slots=True, kw_only=True)
class NetnsBrokerProcess(BrokerProcess):
    """A broker that listens on its namespace's address instead of 127.0.0.1."""

    host: str
    netns: str

    @property
    def client_address(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def raft_address(self) -> str:
        return f"{self.host}:{self.raft_port}"


class NetnsCluster(LocalCluster):
    """LocalCluster whose broker i runs in the fabric's namespace i and listens on host_ip(i)
    (client port 9092, Raft port 9093); clients and the CLI stay in the root namespace and
    reach the brokers across the bridge. Stop it before the fabric is closed."""

    def __init__(self, fabric: Fabric, n: int = 3, *, data_root: Path, voters: int | None = None,
                 env_overrides: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        if n > fabric.n:
            raise ValueError(f"{n} brokers need {n} hosts; the fabric has {fabric.n}")
        super().__init__(n, data_root=data_root, env_overrides=env_overrides,
                         extra_args=extra_args, voters=voters)
        self.fabric = fabric

    def _assign_ports(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.brokers = {
            i: NetnsBrokerProcess(
                node_id=i, host=self.fabric.host_ip(i), netns=self.fabric.netns_name(i),
                client_port=CLIENT_PORT, raft_port=RAFT_PORT,
                data_dir=self.data_root / f"broker-{i}",
                log_path=self.data_root / f"broker-{i}.log",
            )
            for i in range(1, self.n + 1)
        }

    def _spawn(self, b: BrokerProcess) -> None:
        assert isinstance(b, NetnsBrokerProcess), b
        b.spawn(__name__, ["exec", b.netns, self.module, *self.serve_command(b.node_id)],
                self.broker_env())

    def _wait_listening(self, node_ids: Sequence[int], timeout_s: float) -> None:
        """As LocalCluster's, connecting to each broker's own address."""
        pending = set(node_ids)

        def all_listening() -> bool:
            for i in sorted(pending):
                b = self.brokers[i]
                assert isinstance(b, NetnsBrokerProcess), b
                if not b.is_running():
                    if "address already in use" in b.log_since_start().lower():
                        raise _AddressInUse(f"broker {i} could not bind: {b.status_line()}")
                    b.expected_running = False
                    raise BrokerDied(f"broker {i} exited while starting\n{self.diagnostics()}")
                with contextlib.suppress(OSError):
                    socket.create_connection((b.host, b.client_port), timeout=1.0).close()
                    pending.discard(i)
            if pending:
                raise NotYet(f"brokers {sorted(pending)} not listening on their client ports")
            return True

        # No check_alive here: a broker that lost a port race must reach the check above.
        wait_until(all_listening, timeout_s=timeout_s,
                   what=f"brokers {list(node_ids)} to listen on their client ports",
                   describe_failure=self.diagnostics)

    def diagnostics(self, lines: int = 40) -> str:
        rules = ", ".join(self.fabric.rules()) or "none"
        return f"{super().diagnostics(lines)}\n--- network rules: {rules}"


# ---- entering a namespace, for NetnsCluster's brokers -------------------------------------------
def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def netns_socket(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """An IPv4 socket in network namespace `name`, made by a short-lived thread that enters
    it (a namespace switch is per thread; a socket stays in the namespace it was made in)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            _enter_netns(name)
            made.append(socket.socket(socket.AF_INET, kind))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            made.append(e)

    thread = threading.Thread(target=make, name=f"netns-{name}")
    thread.start()
    thread.join()
    (result,) = made
    if isinstance(result, BaseException):
        raise result
    return result


def _main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or argv[0] != "exec":
        print("usage: python -m tests.faults.netns exec NETNS MODULE [ARGS...]", file=sys.stderr)
        return 2
    _enter_netns(argv[1])
    os.execv(sys.executable, [sys.executable, "-m", *argv[2:]])
    return 70  # not reached: execv replaces this process


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
