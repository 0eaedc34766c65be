"""The peer-bus envelope: what one node sends one peer in one event-loop turn.

An envelope is one ZeroMQ multipart message:

    frame 0      header (layout below)
    frames 1..   the frames of message 0, then those of message 1, ... in send order

Header layout, big-endian, exactly 10 + 4 * count bytes:

    version   u8    FORMAT_VERSION (1); any other version is refused
    flags     u8    0; reserved, anything else is refused
    src       u32   node id of the sender; the receiver checks it against the ZeroMQ routing
                    id of the connection and against its list of peers
    count     u32   number of messages, >= 1
    count x   u32   number of frames of message i, each >= 1

An envelope therefore has exactly 1 + sum(frame counts) frames. Frame lengths are not
repeated here: ZeroMQ frames carry their own. Payload frames are opaque bytes to the bus.

This module is pure (struct only); malformed input raises `EnvelopeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FORMAT_VERSION",
    "HEADER_BYTES_MIN",
    "NODE_ID_MAX",
    "EnvelopeError",
    "UnknownVersionError",
    "EnvelopeHeader",
    "header_bytes",
    "encode_header",
    "decode_header",
    "node_routing_id",
]

FORMAT_VERSION = 1
NODE_ID_MAX = (1 << 32) - 1
COUNT_MAX = (1 << 32) - 1

_FIXED = struct.Struct(">BBII")
HEADER_BYTES_MIN = _FIXED.size  # 10: the fixed part; a valid header is longer (count >= 1)
_U32 = struct.Struct(">I")

Buffer = bytes | bytearray | memoryview


class EnvelopeError(ValueError):
    """An envelope header is malformed, truncated or inconsistent with its frames."""


class UnknownVersionError(EnvelopeError):
    """The header's format version is not one this node speaks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeHeader:
    src: int  # 0 <= src <= NODE_ID_MAX
    frame_counts: tuple[int, ...]  # one per message, each >= 1; len >= 1


def header_bytes(count: int) -> int:
    """Size of the header of an envelope holding `count` messages."""
    return HEADER_BYTES_MIN + 4 * count


def node_routing_id(node_id: int) -> bytes:
    """The ZeroMQ routing id a node's DEALERs use: its id as u32 big-endian."""
    return _U32.pack(node_id)


def encode_header(*, src: int, frame_counts: Sequence[int]) -> bytes:
    """The header frame for messages of `frame_counts` frames each, sent by node `src`."""
    n = len(frame_counts)
    assert 0 <= src <= NODE_ID_MAX, src
    assert 1 <= n <= COUNT_MAX, n
    assert min(frame_counts) >= 1, "every message has at least one frame"
    return struct.pack(f">BBII{n}I", FORMAT_VERSION, 0, src, n, *frame_counts)


def decode_header(data: Buffer, *, payload_frames: int, messages_max: int) -> EnvelopeHeader:
    """Parse and check a header against the `payload_frames` frames that followed it.

    Raises `UnknownVersionError` for another format version and `EnvelopeError` for anything
    else wrong: truncated or trailing bytes, nonzero flags, zero or more than `messages_max`
    messages, an empty message, or frame counts that do not add up to `payload_frames`.
    """
    size = len(data)
    if size < 1:
        raise EnvelopeError("empty header frame")
    if data[0] != FORMAT_VERSION:
        raise UnknownVersionError(f"envelope format version {data[0]}, expected {FORMAT_VERSION}")
    if size < HEADER_BYTES_MIN:
        raise EnvelopeError(f"header of {size} bytes is truncated")
    _, flags, src, count = _FIXED.unpack_from(data)
    if flags != 0:
        raise EnvelopeError(f"reserved flags set: {flags:#x}")
    if not 1 <= count <= messages_max:
        raise EnvelopeError(f"message count {count} outside 1..{messages_max}")
    if size != header_bytes(count):
        raise EnvelopeError(f"header of {size} bytes, expected {header_bytes(count)} for {count}")
    counts = struct.unpack_from(f">{count}I", data, HEADER_BYTES_MIN)
    if min(counts) < 1:
        raise EnvelopeError("a message declares zero frames")
    if sum(counts) != payload_frames:
        raise EnvelopeError(f"frame counts add up to {sum(counts)}, envelope has {payload_frames}")
    return EnvelopeHeader(src=src, frame_counts=counts)
