"""Kafka's primitive types on the wire, as the compiled readers and writers use them.

All integers are big-endian two's complement. Lengths:
    string          int16 length, then UTF-8; -1 = null (only where nullable)
    bytes, records  int32 length, then the bytes; -1 = null
    array           int32 count, then the items; -1 = null
    compact forms   (flexible versions) unsigned varint of length + 1; 0 = null
    tagged fields   (flexible versions) uvarint count, then per field: uvarint tag,
                    uvarint size, value
    uuid            16 bytes

Readers take (buf, pos, end, ...) and return (value, next pos); `buf` is a memoryview of the
whole frame so positions in errors are frame offsets. Every length is checked against the
bytes left before anything is read or allocated, so no input makes a reader over-allocate,
loop long or fail with anything but DecodeError. Writers take `app`, the append method of a
list of buffers that the caller joins (or hands to writelines): record payloads are appended
as they are, never copied.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from broker.wire.errors import LocalProtocolError
from broker.wire.limits import ARRAY_LENGTH_MAX

__all__ = [
    "DecodeError",
    "Append",
    "short",
    "read_uvarint",
    "read_varint",
    "read_varlong",
    "read_uuid",
    "read_string",
    "read_compact_string",
    "read_bytes",
    "read_compact_bytes",
    "read_records",
    "read_compact_records",
    "read_array_length",
    "read_compact_array_length",
    "skip_tagged_fields",
    "encode_uvarint",
    "write_varint",
    "write_varlong",
    "write_uuid",
    "write_string",
    "write_compact_string",
    "write_bytes",
    "write_compact_bytes",
    "write_records",
    "write_compact_records",
    "array_length",
    "write_null_array",
    "INT16",
    "INT32",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
Append: TypeAlias = Callable[[Any], None]

INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
_unpack_i16 = INT16.unpack_from
_unpack_i32 = INT32.unpack_from
_pack_i16 = INT16.pack
_pack_i32 = INT32.pack
_STRING_BYTES_MAX = 0x7FFF
_NULL16 = b"\xff\xff"
_NULL32 = b"\xff\xff\xff\xff"


class DecodeError(Exception):
    """Internal: the bytes at `offset` are not what the schema says. The public decoders turn
    it into MalformedRequestError / MalformedResponseError with the request's context."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def short(pos: int, need: int, end: int, where: str) -> DecodeError:
    return DecodeError(f"truncated {where}: needs {need} bytes at byte {pos}, "
                       f"{max(end - pos, 0)} left", pos)


def _negative(pos: int, n: int, where: str) -> DecodeError:
    return DecodeError(f"invalid length {n} for {where} at byte {pos}", pos)


def _null(pos: int, where: str) -> DecodeError:
    return DecodeError(f"null {where} at byte {pos}, which is not nullable in this version", pos)


# ---- varints --------------------------------------------------------------------------------

def _read_raw_varint(buf: memoryview, pos: int, end: int, bytes_max: int, where: str
                     ) -> tuple[int, int]:
    start = pos
    u = 0
    shift = 0
    stop = min(end, pos + bytes_max)
    while pos < stop:
        b = buf[pos]
        pos += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            if u >> (32 if bytes_max == 5 else 64):
                raise DecodeError(f"varint out of range in {where} at byte {start}", start)
            return u, pos
        shift += 7
    if stop == end and pos - start < bytes_max:
        raise short(start, pos - start + 1, end, where)
    raise DecodeError(f"varint longer than {bytes_max} bytes in {where} at byte {start}", start)


def read_uvarint(buf: memoryview, pos: int, end: int, where: str) -> tuple[int, int]:
    """Unsigned varint of at most 5 bytes (< 2**32): compact lengths, tags, sizes."""
    if pos < end and buf[pos] < 0x80:
        return buf[pos], pos + 1
    return _read_raw_varint(buf, pos, end, 5, where)


def read_varint(buf: memoryview, pos: int, end: int, where: str) -> tuple[int, int]:
    u, pos = _read_raw_varint(buf, pos, end, 5, where)
    return (u >> 1) ^ -(u & 1), pos


def read_varlong(buf: memoryview, pos: int, end: int, where: str) -> tuple[int, int]:
    u, pos = _read_raw_varint(buf, pos, end, 10, where)
    return (u >> 1) ^ -(u & 1), pos


def encode_uvarint(u: int) -> bytes:
    if u < 0x80:
        return bytes((u,))
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def write_varint(app: Append, n: int, where: str) -> None:
    if not -(1 << 31) <= n < (1 << 31):
        raise LocalProtocolError(f"{where}: {n} does not fit a varint (int32)")
    app(encode_uvarint((n << 1) ^ (n >> 31)))


