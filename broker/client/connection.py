"""One asyncio connection to one broker, speaking Kafka's protocol.

    conn = await BrokerConnection.open(Address(host="127.0.0.1", port=9092))
    metadata = await conn.send(MetadataRequest(topics=None))   # version negotiated on open
    await conn.close()

What it does, and why:
- An asyncio Protocol, not streams: frames are split and responses decoded in the
  data_received callback, so no reader task is needed (no task to own) and a response costs
  no extra task switch.
- Many requests in flight, each with a correlation id; Kafka answers in order on a connection,
  so an answer whose id is not the oldest outstanding one is a protocol violation that closes
  the connection. In-flight requests are bounded by `inflight_requests_max`: a sender waits for
  a slot until its request timeout, then gets RequestTimedOutError.
- Every request has a timeout (`request_timeout_ms`, or `timeout_ms` per call, e.g. for a long
  poll). A request that times out closes the connection, as Kafka's Java client does: a broker
  that does not answer one request is not trusted with the next ones.
- ApiVersions is negotiated on open (see broker.client.versions); `send` then uses, per API, the
  highest version both sides serve unless the caller names one.
- `expect_response=False` sends a request the broker does not answer (Produce with acks=0).
- Closing (by us, by the broker or after an error) fails every outstanding request with
  KafkaConnectionError; the codec's protocol errors surface as BrokerProtocolError.
- Writes are bounded by the transport's flow control: senders wait (within their timeout)
  while the kernel buffer is full.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any

from broker.client.config import Address
from broker.client.errors import (
    BrokerProtocolError,
    ClientConfigError,
    IncompatibleBrokerError,
    KafkaConnectionError,
    RequestTimedOutError,
    check_error,
)
from broker.client.framing import FrameSplitter
from broker.client.versions import api_name, api_versions_retry_version, broker_ranges, negotiate
from broker.version import __version__
from broker.wire.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from broker.wire.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    RequestHeader,
    decode_response,
    encode_request,
    peek_correlation_id,
)
from broker.wire.kafka.messages import ApiVersionsRequest
from broker.wire.limits import REQUEST_BYTES_MAX

__all__ = ["BrokerConnection"]

_OURS: dict[int, tuple[int, int]] = {int(k): v for k, v in SUPPORTED_VERSIONS.items()}
_CORRELATION_ID_MAX = (1 << 31) - 1
_CLOSE_WAIT_MS_MAX = 1000  # close() waits this long for buffered writes, then aborts
_API_VERSIONS_ATTEMPTS_MAX = 4  # v3, then at most three lower versions
# KIP-511: client_software_name/version must match [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
_SOFTWARE_VERSION = re.sub(r"[^a-zA-Z0-9.-]", "-", __version__).strip(".-") or "0"


@dataclass(slots=True, kw_only=True)
class _Pending:
    api_key: int
    version: int
    future: asyncio.Future[Any]


class _Wire(asyncio.Protocol):
    """Forwards the transport's events to its BrokerConnection."""

    def __init__(self, conn: BrokerConnection) -> None:
        self._conn = conn

    def data_received(self, data: bytes) -> None:
        self._conn._on_data(data)

    def eof_received(self) -> bool:
        return False  # the broker closed its side: close ours (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._on_lost(exc)

    def pause_writing(self) -> None:
        self._conn._write_paused = True

    def resume_writing(self) -> None:
        self._conn._on_resume_writing()


def _reason(e: OSError) -> str:
    if e.errno is not None:
        return os.strerror(e.errno).lower()
    return str(e) or type(e).__name__


