"""The broker process: startup -> main loop -> shutdown (uvicorn's shape).

Components, each with one owner (this module):
- `PeerBus` (ZeroMQ) carries Raft messages and broker control messages between brokers;
- `ReplicaManager` drives every local Raft group (partitions and the controller, group 0);
- `ControllerService` applies the metadata log; its leader makes the cluster's decisions;
- the Kafka API (`broker.api`) serves clients on `--listen`.
Every `broker_heartbeat_ms` each broker tells every other broker it is alive and which groups
it leads (so any broker can answer Metadata with every partition's leader); the controller
leader registers and fences brokers from those heartbeats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from broker.config import BrokerConfig
from broker.controller.metadata import (
    CONTROLLER_GROUP_ID,
    BrokerChanged,
    BrokerRemoved,
    Change,
    PartitionAdded,
    PartitionInfo,
    PartitionRemoved,
)
from broker.controller.placement import leader_balance_moves
from broker.controller.service import ControllerService
from broker.groups import GroupCoordinator
from broker.raft.core import RaftConfig, StorageStateError
from broker.raft.confchange import ConfChangeError
from broker.raft.messages import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    HardState,
    ProposeResult,
    Role,
)
from broker.replica.codec import (
    CONTROL_TYPES,
    T_BROKER_HEARTBEAT,
    T_REQUEST,
    T_RESPONSE,
    PeerMessageError,
    decode_control,
    encode_control,
    message_type,
)
from broker.replica.manager import ReplicaManager
from broker.replica.partition import Replica
from broker.storage import LogConfig, LogDamageError, LogError, PartitionLog
from broker.transport import PeerBus, TransportConfig
from broker.wire.errors import ErrorCode, KafkaError

__all__ = ["Broker", "StartupError", "run_broker"]

log = logging.getLogger("raftlog.broker")

CONTROLLER_REQUESTS_MAX = 256
LEADERS_FULL_S = 1.0
# At start, how long a peer that has not been heard from at all is waited for before the client
# port opens, in heartbeat intervals; the whole wait is bounded by LEADERS_WAIT_MAX_S.
LEADERS_WAIT_UNHEARD_BEATS = 3
LEADERS_WAIT_MAX_S = LEADERS_FULL_S + 0.5
LEADER_BALANCE_INTERVAL_S = 2.0  # how often the controller leader rebalances leadership
LEADER_MOVES_MAX = 64  # transfers started per round (each is one TimeoutNow)
METADATA_LOG_DIR = "controller"
# A partition replica taken offline by damage its log found on read is reopened (which scans
# the damaged segment and repairs it) this long after, at most this often per process run.
REPAIR_DELAY_S = 0.5
REPAIRS_MAX = 3


class StartupError(Exception):
    """The broker cannot start (its metadata log cannot be opened); the message says why."""


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.incarnation = time.time_ns() // 1000  # distinguishes restarts of this node id
        self.data_dir = Path(config.data_dir)
        self.bus = PeerBus(TransportConfig(node_id=config.node_id, listen=config.raft_listen,
                                           accept_unknown_senders=True))
        raft = RaftConfig(election_ticks=config.election_ticks,
                          heartbeat_ticks=config.heartbeat_ticks)
        self.manager = ReplicaManager(node_id=config.node_id, bus=self.bus, raft_config=raft,
                                      tick_ms=config.tick_ms)
        self.controller = ControllerService(node_id=config.node_id,
                                            session_timeout_ms=config.session_timeout_ms)
        self.leaders: dict[int, tuple[int, int]] = {}  # group -> (leader node, term)
        # group -> the last leader this broker knew of (kept when that leadership ends), for
        # Metadata while no new leader is known: see partition_leadership.
        self.last_leaders: dict[int, tuple[int, int]] = {}
        # group -> monotonic time its remote last leader stopped listing it (see _leader_hint)
        self._last_leader_gone_s: dict[int, float] = {}
        self.led_by: dict[int, set[int]] = {}  # node -> groups it reported leading
        self.by_partition: dict[tuple[str, int], int] = {}  # (topic, partition) -> group id
        self.peer_last_heard: dict[int, float] = {}
        self._dead_peers: set[int] = set()
        self._peer_incarnations: dict[int, int] = {}
        self._leaders_owed = False  # a peer (re)started: our next heartbeat lists our leaders
        self._leaders_heard: set[int] = set()  # peers whose list of leaderships reached us
        self._stopping = False  # shutting down: our heartbeats say so
        # Peers whose last heartbeat said they are stopping or their metadata log failed:
        # never a leadership target (a later heartbeat without the flag, e.g. after a
        # restart, clears it).
        self._unfit_peers: set[int] = set()
        self._led_version = 0  # bumped when a local group gains or loses leadership
        self._repairs: dict[int, int] = {}  # group -> reopens after damage (<= REPAIRS_MAX)
        # A peer is presumed dead after an election timeout without a broker heartbeat.
        self._peer_timeout_s = config.election_ticks * config.tick_ms / 1000
        self._last_peer_check_s = 0.0  # monotonic time of the last _check_peers
        self.isr_reported: dict[int, list[int]] = {}  # group -> ISR its leader last reported
        self._requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._request_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        self.api: Any = None
        self.groups = GroupCoordinator(self)  # consumer groups whose offsets partition we lead

    @property
    def raft_address(self) -> str:
        """Where peers reach our bus: our controller-voter entry when we are a voter (the
        bind address, e.g. 0.0.0.0:9093 in a container, is not reachable from elsewhere)."""
        return self.config.controller_voters.get(self.node_id, self.config.raft_listen)

    # ---- startup ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Raises StartupError when the metadata log cannot be opened (a broker without it
        can serve nothing: it exits, like a Kafka broker whose metadata log dir failed), and
        OSError when a port cannot be bound."""
        controller_log, fresh = self._open_controller_log()  # first: nothing to undo if it fails
        try:
            self.bus.set_handlers(on_message=self._on_peer_message,
                                  on_unreachable=self.manager.on_peer_unreachable)
            await self.bus.start()
        except BaseException:
            controller_log.close(sync=False)
            raise
        self.bus.set_peers(dict(self.config.controller_voters))
        self.manager.role_listeners.append(self._on_local_role)
        self.manager.role_listeners.append(self.groups.on_role)
        self.manager.offline_listeners.append(self._on_replica_offline)
        self.manager.peer_alive = self.peer_alive
        self.manager.leader_claim = lambda group: self.leaders.get(group, (0, 0))
        self.controller.listeners.append(self._on_metadata_changes)
        await self.manager.start()
        try:
            self._add_controller(controller_log, fresh)
        except StartupError:
            await self.manager.stop()
            await self.bus.stop()
            raise
        from broker.api.handlers import KafkaApi
        from broker.api.connection import ConnectionStats, KafkaConnection

        self.api = KafkaApi(self)
        self._spawn(self._heartbeat_loop(), "broker-heartbeats")
        await self._hear_peer_leaders()
        stats = ConnectionStats()
        host, _, port = self.config.listen.rpartition(":")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: KafkaConnection(self.api.dispatch,
                                    request_bytes_max=self.config.request_bytes_max,
                                    inflight_requests_max=self.config.inflight_requests_max,
                                    stats=stats),
            host, int(port), reuse_address=True)
        self.groups.start()
        log.info("broker %d serving Kafka on %s, peers on %s", self.node_id,
                 self.config.listen, self.config.raft_listen)

    async def _hear_peer_leaders(self) -> None:
        """Before the client port opens, give each peer that answers the moment it takes to
        list the partitions it leads (it does on hearing our new incarnation), so that our
        first Metadata answers name leaders: a restarted broker otherwise answered "no leader"
        for every partition it does not lead until the peers' next full lists, up to
        LEADERS_FULL_S (librdkafka's watermark query fails on that at once). A peer not heard
        from within a few heartbeats is taken for down; the whole wait is bounded."""
        interval_s = self.config.broker_heartbeat_ms / 1000
        started_s = time.monotonic()
        while (now := time.monotonic()) - started_s < LEADERS_WAIT_MAX_S:
            unheard_ok = now - started_s < LEADERS_WAIT_UNHEARD_BEATS * interval_s
            waiting = [p for p in self.bus.peers() if p != self.node_id
                       and p not in self._leaders_heard
                       and (self.peer_alive(p) or unheard_ok)]
            if not waiting:
                return
            await asyncio.sleep(interval_s / 4)
        log.info("opening the client port without leaderships from brokers %s", waiting)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _log_config(self) -> LogConfig:
        return LogConfig(segment_bytes_max=self.config.segment_bytes_max,
                         fsync_policy="always" if self.config.fsync_policy == "always"
                         else "interval_ms",
                         fsync_interval_ms=self.config.fsync_interval_ms)

    def _open_log(self, directory: Path, voters: frozenset[int], *,
                  trust_summaries: bool = True) -> tuple[PartitionLog, bool]:
        config = self._log_config()
        if not trust_summaries:
            config = dataclasses.replace(config, trust_segment_summaries=False)
        plog = PartitionLog(directory, config)
        fresh = plog.initial_state() is None
        if fresh:
            # Not synced here: until the first election persists a term, losing this bootstrap
            # state in a crash only means bootstrapping again from the same metadata.
            plog.set_hard_state(HardState(term=0, vote=0, commit=0, conf=ConfState(voters=voters)))
        return plog, fresh

    def _open_controller_log(self) -> tuple[PartitionLog, bool]:
        directory = self.data_dir / METADATA_LOG_DIR
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Every segment scanned: the whole log is replayed into the controller's image
            # right after (so trusting summaries saves nothing), and damage a replay met
            # inside a trusted segment would stop the start (a broker serves nothing without
            # its metadata), where a scan repairs it by the recovery rules.
            return self._open_log(directory, frozenset(self.config.controller_voters),
                                  trust_summaries=False)
        except (OSError, LogError) as e:  # e.g. ENOSPC while recovery repairs a torn tail
            raise StartupError(f"cannot open the metadata log in {directory}: {e}") from e

    def _add_controller(self, plog: PartitionLog, fresh: bool) -> None:
        """Raises StartupError (the log closed) when reading the log fails."""
        try:
            replica = self.manager.add(group_id=CONTROLLER_GROUP_ID, topic="__cluster_metadata",
                                       partition=0, log_=plog,
                                       on_committed=self.controller.on_committed, applied=0)
        except (OSError, LogError, StorageStateError) as e:  # e.g. EIO replaying batches
            plog.close(sync=False)
            raise StartupError(f"cannot read the metadata log in {plog.directory}: {e}") from e
        self.controller.replica = replica
        if fresh and len(self.config.controller_voters) == 1:
            replica.node.campaign()

    def _on_replica_offline(self, replica: Replica) -> None:
        """A local replica failed on a storage error (ReplicaManager offline listener). For
        the metadata replica, the controller's image freezes at what was applied: from now on
        this broker refuses what needs the image (see broker.api.handlers), stops registering
        with the controller (which fences it, so the other brokers stop listing it), and hands
        off the leaderships it still holds, until a restart reopens the log. Exiting instead
        would turn a transient full disk into a crash; Kafka shuts such a broker down, and
        this is the nearest a running process gets to that."""
        if replica is not self.controller.replica:
            if not isinstance(replica.failure, LogDamageError):
                return
            if self._sole_voter(replica.node.conf.voters):
                self._keep_damaged_offline(replica.group_id, replica.name)
            else:
                self._schedule_repair(replica.group_id)
            return
        reason = f"broker {self.node_id}'s metadata log is offline after a storage error"
        self.controller.go_offline(reason)
        log.error("%s: refusing metadata requests and leaving the cluster's live brokers "
                  "until restarted", reason)

    # ---- metadata -> local replicas --------------------------------------------------------
    def _on_metadata_changes(self, changes: list[Change]) -> None:
        for change in changes:
            match change:
                case PartitionAdded(partition=p):
                    self.by_partition[(p.topic, p.partition)] = p.group_id
                    if self.node_id in p.replicas:
                        self._create_replica(p)
                case PartitionRemoved(partition=p):
                    self.by_partition.pop((p.topic, p.partition), None)
                    self.leaders.pop(p.group_id, None)
                    self.last_leaders.pop(p.group_id, None)
                    self._last_leader_gone_s.pop(p.group_id, None)
                    self._delete_replica(p)
                case BrokerChanged() | BrokerRemoved():
                    self._update_peers()
                case _:
                    pass

    def _replica_dir(self, p: PartitionInfo) -> Path:
        return self.data_dir / "partitions" / f"{p.topic}-{p.partition}.g{p.group_id}"

    def _create_replica(self, p: PartitionInfo) -> None:
        """Open the log and add the replica. Runs inside the metadata apply: never raises.
        Making the replica reads the log (producer state): damage met there latched the log
        and dropped the segment's summary, so one reopen scans that segment and repairs it by
        the recovery rules (not when this broker is the group's only voter: see
        _keep_damaged_offline). A second failure leaves the replica offline until a restart."""
        if p.group_id in self.manager.replicas:
            return
        for attempt in (1, 2):
            try:
                plog, fresh = self._open_log(self._replica_dir(p), frozenset(p.replicas))
            except (OSError, LogError) as e:
                log.error("replica of group %d (%s-%d) is offline: cannot open its log: %s",
                          p.group_id, p.topic, p.partition, e)
                return
            try:
                replica = self.manager.add(group_id=p.group_id, topic=p.topic,
                                           partition=p.partition, log_=plog)
            except Exception as e:
                state = plog.initial_state()
                plog.close(sync=False)  # as a crash would: nothing of it was acknowledged
                if not isinstance(e, (OSError, LogError)):  # a bug: a reopen would meet it again
                    log.exception("replica of group %d (%s-%d) is offline: creating it failed",
                                  p.group_id, p.topic, p.partition)
                    return
                sole = state is not None and self._sole_voter(state.conf.voters)
                again = attempt == 1 and not (sole and isinstance(e, LogDamageError))
                log.error("replica of group %d (%s-%d): reading its log failed (%s): %s",
                          p.group_id, p.topic, p.partition,
                          "reopening it" if again else "offline", e)
                if not again:
                    if sole and isinstance(e, LogDamageError):
                        self._keep_damaged_offline(p.group_id, f"{p.topic}-{p.partition}")
                    return
                continue
            if fresh and p.preferred_leader == self.node_id:
                replica.node.campaign()
            return

    def _sole_voter(self, voters: frozenset[int]) -> bool:
        return voters == frozenset({self.node_id})

    def _keep_damaged_offline(self, group_id: int, name: str) -> None:
        """Damage in the log of a group whose only voter is this broker: reopening the log
        would repair it by cutting it at the damage, and every later entry would be lost for
        good, since no other replica holds them to fetch again. Offline until an operator
        decides (a restart opens the log and cuts it)."""
        log.error("replica of group %d (%s) stays offline: its log is damaged and this broker "
                  "is the group's only voter, so no other replica can restore what a repair "
                  "would cut; restarting the broker repairs it by cutting the log at the damage",
                  group_id, name)

    def _schedule_repair(self, group_id: int) -> None:
        """A read met damage in the replica's log (now closed): reopen it, which repairs it
        as a restart would (the Raft node is made anew from the reopened log and hard state;
        what the log lost is fetched again from the leader)."""
        done = self._repairs.get(group_id, 0)
        if done >= REPAIRS_MAX:
            log.error("replica of group %d stays offline: %d repairs already", group_id, done)
            return
        self._repairs[group_id] = done + 1
        self._spawn(self._repair(group_id), f"repair-{group_id}")

    async def _repair(self, group_id: int) -> None:
        await asyncio.sleep(REPAIR_DELAY_S)
        p = self.controller.state.group(group_id)
        if self._stopping or p is None or self.node_id not in p.replicas:
            return  # shutting down, or the partition is gone or moved meanwhile
        log.info("reopening the replica of group %d (%s-%d) to repair its log",
                 group_id, p.topic, p.partition)
        self._create_replica(p)

    def _delete_replica(self, p: PartitionInfo) -> None:
        try:
            self.manager.remove(p.group_id)
        except (OSError, LogError) as e:  # its last sync failed; the files go anyway
            log.error("closing the replica of group %d (%s-%d): %s", p.group_id, p.topic,
                      p.partition, e)
        shutil.rmtree(self._replica_dir(p), ignore_errors=True)

    def _update_peers(self) -> None:
        peers = dict(self.config.controller_voters)
        for info in self.controller.state.brokers.values():
            peers[info.node_id] = info.raft_address
        self.bus.set_peers(peers)

    # ---- leadership map ----------------------------------------------------------------------
    def _on_local_role(self, replica: Replica) -> None:
        self._led_version += 1
        g = replica.group_id
        if replica.leader_ready:
            self.leaders[g] = self.last_leaders[g] = (self.node_id, replica.node.term)
            self._last_leader_gone_s.pop(g, None)
            self.led_by.setdefault(self.node_id, set()).add(g)
        elif self.leaders.get(g, (0, 0))[0] == self.node_id:
            del self.leaders[g]
            self.led_by.get(self.node_id, set()).discard(g)

    def leader_of(self, group_id: int) -> int:
        """Best knowledge of the group's leader (0: unknown)."""
        replica = self.manager.replicas.get(group_id)
        if replica is not None and replica.leader_ready:
            return self.node_id
        leader, _term = self.leaders.get(group_id, (0, 0))
        if leader == self.node_id and (replica is None or not replica.leader_ready):
            return 0
        return leader

    def partition_leadership(self, group_id: int, replicas: tuple[int, ...]
                             ) -> tuple[int, int, list[int]]:
        """(leader or 0, leader epoch or -1, in-sync replicas) as this broker knows them."""
        replica = self.manager.replicas.get(group_id)
        if replica is not None and replica.leader_ready:
            return self.node_id, replica.node.term, self._local_isr(replica)
        leader, term = self.leaders.get(group_id, (0, -1))
        if leader == self.node_id or leader == 0:
            leader, term = self._leader_hint(group_id, replica)
            if leader == 0:
                return 0, -1, []
        isr = self.isr_reported.get(group_id) or [r for r in replicas if r not in self.offline(replicas)]
        return leader, term, isr

    def _leader_hint(self, group_id: int, replica: Replica | None) -> tuple[int, int]:
        """While a leadership changes hands (the balancer's moves, a hand-off at shutdown),
        no broker has yet reported the new leader ready: name the leader our replica follows
        in its term, else the last leader we knew if it is still up and not leaving, as a
        Kafka broker's metadata cache names the previous leader until the controller's change
        reaches it. A client sent there is answered NOT_LEADER_OR_FOLLOWER and looks again;
        "no leader" (-1) is kept for a partition whose leader is gone, because some clients
        take it badly in the middle of a healthy cluster (kafka-python's end_offsets drops
        such a partition from its answer). (0, -1): no hint.

        The hint must not outlive the handover: ourselves only while our replica still runs
        (one taken offline by a storage error, or removed, leads nothing again), a peer only
        for about an election timeout after it stopped listing the group (by then the group
        has elected a new leader, whose listing replaces the hint, or it has none)."""
        if replica is not None and replica.node.leader_id not in (0, self.node_id):
            return replica.node.leader_id, replica.node.term
        leader, term = self.last_leaders.get(group_id, (0, -1))
        if leader == self.node_id:
            fit = (replica is not None and replica.failure is None  # (None: offline, gone)
                   and not self._stopping and self.controller.offline_reason is None)
        else:
            gone_s = self._last_leader_gone_s.get(group_id)
            fit = (self._can_take_leadership(leader)
                   and leader not in self.offline((leader,))
                   and (gone_s is None or time.monotonic() - gone_s < self._peer_timeout_s))
        return (leader, term) if fit else (0, -1)

    def _local_isr(self, replica: Replica) -> list[int]:
        """Replicas caught up to the commit index and heard from lately (ours: the leader)."""
        node = replica.node
        isr = []
        for member in sorted(node.conf.voters):
            if member == self.node_id:
                isr.append(member)
                continue
            pr = node.progress(member)
            if pr is not None and pr.recent_active and pr.match >= node.commit_index:
                isr.append(member)
        return isr

    def offline(self, replicas: tuple[int, ...]) -> list[int]:
        brokers = self.controller.state.brokers
        return [r for r in replicas if r in brokers and not brokers[r].alive]

    def _heard_leaders(self, src: int, groups: list[tuple[int, int, list[int]]]) -> None:
        reported: set[int] = set()
        for g, term, isr in groups:
            reported.add(g)
            self.isr_reported[g] = isr
            _known, known_term = self.leaders.get(g, (0, 0))
            local = self.manager.replicas.get(g)
            if local is not None and local.node.term > term:
                continue  # we know of a newer term: that leadership is over
            if term >= known_term:
                self.leaders[g] = self.last_leaders[g] = (src, term)
                self._last_leader_gone_s.pop(g, None)
        now = time.monotonic()
        for g in self.led_by.get(src, set()) - reported:
            if self.leaders.get(g, (0, 0))[0] == src:
                del self.leaders[g]
                self._last_leader_gone_s[g] = now  # see _leader_hint
                if g in self.manager.replicas:
                    self.manager.mark(g)  # its followers must run their election timers
        self.led_by[src] = reported

    # ---- peer messages -----------------------------------------------------------------------
    def _on_peer_message(self, src: int, frames: list[bytes | memoryview]) -> None:
        kind = message_type(frames)
        if kind != T_BROKER_HEARTBEAT and src not in self.bus.peers():
            self.manager.dropped_messages += 1  # strangers may only announce themselves
            return
        if kind not in CONTROL_TYPES:
            self.manager.on_peer_message(src, frames)
            return
        try:
            kind, body = decode_control(frames)
        except PeerMessageError:
            self.manager.dropped_messages += 1
            return
        try:
            if kind == T_BROKER_HEARTBEAT:
                self._on_heartbeat(src, body)
            elif kind == T_REQUEST:
                self._spawn(self._serve_request(src, body), "controller-request")
            elif kind == T_RESPONSE:
                future = self._requests.pop(int(body["id"]), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(body)
        except (KeyError, TypeError, ValueError) as e:
            self.manager.dropped_messages += 1
            log.debug("dropped a bad control message from %d: %s", src, e)

    def peer_alive(self, node: int) -> bool:
        heard = self.peer_last_heard.get(node)
        return heard is not None and time.monotonic() - heard < self._peer_timeout_s

    def _check_peers(self) -> None:
        """A peer broker that went silent: every group may need its election timer again.
        Silence is counted in time this loop was running: when the loop itself stalled (an
        overloaded broker, thousands of replicas created at once, a SIGSTOP), the peers'
        heartbeats may sit unread in the socket, so the stall is not held against them.
        Declaring live peers dead makes every group they lead elect at once, which adds load
        and stalls the loop again."""
        now = time.monotonic()
        interval_s = self.config.broker_heartbeat_ms / 1000
        last, self._last_peer_check_s = self._last_peer_check_s, now
        stall_s = now - last - interval_s if last else 0.0
        if stall_s > interval_s:
            for node, heard in self.peer_last_heard.items():
                self.peer_last_heard[node] = min(heard + stall_s, now)
        for node, heard in self.peer_last_heard.items():
            dead = now - heard >= self._peer_timeout_s
            if dead and node not in self._dead_peers:
                self._dead_peers.add(node)
                log.info("broker %d is silent; resuming elections for its groups", node)
                for replica in self.manager.replicas.values():
                    if replica.node.leader_id == node:
                        replica.node.forget_leader()
                self.manager.wake_all()
            elif not dead:
                self._dead_peers.discard(node)

    def _on_heartbeat(self, src: int, body: dict[str, Any]) -> None:
        self.peer_last_heard[src] = time.monotonic()  # alive for Raft either way
        if body.get("stopping") or body.get("metadata_offline") or body.get("starting"):
            self._unfit_peers.add(src)
        else:
            self._unfit_peers.discard(src)
        # A starting broker is not registered yet (its client port is not open), and one whose
        # metadata log is offline is left for the controller to fence.
        if not body.get("metadata_offline") and not body.get("starting"):
            self.controller.heard_from(src, str(body["client"]), str(body["raft"]),
                                       int(body["inc"]))
        incarnation = int(body["inc"])
        known = self._peer_incarnations.get(src)
        if known != incarnation:  # it (re)started: it knows no leaders yet
            self._peer_incarnations[src] = incarnation
            self._leaders_owed = True
            if known is not None:
                self.bus.reconnect(src)  # our socket may be waiting out a reconnect backoff
        if "leaders" in body:
            self._leaders_heard.add(src)
            self._heard_leaders(src, [(int(g), int(t), [int(n) for n in isr])
                                      for g, t, isr in body["leaders"]])

    async def _heartbeat_loop(self) -> None:
        """Every broker_heartbeat_ms: tell every peer we are alive; the groups we lead go
        along when they changed, and in full (with ISRs) every LEADERS_FULL_S."""
        interval_s = self.config.broker_heartbeat_ms / 1000
        sent_version, full_at = -1, 0.0
        balanced_at = time.monotonic()
        while True:
            now = time.monotonic()
            body = self._heartbeat_body()
            if not self.controller.online:
                self._hand_off_leaderships()  # see _on_replica_offline
            if (sent_version != self._led_version or now - full_at >= LEADERS_FULL_S
                    or self._leaders_owed):
                body["leaders"] = [[g, r.node.term, self._local_isr(r)]
                                   for g, r in self.manager.replicas.items() if r.leader_ready]
                sent_version, full_at, self._leaders_owed = self._led_version, now, False
            frames = encode_control(T_BROKER_HEARTBEAT, body)
            for peer in self.bus.peers():
                if peer != self.node_id:
                    self.bus.send(peer, frames)
            if self.controller.online and self._server is not None:
                self.controller.heard_from(self.node_id, self.config.advertised,
                                           self.raft_address, self.incarnation)
            self._check_peers()
            for record in self.controller.duties():
                self._spawn(self._propose_quietly(record), "controller-duty")
            self._add_metadata_learners()
            if now - balanced_at >= LEADER_BALANCE_INTERVAL_S:
                balanced_at = now
                self._balance_leaders()
            await asyncio.sleep(interval_s)

    def _heartbeat_body(self) -> dict[str, Any]:
        """Who we are, and whether our metadata log is offline, we are shutting down or still
        starting (client port not open yet)."""
        body: dict[str, Any] = {"inc": self.incarnation, "client": self.config.advertised,
                                "raft": self.raft_address}
        if not self.controller.online:
            body["metadata_offline"] = True  # see _on_replica_offline
        if self._stopping:
            body["stopping"] = True  # see shutdown
        if self._server is None:
            body["starting"] = True  # see _hear_peer_leaders
        return body

    def _add_metadata_learners(self) -> None:
        """On the controller leader: a registered broker that is not a controller voter
        follows the metadata log as a Raft learner of group 0 (one change at a time)."""
        replica = self.controller.replica
        if replica is None or not self.controller.is_leader:
            return
        node = replica.node
        members = node.conf.voters | node.conf.learners
        for info in sorted(self.controller.state.brokers.values(), key=lambda i: i.node_id):
            if info.node_id not in members and info.alive and self.peer_alive(info.node_id):
                try:
                    result = node.propose_conf_change(
                        ConfChange(kind=ConfChangeKind.ADD_LEARNER, node=info.node_id))
                except ConfChangeError as e:
                    log.warning("cannot add broker %d to the metadata group: %s", info.node_id, e)
                    return
                if result is ProposeResult.ACCEPTED:
                    log.info("broker %d follows the metadata log as a learner", info.node_id)
                    self.manager.mark(replica.group_id)
                return

    def _balance_leaders(self) -> None:
        """On the controller leader: move leaderships back toward preferred leaders."""
        if not self.controller.is_leader:
            return
        alive = [n for n in self.controller.state.live_brokers()  # never one that is stopping
                 if (n == self.node_id and not self._stopping) or self._can_take_leadership(n)]
        current = {g: leader for g, (leader, _t) in self.leaders.items() if g != CONTROLLER_GROUP_ID}
        for group_id, target in leader_balance_moves(self.controller.state, current, alive,
                                                     moves_max=LEADER_MOVES_MAX):
            leader = current[group_id]
            if leader == self.node_id:
                self._transfer_local(group_id, target)
            else:
                request = {"id": 0, "op": "transfer_leader", "args": {"group": group_id,
                                                                      "target": target}}
                self.bus.send(leader, encode_control(T_REQUEST, request))

    def _transfer_local(self, group_id: int, target: int) -> None:
        replica = self.manager.replicas.get(group_id)
        if replica is not None and replica.leader_ready and not replica.node.lead_transferee:
            replica.node.transfer_leadership(target)
            self.manager.mark(group_id)

    async def _propose_quietly(self, record: Any) -> None:
        try:
            await self.controller.propose(record)
        except KafkaError as e:
            log.debug("controller proposal %s not applied: %s", type(record).__name__, e)

    # ---- controller requests -------------------------------------------------------------------
    async def controller_request(self, op: str, args: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
        """Run a controller operation on the controller leader, wherever it is."""
        if self.controller.offline_reason is not None:
            # Which broker leads the metadata group is metadata too: at once, the code that
            # sends Kafka clients to look the controller up again (elsewhere: this broker
            # refuses Metadata).
            raise KafkaError(ErrorCode.NOT_CONTROLLER, self.controller.offline_reason)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                return await self._controller_request_once(op, args, deadline)
            except KafkaError as e:
                if e.code not in (ErrorCode.NOT_CONTROLLER, ErrorCode.REQUEST_TIMED_OUT) or (
                        time.monotonic() + 0.1 >= deadline):
                    raise
            await asyncio.sleep(0.1)

    async def _controller_request_once(self, op: str, args: dict[str, Any],
                                       deadline: float) -> dict[str, Any]:
        if self.controller.is_leader:
            return await self.controller.handle(op, args)
        leader = self.controller.leader_id
        if leader in (0, self.node_id):
            raise KafkaError(ErrorCode.NOT_CONTROLLER, "no controller leader known yet")
        if len(self._requests) >= CONTROLLER_REQUESTS_MAX:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, "too many controller requests pending")
        request_id = next(self._request_ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        self.bus.send(leader, encode_control(T_REQUEST, {"id": request_id, "op": op, "args": args}))
        try:
            async with asyncio.timeout(max(0.05, min(2.0, deadline - time.monotonic()))):
                body = await future
        except TimeoutError:
            raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, "the controller did not answer") from None
        finally:
            self._requests.pop(request_id, None)
        code = ErrorCode(int(body.get("error_code", 0)))
        if code != ErrorCode.NONE:
            raise KafkaError(code, str(body.get("message", "")))
        result = body.get("result", {})
        return result if isinstance(result, dict) else {}

    async def _serve_request(self, src: int, body: dict[str, Any]) -> None:
        request_id = int(body["id"])
        if body.get("op") == "transfer_leader":  # from the controller leader; no answer
            args = body.get("args", {})
            self._transfer_local(int(args["group"]), int(args["target"]))
            return
        try:
            if not self.controller.is_leader:
                raise KafkaError(ErrorCode.NOT_CONTROLLER, "not the controller leader")
            args = body.get("args", {})
            result = await self.controller.handle(str(body["op"]), args if isinstance(args, dict) else {})
            reply: dict[str, Any] = {"id": request_id, "error_code": 0, "result": result}
        except KafkaError as e:
            reply = {"id": request_id, "error_code": int(e.code), "message": e.message}
        except (KeyError, TypeError, ValueError) as e:
            reply = {"id": request_id, "error_code": int(ErrorCode.INVALID_REQUEST),
                     "message": str(e)}
        self.bus.send(src, encode_control(T_RESPONSE, reply))

    # ---- shutdown ----------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Stop accepting, hand leaderships off, flush, stop. Bounded by shutdown_timeout_ms."""
        if self._server is not None:
            self._server.close()
        self._announce_stopping()
        try:
            async with asyncio.timeout(self.config.shutdown_timeout_ms / 1000 * 0.6):
                await self._transfer_leaderships()
        except TimeoutError:
            log.warning("some leaderships were not handed off before the shutdown deadline")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.groups.stop()
        await self.manager.stop()
        await self.bus.stop()

    def _announce_stopping(self) -> None:
        """Say we are stopping in a heartbeat now (and in every later one): peers that stop
        too then neither hand us leaderships nor wait for us to take theirs. Now, because
        with nothing to hand off our heartbeat loop ends before its next beat."""
        self._stopping = True
        frames = encode_control(T_BROKER_HEARTBEAT, self._heartbeat_body())
        for peer in self.bus.peers():
            if peer != self.node_id:
                self.bus.send(peer, frames)

    async def _transfer_leaderships(self) -> None:
        while self.bus.peers() and self._hand_off_leaderships():
            await asyncio.sleep(self.config.tick_ms / 1000)

    def _hand_off_leaderships(self) -> bool:
        """Start a leadership transfer for every local group we lead (one at a time per
        group) to a peer that can take it; returns whether a group we lead still has such a
        peer. When none has, waiting cannot help: a transfer to a broker that stopped never
        completes, and one to a broker that is stopping too would only bounce (when all
        brokers stop at once, each would otherwise wait out its shutdown deadline)."""
        waiting = False
        for replica in self.manager.replicas.values():
            node = replica.node
            if node.role is not Role.LEADER:
                continue
            target = self._transfer_target(replica)
            if not target:
                continue
            waiting = True
            if not self._can_take_leadership(node.lead_transferee):  # none, or it went away
                node.transfer_leadership(target)
                self.manager.mark(replica.group_id)
        return waiting

    def _can_take_leadership(self, node: int) -> bool:
        """A peer that is alive, not shutting down and with its metadata log online."""
        return (node not in (0, self.node_id) and self.peer_alive(node)
                and node not in self._unfit_peers)

    def _transfer_target(self, replica: Replica) -> int:
        """The most caught-up voter that can take leadership (0: none)."""
        best, best_match = 0, -1
        for node in sorted(replica.node.conf.voters):
            if not self._can_take_leadership(node):
                continue
            pr = replica.node.progress(node)
            if pr is not None and pr.match > best_match:
                best, best_match = node, pr.match
        return best


def run_broker(config: BrokerConfig) -> int:
    """Run a broker until SIGTERM/SIGINT (graceful); a second signal forces exit."""
    logging.basicConfig(level=os.environ.get("RAFTLOG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)

    async def main() -> int:
        broker = Broker(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = {"count": 0}

        def on_signal() -> None:
            signals["count"] += 1
            if signals["count"] > 1:
                log.warning("second signal: exiting now")
                os._exit(1)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await broker.start()
        except (OSError, StartupError) as e:
            print(f"raftlog serve: cannot start: {e}", file=sys.stderr)
            return 1
        await stop.wait()
        log.info("shutting down")
        await broker.shutdown()
        return 0

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.Runner()
    with runner:
        return runner.run(main())
