"""The sender: the one task that moves batches from the accumulator to the brokers
(Kafka's Sender thread, aiokafka's sender task).

Each turn it expires batches past `delivery_timeout_ms`, drains what may be sent, starts one
task per Produce request, and sleeps until woken (a batch became ready, an answer came, a
producer id arrived) or until the accumulator's next deadline (linger, retry backoff, expiry).
It owns every task it starts and cancels and awaits them in `stop()`.

Answers are judged here and applied by the accumulator: success (also
DUPLICATE_SEQUENCE_NUMBER: the broker already has the batch), retriable (Kafka's retriable
error codes, a lost connection, a request timeout, a broker missing from the metadata: the
batch goes again after `retry_backoff_ms`, and a metadata refresh is asked for so it goes to
the current leader), or fatal (every other code: that batch's records fail with ProduceError).

With idempotence the producer id comes from InitProducerId, asked of any broker when a
partition first needs one and again when a partition's sequence must restart
(partition_queue.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

from broker.client import (
    ClientClosedError,
    ClientError,
    ClusterClient,
    IncompatibleBrokerError,
    error_code,
)
from broker.wire.errors import RETRIABLE, ErrorCode, KafkaError
from broker.wire.kafka.messages import (
    InitProducerIdRequest,
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from producer.accumulator import Accumulator, ProduceRequestPlan
from producer.batch import ProducerBatch
from producer.config import ProducerConfig
from producer.errors import ProduceError, ProducerClosedError, RecordTooLargeError

__all__ = ["Sender"]

log = logging.getLogger(__name__)

# The broker's own wait for replication is a little shorter than our request timeout, so its
# REQUEST_TIMED_OUT answer normally arrives before our timeout closes the connection.
_BROKER_WAIT_SHARE = 0.9
_TRANSACTION_TIMEOUT_MS = 60000  # required by InitProducerId; unused without transactions
_SUCCESS = (ErrorCode.NONE, ErrorCode.DUPLICATE_SEQUENCE_NUMBER)


class Sender:
    def __init__(self, cluster: ClusterClient, accumulator: Accumulator,
                 config: ProducerConfig) -> None:
        self._cluster = cluster
        self._acc = accumulator
        self._config = config
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Produce requests in flight: bounded per broker by the accumulator
        # (REQUESTS_PER_BROKER_MAX), each reported to it with request_done().
        self._requests: set[asyncio.Task[None]] = set()
        self._id_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._abandoned: asyncio.Task[None] | None = None  # cleanup after a leak (abandon)

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        assert self._task is None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name=f"{self._config.client_id}-sender")

    async def drain_and_stop(self, timeout_s: float | None) -> bool:
        """Send everything queued, wait for the answers (up to `timeout_s`), then stop.
        Whether everything was answered in time."""
        self._stopping = True
        self.wakeup()
        task = self._task
        if task is None:
            return True
        done, _ = await asyncio.wait([task], timeout=timeout_s)
        return bool(done)

    async def stop(self) -> None:
        """Cancel the sender and every request it started, and wait for them."""
        tasks = [t for t in (self._task, self._id_task, *self._requests) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._task = self._id_task = None
        self._requests.clear()

    def abandon(self, cleanup: Coroutine[Any, Any, None]) -> None:
        """The producer was garbage-collected while started: run `cleanup` (which stops this
        sender) on the loop if it still runs, from whatever thread the collector ran in."""
        loop = self._loop
        if loop is None or loop.is_closed():
            cleanup.close()
            return

        def run() -> None:
            self._abandoned = loop.create_task(cleanup)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            cleanup.close()

    @property
    def requests_in_flight(self) -> int:
        """Produce requests sent and not yet answered (or failed)."""
        return len(self._requests)

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def wakeup(self) -> None:
        """Ask for a turn soon; from any thread."""
        if threading.get_ident() == self._loop_thread or self._loop is None:
            self._wakeup.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    # ---- the loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        backoff_s = self._config.retry_backoff_ms / 1000
        while True:
            try:
                if await self._turn():
                    return
            except Exception:  # a bug: say so, and keep delivering what can be delivered
                log.exception("producer sender turn failed")
                await asyncio.sleep(backoff_s)

    async def _turn(self) -> bool:
        """One turn; whether the sender is done (stopping, and nothing is left)."""
        self._wakeup.clear()
        now_s = asyncio.get_running_loop().time()
        self._acc.expire(now_s)
        drained = self._acc.drain(now_s, self._cluster.leader_for)
        for node, plans in drained.requests.items():
            for plan in plans:
                self._spawn(self._produce(node, plan))
        if drained.leaderless:
            self._cluster.request_metadata_update()
        if drained.wants_producer_id and self._id_task is None:
            self._id_task = asyncio.create_task(self._fetch_producer_id())
        if self._stopping and not self._requests and self._acc.empty:
            return True
        await self._sleep(drained.wake_at_s, now_s)
        return False

    async def _sleep(self, wake_at_s: float | None, now_s: float) -> None:
        if self._wakeup.is_set():
            return
        try:
            if wake_at_s is None:
                await self._wakeup.wait()
            else:
                async with asyncio.timeout(max(0.0, wake_at_s - now_s)):
                    await self._wakeup.wait()
        except TimeoutError:
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._requests.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("produce request task failed", exc_info=task.exception())
        self._wakeup.set()

    # ---- one Produce request ------------------------------------------------------------
    async def _produce(self, node: int, plan: ProduceRequestPlan) -> None:
        try:
            await self._produce_once(node, plan)
        finally:
            self._acc.request_done(node)

    async def _produce_once(self, node: int, plan: ProduceRequestPlan) -> None:
        acks = self._config.acks
        request = _request(plan.batches, acks, self._config)
        try:
            response = await self._cluster.send(node, request, expect_response=acks != 0,
                                                timeout_ms=self._config.request_timeout_ms)
        except ClientError as e:
            now_s = asyncio.get_running_loop().time()
            error = _client_error(e, node, plan.batches[0])
            for batch in plan.batches:
                self._acc.failed(batch, error, now_s, retriable=e.retriable)
            return
        if acks == 0:
            for batch in plan.batches:
                self._acc.succeeded(batch, -1, -1)
            return
        self._apply(node, plan.batches, response)

    def _apply(self, node: int, batches: Sequence[ProducerBatch], response: Any) -> None:
        pending = {(b.topic, b.partition): b for b in batches}
        now_s = asyncio.get_running_loop().time()
        refresh = False
        for topic in response.responses:
            for p in topic.partition_responses:
                batch = pending.pop((topic.name, p.index), None)
                if batch is None:
                    continue  # not ours (a confused broker): nothing to apply it to
                code = error_code(p.error_code)
                if code in _SUCCESS:
                    self._acc.succeeded(batch, p.base_offset, p.log_append_time_ms)
                    continue
                retriable = code in RETRIABLE or code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
                refresh = refresh or code in RETRIABLE
                error = _batch_error(batch, code, p.error_message, node)
                self._acc.failed(batch, error, now_s, retriable=retriable, code=code)
        for batch in pending.values():
            refresh = True
            self._acc.failed(batch, KafkaError(ErrorCode.NETWORK_EXCEPTION,
                                               f"broker {node} did not answer for "
                                               f"{batch.topic!r} partition {batch.partition}"),
                             now_s, retriable=True)
        if refresh:
            self._cluster.request_metadata_update()

    # ---- producer ids -------------------------------------------------------------------
    async def _fetch_producer_id(self) -> None:
        """InitProducerId from any broker, retried with backoff while the failure is
        retriable; a refusal fails the batches waiting for an id (then, paced by the backoff,
        the next batches ask again)."""
        backoff_s = self._config.retry_backoff_ms / 1000
        try:
            while not await self._ask_producer_id():
                await asyncio.sleep(backoff_s)
        finally:
            self._id_task = None
            self._wakeup.set()

    async def _ask_producer_id(self) -> bool:
        """One InitProducerId; whether asking is over (an id came, or a refusal)."""
        try:
            response = await self._cluster.send_any(
                InitProducerIdRequest(transactional_id=None,
                                      transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS),
                timeout_ms=self._config.request_timeout_ms)
        except ClientError as e:
            log.debug("InitProducerId failed: %s", e)
            if e.retriable:
                return False
            refusal = KafkaError(ErrorCode.UNSUPPORTED_VERSION, f"no producer id: {e}")
        else:
            code = error_code(response.error_code)
            if code == ErrorCode.NONE:
                self._acc.set_producer_id(response.producer_id, response.producer_epoch)
                return True
            if code in RETRIABLE:
                return False
            refusal = KafkaError(code, "the cluster refused a producer id (InitProducerId)")
        self._acc.fail_waiting_for_id(refusal)
        await asyncio.sleep(self._config.retry_backoff_ms / 1000)
        return True


def _request(batches: Sequence[ProducerBatch], acks: int, config: ProducerConfig
             ) -> ProduceRequest:
    by_topic: dict[str, list[PartitionProduceData]] = {}
    for b in batches:
        assert b.encoded is not None
        by_topic.setdefault(b.topic, []).append(
            PartitionProduceData(index=b.partition, records=b.encoded))
    return ProduceRequest(
        transactional_id=None, acks=acks,
        timeout_ms=max(1, int(config.request_timeout_ms * _BROKER_WAIT_SHARE)),
        topic_data=[TopicProduceData(name=t, partition_data=ps) for t, ps in by_topic.items()])


def _client_error(e: ClientError, node: int, batch: ProducerBatch) -> BaseException:
    """What a batch fails with when no answer came: the error itself when it is retriable,
    else the reason it can never be sent."""
    if e.retriable:
        return e
    if isinstance(e, ClientClosedError):
        return ProducerClosedError(f"the producer was closed while sending ({e})")
    code = ErrorCode.UNSUPPORTED_VERSION if isinstance(e, IncompatibleBrokerError) \
        else ErrorCode.UNKNOWN_SERVER_ERROR
    return ProduceError(code, f"producing to {batch.topic!r} partition {batch.partition} "
                        f"(broker {node}): {e}", topic=batch.topic, partition=batch.partition)


def _batch_error(batch: ProducerBatch, code: ErrorCode, message: str | None,
                 node: int) -> KafkaError:
    text = f"producing {batch.count} record(s) to {batch.topic!r} partition " \
           f"{batch.partition} (broker {node})" + (f": {message}" if message else "")
    if code == ErrorCode.MESSAGE_TOO_LARGE:
        size = len(batch.encoded) if batch.encoded is not None else -1
        return RecordTooLargeError(text, size_bytes=size, limit_bytes=-1)
    return ProduceError(code, text, topic=batch.topic, partition=batch.partition)
