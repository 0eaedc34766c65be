"""The network fabric: hosts in namespaces talk over the bridge, partitions and one-way drops
lose packets silently while clients in the root namespace still reach every host, heal
restores the links, nothing is left behind, and real brokers run inside it.

Checks that a packet does NOT arrive wait a short while (a working link delivers on this
bridge in microseconds); checks that it does arrive wait generously.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.netns import (
    Fabric,
    NetnsCluster,
    netns_socket,
    netns_unavailable,
    remove_leftovers,
)
from tests.integration.clients import make_producer, read_all

REASON = netns_unavailable()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=REASON or ""),
              pytest.mark.timeout(120)]

PORT = 7000
ARRIVES_S = 5.0  # a packet on a working link
LOST_S = 0.5  # how long a check for a lost packet waits


@pytest.fixture
def fabric3() -> Iterator[Fabric]:
    with Fabric(3) as f:
        yield f


def _listener(f: Fabric, i: int) -> socket.socket:
    s = netns_socket(f.netns_name(i))
    s.bind((f.host_ip(i), PORT))
    s.listen(16)
    return s


def _connects(f: Fabric, src: int | None, dst: int, timeout_s: float = ARRIVES_S) -> bool:
    """Whether a TCP connection from host src (None: the root namespace) to host dst opens."""
    s = socket.socket() if src is None else netns_socket(f.netns_name(src))
    s.settimeout(timeout_s)
    try:
        s.connect((f.host_ip(dst), PORT))
        return True
    except OSError:  # a timeout: the SYN or the SYN-ACK was lost
        return False
    finally:
        s.close()


def _names_of(tag: str) -> set[str]:
    """Namespaces and links whose names start with `tag`-."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    words = (netns.stdout + links.stdout).replace("@", " ").replace(":", " ").split()
    return {w for w in words if w.startswith(f"{tag}-")}


def test_hosts_exchange_tcp_and_the_client_reaches_each(fabric3: Fabric) -> None:
    f = fabric3
    listeners = [_listener(f, i) for i in (1, 2, 3)]
    try:
        assert f.client_ip().startswith("10.77.") and f.host_ip(2).startswith("10.77.")
        for src, dst in ((1, 2), (2, 3), (3, 1), (None, 1), (None, 2), (None, 3)):
            assert _connects(f, src, dst), f"{src} -> {dst}"
        assert f.rules() == []
        inside = subprocess.run([*f.exec_prefix(3), "ip", "-o", "-4", "addr", "show"],
                                capture_output=True, text=True, check=True, timeout=30).stdout
        assert f"{f.host_ip(3)}/24" in inside and f.host_ip(1) not in inside
    finally:
        for s in listeners:
            s.close()


def test_partition_cuts_groups_apart_until_healed(fabric3: Fabric) -> None:
    f = fabric3
    listeners = [_listener(f, i) for i in (1, 2, 3)]
    try:
        f.partition([[1], [2, 3]])
        assert f.rules() == ["cut 1<->2", "cut 1<->3"]
        for src, dst in ((1, 2), (2, 1), (1, 3), (3, 1)):
            assert not _connects(f, src, dst, LOST_S), f"{src} -> {dst} across the partition"
        assert _connects(f, 2, 3) and _connects(f, 3, 2), "inside the majority side"
        for dst in (1, 2, 3):
            assert _connects(f, None, dst), f"client -> {dst}"
        f.heal()
        assert f.rules() == []
        for src, dst in ((1, 2), (2, 1), (1, 3), (3, 1)):
            assert _connects(f, src, dst), f"{src} -> {dst} after heal"
    finally:
        for s in listeners:
            s.close()


def test_isolate_cuts_one_host_from_all_others(fabric3: Fabric) -> None:
    f = fabric3
    listeners = [_listener(f, i) for i in (1, 2, 3)]
    try:
        f.isolate(2)
        assert f.rules() == ["cut 1<->2", "cut 2<->3"]
        assert not _connects(f, 2, 1, LOST_S) and not _connects(f, 3, 2, LOST_S)
        assert _connects(f, 1, 3) and _connects(f, None, 2)
    finally:
        f.heal()
        for s in listeners:
            s.close()


def _udp(f: Fabric, i: int) -> socket.socket:
    s = netns_socket(f.netns_name(i), socket.SOCK_DGRAM)
    s.bind((f.host_ip(i), PORT))
    return s


