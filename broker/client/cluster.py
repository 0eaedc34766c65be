"""The asyncio cluster client shared by the producer, the consumer and the admin client.

    cluster = ClusterClient("10.0.0.1:9092,10.0.0.2:9092", client_id="billing")
    await cluster.start()                       # bootstrap: first reachable server answers
    leader = cluster.leader_for("orders", 3)    # from the metadata cache, no I/O
    response = await cluster.send(leader, ProduceRequest(...))
    ...
    await cluster.close()                       # or: async with ClusterClient(...) as cluster

Layout, as aiokafka's: `metadata` (broker.client.metadata.ClusterMetadata) is a state object
with no I/O; one refresher task, owned here, is the only writer of it. It refreshes every
`metadata_max_age_ms`, and sooner when asked: `await refresh_metadata(topics)` waits for a
refresh that started after the call (concurrent callers share one), `request_metadata_update()`
asks without waiting. Callers ask after NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
LEADER_NOT_AVAILABLE and the like; a failed or lost connection asks by itself.

Connections: one per broker address, opened on first use (ApiVersions negotiated), dropped when
they fail and reopened on the next use, but not within `reconnect_backoff_ms` of a failed
attempt. `send_any` and metadata refreshes prefer brokers we are already connected to, least
loaded first (so a client bootstrapped from one broker keeps that broker's view), then other
known brokers, then the bootstrap servers.

Errors: ClientError subclasses (broker.client.errors) when no answer came; responses are
returned as they are, error codes and all, for the caller to judge.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from broker.client.config import Address, ClientConfig, parse_bootstrap
from broker.client.connection import BrokerConnection
from broker.client.errors import (
    ClientClosedError,
    ClientError,
    KafkaConnectionError,
    NoBrokersAvailableError,
    RequestTimedOutError,
    UnknownNodeError,
)
from broker.client.metadata import ClusterMetadata, TopicMetadata
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka import ApiKey
from broker.wire.kafka.messages import MetadataRequest, MetadataRequestTopic
from broker.wire.limits import REQUEST_BYTES_MAX

__all__ = ["ClusterClient"]

log = logging.getLogger(__name__)

_REASONS_SHOWN_MAX = 3  # in a NoBrokersAvailableError message
_FAILED_REFRESH_PAUSE_MS = 10  # at least this between failed refreshes


class _State(enum.Enum):
    NEW = "new"
    STARTED = "started"
    CLOSED = "closed"


@dataclass(slots=True, kw_only=True)
class _RefreshRequest:
    """A refresh asked for and not yet started; every caller until it starts shares it."""

    topics: set[str] | None  # None: all topics
    future: asyncio.Future[None]


def _retrieve(future: asyncio.Future[None]) -> None:
    # A refresh nobody awaited (request_metadata_update) must not log "exception never
    # retrieved" when it fails: its failure is visible through the metadata's age.
    if not future.cancelled():
        future.exception()


class ClusterClient:
    def __init__(self, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092", *,
                 client_id: str = "raftlog", request_timeout_ms: int = 30000,
                 metadata_max_age_ms: int = 300000, retry_backoff_ms: int = 100,
                 reconnect_backoff_ms: int = 50, inflight_requests_max: int = 32,
                 response_bytes_max: int = REQUEST_BYTES_MAX) -> None:
        self.config = ClientConfig(
            bootstrap=parse_bootstrap(bootstrap_servers), client_id=client_id,
            request_timeout_ms=request_timeout_ms, metadata_max_age_ms=metadata_max_age_ms,
            retry_backoff_ms=retry_backoff_ms, reconnect_backoff_ms=reconnect_backoff_ms,
            inflight_requests_max=inflight_requests_max, response_bytes_max=response_bytes_max)
        self.metadata = ClusterMetadata()
        self._state = _State.NEW
        # By address; bounded by known brokers + bootstrap servers + open connections to
        # brokers that have since left the metadata (closed ones are pruned on refresh).
        self._connections: dict[Address, BrokerConnection] = {}
        self._connect_locks: dict[Address, asyncio.Lock] = {}
        self._connect_failures: dict[Address, tuple[float, str]] = {}  # (retry after ms, why)
        self._refresher: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._pending_refresh: _RefreshRequest | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Fetch metadata from the first bootstrap server that answers, then keep it fresh.
        Raises NoBrokersAvailableError when none answers."""
        if self._state is _State.STARTED:
            return
        if self._state is _State.CLOSED:
            raise ClientClosedError("the cluster client is closed")
        await self._bootstrap()
        if self._state is not _State.NEW:  # closed while bootstrapping
            raise ClientClosedError("the cluster client was closed while starting")
        self._state = _State.STARTED
        self._refresher = asyncio.create_task(self._refresh_loop(),
                                              name=f"{self.config.client_id}-metadata")

    async def close(self) -> None:
        """Stop the refresher and close every connection; outstanding requests fail with
        KafkaConnectionError, waiting refreshes with ClientClosedError. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait([self._refresher])
            self._refresher = None
        request, self._pending_refresh = self._pending_refresh, None
        if request is not None and not request.future.done():
            request.future.set_exception(ClientClosedError("the cluster client was closed"))
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections))

    async def __aenter__(self) -> ClusterClient:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _check_started(self) -> None:
        if self._state is not _State.STARTED:
            raise ClientClosedError(f"the cluster client is {self._state.value}"
                                    + (": call start() first" if self._state is _State.NEW
                                       else ""))

    # ---- metadata -------------------------------------------------------------------------
    def leader_for(self, topic: str, partition: int) -> int | None:
        return self.metadata.leader_for(topic, partition)

    def partitions_for(self, topic: str) -> frozenset[int] | None:
        return self.metadata.partitions_for(topic)

    def request_metadata_update(self) -> None:
        """Ask for a full refresh soon, without waiting for it."""
        self.metadata.request_update()
        self._wakeup.set()

    async def refresh_metadata(self, topics: Iterable[str] | None = None) -> None:
        """Refresh metadata for `topics` (None: every topic; empty: brokers and controller
        only) and return once a refresh that started after this call has been applied.
        Raises what the refresh raised (e.g. NoBrokersAvailableError)."""
        self._check_started()
        names = None if topics is None else set(topics)
        request = self._pending_refresh
        if request is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            request = self._pending_refresh = _RefreshRequest(topics=names, future=future)
        elif request.topics is not None:
            request.topics = None if names is None else request.topics | names
        self._wakeup.set()
        await asyncio.shield(request.future)

    async def wait_for_topic(self, topic: str, *, timeout_ms: int | None = None,
                             leaders: bool = True) -> TopicMetadata:
        """The topic's metadata once it is known (and, with `leaders`, every partition has a
        leader), refreshing as needed. Raises KafkaError with the topic's error code when it
        is not retriable, or when `timeout_ms` (default request_timeout_ms) runs out."""
        self._check_started()
        budget_ms = self.config.request_timeout_ms if timeout_ms is None else timeout_ms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_ms / 1000
        while True:
            self._check_started()
            t = self.metadata.topic(topic)
            if t is not None and t.error_code == ErrorCode.NONE and t.partitions and (
                    not leaders or t.all_led):
                return t
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if t is None else t.error_code
            if code not in RETRIABLE and code != ErrorCode.NONE:
                raise KafkaError(code, f"topic {topic!r}: {code.name}")
            if loop.time() >= deadline:
                if code == ErrorCode.NONE:
                    code = ErrorCode.LEADER_NOT_AVAILABLE
                what = "is not known" if t is None else "has partitions without a leader"
                raise KafkaError(code, f"topic {topic!r} {what} after {budget_ms} ms")
            try:
                async with asyncio.timeout_at(deadline):
                    await self.refresh_metadata([topic])
            except (TimeoutError, ClientError):
                pass  # judged at the top of the loop; refreshes are paced by retry_backoff_ms

    # ---- requests -------------------------------------------------------------------------
    async def send(self, node_id: int, body: Any, *, api_key: int | None = None,
                   version: int | None = None, timeout_ms: int | None = None,
                   expect_response: bool = True) -> Any:
        """Send a request to broker `node_id` and return its decoded response. Raises
        UnknownNodeError, KafkaConnectionError, RequestTimedOutError (each asks for a
        metadata refresh) or IncompatibleBrokerError."""
        self._check_started()
        broker = self.metadata.broker(node_id)
        if broker is None:
            self.request_metadata_update()
            raise UnknownNodeError(f"broker {node_id} is not in the cluster metadata")
        try:
            conn = await self._connection(broker.address, node_id)
            return await conn.send(body, api_key=api_key, version=version,
                                   timeout_ms=timeout_ms, expect_response=expect_response)
        except (KafkaConnectionError, RequestTimedOutError):
            self.request_metadata_update()
            raise

    async def send_to_controller(self, body: Any, **options: Any) -> Any:
        """`send` to the controller (refreshing metadata once when none is known). Raises
        KafkaError(NOT_CONTROLLER) when the cluster names no controller."""
        controller = self.metadata.controller_id
        if controller is None or self.metadata.broker(controller) is None:
            await self.refresh_metadata(())
            controller = self.metadata.controller_id
        if controller is None:
            raise KafkaError(ErrorCode.NOT_CONTROLLER, "the cluster has no controller right now")
        return await self.send(controller, body, **options)

    async def send_any(self, body: Any, *, api_key: int | None = None,
                       version: int | None = None, timeout_ms: int | None = None) -> Any:
        """Send to any broker that accepts a connection (see the module docstring for the
        order). Moves on only when connecting fails: once sent, a request is not repeated
        elsewhere, since it may not be idempotent."""
        self._check_started()
        errors: list[ClientError] = []
        for address in self._candidates():
            try:
                conn = await self._connection(address)
            except ClientError as e:
                errors.append(e)
                continue
            return await conn.send(body, api_key=api_key, version=version,
                                   timeout_ms=timeout_ms)
        raise self._no_brokers(errors)

    async def api_version(self, node_id: int, api_key: int) -> int:
        """The version of `api_key` that `send(node_id, ...)` would use (connects if needed)."""
        self._check_started()
        broker = self.metadata.broker(node_id)
        if broker is None:
            raise UnknownNodeError(f"broker {node_id} is not in the cluster metadata")
        return (await self._connection(broker.address, node_id)).api_version(api_key)

    # ---- connections ----------------------------------------------------------------------
    def _now_ms(self) -> float:
        return asyncio.get_running_loop().time() * 1000

    async def _connection(self, address: Address, node_id: int | None = None
                          ) -> BrokerConnection:
        conn = self._connections.get(address)
        if conn is not None and conn.is_open:
            return conn
        lock = self._connect_locks.setdefault(address, asyncio.Lock())
        async with lock:
            if self._state is _State.CLOSED:
                raise ClientClosedError("the cluster client is closed")
            conn = self._connections.pop(address, None)
            if conn is not None and conn.is_open:
                self._connections[address] = conn
                return conn
            return await self._open(address, node_id)

    async def _open(self, address: Address, node_id: int | None) -> BrokerConnection:
        failure = self._connect_failures.get(address)
        if failure is not None and self._now_ms() < failure[0]:
            raise KafkaConnectionError(f"{failure[1]} (not retried for "
                                       f"{self.config.reconnect_backoff_ms} ms)")
        c = self.config
        try:
            conn = await BrokerConnection.open(
                address, client_id=c.client_id, request_timeout_ms=c.request_timeout_ms,
                inflight_requests_max=c.inflight_requests_max,
                response_bytes_max=c.response_bytes_max, node_id=node_id)
        except ClientError as e:
            self._connect_failures[address] = (self._now_ms() + c.reconnect_backoff_ms, str(e))
            raise
        self._connect_failures.pop(address, None)
        if self._state is _State.CLOSED:
            await conn.close()
            raise ClientClosedError("the cluster client was closed while connecting")
        self._connections[address] = conn
        return conn

    def _candidates(self) -> list[Address]:
        """Where to send a request any broker can answer, best first."""
        open_conns = sorted((c for c in self._connections.values() if c.is_open),
                            key=lambda c: (c.in_flight, c.address))
        order = [c.address for c in open_conns]
        known = [b.address for _, b in sorted(self.metadata.brokers.items())]
        for address in [*known, *self.config.bootstrap]:
            if address not in order:
                order.append(address)
        return order

    def _no_brokers(self, errors: Sequence[ClientError]) -> NoBrokersAvailableError:
        message = f"cannot reach any broker at {self.config.bootstrap_text}"
        if errors:
            shown = "; ".join(str(e) for e in errors[:_REASONS_SHOWN_MAX])
            more = len(errors) - _REASONS_SHOWN_MAX
            message += f" ({shown}{f'; and {more} more' if more > 0 else ''})"
        return NoBrokersAvailableError(message)

    def _prune(self) -> None:
        """Forget closed connections, idle locks and old failures of addresses that are
        neither known brokers nor bootstrap servers any more."""
        keep = {b.address for b in self.metadata.brokers.values()} | set(self.config.bootstrap)
        for address, conn in list(self._connections.items()):
            if address not in keep and not conn.is_open:
                del self._connections[address]
        for address in [a for a in self._connect_failures if a not in keep]:
            del self._connect_failures[address]
        for address, lock in list(self._connect_locks.items()):
            if address not in keep and address not in self._connections and not lock.locked():
                del self._connect_locks[address]

    # ---- refreshing -----------------------------------------------------------------------
    async def _bootstrap(self) -> None:
        errors: list[ClientError] = []
        for address in self.config.bootstrap:
            try:
                conn = await self._connection(address)
                await self._fetch_from(conn, None)
                return
            except ClientError as e:
                errors.append(e)
        raise self._no_brokers(errors)

    async def _fetch_from(self, conn: BrokerConnection, topics: Collection[str] | None) -> None:
        if topics is None:
            wanted: list[MetadataRequestTopic] | None = \
                [] if conn.api_version(ApiKey.METADATA) == 0 else None
        else:
            wanted = [MetadataRequestTopic(name=name) for name in sorted(topics)]
        response = await conn.send(MetadataRequest(topics=wanted,
                                                   allow_auto_topic_creation=False))
        self.metadata.update(response, topics=topics, now_ms=self._now_ms())
        self._prune()

    async def _fetch(self, topics: Collection[str] | None) -> None:
        """One refresh from the best broker that answers; metadata requests are idempotent,
        so any failure moves on to the next candidate."""
        errors: list[ClientError] = []
        for address in self._candidates():
            try:
                await self._fetch_from(await self._connection(address), topics)
                return
            except ClientError as e:
                errors.append(e)
        self.metadata.failed(self._now_ms())
        raise self._no_brokers(errors)

    def _ms_until_refresh(self) -> float:
        now_ms = self._now_ms()
        backoff_ms = self.config.retry_backoff_ms
        if self._pending_refresh is not None:
            return self.metadata.ms_until_refresh(now_ms, 0, backoff_ms)
        return self.metadata.ms_until_refresh(now_ms, self.config.metadata_max_age_ms,
                                              backoff_ms)

    async def _refresh_loop(self) -> None:
        """The one writer of `metadata` after start()."""
        while True:
            self._wakeup.clear()
            delay_ms = self._ms_until_refresh()
            if delay_ms > 0:
                try:
                    async with asyncio.timeout(delay_ms / 1000):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                continue
            if not await self._refresh_once():
                # Failures can be instant (every address in reconnect backoff): never spin,
                # even with retry_backoff_ms=0.
                await asyncio.sleep(_FAILED_REFRESH_PAUSE_MS / 1000)

    async def _refresh_once(self) -> bool:
        """One refresh for the pending request (if any); whether it succeeded."""
        request, self._pending_refresh = self._pending_refresh, None
        full_due = self.metadata.ms_until_refresh(
            self._now_ms(), self.config.metadata_max_age_ms, self.config.retry_backoff_ms) == 0
        topics = None if request is None or full_due else request.topics
        try:
            await self._fetch(topics)
        except asyncio.CancelledError:  # close(): the callers sharing this refresh must not hang
            if request is not None:
                request.future.set_exception(ClientClosedError("the cluster client was closed"))
            raise
        except ClientError as e:
            log.debug("metadata refresh failed: %s", e)
            if request is not None:
                request.future.set_exception(e)
            return False
        except Exception as e:  # a bug: keep refreshing, and tell the waiting callers
            log.exception("metadata refresh failed unexpectedly")
            self.metadata.failed(self._now_ms())
            if request is not None:
                request.future.set_exception(e)
            return False
        if request is not None:
            request.future.set_result(None)
        return True
