"""The client-facing TCP server: Kafka's framing on an asyncio Protocol per connection.

A frame is a 4-byte big-endian size followed by that many bytes (request header + body). Per
connection: requests are answered in order (Kafka's guarantee); at most
`inflight_requests_max` are unanswered, beyond which reading pauses (back-pressure, nothing is
dropped); a size prefix above `request_bytes_max` or below the smallest header closes the
connection. Handlers never see sockets: `dispatch(frame) -> awaitable bytes | None` returns the
whole response frame (size prefix included), or None for requests that get no answer (acks=0).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["KafkaConnection", "Dispatch", "ConnectionStats", "CloseConnection"]

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
REQUEST_HEADER_BYTES_MIN = 8  # api_key, api_version, correlation_id
READ_BUFFER_BYTES_MAX = 1 << 20  # beyond one request, unparsed input we hold before pausing



class CloseConnection(Exception):
    """The request cannot be answered (malformed, unknown API or version): close, as Kafka does.
    `refused`: the request was fine but this broker will not answer it (its metadata log is
    offline): counted apart from bad frames, and not logged per request."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


Dispatch = Callable[[memoryview], Awaitable[bytes | None]]


class ConnectionStats:
    __slots__ = ("connections", "requests", "closed_bad_frame", "closed_handler_error",
                 "closed_refused")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.closed_bad_frame = 0
        self.closed_handler_error = 0
        self.closed_refused = 0


class KafkaConnection(asyncio.Protocol):
    def __init__(self, dispatch: Dispatch, *, request_bytes_max: int, inflight_requests_max: int,
                 stats: ConnectionStats) -> None:
        self._dispatch = dispatch
        self._request_bytes_max = request_bytes_max
        self._inflight_max = inflight_requests_max
        self._stats = stats
        self._buf = bytearray()
        self._pending: deque[asyncio.Task[bytes | None]] = deque()
        self._writer_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._paused_reading = False
        self._write_paused = False
        self._write_resumed = asyncio.Event()
        self._closed = False

    # ---- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._stats.connections += 1
        self._write_resumed.set()
        self._writer_task = asyncio.get_running_loop().create_task(self._write_responses())

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buf += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stats.connections -= 1
        for task in self._pending:
            task.cancel()
        if self._writer_task is not None:
            self._writer_task.cancel()
        self._wakeup.set()
        self._write_resumed.set()

    def pause_writing(self) -> None:
        self._write_resumed.clear()

    def resume_writing(self) -> None:
        self._write_resumed.set()

    # ---- parsing ------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        loop = asyncio.get_running_loop()
        while len(buf) - pos >= 4 and len(self._pending) < self._inflight_max:
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < REQUEST_HEADER_BYTES_MIN or size > self._request_bytes_max:
                self._stats.closed_bad_frame += 1
                log.info("closing a client connection: request size %d outside [%d, %d]",
                         size, REQUEST_HEADER_BYTES_MIN, self._request_bytes_max)
                self._abort()
                return
            if len(buf) - pos - 4 < size:
                break
            frame = memoryview(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
            self._stats.requests += 1
            self._pending.append(loop.create_task(self._dispatch(frame)))
            self._wakeup.set()
        if pos:
            del buf[:pos]
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        full = len(self._pending) >= self._inflight_max or len(self._buf) > READ_BUFFER_BYTES_MAX + self._request_bytes_max
        if full and not self._paused_reading:
            transport.pause_reading()
            self._paused_reading = True
        elif not full and self._paused_reading:
            transport.resume_reading()
            self._paused_reading = False

    def _abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    # ---- responses, in request order ------------------------------------------------------
    async def _write_responses(self) -> None:
        while not self._closed:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            task = self._pending[0]
            try:
                response = await task
            except asyncio.CancelledError:
                if self._closed:
                    return
                raise
            except CloseConnection as e:
                # Closing also drops any request pipelined behind this one; the client
                # retries them on another connection.
                if e.refused:
                    self._stats.closed_refused += 1
                    log.debug("closing a client connection: %s", e)
                else:
                    self._stats.closed_bad_frame += 1
                    log.info("closing a client connection: %s", e)
                self._abort()
                return
            except Exception:
                # A handler bug: answer nothing more on this connection rather than guess.
                self._stats.closed_handler_error += 1
                log.exception("request handler failed; closing the connection")
                self._abort()
                return
            self._pending.popleft()
            if response is not None and self._transport is not None and not self._closed:
                self._transport.write(response)
                await self._write_resumed.wait()
            self._parse()  # reading may have paused on the in-flight bound