def _receive(s: socket.socket, timeout_s: float) -> bytes | None:
    """The next datagram, or None if none arrives within timeout_s."""
    s.settimeout(timeout_s)
    try:
        return s.recv(100)
    except TimeoutError:
        return None


def test_drop_one_way_loses_only_one_direction() -> None:
    with Fabric(2) as f:
        a, b = _udp(f, 1), _udp(f, 2)
        try:
            a.sendto(b"warm-a", (f.host_ip(2), PORT))  # both neighbour caches hold real MACs
            b.sendto(b"warm-b", (f.host_ip(1), PORT))
            assert _receive(b, ARRIVES_S) == b"warm-a"
            assert _receive(a, ARRIVES_S) == b"warm-b"
            f.drop_one_way(1, 2)
            assert f.rules() == ["drop 1->2"]
            for k in range(3):
                a.sendto(b"lost-%d" % k, (f.host_ip(2), PORT))  # no error for the sender
            b.sendto(b"back", (f.host_ip(1), PORT))
            assert _receive(a, ARRIVES_S) == b"back"
            assert _receive(b, LOST_S) is None
            f.heal()
            a.sendto(b"healed", (f.host_ip(2), PORT))
            assert _receive(b, ARRIVES_S) == b"healed"
        finally:
            a.close()
            b.close()


def test_exit_removes_every_namespace_and_link_even_after_an_error() -> None:
    f = Fabric(2)
    with pytest.raises(RuntimeError, match="boom"):
        with f:
            f.partition([[1], [2]])
            assert _names_of(f.tag) == {f"{f.tag}-1", f"{f.tag}-2", f"{f.tag}-br",
                                    f"{f.tag}-h1", f"{f.tag}-h2"}
            raise RuntimeError("boom")
    assert _names_of(f.tag) == set()
    f.close()  # idempotent
    with Fabric(2) as again:  # the same names can be built again at once
        assert _one_connects_to_two(again)
    assert _names_of(again.tag) == set()


def _one_connects_to_two(f: Fabric) -> bool:
    listener = _listener(f, 2)
    try:
        return _connects(f, 1, 2)
    finally:
        listener.close()


def test_leftovers_of_a_killed_run_are_removed() -> None:
    """A process that builds a fabric and is SIGKILLed leaves it all behind; the next
    remove_leftovers (which every Fabric runs first) removes it."""
    script = ("import os, signal\n"
              "from tests.faults.netns import Fabric\n"
              "f = Fabric(2).__enter__()\n"
              "print(f.tag, flush=True)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).resolve().parents[2])
    tag = r.stdout.strip()
    assert r.returncode == -9 and tag, (r.returncode, r.stdout, r.stderr)
    assert len(_names_of(tag)) == 5, "the killed run left its fabric behind"
    removed = remove_leftovers()
    assert {f"{tag}-1", f"{tag}-2", f"{tag}-br"} <= set(removed)
    assert _names_of(tag) == set()


def test_brokers_in_namespaces_elect_a_new_leader_when_the_leader_is_isolated(
        fabric3: Fabric, tmp_path: Path) -> None:
    f = fabric3
    with NetnsCluster(f, 3, data_root=tmp_path) as cluster:
        cluster.start()
        cluster.wait_ready()
        assert cluster.address(2) == f"{f.host_ip(2)}:9092"
        cluster.create_topic("fabric", 1)
        producer = make_producer(cluster.bootstrap)
        try:
            offset = producer.send("fabric", b"across-the-bridge").get(timeout=30).offset
        finally:
            producer.close()
        stored = read_all(cluster.bootstrap, "fabric", [0], timeout_s=30)
        assert stored[(0, offset)].value == b"across-the-bridge"

        # (Wait: leadership may be moving to the preferred leader right after the creation.)
        leader = cluster.wait_topic_leaders("fabric", 1)["partitions"][0]["leader"]
        assert leader in (1, 2, 3)
        others = [i for i in (1, 2, 3) if i != leader]
        f.isolate(leader)
        described = cluster.wait_topic_leaders("fabric", 1, timeout_s=60, excluded=[leader],
                                               bootstrap=cluster.bootstrap_of(others))
        assert described["partitions"][0]["leader"] in others
        assert cluster.brokers[leader].is_running()  # isolated, not dead
        f.heal()
