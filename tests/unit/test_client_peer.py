"""A scripted Kafka-protocol peer for the client tests: real TCP servers on 127.0.0.1 that decode
requests with broker.wire.kafka and answer from a small in-memory cluster (FakeCluster) or
from a per-test script. It is a test peer, not a mock of the client: the client under test
talks to it over sockets exactly as it talks to a broker.

The tests at the bottom check the peer itself against an independent client (kafka-python),
so the other client tests rest on a peer that speaks Kafka as Kafka's clients expect.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from broker.client import LoopThread
from broker.wire.errors import ErrorCode, UnsupportedVersionError
from broker.wire.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    RemoteProtocolError,
    RequestHeader,
    api_versions_response,
    decode_request,
    encode_response,
    peek_request_header,
    unsupported_api_versions_response,
)
from broker.wire.kafka.messages import ApiVersion, ApiVersionsResponse

T = TypeVar("T")

NO_ANSWER = object()  # a script's answer: read the request, send nothing
CLOSE = object()  # a script's answer: close the connection


@dataclass(frozen=True, slots=True)
class Raw:
    """A script's answer: these bytes, as they are (size prefix included)."""

    data: bytes


Script = Callable[["ScriptedBroker", RequestHeader, Any], Any]


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    """Run an async test body on a fresh loop; a hang fails the test instead of blocking."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


@dataclass
class FakePartition:
    leader: int | None
    replicas: list[int]
    isr: list[int]
    high_watermark: int = 0
    epoch: int = 1


class ScriptedBroker:
    """One broker: answers ApiVersions from `versions`, other APIs from `script[api_key]` if
    set, else from its FakeCluster. Requests are answered in order, one at a time."""

    def __init__(self, cluster: FakeCluster, node_id: int, *,
                 versions: Mapping[int, tuple[int, int]] | None = None,
                 api_versions_max: int = 3, refusal_lists_range: bool = True) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.versions = dict(SUPPORTED_VERSIONS if versions is None else versions)
        self.api_versions_max = api_versions_max  # higher ApiVersions versions get error 35
        self.refusal_lists_range = refusal_lists_range  # that answer lists our range
        self.script: dict[int, Script] = {}
        self.received: list[tuple[RequestHeader, Any]] = []  # decoded requests, in order
        self.attempts: list[tuple[int, int]] = []  # (api_key, version) of every request
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # one per connection, awaited by stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, api_key: int) -> int:
        return sum(1 for h, _ in self.received if h.api_key == api_key)

    def headers(self, api_key: int) -> list[RequestHeader]:
        return [h for h, _ in self.received if h.api_key == api_key]

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for w in list(self._writers):
            w.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()
        self._server = None

    def drop_connections(self) -> None:
        for w in list(self._writers):
            w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(4), "big")
                answer = await self._answer(await reader.readexactly(size))
                if answer is CLOSE:
                    break
                if answer is not NO_ANSWER:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, frame: bytes) -> Any:
        if len(frame) >= 8:
            key, version, _ = peek_request_header(frame)
            self.attempts.append((key, version))
        try:
            header, body = decode_request(frame)
        except UnsupportedVersionError as e:
            if e.api_key == ApiKey.API_VERSIONS:
                return unsupported_api_versions_response(frame)
            return CLOSE
        except RemoteProtocolError:
            return CLOSE
        self.received.append((header, body))
        if header.api_key == ApiKey.API_VERSIONS and header.api_version > self.api_versions_max:
            return self._api_versions_unsupported(header)
        handler = self.script.get(header.api_key) or self.cluster.handler(header.api_key)
        result = handler(self, header, body)
        if inspect.isawaitable(result):
            result = await result
        if result is NO_ANSWER or result is CLOSE:
            return result
        if isinstance(result, Raw):
            return result.data
        return encode_response(header, result)

    def _api_versions_unsupported(self, header: RequestHeader) -> bytes:
        keys = () if not self.refusal_lists_range else (ApiVersion(
            api_key=ApiKey.API_VERSIONS, min_version=0, max_version=self.api_versions_max),)
        v0 = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=0,
                           correlation_id=header.correlation_id)
        return encode_response(v0, ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=keys))


@dataclass
class FakeCluster:
    """Brokers, a controller and topics, answering Kafka's admin and metadata APIs as a
    broker would. `acting_controller` is who really accepts CreateTopics/DeleteTopics (the
    others answer NOT_CONTROLLER); by default the one Metadata names."""

    brokers: dict[int, ScriptedBroker] = field(default_factory=dict)
    controller: int | None = None
    acting_controller: int | None = None
    topics: dict[str, dict[int, FakePartition]] = field(default_factory=dict)
    internal: set[str] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)  # registered, not alive: not in Metadata

    async def start(self, n: int, **options: Any) -> FakeCluster:
        for node_id in range(1, n + 1):
            b = ScriptedBroker(self, node_id, **options)
            await b.start()
            self.brokers[node_id] = b
        self.controller = 1
        return self

    async def stop(self) -> None:
        for b in self.brokers.values():
            await b.stop()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers.values())

    def live(self) -> list[int]:
        return sorted(i for i in self.brokers if i not in self.dead)

    def add_topic(self, name: str, partitions: int, rf: int, *, internal: bool = False) -> None:
        live = self.live()
        self.topics[name] = {
            p: FakePartition(leader=live[p % len(live)],
                             replicas=[live[(p + k) % len(live)] for k in range(rf)],
                             isr=[live[(p + k) % len(live)] for k in range(rf)])
            for p in range(partitions)}
        if internal:
            self.internal.add(name)

    def handler(self, api_key: int) -> Script:
        return {
            ApiKey.API_VERSIONS: lambda b, h, body: api_versions_response(versions=b.versions),
            ApiKey.METADATA: self.metadata,
            ApiKey.CREATE_TOPICS: self.create_topics,
            ApiKey.DELETE_TOPICS: self.delete_topics,
            ApiKey.LIST_OFFSETS: self.list_offsets,
            ApiKey.RAFTLOG_DESCRIBE_CLUSTER: self.describe_cluster,
        }.get(api_key, lambda b, h, body: CLOSE)

    # ---- the APIs -------------------------------------------------------------------------
    def metadata(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        if body.topics is None or (h.api_version == 0 and not body.topics):
            names = sorted(self.topics)
        else:
            names = [t.name for t in body.topics]
        return {
            "brokers": [{"node_id": i, "host": "127.0.0.1", "port": self.brokers[i].port}
                        for i in self.live()],
            "cluster_id": "fake", "controller_id": -1 if self.controller is None
            else self.controller, "topics": [self._topic(n) for n in names]}

    def _topic(self, name: str) -> dict[str, Any]:
        parts = self.topics.get(name)
        if parts is None:
            return {"error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "name": name}
        return {"name": name, "is_internal": name in self.internal, "partitions": [
            {"error_code": 0 if p.leader is not None else ErrorCode.LEADER_NOT_AVAILABLE,
             "partition_index": i, "leader_id": -1 if p.leader is None else p.leader,
             "leader_epoch": p.epoch, "replica_nodes": p.replicas, "isr_nodes": p.isr}
            for i, p in sorted(parts.items())]}

    def _is_controller(self, b: ScriptedBroker) -> bool:
        acting = self.controller if self.acting_controller is None else self.acting_controller
        return b.node_id == acting

    def create_topics(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        return {"topics": [self._create(b, t) for t in body.topics]}

    def _create(self, b: ScriptedBroker, t: Any) -> dict[str, Any]:
        def error(code: ErrorCode, message: str) -> dict[str, Any]:
            return {"name": t.name, "error_code": code, "error_message": message}

        if not self._is_controller(b):
            return error(ErrorCode.NOT_CONTROLLER, "not the controller")
        if t.name in self.topics:
            return error(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {t.name!r} already exists")
        live = len(self.live())
        if t.replication_factor > live:
            return error(ErrorCode.INVALID_REPLICATION_FACTOR,
                         f"replication factor {t.replication_factor} exceeds the {live} live "
                         "brokers")
        if t.num_partitions < 1:
            return error(ErrorCode.INVALID_PARTITIONS, "partitions must be at least 1")
        self.add_topic(t.name, t.num_partitions, t.replication_factor)
        return {"name": t.name, "error_code": 0, "error_message": None}

    def delete_topics(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        out = []
        for name in body.topic_names:
            if not self._is_controller(b):
                code = ErrorCode.NOT_CONTROLLER
            elif self.topics.pop(name, None) is None:
                code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                code = ErrorCode.NONE
            out.append({"name": name, "error_code": code})
        return {"responses": out}

    def list_offsets(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        topics = []
        for t in body.topics:
            parts = []
            for p in t.partitions:
                fp = self.topics.get(t.name, {}).get(p.partition_index)
                if fp is None:
                    parts.append({"partition_index": p.partition_index,
                                  "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION})
                elif fp.leader != b.node_id:
                    parts.append({"partition_index": p.partition_index,
                                  "error_code": ErrorCode.NOT_LEADER_OR_FOLLOWER})
                else:
                    parts.append({"partition_index": p.partition_index, "error_code": 0,
                                  "old_style_offsets": [fp.high_watermark],
                                  "offset": fp.high_watermark, "leader_epoch": fp.epoch})
            topics.append({"name": t.name, "partitions": parts})
        return {"topics": topics}

    def describe_cluster(self, b: ScriptedBroker, h: RequestHeader, body: Any) -> dict[str, Any]:
        return {
            "controller_id": -1 if self.controller is None else self.controller,
            "brokers": [{"node_id": i, "host": "127.0.0.1", "port": x.port,
                         "alive": i not in self.dead} for i, x in sorted(self.brokers.items())],
            "partitions": [{"topic": name, "partition": i,
                            "leader": -1 if p.leader is None else p.leader,
                            "replicas": p.replicas, "isr": p.isr}
                           for name, parts in sorted(self.topics.items())
                           for i, p in sorted(parts.items())]}


@contextmanager
def cluster_in_thread(n: int = 3, **options: Any) -> Iterator[tuple[FakeCluster, LoopThread]]:
    """A FakeCluster served from its own event loop thread, for code that runs its own loop
    (the sync AdminClient, the command line). Change it only through `engine.run`."""
    engine = LoopThread(name="fake-cluster")
    cluster = FakeCluster()
    try:
        engine.run(cluster.start(n, **options))
        yield cluster, engine
    finally:
        engine.run(cluster.stop())
        engine.close()


async def _set(fn: Callable[[], None]) -> None:
    fn()


def on_loop(engine: LoopThread, fn: Callable[[], None]) -> None:
    """Apply a change to a threaded FakeCluster on its own loop."""
    engine.run(_set(fn))


# ---- the peer checked against kafka-python ------------------------------------------------

def test_kafka_python_admin_reads_the_fake_cluster() -> None:
    from kafka import KafkaAdminClient

    with cluster_in_thread(3) as (cluster, engine):
        on_loop(engine, lambda: cluster.add_topic("orders", 3, 2))
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=5000)
        try:
            assert "orders" in admin.list_topics()
            (info,) = admin.describe_topics(["orders"])
            assert info["error_code"] == 0
            leaders = {p["partition_index"]: p["leader_id"] for p in info["partitions"]}
            assert leaders == {0: 1, 1: 2, 2: 3}
        finally:
            admin.close()


def test_kafka_python_is_refused_api_versions_v4_and_steps_down() -> None:
    """kafka-python 3 starts at ApiVersions v4: the peer answers 35 in the v0 shape, as a
    broker does, and the client carries on at v3."""
    from kafka import KafkaAdminClient

    with cluster_in_thread(1) as (cluster, engine):
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=5000)
        try:
            assert admin.list_topics() == []
        finally:
            admin.close()
        tried = [v for k, v in cluster.brokers[1].attempts if k == ApiKey.API_VERSIONS]
        assert tried[:2] == [4, 3], tried
