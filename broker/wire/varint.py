"""Kafka's variable-length integers (protobuf's base-128 varints, little-endian groups of 7 bits,
high bit = "more bytes follow").

    unsigned varint   up to 5 bytes, value < 2**32 (compact lengths, tagged fields)
    varint            zigzag int32, up to 5 bytes: 0 -> 00, -1 -> 01, 1 -> 02, -2 -> 03, ...
    varlong           zigzag int64, up to 10 bytes

Zigzag maps n to (n << 1) ^ (n >> bits-1) so that small magnitudes of either sign take few bytes.
Decoders reject encodings longer than the type allows and values outside its range, so a
corrupt or hostile buffer never makes them loop or build huge integers.
"""

from __future__ import annotations

__all__ = [
    "VarintError",
    "INT32_MIN",
    "INT32_MAX",
    "INT64_MIN",
    "INT64_MAX",
    "encode_uvarint",
    "encode_varint",
    "encode_varlong",
    "decode_uvarint",
    "decode_varint",
    "decode_varlong",
    "ZIGZAG_SMALL",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_Buffer = bytes | bytearray | memoryview


class VarintError(ValueError):
    """A varint is truncated, longer than its type allows, or out of range.

    `pos` is the byte where the varint starts.
    """

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


def encode_uvarint(u: int) -> bytes:
    """Unsigned base-128 varint of a non-negative integer (no upper bound here: callers check)."""
    if u < 0:
        raise ValueError(f"unsigned varint of negative value {u}")
    if u < 0x80:
        return bytes((u,))
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def encode_varint(n: int) -> bytes:
    """Zigzag varint of an int32."""
    if not INT32_MIN <= n <= INT32_MAX:
        raise ValueError(f"varint value {n} is outside int32")
    if 0 <= n < _ZIGZAG_SMALL_COUNT:
        return ZIGZAG_SMALL[n]
    return encode_uvarint((n << 1) ^ (n >> 31))


def encode_varlong(n: int) -> bytes:
    """Zigzag varlong of an int64."""
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"varlong value {n} is outside int64")
    if 0 <= n < _ZIGZAG_SMALL_COUNT:
        return ZIGZAG_SMALL[n]
    return encode_uvarint((n << 1) ^ (n >> 63))


def decode_uvarint(buf: _Buffer, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    """Read an unsigned varint of at most `max_bytes` bytes at `pos`; return (value, next pos).

    The value must fit in 7 * max_bytes bits rounded down to 32 (5 bytes) or 64 (10 bytes).
    """
    value_bits = 32 if max_bytes <= 5 else 64
    end = min(len(buf), pos + max_bytes)
    u = 0
    shift = 0
    i = pos
    while i < end:
        b = buf[i]
        u |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            if u >> value_bits:
                raise VarintError(f"varint at byte {pos} exceeds {value_bits} bits", pos)
            return u, i
        shift += 7
    if end < pos + max_bytes:
        raise VarintError(f"truncated varint at byte {pos}", pos)
    raise VarintError(f"varint at byte {pos} is longer than {max_bytes} bytes", pos)


def decode_varint(buf: _Buffer, pos: int) -> tuple[int, int]:
    """Read a zigzag int32 varint at `pos`; return (value, next pos)."""
    u, pos = decode_uvarint(buf, pos, 5)
    return (u >> 1) ^ -(u & 1), pos


def decode_varlong(buf: _Buffer, pos: int) -> tuple[int, int]:
    """Read a zigzag int64 varlong at `pos`; return (value, next pos)."""
    u, pos = decode_uvarint(buf, pos, 10)
    return (u >> 1) ^ -(u & 1), pos


# Zigzag encodings of 0 .. 8191 (one or two bytes each): lengths, offset deltas and timestamp
# deltas of typical records fall in this range, and encoders look them up instead of computing
# them once per field per record. An immutable tuple, built once at import.
_ZIGZAG_SMALL_COUNT = 1 << 13
ZIGZAG_SMALL: tuple[bytes, ...] = tuple(encode_uvarint(n << 1) for n in range(_ZIGZAG_SMALL_COUNT))
