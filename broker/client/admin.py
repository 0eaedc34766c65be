"""Topic and cluster administration: `AsyncAdminClient` (the asyncio core) and `AdminClient`
(its sync facade: the core runs on a private event loop in a thread).

    from broker.client import AdminClient
    with AdminClient(bootstrap_servers="127.0.0.1:9092") as a:
        a.create_topic("orders", partitions=6, replication_factor=3,
                       config={"retention.ms": "604800000"})
        a.list_topics(); a.describe_topic("orders"); a.describe_cluster(); a.delete_topic("orders")

Failures raise KafkaError with the broker's error code and message (TOPIC_ALREADY_EXISTS,
INVALID_REPLICATION_FACTOR, UNKNOWN_TOPIC_OR_PARTITION, ...) or a ClientError when no answer
came (NoBrokersAvailableError, RequestTimedOutError). Every operation finishes within its
`timeout_ms` (default `request_timeout_ms`), retries included.

- create_topic / delete_topic go to the controller; NOT_CONTROLLER and connection failures are
  retried after a metadata refresh. A retry after a lost connection may find the topic made by
  the first attempt and report TOPIC_ALREADY_EXISTS, as Kafka's admin client would.
  create_topic returns once every partition has a leader in the metadata.
- describe_topic asks each partition's leader for its high watermark (ListOffsets, latest).
- describe_cluster uses raftlog's private RaftlogDescribeCluster API (every registered broker,
  dead ones included); against a broker without it, Metadata (live brokers only). A broker
  that answers with a retriable error (KAFKA_STORAGE_ERROR: its metadata log is offline) is
  passed over for the other known brokers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

from broker.client.cluster import ClusterClient
from broker.client.descriptions import (
    BrokerDescription,
    ClusterDescription,
    ClusterPartition,
    PartitionDescription,
    TopicDescription,
    TopicListing,
)
from broker.client.errors import (
    BrokerProtocolError,
    ClientError,
    IncompatibleBrokerError,
    RequestTimedOutError,
    check_error,
    error_code,
)
from broker.client.loop_thread import LoopThread
from broker.client.metadata import TopicMetadata
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka.messages import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
    RaftlogDescribeClusterRequest,
)

__all__ = ["AsyncAdminClient", "AdminClient"]

T = TypeVar("T")

LATEST_TIMESTAMP = -1  # ListOffsets: the high watermark
_HIGH_WATERMARK_ROUNDS_MAX = 2  # ask the leaders, then once more after a metadata refresh
_BROKER_WAIT_MARGIN_MS = 1000  # the broker's CreateTopics/DeleteTopics wait ends this early
_CONTROLLER_RETRIABLE = (ErrorCode.NOT_CONTROLLER,)


class _Deadline:
    def __init__(self, budget_ms: int) -> None:
        self.budget_ms = budget_ms
        self._loop = asyncio.get_running_loop()
        self.at = self._loop.time() + budget_ms / 1000

    def remaining_ms(self) -> int:
        return max(1, int((self.at - self._loop.time()) * 1000))

    def broker_wait_ms(self) -> int:
        """How long to let the broker wait, so that its answer arrives before ours expires."""
        left = self.remaining_ms()
        return max(1, left - min(_BROKER_WAIT_MARGIN_MS, left // 4))


def _describe(code: ErrorCode, name: str, **facts: Any) -> str:
    """Our words for an error the broker sent without a message."""
    match code:
        case ErrorCode.TOPIC_ALREADY_EXISTS:
            return f"topic {name!r} already exists"
        case ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            return f"topic {name!r} does not exist"
        case ErrorCode.INVALID_TOPIC_EXCEPTION:
            return f"{name!r} is not a valid topic name"
        case ErrorCode.INVALID_PARTITIONS:
            return f"{facts.get('partitions')} is not a valid number of partitions"
        case ErrorCode.INVALID_REPLICATION_FACTOR:
            return (f"replication factor {facts.get('replication_factor')} is not possible "
                    f"with {facts.get('live_brokers')} live brokers")
    return f"{facts.get('operation', 'operation')} on topic {name!r} failed"


def _check_topic_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a topic name must be a non-empty string, got {name!r}")
    return name


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


class AsyncAdminClient:
    def __init__(self, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092", *,
                 client_id: str = "raftlog-admin", request_timeout_ms: int = 30000,
                 metadata_max_age_ms: int = 300000, retry_backoff_ms: int = 100) -> None:
        self._cluster = ClusterClient(
            bootstrap_servers, client_id=client_id, request_timeout_ms=request_timeout_ms,
            metadata_max_age_ms=metadata_max_age_ms, retry_backoff_ms=retry_backoff_ms)

    @property
    def cluster(self) -> ClusterClient:
        return self._cluster

    async def start(self) -> None:
        await self._cluster.start()

    async def close(self) -> None:
        await self._cluster.close()

    async def __aenter__(self) -> AsyncAdminClient:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @asynccontextmanager
    async def _deadline(self, timeout_ms: int | None, what: str) -> AsyncIterator[_Deadline]:
        budget_ms = self._cluster.config.request_timeout_ms if timeout_ms is None \
            else _int_in("timeout_ms", timeout_ms, 1, 24 * 3600 * 1000)
        deadline = _Deadline(budget_ms)
        try:
            async with asyncio.timeout_at(deadline.at):
                yield deadline
        except TimeoutError:
            raise RequestTimedOutError(f"{what}: not done within {budget_ms} ms") from None

    # ---- topics ---------------------------------------------------------------------------
    async def create_topic(self, name: str, partitions: int, replication_factor: int,
                           config: Mapping[str, str] | None = None, *,
                           timeout_ms: int | None = None) -> None:
        """Create a topic and wait until every partition has a leader."""
        _check_topic_name(name)
        _int_in("partitions", partitions, -1, (1 << 31) - 1)
        _int_in("replication_factor", replication_factor, -1, (1 << 15) - 1)
        configs = tuple(CreatableTopicConfig(name=str(k), value=None if v is None else str(v))
                        for k, v in sorted((config or {}).items()))
        async with self._deadline(timeout_ms, f"create topic {name!r}") as d:
            def request() -> CreateTopicsRequest:
                return CreateTopicsRequest(topics=(CreatableTopic(
                    name=name, num_partitions=partitions, replication_factor=replication_factor,
                    configs=configs),), timeout_ms=d.broker_wait_ms())

            response = await self._to_controller(request, d, lambda r: _result(r.topics, name),
                                                 lambda r: r.error_code)
            result = _result(response.topics, name)
            check_error(result.error_code, result.error_message or _describe(
                error_code(result.error_code), name, partitions=partitions,
                replication_factor=replication_factor,
                live_brokers=len(self._cluster.metadata.brokers)))
            try:
                await self._cluster.wait_for_topic(name, timeout_ms=d.remaining_ms())
            except KafkaError as e:
                raise KafkaError(e.code, f"topic {name!r} was created, but {e.message}") from None

    async def delete_topic(self, name: str, *, timeout_ms: int | None = None) -> None:
        _check_topic_name(name)
        async with self._deadline(timeout_ms, f"delete topic {name!r}") as d:
            def request() -> DeleteTopicsRequest:
                return DeleteTopicsRequest(topic_names=(name,), timeout_ms=d.broker_wait_ms())

            response = await self._to_controller(request, d,
                                                 lambda r: _result(r.responses, name),
                                                 lambda r: r.error_code)
            code = _result(response.responses, name).error_code
            check_error(code, _describe(error_code(code), name, operation="delete"))
        self._cluster.request_metadata_update()

    async def list_topics(self, *, include_internal: bool = False,
                          timeout_ms: int | None = None) -> list[TopicListing]:
        """Every topic, by name; internal ones (`__consumer_offsets`) only if asked."""
        async with self._deadline(timeout_ms, "list topics"):
            await self._cluster.refresh_metadata()
        out = []
        for name, t in sorted(self._cluster.metadata.topics.items()):
            if t.internal and not include_internal:
                continue
            rf = max((len(p.replicas) for p in t.partitions.values()), default=0)
            out.append(TopicListing(name=name, partitions=len(t.partitions),
                                    replication_factor=rf, internal=t.internal))
        return out

    async def describe_topic(self, name: str, *, timeout_ms: int | None = None
                             ) -> TopicDescription:
        """Partitions with leader, replicas, ISR and high watermark. Raises KafkaError
        UNKNOWN_TOPIC_OR_PARTITION when there is no such topic."""
        _check_topic_name(name)
        async with self._deadline(timeout_ms, f"describe topic {name!r}") as d:
            await self._cluster.refresh_metadata([name])
            t = self._known_topic(name)
            high_watermarks = await self._high_watermarks(t, d)
            t = self._known_topic(name)
        partitions = tuple(PartitionDescription(
            partition=p.partition, leader=p.leader, replicas=p.replicas, isr=p.isr,
            high_watermark=high_watermarks.get(p.partition, -1), leader_epoch=p.leader_epoch,
            offline_replicas=p.offline_replicas) for _, p in sorted(t.partitions.items()))
        return TopicDescription(name=name, partitions=partitions, internal=t.internal)

    def _known_topic(self, name: str) -> TopicMetadata:
        t = self._cluster.metadata.topic(name)
        code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if t is None else t.error_code
        if t is None or (code != ErrorCode.NONE and not t.partitions):
            raise KafkaError(code, _describe(code, name, operation="describe"))
        return t

    async def _high_watermarks(self, t: TopicMetadata, d: _Deadline) -> dict[int, int]:
        found: dict[int, int] = {}
        for round_ in range(_HIGH_WATERMARK_ROUNDS_MAX):
            if round_:
                await self._cluster.refresh_metadata([t.name])
                t = self._known_topic(t.name)
            by_leader: dict[int, list[int]] = {}
            for index, p in sorted(t.partitions.items()):
                if index not in found and p.leader is not None:
                    by_leader.setdefault(p.leader, []).append(index)
            if not by_leader:
                break
            async with asyncio.TaskGroup() as group:
                asks = [group.create_task(self._latest_offsets(leader, t.name, indexes, d))
                        for leader, indexes in by_leader.items()]
            for ask in asks:
                found.update(ask.result())
            if len(found) == len(t.partitions):
                break
        return found

    async def _latest_offsets(self, leader: int, topic: str, indexes: list[int], d: _Deadline
                              ) -> dict[int, int]:
        """partition -> high watermark, for those the leader answered without error."""
        body = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=(ListOffsetsTopic(
            name=topic, partitions=tuple(ListOffsetsPartition(
                partition_index=i, timestamp=LATEST_TIMESTAMP, max_num_offsets=1)
                for i in indexes)),))
        timeout_ms = min(d.remaining_ms(), self._cluster.config.request_timeout_ms)
        try:
            response = await self._cluster.send(leader, body, timeout_ms=timeout_ms)
        except ClientError:
            return {}  # reported as -1; the next round asks the leader the refresh names
        out = {}
        for answered in response.topics:
            if answered.name != topic:
                continue
            for p in answered.partitions:
                offset = p.offset if p.offset >= 0 else (
                    p.old_style_offsets[0] if p.old_style_offsets else -1)  # v0's shape
                if p.error_code == ErrorCode.NONE and offset >= 0 and p.partition_index in indexes:
                    out[p.partition_index] = offset
        if len(out) < len(indexes):
            self._cluster.request_metadata_update()
        return out

    # ---- the cluster ----------------------------------------------------------------------
    async def describe_cluster(self, *, timeout_ms: int | None = None) -> ClusterDescription:
        """Controller, every broker (alive or not) and every partition's replicas and ISR."""
        async with self._deadline(timeout_ms, "describe the cluster") as d:
            try:
                response = await self._cluster.send_any(RaftlogDescribeClusterRequest(),
                                                        timeout_ms=d.remaining_ms())
            except IncompatibleBrokerError:
                return await self._cluster_from_metadata()
            if error_code(response.error_code) in RETRIABLE:
                response = await self._describe_elsewhere(response, d)
        code = error_code(response.error_code)
        check_error(code, "no broker could describe the cluster: the broker's metadata log is "
                    "offline (storage error)" if code == ErrorCode.KAFKA_STORAGE_ERROR
                    else "the broker could not describe the cluster")
        brokers = tuple(sorted((BrokerDescription(node_id=b.node_id, host=b.host, port=b.port,
                                                  alive=b.alive) for b in response.brokers),
                               key=lambda b: b.node_id))
        partitions = tuple(sorted((ClusterPartition(
            topic=p.topic, partition=p.partition, leader=p.leader if p.leader >= 0 else None,
            replicas=tuple(p.replicas), isr=tuple(p.isr)) for p in response.partitions),
            key=lambda p: (p.topic, p.partition)))
        controller = response.controller_id if response.controller_id >= 0 else None
        return ClusterDescription(controller=controller, brokers=brokers, partitions=partitions)

    async def _describe_elsewhere(self, refusal: Any, d: _Deadline) -> Any:
        """The broker asked could not describe the cluster (its metadata log is offline, so
        it holds only a frozen image): ask every known broker once, by node id, and take the
        first answer without error; the refusal stands if none gives one. (The one that
        refused may be asked again: send_any does not say which broker it used.)"""
        for node_id in sorted(self._cluster.metadata.brokers):
            timeout_ms = min(d.remaining_ms(), self._cluster.config.request_timeout_ms)
            try:
                response = await self._cluster.send(node_id, RaftlogDescribeClusterRequest(),
                                                    timeout_ms=timeout_ms)
            except ClientError:
                continue  # unreachable, or without the API: the next one
            if response.error_code == ErrorCode.NONE:
                return response
        return refusal

    async def _cluster_from_metadata(self) -> ClusterDescription:
        await self._cluster.refresh_metadata()
        md = self._cluster.metadata
        brokers = tuple(BrokerDescription(node_id=b.node_id, host=b.host, port=b.port, alive=True)
                        for _, b in sorted(md.brokers.items()))
        partitions = tuple(
            ClusterPartition(topic=name, partition=p.partition, leader=p.leader,
                             replicas=p.replicas, isr=p.isr)
            for name, t in sorted(md.topics.items()) for _, p in sorted(t.partitions.items()))
        return ClusterDescription(controller=md.controller_id, brokers=brokers,
                                  partitions=partitions, complete=False)

    # ---- the controller -------------------------------------------------------------------
    async def _to_controller(self, request: Callable[[], Any], d: _Deadline,
                             result: Callable[[Any], Any], code_of: Callable[[Any], int]) -> Any:
        """Send to the controller until it answers as the controller (NOT_CONTROLLER and
        connection failures: refresh metadata, back off, retry; the deadline bounds it)."""
        backoff_s = self._cluster.config.retry_backoff_ms / 1000
        while True:
            try:
                response = await self._cluster.send_to_controller(
                    request(), timeout_ms=d.remaining_ms())
            except (ClientError, KafkaError) as e:
                if not e.retriable or isinstance(e, RequestTimedOutError):
                    raise
            else:
                if error_code(code_of(result(response))) not in _CONTROLLER_RETRIABLE:
                    return response
            await asyncio.sleep(backoff_s)
            try:
                await self._cluster.refresh_metadata(())
            except ClientError:
                pass  # the next attempt says whether a controller can be reached