class BrokerConnection:
    """A connection to one broker. Build it with `await BrokerConnection.open(...)`."""

    def __init__(self, address: Address, *, client_id: str = "raftlog",
                 request_timeout_ms: int = 30000, inflight_requests_max: int = 32,
                 response_bytes_max: int = REQUEST_BYTES_MAX, node_id: int | None = None
                 ) -> None:
        if request_timeout_ms <= 0 or inflight_requests_max <= 0 or response_bytes_max < 64:
            raise ClientConfigError("request_timeout_ms and inflight_requests_max must be "
                                    "positive, response_bytes_max at least 64")
        self.address = address
        self.node_id = node_id  # None: a bootstrap connection, broker id not yet known
        self._client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._slots = asyncio.Semaphore(inflight_requests_max)
        self._splitter = FrameSplitter(frame_bytes_max=response_bytes_max)
        self._transport: asyncio.Transport | None = None
        # correlation id -> request awaiting its answer, oldest first. Each entry holds one
        # slot of _slots, given back when the entry is removed.
        self._pending: dict[int, _Pending] = {}
        self._next_correlation_id = 0
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []  # <= inflight_requests_max
        self._closed_reason: str | None = None  # set once; the connection is then unusable
        self._lost: asyncio.Future[None] | None = None  # done when the transport is gone
        self._broker_versions: dict[int, tuple[int, int]] = {}
        self._versions: dict[int, int] = {}  # api key -> version we send

    # ---- opening --------------------------------------------------------------------------
    @classmethod
    async def open(cls, address: Address, *, client_id: str = "raftlog",
                   request_timeout_ms: int = 30000, inflight_requests_max: int = 32,
                   response_bytes_max: int = REQUEST_BYTES_MAX, node_id: int | None = None
                   ) -> BrokerConnection:
        """Connect and negotiate API versions, within `request_timeout_ms` for each step.
        Raises KafkaConnectionError, RequestTimedOutError or IncompatibleBrokerError."""
        conn = cls(address, client_id=client_id, request_timeout_ms=request_timeout_ms,
                   inflight_requests_max=inflight_requests_max,
                   response_bytes_max=response_bytes_max, node_id=node_id)
        try:
            await conn._connect()
            await conn._negotiate()
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        try:
            async with asyncio.timeout(self._request_timeout_ms / 1000):
                transport, _ = await loop.create_connection(
                    lambda: _Wire(self), self.address.host, self.address.port)
        except TimeoutError:
            raise KafkaConnectionError(
                f"cannot connect to {self.address}: no answer within "
                f"{self._request_timeout_ms} ms") from None
        except OSError as e:
            raise KafkaConnectionError(f"cannot connect to {self.address}: {_reason(e)}") from e
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        if self._closed_reason is not None:  # lost before create_connection returned
            transport.abort()

    async def _negotiate(self) -> None:
        version = SUPPORTED_VERSIONS[ApiKey.API_VERSIONS][1]
        body = ApiVersionsRequest(client_software_name="raftlog-python",
                                  client_software_version=_SOFTWARE_VERSION)
        for _ in range(_API_VERSIONS_ATTEMPTS_MAX):
            response = await self._request(ApiKey.API_VERSIONS, version, body,
                                           self._request_timeout_ms)
            if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
                lower = api_versions_retry_version(version, response)
                if lower is not None:
                    version = lower
                    continue
            check_error(response.error_code, f"ApiVersions v{version} to {self.address}")
            self._broker_versions = dict(broker_ranges(response))
            self._versions = dict(negotiate(_OURS, self._broker_versions))
            return
        raise IncompatibleBrokerError(
            f"{self.address} answered every ApiVersions version we tried with "
            "UNSUPPORTED_VERSION", api_key=ApiKey.API_VERSIONS)

    # ---- what callers see -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._closed_reason is None and self._transport is not None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    @property
    def broker_versions(self) -> dict[int, tuple[int, int]]:
        """api key -> (min, max) the broker advertised."""
        return dict(self._broker_versions)

    def api_version(self, api_key: int) -> int:
        """The version `send` uses for `api_key` (the highest both sides serve)."""
        version = self._versions.get(int(api_key))
        if version is None:
            raise IncompatibleBrokerError(
                f"{self.address} serves no version of {api_name(api_key)} that we speak "
                f"(we: {_OURS.get(int(api_key))}, it: {self._broker_versions.get(int(api_key))})",
                api_key=int(api_key))
        return version

    def supports(self, api_key: int) -> bool:
        return int(api_key) in self._versions

    async def send(self, body: Any, *, api_key: int | None = None, version: int | None = None,
                   timeout_ms: int | None = None, expect_response: bool = True) -> Any:
        """Send one request and return the decoded response body (None when
        `expect_response=False`). `api_key` defaults to the body's API_KEY; `version` to the
        negotiated one. Does not look at error codes inside the response."""
        key = int(api_key if api_key is not None else _api_key_of(body))
        if version is None:
            version = self.api_version(key)
        elif not self._serves(key, version):
            raise IncompatibleBrokerError(
                f"{api_name(key)} v{version} is not served by both {self.address} and us",
                api_key=key)
        timeout_ms = self._request_timeout_ms if timeout_ms is None else timeout_ms
        return await self._request(key, version, body, timeout_ms, expect_response)

    async def close(self) -> None:
        """Close the connection; outstanding requests fail with KafkaConnectionError.
        Buffered writes get up to a second to leave, then the socket is aborted."""
        self._shutdown(f"connection to {self.address} closed", abort=False)
        if self._transport is None or self._lost is None or self._lost.done():
            return
        try:
            async with asyncio.timeout(_CLOSE_WAIT_MS_MAX / 1000):
                await asyncio.shield(self._lost)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()

    # ---- one request ----------------------------------------------------------------------
    def _serves(self, key: int, version: int) -> bool:
        ours = _OURS.get(key)
        theirs = self._broker_versions.get(key)
        return (ours is not None and theirs is not None
                and max(ours[0], theirs[0]) <= version <= min(ours[1], theirs[1]))

    async def _request(self, key: int, version: int, body: Any, timeout_ms: int,
                       expect_response: bool = True) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        self._raise_if_closed()
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise RequestTimedOutError(
                f"{api_name(key)} to {self.address}: no free slot among "
                f"{len(self._pending)} requests in flight within {timeout_ms} ms") from None
        try:
            self._raise_if_closed()
            correlation_id, frame = self._encode(key, version, body)
        except BaseException:
            self._slots.release()
            raise
        if not expect_response:
            self._slots.release()
            self._write(frame)
            await self._until(deadline, self._wait_writable(), key, timeout_ms)
            self._raise_if_closed()
            return None
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[correlation_id] = _Pending(api_key=key, version=version, future=future)
        self._write(frame)
        return await self._until(deadline, self._answer(future), key, timeout_ms)

    async def _until(self, deadline: float, awaitable: Any, key: int, timeout_ms: int) -> Any:
        try:
            async with asyncio.timeout_at(deadline):
                return await awaitable
        except TimeoutError:
            self._shutdown(f"connection to {self.address} closed: a request timed out")
            raise RequestTimedOutError(
                f"{api_name(key)} to {self.address}: no answer within {timeout_ms} ms"
            ) from None

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        await self._wait_writable()
        return await future

    def _encode(self, key: int, version: int, body: Any) -> tuple[int, bytes]:
        correlation_id = self._next_correlation_id
        header = RequestHeader(api_key=key, api_version=version, correlation_id=correlation_id,
                               client_id=self._client_id)
        frame = encode_request(header, body)  # may raise LocalProtocolError: id not used
        self._next_correlation_id = 0 if correlation_id == _CORRELATION_ID_MAX \
            else correlation_id + 1
        return correlation_id, frame

    def _write(self, frame: bytes) -> None:
        assert self._transport is not None
        self._transport.write(frame)

    async def _wait_writable(self) -> None:
        while self._write_paused and self._closed_reason is None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)

    def _raise_if_closed(self) -> None:
        if self._closed_reason is not None:
            raise KafkaConnectionError(self._closed_reason)
        if self._transport is None:
            raise KafkaConnectionError(f"connection to {self.address} is not open")

    # ---- transport events -----------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        try:
            frames = self._splitter.feed(data)
        except RemoteProtocolError as e:  # the oldest request's answer cannot be framed
            oldest = next(iter(self._pending.values()), None)
            self._protocol_error(e, None if oldest is None else oldest.future)
            return
        for frame in frames:
            if self._closed_reason is not None:
                return
            self._on_frame(frame)

    def _on_frame(self, frame: bytes) -> None:
        correlation_id = peek_correlation_id(frame)  # frames hold >= 4 bytes (FrameSplitter)
        expected = next(iter(self._pending), None)
        if correlation_id != expected:
            oldest = None if expected is None else self._pending[expected].future
            self._protocol_error(RemoteProtocolError(
                f"answer with correlation id {correlation_id}; the oldest request outstanding "
                f"is {expected}", correlation_id=correlation_id), oldest)
            return
        pending = self._pending.pop(correlation_id)
        self._slots.release()
        if pending.future.done():  # its sender was cancelled; the answer is not wanted
            return
        try:
            _, body = decode_response(pending.api_key, pending.version, frame)
        except RemoteProtocolError as e:
            self._protocol_error(e, pending.future)
            return
        pending.future.set_result(body)

    def _protocol_error(self, error: RemoteProtocolError,
                        future: asyncio.Future[Any] | None) -> None:
        message = f"{self.address} broke the protocol: {error}"
        if future is not None and not future.done():
            wrapped = BrokerProtocolError(message)
            wrapped.__cause__ = error
            future.set_exception(wrapped)
        self._shutdown(f"connection to {self.address} closed: {message}")

    def _on_resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def _on_lost(self, exc: Exception | None) -> None:
        if exc is None:
            reason = "closed by the broker"
        elif isinstance(exc, OSError):
            reason = _reason(exc)
        else:
            reason = str(exc) or type(exc).__name__
        self._shutdown(f"connection to {self.address} lost: {reason}")
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _shutdown(self, reason: str, *, abort: bool = True) -> None:
        """Make the connection unusable (once) and fail everything outstanding."""
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            self._slots.release()
            if not p.future.done():
                p.future.set_exception(KafkaConnectionError(reason))
        self._wake_writers()
        if self._transport is not None:
            if abort:
                self._transport.abort()
            else:
                self._transport.close()

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def __repr__(self) -> str:
        state = "open" if self.is_open else (self._closed_reason or "not open")
        return f"<BrokerConnection {self.address} node={self.node_id} {state}>"


def _api_key_of(body: Any) -> int:
    key = getattr(type(body), "API_KEY", None)
    if key is None:
        raise LocalProtocolError(f"{type(body).__name__} is not a request message; pass api_key")
    return int(key)

