"""Kafka API handlers: decoded request in, response body out. No sockets here.

`KafkaApi.dispatch(frame)` is the one entry point (see `broker.api.connection`). Protocol
rules (KAFKA_PROTOCOL.md): an ApiVersions request at a version we do not serve gets the v0
error-35 answer; any other unsupported version, unknown API key or malformed request closes
the connection (Kafka does the same). Produce v0-2 and Fetch v0-3 are advertised (librdkafka
needs ranges from 0) but refused by closing, like Kafka 4, since records only travel as
RecordBatch v2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from broker.api.connection import CloseConnection
from broker.controller.metadata import TOPIC_CONFIGS, TopicInfo
from broker.replica.partition import AppendResult, Replica
from broker.storage import LogError
from broker.wire.errors import ErrorCode, KafkaError
from broker.wire.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    RemoteProtocolError,
    RequestHeader,
    UnsupportedVersionError,
    api_versions_response,
    decode_request,
    encode_response,
    unsupported_api_versions_response,
)
from broker.wire.kafka.versions import RECORD_BATCH_V2_MIN_VERSIONS
from broker.wire.records import CorruptBatchError, decode_batches, verify_batch

if TYPE_CHECKING:
    from broker.server import Broker

__all__ = ["KafkaApi", "ADVERTISED_VERSIONS", "NEEDS_METADATA"]

log = logging.getLogger(__name__)

ADVERTISED_VERSIONS = {k: v for k, v in SUPPORTED_VERSIONS.items()
                       if k not in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)}
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
Handler = Callable[[RequestHeader, Any], Awaitable[Any]]

# Requests any broker may be asked, answered from the cluster metadata image (brokers,
# controller, topics, configs) or by the controller. While this broker's own metadata replica
# is offline (a storage error; broker.controller.service), its image is frozen, and Kafka
# clients treat a Metadata answer as authoritative: they would stick to a stale broker list
# and leaders. The answer that every client reads as "ask another broker" is a closed
# connection: kafka-python backs off that node and picks another (its bootstrap too), and our
# ClusterClient moves to its next candidate at once. The alternatives mislead: an empty
# broker list is dropped by kafka-python (which may then ask here again) but adopted by our
# client (which then has nobody to ask but this broker), and per-topic errors with a broker
# list keep clients coming back here. (A KRaft broker that lost its metadata log dir shuts
# down, and one not yet caught up with the metadata log takes no requests: its clients get
# no answer either.)
# RaftlogDescribeCluster, our own API, answers KAFKA_STORAGE_ERROR instead (so `raftlog
# cluster status` can say why, and the admin client asks another broker); CreateTopics and
# DeleteTopics answer NOT_CONTROLLER (Broker.controller_request); Produce, Fetch, ListOffsets
# and the group APIs are served by local Raft replicas, which are authoritative for their own
# partitions, and keep working while they are online.
NEEDS_METADATA = frozenset({ApiKey.METADATA, ApiKey.FIND_COORDINATOR, ApiKey.DESCRIBE_CONFIGS,
                            ApiKey.INIT_PRODUCER_ID})


class KafkaApi:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._handlers: dict[int, Handler] = {
            ApiKey.API_VERSIONS: self.api_versions,
            ApiKey.METADATA: self.metadata,
            ApiKey.PRODUCE: self.produce,
            ApiKey.FETCH: self.fetch,
            ApiKey.LIST_OFFSETS: self.list_offsets,
            ApiKey.CREATE_TOPICS: self.create_topics,
            ApiKey.DELETE_TOPICS: self.delete_topics,
            ApiKey.DESCRIBE_CONFIGS: self.describe_configs,
            ApiKey.INIT_PRODUCER_ID: self.init_producer_id,
            ApiKey.RAFTLOG_DESCRIBE_CLUSTER: self.describe_cluster,
            ApiKey.FIND_COORDINATOR: self.find_coordinator,
            ApiKey.JOIN_GROUP: self.join_group,
            ApiKey.SYNC_GROUP: self.sync_group,
            ApiKey.HEARTBEAT: self.heartbeat,
            ApiKey.LEAVE_GROUP: self.leave_group,
            ApiKey.OFFSET_COMMIT: self.offset_commit,
            ApiKey.OFFSET_FETCH: self.offset_fetch,
            ApiKey.DESCRIBE_GROUPS: self.describe_groups,
            ApiKey.LIST_GROUPS: self.list_groups,
        }
        self._producer_ids: tuple[int, int] = (0, 0)  # [next, end) of this broker's block
        self._producer_id_lock = asyncio.Lock()

    async def dispatch(self, frame: memoryview) -> bytes | None:
        try:
            header, body = decode_request(frame)
        except UnsupportedVersionError as e:
            if e.api_key == ApiKey.API_VERSIONS:
                return unsupported_api_versions_response(frame)
            raise CloseConnection(str(e)) from None
        except RemoteProtocolError as e:
            raise CloseConnection(str(e)) from None
        handler = self._handlers.get(header.api_key)
        if handler is None:
            raise CloseConnection(f"API {header.api_key!r} is not served")
        v2_min = RECORD_BATCH_V2_MIN_VERSIONS.get(header.api_key)
        if v2_min is not None and header.api_version < v2_min:
            raise CloseConnection(f"{header.api_key!r} v{header.api_version} predates RecordBatch v2")
        offline = self.broker.controller.offline_reason
        if offline is not None and header.api_key in NEEDS_METADATA:
            raise CloseConnection(f"{header.api_key!r} needs the cluster metadata: {offline}",
                                  refused=True)
        response = await handler(header, body)
        if response is None:
            return None
        return encode_response(header, response)

    # ---- ApiVersions, Metadata -------------------------------------------------------------
    async def api_versions(self, header: RequestHeader, body: Any) -> Any:
        return api_versions_response(versions=ADVERTISED_VERSIONS)

    async def metadata(self, header: RequestHeader, body: Any) -> Any:
        b = self.broker
        state = b.controller.state
        if body.topics is None or (header.api_version == 0 and not body.topics):
            names = sorted(state.topics)
        else:
            names = [t.name for t in body.topics if t.name is not None]
        topics = [self._topic_metadata(name, state.topic(name)) for name in names]
        brokers = self._live_brokers()
        # Clients send admin requests to the controller id, which must be a listed broker
        # (kafka-python fails with UnknownBrokerIdError otherwise). Any broker forwards them
        # to the controller leader, so when that leader is not listed (not yet registered as
        # alive, or fenced) this broker names itself, as a KRaft broker names a live broker.
        listed = {broker["node_id"] for broker in brokers}
        controller = b.controller.leader_id
        return {
            "throttle_time_ms": 0,
            "brokers": brokers,
            "cluster_id": state.cluster_id,
            "controller_id": controller if controller in listed else b.node_id,
            "topics": topics,
        }

    def _live_brokers(self) -> list[dict[str, Any]]:
        b = self.broker
        brokers = {info.node_id: info.client_address
                   for info in b.controller.state.brokers.values() if info.alive}
        brokers.setdefault(b.node_id, b.config.advertised)
        out = []
        for node_id, address in sorted(brokers.items()):
            host, _, port = address.rpartition(":")
            out.append({"node_id": node_id, "host": host, "port": int(port), "rack": None})
        return out

    def _topic_metadata(self, name: str, topic: TopicInfo | None) -> dict[str, Any]:
        if topic is None:
            return {"error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "name": name,
                    "is_internal": False, "partitions": []}
        partitions = []
        for p in topic.partitions:
            leader, epoch, isr = self.broker.partition_leadership(p.group_id, p.replicas)
            partitions.append({
                "error_code": ErrorCode.NONE if leader else ErrorCode.LEADER_NOT_AVAILABLE,
                "partition_index": p.partition, "leader_id": leader or -1,
                "leader_epoch": epoch, "replica_nodes": list(p.replicas),
                "isr_nodes": isr, "offline_replicas": self.broker.offline(p.replicas),
            })
        return {"error_code": ErrorCode.NONE, "name": name, "is_internal": topic.internal,
                "partitions": partitions}

    # ---- Produce --------------------------------------------------------------------------
    async def produce(self, header: RequestHeader, body: Any) -> Any:
        acks = body.acks
        results: list[tuple[str, int, Any]] = []
        for topic in body.topic_data:
            for part in topic.partition_data:
                if acks not in (0, 1, -1):
                    outcome: Any = ErrorCode.INVALID_REQUIRED_ACKS
                elif body.transactional_id is not None:
                    outcome = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                else:
                    outcome = self._append(topic.name, part.index, part.records, acks)
                results.append((topic.name, part.index, outcome))
        waits = [o for _, _, o in results if isinstance(o, asyncio.Future)]
        if waits:
            timeout_s = max(body.timeout_ms, 0) / 1000
            await asyncio.wait(waits, timeout=timeout_s)
        if acks == 0:
            return None
        responses: dict[str, list[dict[str, Any]]] = {}
        for name, index, outcome in results:
            responses.setdefault(name, []).append(self._produce_partition(index, outcome))
        return {"responses": [{"name": n, "partition_responses": ps} for n, ps in responses.items()],
                "throttle_time_ms": 0}

    def _append(self, topic: str, partition: int, records: Any, acks: int) -> Any:
        replica = self._leader_replica(topic, partition)
        if isinstance(replica, ErrorCode):
            return replica
        if records is None or len(records) == 0:
            return ErrorCode.CORRUPT_MESSAGE
        limit = min(self.broker.config.batch_bytes_max, self._max_message_bytes(topic))
        if len(records) > limit:
            return KafkaError(ErrorCode.MESSAGE_TOO_LARGE,
                              f"batch of {len(records)} bytes exceeds {limit}")
        try:
            h = verify_batch(records, 0, batch_bytes_max=limit)
        except CorruptBatchError as e:
            return KafkaError(ErrorCode.CORRUPT_MESSAGE, str(e))
        if h.size != len(records):
            return KafkaError(ErrorCode.CORRUPT_MESSAGE, "exactly one record batch is allowed")
        if h.is_control or h.is_transactional:
            return KafkaError(ErrorCode.INVALID_RECORD, "transactions are not supported")
        try:
            return replica.append(bytearray(records), h, acks)
        except KafkaError as e:
            return e

    def _max_message_bytes(self, topic: str) -> int:
        info = self.broker.controller.state.topic(topic)
        return info.config_int("max.message.bytes") if info is not None else 1 << 20

    @staticmethod
    def _produce_partition(index: int, outcome: Any) -> dict[str, Any]:
        if isinstance(outcome, asyncio.Future):
            if not outcome.done():
                outcome.cancel()
                outcome = ErrorCode.REQUEST_TIMED_OUT
            elif outcome.cancelled():
                outcome = ErrorCode.REQUEST_TIMED_OUT
            elif outcome.exception() is not None:
                outcome = outcome.exception()
            else:
                outcome = outcome.result()
        if isinstance(outcome, AppendResult):
            return {"index": index, "error_code": 0, "base_offset": outcome.base_offset,
                    "log_append_time_ms": -1, "log_start_offset": -1}
        if isinstance(outcome, KafkaError):
            code, message = outcome.code, outcome.message
        elif isinstance(outcome, ErrorCode):
            code, message = outcome, None
        else:
            code, message = ErrorCode.UNKNOWN_SERVER_ERROR, str(outcome)
        return {"index": index, "error_code": code, "base_offset": -1,
                "log_append_time_ms": -1, "log_start_offset": -1, "error_message": message}

    def _leader_replica(self, topic: str, partition: int) -> Replica | ErrorCode:
        group = self.broker.by_partition.get((topic, partition))
        if group is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        replica = self.broker.manager.replicas.get(group)
        if replica is None or not replica.leader_ready:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return replica

    # ---- Fetch --------------------------------------------------------------------------
    async def fetch(self, header: RequestHeader, body: Any) -> Any:
        if body.session_id != 0:
            return {"throttle_time_ms": 0, "error_code": ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
                    "session_id": 0, "responses": []}
        deadline = time.monotonic() + max(body.max_wait_ms, 0) / 1000
        while True:
            responses, total, replicas = self._fetch_once(body)
            remaining = deadline - time.monotonic()
            if total >= max(body.min_bytes, 1) or remaining <= 0 or not replicas:
                break
            waits = [asyncio.ensure_future(r.wait_for_data(offset, remaining))
                     for r, offset in replicas]
            _, pending = await asyncio.wait(waits, timeout=remaining,
                                            return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
        return {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": responses}

    def _fetch_once(self, body: Any) -> tuple[list[dict[str, Any]], int, list[tuple[Replica, int]]]:
        budget = min(body.max_bytes, self.broker.config.fetch_bytes_max)
        total = 0
        responses = []
        waiting: list[tuple[Replica, int]] = []
        for topic in body.topics:
            parts = []
            for p in topic.partitions:
                entry, size, replica = self._fetch_partition(topic.topic, p, budget - total, total == 0)
                total += size
                parts.append(entry)
                if replica is not None:
                    waiting.append((replica, p.fetch_offset))
            responses.append({"topic": topic.topic, "partitions": parts})
        return responses, total, waiting

    def _fetch_partition(self, topic: str, p: Any, budget: int, first: bool
                         ) -> tuple[dict[str, Any], int, Replica | None]:
        base = {"partition_index": p.partition, "high_watermark": -1, "last_stable_offset": -1,
                "log_start_offset": -1, "aborted_transactions": None,
                "preferred_read_replica": -1, "records": None}
        replica = self._leader_replica(topic, p.partition)
        if isinstance(replica, ErrorCode):
            return {**base, "error_code": replica}, 0, None
        epoch_error = _leader_epoch_error(p.current_leader_epoch, replica.node.term)
        if epoch_error is not None:
            return {**base, "error_code": epoch_error}, 0, None
        hw = replica.high_watermark
        base.update(high_watermark=hw, last_stable_offset=hw,
                    log_start_offset=replica.log.log_start_offset)
        limit = min(p.partition_max_bytes, budget) if not first else p.partition_max_bytes
        if limit <= 0 and not first:
            return {**base, "error_code": 0, "records": b""}, 0, replica
        try:
            batches = replica.read(p.fetch_offset, max(limit, 1))
        except KafkaError as e:
            return {**base, "error_code": e.code}, 0, None
        size = sum(len(b) for b in batches)
        records: Any = b"".join(batches) if batches else b""
        return {**base, "error_code": 0, "records": records}, size, replica

    # ---- ListOffsets ----------------------------------------------------------------------
    async def list_offsets(self, header: RequestHeader, body: Any) -> Any:
        topics = []
        for topic in body.topics:
            parts = [self._list_offset(header.api_version, topic.name, p) for p in topic.partitions]
            topics.append({"name": topic.name, "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    def _list_offset(self, version: int, topic: str, p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"partition_index": p.partition_index, "error_code": 0,
                               "old_style_offsets": [], "timestamp": -1, "offset": -1,
                               "leader_epoch": -1}
        replica = self._leader_replica(topic, p.partition_index)
        if isinstance(replica, ErrorCode):
            return {**out, "error_code": replica}
        epoch_error = _leader_epoch_error(p.current_leader_epoch, replica.node.term)
        if epoch_error is not None:
            return {**out, "error_code": epoch_error}
        out["leader_epoch"] = replica.node.term
        if p.timestamp == EARLIEST_TIMESTAMP:
            offset, ts = replica.log.log_start_offset, -1
        elif p.timestamp == LATEST_TIMESTAMP:
            offset, ts = replica.high_watermark, -1
        else:
            try:
                offset, ts = _offset_for_time(replica, p.timestamp)
            except LogError as e:  # never an answer from bytes that failed their check
                return {**out, "error_code": replica.storage_error(e).code}
            except CorruptBatchError as e:
                # Batches are stored as produced, undecoded; one we cannot read (bad records,
                # bad compressed data, unknown codec id) answers as Kafka's broker answers
                # records it cannot read, and the connection stays open.
                log.warning("ListOffsets %s-%d: %s", topic, p.partition_index, e)
                return {**out, "error_code": ErrorCode.CORRUPT_MESSAGE}
        out.update(offset=offset, timestamp=ts)
        if version == 0:
            out["old_style_offsets"] = [offset] if offset >= 0 else []
        return out

    # ---- admin ------------------------------------------------------------------------------
    async def create_topics(self, header: RequestHeader, body: Any) -> Any:
        timeout_ms = max(body.timeout_ms, 1000)
        results = await asyncio.gather(*(self._create_topic(t, body.validate_only, timeout_ms)
                                         for t in body.topics))
        return {"throttle_time_ms": 0, "topics": list(results)}

    async def _create_topic(self, t: Any, validate_only: bool, timeout_ms: int) -> dict[str, Any]:
        cfg = self.broker.config
        live = len(self.broker.controller.state.live_brokers()) or 1
        args: dict[str, Any] = {
            "name": t.name,
            "partitions": t.num_partitions if t.num_partitions != -1 else cfg.default_partitions,
            "replication_factor": (t.replication_factor if t.replication_factor != -1
                                   else min(cfg.default_replication_factor, live)),
            "configs": {c.name: c.value for c in t.configs if c.value is not None},
            "validate_only": validate_only,
        }
        if t.assignments:
            args["assignments"] = {a.partition_index: list(a.broker_ids) for a in t.assignments}
        try:
            await self.broker.controller_request("create_topic", args, timeout_ms)
        except KafkaError as e:
            return {"name": t.name, "error_code": e.code, "error_message": e.message}
        return {"name": t.name, "error_code": 0, "error_message": None}

    async def delete_topics(self, header: RequestHeader, body: Any) -> Any:
        async def delete(name: str) -> dict[str, Any]:
            try:
                await self.broker.controller_request("delete_topic", {"name": name},
                                                     max(body.timeout_ms, 1000))
            except KafkaError as e:
                return {"name": name, "error_code": e.code}
            return {"name": name, "error_code": 0}

        results = await asyncio.gather(*(delete(n) for n in body.topic_names))
        return {"throttle_time_ms": 0, "responses": list(results)}

    async def describe_configs(self, header: RequestHeader, body: Any) -> Any:
        results = []
        for r in body.resources:
            results.append(self._describe_resource(r))
        return {"throttle_time_ms": 0, "results": results}

    def _describe_resource(self, r: Any) -> dict[str, Any]:
        base = {"resource_type": r.resource_type, "resource_name": r.resource_name,
                "error_message": None, "configs": []}
        if r.resource_type == 2:
            topic = self.broker.controller.state.topic(r.resource_name)
            if topic is None:
                return {**base, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        "error_message": f"unknown topic {r.resource_name}"}
            explicit = dict(topic.configs)
            keys = r.configuration_keys if r.configuration_keys is not None else sorted(TOPIC_CONFIGS)
            configs = []
            for key in keys:
                if key not in TOPIC_CONFIGS:
                    continue
                is_default = key not in explicit
                configs.append({"name": key, "value": topic.config(key), "read_only": False,
                                "config_source": 5 if is_default else 1, "is_default": is_default,
                                "is_sensitive": False, "synonyms": [], "config_type": 0,
                                "documentation": None})
            return {**base, "error_code": 0, "configs": configs}
        if r.resource_type == 4:
            return {**base, "error_code": 0, "configs": []}
        return {**base, "error_code": ErrorCode.INVALID_REQUEST,
                "error_message": f"resource type {r.resource_type} is not supported"}

    async def describe_cluster(self, header: RequestHeader, body: Any) -> Any:
        """raftlog's private API 10000: every registered broker (dead ones too), the controller
        leader, and every partition's leader, replicas and ISR as this broker knows them."""
        b = self.broker
        if not b.controller.online:  # see NEEDS_METADATA: a frozen image would mislead
            return {"throttle_time_ms": 0, "error_code": ErrorCode.KAFKA_STORAGE_ERROR,
                    "controller_id": -1, "brokers": [], "partitions": []}
        state = b.controller.state
        brokers = []
        for info in sorted(state.brokers.values(), key=lambda i: i.node_id):
            host, _, port = info.client_address.rpartition(":")
            alive = info.alive and (info.node_id == b.node_id or b.peer_alive(info.node_id))
            brokers.append({"node_id": info.node_id, "host": host, "port": int(port),
                            "alive": alive})
        partitions = []
        for topic in sorted(state.topics.values(), key=lambda t: t.name):
            for p in topic.partitions:
                leader, _epoch, isr = b.partition_leadership(p.group_id, p.replicas)
                partitions.append({"topic": topic.name, "partition": p.partition,
                                   "leader": leader or -1, "replicas": list(p.replicas),
                                   "isr": isr})
        return {"throttle_time_ms": 0, "error_code": 0,
                "controller_id": b.controller.leader_id or -1, "brokers": brokers,
                "partitions": partitions}

    async def init_producer_id(self, header: RequestHeader, body: Any) -> Any:
        if body.transactional_id is not None:
            return {"throttle_time_ms": 0,
                    "error_code": ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "producer_id": -1, "producer_epoch": -1}
        try:
            producer_id = await self._next_producer_id()
        except KafkaError as e:
            return {"throttle_time_ms": 0, "error_code": e.code, "producer_id": -1,
                    "producer_epoch": -1}
        return {"throttle_time_ms": 0, "error_code": 0, "producer_id": producer_id,
                "producer_epoch": 0}

    async def _next_producer_id(self) -> int:
        async with self._producer_id_lock:
            start, end = self._producer_ids
            if start >= end:
                block = await self.broker.controller_request(
                    "allocate_producer_ids", {"broker": self.broker.node_id}, 10_000)
                start = int(block["block_start"])
                end = start + int(block["block_size"])
            self._producer_ids = (start + 1, end)
            return start

    # ---- consumer groups: served by the group coordinator (broker.groups) ------------------
    async def find_coordinator(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.find_coordinator(header, body)

    async def join_group(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.join_group(header, body)

    async def sync_group(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.sync_group(header, body)

    async def heartbeat(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.heartbeat(header, body)

    async def leave_group(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.leave_group(header, body)

    async def offset_commit(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.offset_commit(header, body)

    async def offset_fetch(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.offset_fetch(header, body)

    async def describe_groups(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.describe_groups(header, body)

    async def list_groups(self, header: RequestHeader, body: Any) -> Any:
        return await self.broker.groups.api.list_groups(header, body)


def _leader_epoch_error(requested: int, term: int) -> ErrorCode | None:
    if requested < 0 or requested == term:
        return None
    return ErrorCode.FENCED_LEADER_EPOCH if requested < term else ErrorCode.UNKNOWN_LEADER_EPOCH


def _offset_for_time(replica: Replica, timestamp_ms: int) -> tuple[int, int]:
    """The first offset whose record timestamp is >= timestamp_ms (-1, -1 when none).
    Decodes the batch it lands in: CorruptBatchError when that batch cannot be read."""
    base = replica.log.offset_for_timestamp(timestamp_ms, replica.high_watermark)
    if base is None:
        return -1, -1
    batches = replica.log.read(base, replica.high_watermark, 1)
    for batch in decode_batches(b"".join(batches[:1])):
        for record in batch.records:
            if record.timestamp_ms >= timestamp_ms:
                return record.offset, record.timestamp_ms
    return -1, -1