def _result(results: Sequence[Any], name: str) -> Any:
    for r in results:
        if r.name == name:
            return r
    raise BrokerProtocolError(f"the broker's answer does not mention topic {name!r}")


class AdminClient:
    """The sync facade of AsyncAdminClient: same operations, blocking. Connects (fetches
    metadata) in the constructor, like kafka-python's KafkaAdminClient."""

    def __init__(self, bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092", *,
                 client_id: str = "raftlog-admin", request_timeout_ms: int = 30000,
                 metadata_max_age_ms: int = 300000, retry_backoff_ms: int = 100) -> None:
        self._request_timeout_ms = request_timeout_ms
        self._engine = LoopThread(name="raftlog-admin")
        try:
            self._core = self._engine.run(_make_core(
                bootstrap_servers, client_id=client_id, request_timeout_ms=request_timeout_ms,
                metadata_max_age_ms=metadata_max_age_ms, retry_backoff_ms=retry_backoff_ms))
        except BaseException:
            self._engine.close()
            raise
        try:
            servers = len(self._core.cluster.config.bootstrap)
            self._engine.run(self._core.start(),
                             timeout_ms=request_timeout_ms * 2 * servers + _SYNC_GRACE_MS)
        except BaseException:
            self.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout_ms: int | None) -> T:
        budget_ms = self._request_timeout_ms if timeout_ms is None else timeout_ms
        return self._engine.run(coro, timeout_ms=budget_ms + _SYNC_GRACE_MS)

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     config: Mapping[str, str] | None = None, *,
                     timeout_ms: int | None = None) -> None:
        return self._call(self._core.create_topic(name, partitions, replication_factor, config,
                                                  timeout_ms=timeout_ms), timeout_ms)

    def delete_topic(self, name: str, *, timeout_ms: int | None = None) -> None:
        return self._call(self._core.delete_topic(name, timeout_ms=timeout_ms), timeout_ms)

    def list_topics(self, *, include_internal: bool = False,
                    timeout_ms: int | None = None) -> list[TopicListing]:
        return self._call(self._core.list_topics(include_internal=include_internal,
                                                 timeout_ms=timeout_ms), timeout_ms)

    def describe_topic(self, name: str, *, timeout_ms: int | None = None) -> TopicDescription:
        return self._call(self._core.describe_topic(name, timeout_ms=timeout_ms), timeout_ms)

    def describe_cluster(self, *, timeout_ms: int | None = None) -> ClusterDescription:
        return self._call(self._core.describe_cluster(timeout_ms=timeout_ms), timeout_ms)

    def close(self) -> None:
        """Close the connections and stop the private loop. Idempotent."""
        try:
            self._engine.run(self._core.close(), timeout_ms=_SYNC_GRACE_MS)
        except ClientError:
            pass  # already closed, or the loop is gone: nothing left to release
        finally:
            self._engine.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_SYNC_GRACE_MS = 5000  # the facade waits this much longer than the operation's own deadline


async def _make_core(bootstrap_servers: str | Sequence[str], **options: Any) -> AsyncAdminClient:
    # Made on the loop's thread, so every asyncio object it creates belongs to that loop.
    return AsyncAdminClient(bootstrap_servers, **options)