def write_varlong(app: Append, n: int, where: str) -> None:
    if not -(1 << 63) <= n < (1 << 63):
        raise LocalProtocolError(f"{where}: {n} does not fit a varlong (int64)")
    app(encode_uvarint((n << 1) ^ (n >> 63)))


# ---- uuid -----------------------------------------------------------------------------------

def read_uuid(buf: memoryview, pos: int, end: int, where: str) -> tuple[uuid.UUID, int]:
    if end - pos < 16:
        raise short(pos, 16, end, where)
    return uuid.UUID(bytes=bytes(buf[pos:pos + 16])), pos + 16


def write_uuid(app: Append, v: uuid.UUID, where: str) -> None:
    app(v.bytes)


# ---- strings --------------------------------------------------------------------------------

def _utf8(buf: memoryview, pos: int, stop: int, where: str) -> str:
    try:
        return str(buf[pos:stop], "utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"invalid UTF-8 in {where} at byte {pos + e.start}", pos + e.start) \
            from None


def read_string(buf: memoryview, pos: int, end: int, nullable: bool, where: str
                ) -> tuple[str | None, int]:
    if end - pos < 2:
        raise short(pos, 2, end, where)
    n = _unpack_i16(buf, pos)[0]
    if n < 0:
        if n == -1 and nullable:
            return None, pos + 2
        raise _null(pos, where) if n == -1 else _negative(pos, n, where)
    pos += 2
    if end - pos < n:
        raise short(pos, n, end, where)
    return _utf8(buf, pos, pos + n, where), pos + n


def read_compact_string(buf: memoryview, pos: int, end: int, nullable: bool, where: str
                        ) -> tuple[str | None, int]:
    start = pos
    n, pos = read_uvarint(buf, pos, end, where)
    if n == 0:
        if nullable:
            return None, pos
        raise _null(start, where)
    n -= 1
    if n > _STRING_BYTES_MAX:
        raise _negative(start, n, where)
    if end - pos < n:
        raise short(pos, n, end, where)
    return _utf8(buf, pos, pos + n, where), pos + n


def _encode_text(v: str, where: str) -> bytes:
    b = v.encode()
    if len(b) > _STRING_BYTES_MAX:
        raise LocalProtocolError(f"{where}: {len(b)} bytes of UTF-8, more than a string holds")
    return b


def write_string(app: Append, v: str | None, nullable: bool, where: str) -> None:
    if v is None:
        if not nullable:
            raise LocalProtocolError(f"{where} is None but not nullable in this version")
        app(_NULL16)
        return
    b = _encode_text(v, where)
    app(_pack_i16(len(b)) + b)


def write_compact_string(app: Append, v: str | None, nullable: bool, where: str) -> None:
    if v is None:
        if not nullable:
            raise LocalProtocolError(f"{where} is None but not nullable in this version")
        app(b"\x00")
        return
    b = _encode_text(v, where)
    app(encode_uvarint(len(b) + 1) + b)


# ---- bytes and records ----------------------------------------------------------------------

def _read_blob(buf: memoryview, pos: int, end: int, nullable: bool, compact: bool, where: str
               ) -> tuple[memoryview | None, int]:
    start = pos
    if compact:
        n, pos = read_uvarint(buf, pos, end, where)
        n -= 1
    else:
        if end - pos < 4:
            raise short(pos, 4, end, where)
        n = _unpack_i32(buf, pos)[0]
        pos += 4
    if n < 0:
        if n == -1 and nullable:
            return None, pos
        raise _null(start, where) if n == -1 else _negative(start, n, where)
    if end - pos < n:
        raise short(pos, n, end, where)
    return buf[pos:pos + n], pos + n


def read_bytes(buf: memoryview, pos: int, end: int, nullable: bool, where: str
               ) -> tuple[bytes | None, int]:
    view, pos = _read_blob(buf, pos, end, nullable, False, where)
    return (None if view is None else bytes(view)), pos


def read_compact_bytes(buf: memoryview, pos: int, end: int, nullable: bool, where: str
                       ) -> tuple[bytes | None, int]:
    view, pos = _read_blob(buf, pos, end, nullable, True, where)
    return (None if view is None else bytes(view)), pos


def read_records(buf: memoryview, pos: int, end: int, nullable: bool, where: str
                 ) -> tuple[memoryview | None, int]:
    """Record data stays a view into the frame: no copy, no parsing."""
    return _read_blob(buf, pos, end, nullable, False, where)


def read_compact_records(buf: memoryview, pos: int, end: int, nullable: bool, where: str
                         ) -> tuple[memoryview | None, int]:
    return _read_blob(buf, pos, end, nullable, True, where)


def _byte_view(v: Buffer) -> Buffer:
    """The buffer itself, or a flat byte view of a memoryview of other items, so that len()
    counts bytes (frame sizes are sums of len() over the parts)."""
    if isinstance(v, memoryview) and (v.itemsize != 1 or v.ndim != 1):
        return v.cast("B")
    return v


def _write_blob(app: Append, v: Any, nullable: bool, compact: bool, where: str) -> None:
    if v is None:
        if not nullable:
            raise LocalProtocolError(f"{where} is None but not nullable in this version")
        app(b"\x00" if compact else _NULL32)
        return
    if isinstance(v, (bytes, bytearray, memoryview)):
        parts: Sequence[Buffer] = (_byte_view(v),)
    else:  # several buffers sent back to back
        parts = [_byte_view(part) for part in v]
    n = sum(map(len, parts))
    if n > 0x7FFFFFFF:
        raise LocalProtocolError(f"{where}: {n} bytes do not fit an int32 length")
    app(encode_uvarint(n + 1) if compact else _pack_i32(n))
    for part in parts:
        app(part)


def write_bytes(app: Append, v: Buffer | None, nullable: bool, where: str) -> None:
    _write_blob(app, v, nullable, False, where)


def write_compact_bytes(app: Append, v: Buffer | None, nullable: bool, where: str) -> None:
    _write_blob(app, v, nullable, True, where)


def write_records(app: Append, v: Any, nullable: bool, where: str) -> None:
    """One buffer, or a sequence of buffers sent back to back (e.g. several segment slices)."""
    if type(v) is bytes or (type(v) is memoryview and v.itemsize == 1 and v.ndim == 1):
        app(_pack_i32(len(v)))  # the Fetch hot path: one stored slice per partition
        app(v)
        return
    if v is None and nullable:
        app(_NULL32)
        return
    _write_blob(app, v, nullable, False, where)


def write_compact_records(app: Append, v: Any, nullable: bool, where: str) -> None:
    _write_blob(app, v, nullable, True, where)


# ---- arrays and tagged fields ---------------------------------------------------------------

def _check_count(start: int, n: int, pos: int, end: int, item_bytes_min: int, where: str) -> None:
    if n > ARRAY_LENGTH_MAX:
        raise DecodeError(f"{where} has {n} elements at byte {start}, more than the "
                          f"{ARRAY_LENGTH_MAX} allowed", start)
    if n * item_bytes_min > end - pos:
        raise DecodeError(f"{where} claims {n} elements at byte {start} but only {end - pos} "
                          f"bytes are left (each needs at least {item_bytes_min})", start)


def read_array_length(buf: memoryview, pos: int, end: int, nullable: bool, item_bytes_min: int,
                      where: str) -> tuple[int, int]:
    """The element count, or -1 for a null array (only where nullable)."""
    if end - pos < 4:
        raise short(pos, 4, end, where)
    n = _unpack_i32(buf, pos)[0]
    if n < 0:
        if n == -1 and nullable:
            return -1, pos + 4
        raise _null(pos, where) if n == -1 else _negative(pos, n, where)
    _check_count(pos, n, pos + 4, end, item_bytes_min, where)
    return n, pos + 4


def read_compact_array_length(buf: memoryview, pos: int, end: int, nullable: bool,
                              item_bytes_min: int, where: str) -> tuple[int, int]:
    start = pos
    n, pos = read_uvarint(buf, pos, end, where)
    if n == 0:
        if nullable:
            return -1, pos
        raise _null(start, where)
    _check_count(start, n - 1, pos, end, item_bytes_min, where)
    return n - 1, pos


def array_length(v: Sequence[Any], where: str) -> int:
    n = len(v)
    if n > ARRAY_LENGTH_MAX:
        raise LocalProtocolError(f"{where}: {n} elements, more than the {ARRAY_LENGTH_MAX} "
                                 f"a peer accepts")
    return n


def write_null_array(app: Append, nullable: bool, compact: bool, where: str) -> None:
    if not nullable:
        raise LocalProtocolError(f"{where} is None but not nullable in this version")
    app(b"\x00" if compact else _NULL32)


def skip_tagged_fields(buf: memoryview, pos: int, end: int, where: str) -> int:
    """Skip a tagged-field section whose fields we do not know (e.g. a request header's)."""
    count, pos = read_uvarint(buf, pos, end, where)
    for _ in range(count):  # each field takes at least 2 bytes: truncation ends the loop early
        _tag, pos = read_uvarint(buf, pos, end, where)
        size, pos = read_uvarint(buf, pos, end, where)
        if end - pos < size:
            raise short(pos, size, end, where)
        pos += size
    return pos
