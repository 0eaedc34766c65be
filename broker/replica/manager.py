"""ReplicaManager: hosts every local Raft group of a broker and drives them.

Per wake-up (a "cycle"), for each group with work, in the durability order of
`broker.raft.messages`: take its Ready, write log and hard state, send the messages that may
leave at once; then sync every log written this cycle together (group commit: one fsync per
log, the fsyncs run concurrently in a small thread pool while the event loop keeps serving);
then send the messages that promised durability, apply committed entries, and advance.
Messages that arrive while a sync is in flight are stepped at once and handled next cycle.

Storage errors. Every call that may touch a replica's log (stepping a message, a tick, taking a
Ready, writing it, syncing, applying, a read by a request handler) is guarded: a LogError or
OSError takes that replica offline (`_fail_replica`) and leaves the others running. Offline
listeners hear why (`Replica.failure`): a LogDamageError (a read met bytes failing their CRC)
can be repaired by opening the log again, which the broker does.

Any other exception while driving one replica is a bug, or a storage failure reaching us in a
shape we did not foresee (a log that latched read-only and shrank answers reads of the cut
range with the Raft storage's LookupError): it takes that one replica offline too, logged with
its traceback. The loops that drive every group never end on one replica's error: one broken
partition must not stop the broker driving all the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from broker.raft.core import RaftConfig, RaftNode
from broker.raft.messages import Entry, Heartbeat, HeartbeatResponse, Message, Ready, Role
from broker.replica.codec import PeerMessageError, decode_message, encode_message
from broker.replica.partition import Replica
from broker.storage import LogError, PartitionLog
from broker.transport import PeerBus

__all__ = ["ReplicaManager"]

log = logging.getLogger(__name__)

SYNC_THREADS = 2
HOUSEKEEPING_INTERVAL_S = 0.5
STATS_LOG_ROUNDS = 20  # log replica stats every 10 s
WRITTEN_WATCH_MS = 15_000  # > the log's commit checkpoint and fsync intervals
QUIESCE_AFTER_TICKS = 6  # quiet this long (several heartbeats carried the final commit)


class ReplicaManager:
    def __init__(self, *, node_id: int, bus: PeerBus, raft_config: RaftConfig, tick_ms: int,
                 seed: int | None = None) -> None:
        self.node_id = node_id
        self.bus = bus
        self.raft_config = raft_config
        self.tick_ms = tick_ms
        self.replicas: dict[int, Replica] = {}
        self.dropped_messages = 0
        self._rng = random.Random(seed if seed is not None else node_id * 7919)
        self._dirty: set[int] = set()
        self._ticking: set[int] = set()  # groups not quiesced
        self._written: dict[int, int] = {}
        self._unreachable_at: dict[int, float] = {}  # peer -> monotonic time last reported  # group -> wall ms of its last write (housekeeping)
        # Broker-level knowledge, set by the broker: is a peer broker alive, and who claims
        # leadership of a group at which term.
        self.peer_alive: Callable[[int], bool] = lambda node: False
        self.leader_claim: Callable[[int], tuple[int, int]] = lambda group: (0, 0)
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="raftlog-fsync")
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self.role_listeners: list[Callable[[Replica], None]] = []
        # Told when a replica goes offline after a storage error (it is already removed).
        self.offline_listeners: list[Callable[[Replica], None]] = []

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        self._tasks = [asyncio.create_task(self._cycle_loop(), name="replica-cycles"),
                       asyncio.create_task(self._tick_loop(), name="replica-ticks"),
                       asyncio.create_task(self._housekeeping_loop(), name="replica-housekeeping")]

    async def stop(self) -> None:
        """Let the running cycle finish (an fsync may be in flight in the pool: cancelling it
        mid-way would let close() race the sync thread), then close every log."""
        self._running = False
        self._wake.set()
        for t in self._tasks[1:]:  # ticks and housekeeping; the cycle task ends by itself
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("replica task failed during stop")
        self._tasks = []
        self._pool.shutdown(wait=True)
        for r in self.replicas.values():
            try:
                r.close()
            except Exception as e:  # a latched log cannot write its last hard state
                log.error("closing %s: %s", r.name, e)
        self.replicas.clear()

    # ---- groups -------------------------------------------------------------------------
    def add(self, *, group_id: int, topic: str, partition: int, log_: PartitionLog,
            on_committed: Callable[[Replica, Entry], None] | None = None,
            applied: int | None = None) -> Replica:
        assert group_id not in self.replicas, group_id
        rng = random.Random(self._rng.getrandbits(64))
        state = log_.initial_state()
        assert state is not None, "the caller bootstraps the group's hard state"
        node = RaftNode(node_id=self.node_id, storage=log_, rng=rng, config=self.raft_config,
                        applied=state.commit if applied is None else applied)
        replica = Replica(group_id=group_id, topic=topic, partition=partition, node=node,
                          log=log_, on_committed=on_committed, on_role=self._role_changed)
        replica.on_work = lambda: self.mark(group_id)
        replica.on_failure = lambda exc: self._fail_later(replica, exc)
        self.replicas[group_id] = replica
        self.mark(group_id)
        return replica

    def remove(self, group_id: int) -> Replica | None:
        replica = self.replicas.pop(group_id, None)
        self._dirty.discard(group_id)
        self._ticking.discard(group_id)
        if replica is not None:
            replica.close()
        return replica

    def mark(self, group_id: int, *, active: bool = True) -> None:
        """The group may have a Ready: handle it this cycle; if `active`, tick it again.
        Heartbeats are not activity: a quiescing leader's last heartbeats (and their answers)
        must not wake the group they are putting to sleep."""
        self._dirty.add(group_id)
        self._wake.set()
        if active and group_id not in self._ticking:
            self._ticking.add(group_id)
            replica = self.replicas.get(group_id)
            if replica is not None:
                replica.idle_ticks = 0

    def wake_all(self) -> None:
        """Something every group may depend on changed (a peer broker died): tick them all."""
        for group_id in self.replicas:
            self.mark(group_id)

    def _quiet(self, replica: Replica) -> bool:
        """Whether the group needs no ticks: an idle leader whose followers hold everything
        and whose brokers are alive, or a follower whose leader's broker is alive and still
        claims the group in our term. Broker-level heartbeats watch liveness instead
        (CockroachDB's quiescence), so idle groups cost nothing per tick."""
        node = replica.node
        if node.role is Role.LEADER:
            last = node.last_index
            if not replica.leader_ready or node.lead_transferee or node.commit_index != last:
                return False
            for peer in node.conf.voters | node.conf.learners:
                if peer == self.node_id:
                    continue
                pr = node.progress(peer)
                if pr is None or pr.match != last or not self.peer_alive(peer):
                    return False
            return True
        if node.role is Role.FOLLOWER:
            leader = node.leader_id
            return bool(leader) and self.peer_alive(leader) and \
                self.leader_claim(replica.group_id) == (leader, node.term)
        return False

    def _role_changed(self, replica: Replica) -> None:
        for listener in self.role_listeners:
            listener(replica)

    # ---- inbound ------------------------------------------------------------------------
    def on_peer_message(self, src: int, frames: list[bytes | memoryview]) -> None:
        try:
            group, msg = decode_message(frames)
        except PeerMessageError as e:
            self.dropped_messages += 1
            log.debug("dropped a malformed message from node %d: %s", src, e)
            return
        replica = self.replicas.get(group)
        if replica is None or msg.src != src or msg.dst != self.node_id:
            self.dropped_messages += 1
            return
        try:
            replica.node.step(msg)
        except Exception as e:  # e.g. entries read for an answer met damage
            self._fail_replica(replica, e)
            return
        self.mark(group, active=not isinstance(msg, (Heartbeat, HeartbeatResponse)))

    def on_peer_unreachable(self, node: int) -> None:
        """The bus dropped an envelope for `node`: our leaders move it to Probe. The bus may
        say so on every flush while a peer is down, so this walks the groups at most once a
        tick per peer (Probe state already paces the appends in between)."""
        now = time.monotonic()
        if now - self._unreachable_at.get(node, -1e9) < self.tick_ms / 1000:
            return
        self._unreachable_at[node] = now
        for group_id, replica in self.replicas.items():
            if replica.node.role is Role.LEADER:
                replica.node.report_unreachable(node)
                self.mark(group_id, active=False)

    # ---- ticking ------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        interval_s = self.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._running:
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at, loop.time() - interval_s)  # after a stall, don't burst
            for group_id in list(self._ticking):
                replica = self.replicas.get(group_id)
                if replica is None:
                    self._ticking.discard(group_id)
                    continue
                try:
                    self._tick(replica)
                except Exception as e:  # that group alone: see the module docstring
                    self._fail_replica(replica, e)
            self._wake.set()

    def _tick(self, replica: Replica) -> None:
        replica.node.tick()
        self._dirty.add(replica.group_id)
        if self._quiet(replica):
            replica.idle_ticks += 1
            if replica.idle_ticks >= QUIESCE_AFTER_TICKS:
                self._ticking.discard(replica.group_id)
        else:
            replica.idle_ticks = 0

    # ---- the Ready cycle ----------------------------------------------------------------
    async def _cycle_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._running:
                return
            try:
                await self._cycle()
            except Exception:
                # Not one replica's error (those are caught per replica): still, the next
                # cycle must run, or no group on this broker makes progress any more.
                log.exception("replica cycle failed")

    async def _cycle(self) -> None:
        batch: list[tuple[Replica, Ready]] = []
        dirty, self._dirty = self._dirty, set()
        for group_id in dirty:
            replica = self.replicas.get(group_id)
            if replica is None:
                continue
            try:  # both read the entries to send
                if replica.node.has_ready():
                    batch.append((replica, replica.node.ready()))
            except Exception as e:
                self._fail_replica(replica, e)
        if not batch:
            return
        to_sync: list[PartitionLog] = []
        unwritten: dict[PartitionLog, Exception] = {}
        now_ms = int(time.time() * 1000)
        for replica, ready in batch:
            try:
                replica.write(ready)
                if ready.entries or ready.hard_state is not None:
                    self._written[replica.group_id] = now_ms
                self._send(replica.group_id, ready.messages)
            except Exception as e:  # latched, or a read met damage (a cut's walk)
                _log_failure(f"log {replica.log.directory} failed", e)
                replica.note_failure(e)
                unwritten[replica.log] = e
                continue
            if ready.must_sync or ready.committed:
                to_sync.append(replica.log)
        failed = {**unwritten, **await self._sync(to_sync)}
        for replica, ready in batch:
            if self.replicas.get(replica.group_id) is not replica:
                continue  # removed (or failed, maybe reopened) while syncing
            if replica.log in failed:
                self._fail_replica(replica, failed[replica.log])
                continue
            try:
                self._send(replica.group_id, ready.messages_after_persist)
                replica.finish(ready)  # may read the log (the offset a new leader starts at)
                replica.node.advance(ready)
                if replica.node.has_ready():  # (may read entries to send)
                    self.mark(replica.group_id)
            except Exception as e:
                self._fail_replica(replica, e)

    async def _sync(self, logs: list[PartitionLog]) -> dict[PartitionLog, Exception]:
        """flush() each log on the loop thread, then fsync them all concurrently off it.
        Returns the logs that failed, with why (they are latched read-only by the storage
        layer)."""
        failed: dict[PartitionLog, Exception] = {}
        pending: list[PartitionLog] = []
        for lg in logs:
            try:
                if lg.flush():
                    pending.append(lg)
            except Exception as e:
                _log_failure(f"log {lg.directory} failed", e)
                failed[lg] = e
        if not pending:
            return failed
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, lg.fsync) for lg in pending),
            return_exceptions=True)
        for lg, result in zip(pending, results):
            if isinstance(result, BaseException):
                _log_failure(f"fsync of {lg.directory} failed", result)
                failed[lg] = (result if isinstance(result, Exception)
                              else RuntimeError(f"fsync ended by {result!r}"))
        return failed

    def _fail_replica(self, replica: Replica, exc: Exception | None = None) -> None:
        """A storage failure (or another error driving it): the replica stops taking part (it
        must not acknowledge what it could not make durable, nor serve or ship what it cannot
        read). Kafka marks such a log dir offline the same way. A replica failed already (or
        replaced since) is left alone."""
        if exc is not None:
            replica.note_failure(exc)
        if self.replicas.get(replica.group_id) is not replica:
            return
        storage = isinstance(replica.failure, (LogError, OSError))
        log.error("replica of group %d (%s) is offline after %s: %s", replica.group_id,
                  replica.name, "a storage error" if storage else "an error",
                  replica.failure if storage else repr(replica.failure),
                  exc_info=None if storage or exc is None else exc)
        del self.replicas[replica.group_id]
        self._dirty.discard(replica.group_id)
        self._ticking.discard(replica.group_id)
        replica.close_failed()
        # Listeners run inside the loops that drive every group: one that raises must not end
        # them (nor keep the others from hearing it).
        for listener in [*self.role_listeners, *self.offline_listeners]:  # it leads nothing
            try:
                listener(replica)
            except Exception:
                log.exception("a listener failed on replica %s going offline", replica.name)

    def _fail_later(self, replica: Replica, exc: Exception) -> None:
        """A request handler's read failed: take the replica offline from the loop, not from
        inside the handler (listeners unload what the replica served, maybe the caller)."""
        replica.note_failure(exc)
        asyncio.get_running_loop().call_soon(self._fail_replica, replica)

    def stats(self) -> dict[str, int]:
        roles = {"leaders": 0, "followers": 0, "others": 0}
        for r in self.replicas.values():
            key = {Role.LEADER: "leaders", Role.FOLLOWER: "followers"}.get(r.node.role, "others")
            roles[key] += 1
        return {"groups": len(self.replicas), "ticking": len(self._ticking),
                "dropped_messages": self.dropped_messages, **roles}

    async def _housekeeping_loop(self) -> None:
        """Interval fsyncs and commit checkpoints (PartitionLog.maybe_sync), once a second at
        most per log; storage errors take the replica offline."""
        rounds = 0
        while self._running:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            rounds += 1
            if rounds % STATS_LOG_ROUNDS == 0:
                log.info("replicas: %s", self.stats())
            now_ms = int(time.time() * 1000)
            for group_id, written_ms in list(self._written.items()):
                replica = self.replicas.get(group_id)
                if replica is None or now_ms - written_ms > WRITTEN_WATCH_MS:
                    del self._written[group_id]  # its checkpoint and interval sync are done
                    continue
                try:
                    replica.log.maybe_sync(now_ms)
                except Exception as e:
                    _log_failure(f"periodic sync of {replica.name} failed", e)
                    self._fail_replica(replica, e)

    def _send(self, group_id: int, messages: Iterable[Message]) -> None:
        for m in messages:
            self.bus.send(m.dst, encode_message(group_id, m))


def _log_failure(what: str, exc: BaseException) -> None:
    """A storage error says all in its message; anything else gets its traceback."""
    if isinstance(exc, (LogError, OSError)):
        log.error("%s: %s", what, exc)
    else:
        log.error("%s: %r", what, exc, exc_info=exc)
