"""What the log needs from a DATA payload, read from its RecordBatch v2 header only.

`broker.wire.records.read_batch_header` builds a 13-field header object (about 2 us); the
append path needs three fields per batch and has a budget of a few microseconds for all of
its work, so this reads them with one unpack at the offsets of the format's spec (see the
header comment of `broker.wire.records`) and applies the same checks (magic 2, a length that
covers the header) plus one more: the payload is exactly one batch. Records are never decoded.
"""

from __future__ import annotations

import struct

from broker.wire.records import BATCH_HEADER_BYTES, CorruptBatchError

__all__ = ["batch_offsets"]

# baseOffset @0, batchLength @8, magic @16, lastOffsetDelta @23, maxTimestamp @35
_FIELDS = struct.Struct(">qi4xb4x2xi8xq")
_LENGTH_BYTES_BEFORE = 12  # baseOffset and batchLength are not counted in batchLength
_MAGIC = 2


def batch_offsets(payload: bytes | memoryview) -> tuple[int, int, int]:
    """(base offset, offset after the batch, max timestamp) of the one batch in `payload`.
    Raises CorruptBatchError."""
    if len(payload) < BATCH_HEADER_BYTES:
        raise CorruptBatchError(f"{len(payload)} bytes cannot hold a batch header")
    base, length, magic, last_delta, max_ts = _FIELDS.unpack_from(payload)
    if magic != _MAGIC:
        raise CorruptBatchError(f"unsupported magic {magic} (only v2)")
    if length + _LENGTH_BYTES_BEFORE != len(payload) or length < BATCH_HEADER_BYTES - 12:
        raise CorruptBatchError(f"batch length {length} does not fill the {len(payload)} bytes "
                                "of the entry (one batch per entry)")
    return base, base + last_delta + 1, max_ts
