"""Kafka's framing, sans I/O: a 4-byte big-endian size, then that many bytes (header + body).

`FrameSplitter` takes bytes as they arrive from the socket and returns the complete frames
(without their size prefix), keeping at most one partial frame buffered. A size above
`frame_bytes_max`, or too small to hold a correlation id, is the peer's fault: it raises
MalformedResponseError and the connection must be closed, since the stream cannot be re-synced.
"""

from __future__ import annotations

from broker.wire.errors import MalformedResponseError

__all__ = ["FrameSplitter", "SIZE_PREFIX_BYTES"]

SIZE_PREFIX_BYTES = 4
_CORRELATION_ID_BYTES = 4


class FrameSplitter:
    def __init__(self, *, frame_bytes_max: int) -> None:
        assert frame_bytes_max >= _CORRELATION_ID_BYTES
        self._frame_bytes_max = frame_bytes_max
        # Bytes of the frame being received, size prefix included. Invariant: holds less than
        # one whole frame after feed() returns, so never more than frame_bytes_max + 4 bytes.
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The frames completed by `data`, in order (possibly none)."""
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        with memoryview(buf) as view:
            while end - pos >= SIZE_PREFIX_BYTES:
                size = int.from_bytes(view[pos:pos + SIZE_PREFIX_BYTES], "big", signed=True)
                if not _CORRELATION_ID_BYTES <= size <= self._frame_bytes_max:
                    raise MalformedResponseError(
                        f"response frame size {size} is outside [{_CORRELATION_ID_BYTES}, "
                        f"{self._frame_bytes_max}] bytes", offset=None)
                frame_end = pos + SIZE_PREFIX_BYTES + size
                if frame_end > end:
                    break
                frames.append(view[pos + SIZE_PREFIX_BYTES:frame_end].tobytes())
                pos = frame_end
        if pos:
            del buf[:pos]  # bytearray drops a prefix without moving the rest (amortized)
        return frames
