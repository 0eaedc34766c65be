"""The on-disk format of a partition log. Pure: bytes in, values out.

A replica's directory holds:

    00000000000000000001.log   segment files, named by the raft index of their first entry
    00000000000000004711.log   (20 digits, so names sort like indexes)
    log_start                  optional: the logical log start (after retention or a reset)
    hard_state                 optional: Raft's term, vote, commit and membership
    lock                       flock'd while a PartitionLog has the directory open
    *.tmp                      a metadata file being replaced (deleted on open)

Segment file (all integers big-endian):

    segment header, 34 bytes
      magic        4s      b"RLSG"
      version      uint16  1
      base_index   uint64  raft index of the first entry in this file (= the file name)
      prev_term    uint64  term of entry base_index - 1 (0 for index 0)
      base_offset  int64   Kafka offset the first DATA entry here takes (-1: not known yet)
      crc          uint32  CRC-32C of the 30 bytes before it
    entries, back to back, each:
      crc          uint32  CRC-32C of the 21 header bytes after it and the payload
      length       uint32  payload bytes
      index        uint64  raft index: contiguous within a file and across files
      term         uint64  raft term: non-decreasing
      kind         uint8   EntryKind: 0 DATA, 1 CONFIG, 2 EMPTY
      payload      `length` bytes; DATA: exactly one Kafka RecordBatch v2, as received
                   (its baseOffset already stamped by the leader), never re-encoded

`log_start` (34 bytes): magic b"RLST", version uint16, start_index uint64, start_term uint64,
start_offset int64 (Kafka offset after the start entry, -1 unknown), crc uint32 of the rest.
Entries <= start_index are logically deleted even if a segment still holds them.

`hard_state`: magic b"RLHS", version uint16, term uint64, vote uint64, commit uint64,
voter_count uint32, learner_count uint32, the voter ids and learner ids (uint64 each),
conf_index uint64, repair_index uint64, repair_term uint64, entry_term_max uint64, crc uint32
of everything before it (files written before conf_index, the repair fields or entry_term_max
existed end earlier; the missing fields read as 0).

Both metadata files are replaced atomically (write a temp file, fsync, rename, fsync the
directory), so a bad CRC there is corruption, never a torn write.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from crc32c import crc32c

from broker.raft.messages import ConfState, HardState

__all__ = [
    "SEGMENT_HEADER_BYTES",
    "ENTRY_HEADER_BYTES",
    "SEGMENT_SUFFIX",
    "SegmentHeader",
    "FormatError",
    "segment_file_name",
    "parse_segment_file_name",
    "encode_segment_header",
    "decode_segment_header",
    "encode_entry_header",
    "ENTRY_HEADER",
    "LogStart",
    "encode_log_start",
    "decode_log_start",
    "encode_hard_state",
    "decode_hard_state",
]

SEGMENT_SUFFIX = ".log"
_NAME_DIGITS = 20

_SEGMENT_MAGIC = b"RLSG"
_START_MAGIC = b"RLST"
_HARD_STATE_MAGIC = b"RLHS"
_VERSION = 1

_SEGMENT_HEADER = struct.Struct(">4sHQQq")  # without the trailing crc
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size + 4  # 34

# crc, length, index, term, kind
ENTRY_HEADER = struct.Struct(">IIQQB")
ENTRY_HEADER_BYTES = ENTRY_HEADER.size  # 25
_ENTRY_TAIL = struct.Struct(">IQQB")  # the header bytes the crc covers
_CRC = struct.Struct(">I")

_LOG_START = struct.Struct(">4sHQQq")
_HARD_STATE_FIXED = struct.Struct(">4sHQQQII")
_ID = struct.Struct(">Q")
_IDS_MAX = 1 << 16  # a membership is small; a larger count is corruption


class FormatError(ValueError):
    """Bytes that do not decode; the caller knows the file and position to report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentHeader:
    base_index: int  # >= 1
    prev_term: int  # term of base_index - 1
    base_offset: int  # Kafka offset of the first DATA entry in the file; -1 unknown


@dataclass(frozen=True, slots=True, kw_only=True)
class LogStart:
    start_index: int  # entries <= start_index are deleted
    start_term: int  # term of entry start_index
    start_offset: int  # Kafka offset the next DATA entry after start_index takes; -1 unknown


def segment_file_name(base_index: int) -> str:
    return f"{base_index:0{_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_file_name(name: str) -> int | None:
    """The base index a segment file name encodes, or None for any other file."""
    stem, dot, suffix = name.partition(".")
    if not dot or "." + suffix != SEGMENT_SUFFIX or len(stem) != _NAME_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def _with_crc(body: bytes) -> bytes:
    return body + _CRC.pack(crc32c(body))


def _check_crc(buf: bytes, what: str) -> bytes:
    if len(buf) < 4:
        raise FormatError(f"{what}: {len(buf)} bytes is too short")
    body, (crc,) = buf[:-4], _CRC.unpack_from(buf, len(buf) - 4)
    if crc32c(body) != crc:
        raise FormatError(f"{what}: CRC mismatch")
    return body


def encode_segment_header(header: SegmentHeader) -> bytes:
    return _with_crc(_SEGMENT_HEADER.pack(
        _SEGMENT_MAGIC, _VERSION, header.base_index, header.prev_term, header.base_offset))


def decode_segment_header(buf: bytes) -> SegmentHeader:
    if len(buf) != SEGMENT_HEADER_BYTES:
        raise FormatError(f"segment header: {len(buf)} of {SEGMENT_HEADER_BYTES} bytes")
    body = _check_crc(buf, "segment header")
    magic, version, base_index, prev_term, base_offset = _SEGMENT_HEADER.unpack(body)
    if magic != _SEGMENT_MAGIC or version != _VERSION:
        raise FormatError(f"segment header: magic {magic!r} version {version} not ours")
    return SegmentHeader(base_index=base_index, prev_term=prev_term, base_offset=base_offset)


def encode_entry_header(index: int, term: int, kind: int, payload: bytes) -> bytes:
    """The 25-byte header stored before `payload`; its CRC covers header and payload."""
    tail = _ENTRY_TAIL.pack(len(payload), index, term, kind)
    return _CRC.pack(crc32c(payload, crc32c(tail))) + tail


def encode_log_start(start: LogStart) -> bytes:
    return _with_crc(_LOG_START.pack(
        _START_MAGIC, _VERSION, start.start_index, start.start_term, start.start_offset))


def decode_log_start(buf: bytes) -> LogStart:
    body = _check_crc(buf, "log_start")
    if len(body) != _LOG_START.size:
        raise FormatError(f"log_start: {len(buf)} bytes, expected {_LOG_START.size + 4}")
    magic, version, index, term, offset = _LOG_START.unpack(body)
    if magic != _START_MAGIC or version != _VERSION:
        raise FormatError(f"log_start: magic {magic!r} version {version} not ours")
    return LogStart(start_index=index, start_term=term, start_offset=offset)


_CONF_INDEX = struct.Struct(">Q")
_REPAIR = struct.Struct(">QQ")  # HardState.repair_index, repair_term
_ENTRY_TERM_MAX = struct.Struct(">Q")


def encode_hard_state(hs: HardState) -> bytes:
    voters, learners = sorted(hs.conf.voters), sorted(hs.conf.learners)
    parts = [_HARD_STATE_FIXED.pack(_HARD_STATE_MAGIC, _VERSION, hs.term, hs.vote, hs.commit,
                                    len(voters), len(learners))]
    parts.extend(_ID.pack(n) for n in voters + learners)
    parts.append(_CONF_INDEX.pack(hs.conf_index))
    parts.append(_REPAIR.pack(hs.repair_index, hs.repair_term))
    parts.append(_ENTRY_TERM_MAX.pack(hs.entry_term_max))
    return _with_crc(b"".join(parts))


def decode_hard_state(buf: bytes) -> HardState:
    body = _check_crc(buf, "hard_state")
    if len(body) < _HARD_STATE_FIXED.size:
        raise FormatError(f"hard_state: {len(buf)} bytes is too short")
    magic, version, term, vote, commit, n_voters, n_learners = _HARD_STATE_FIXED.unpack_from(body)
    if magic != _HARD_STATE_MAGIC or version != _VERSION:
        raise FormatError(f"hard_state: magic {magic!r} version {version} not ours")
    ids_end = _HARD_STATE_FIXED.size + _ID.size * (n_voters + n_learners)
    with_conf_index = ids_end + _CONF_INDEX.size
    with_repair = with_conf_index + _REPAIR.size
    if n_voters + n_learners > _IDS_MAX or len(body) not in (
            ids_end, with_conf_index, with_repair, with_repair + _ENTRY_TERM_MAX.size):
        raise FormatError(f"hard_state: {n_voters} voters and {n_learners} learners "
                          f"do not fit its {len(buf)} bytes")
    ids = [_ID.unpack_from(body, _HARD_STATE_FIXED.size + _ID.size * i)[0]
           for i in range(n_voters + n_learners)]
    conf = ConfState(voters=frozenset(ids[:n_voters]), learners=frozenset(ids[n_voters:]))
    # conf_index (the CONFIG entry the membership comes from) trails the ids; files written
    # before it existed end at the ids and read as 0.
    conf_index = _CONF_INDEX.unpack_from(body, ids_end)[0] if len(body) > ids_end else 0
    repair_index, repair_term = (_REPAIR.unpack_from(body, with_conf_index)
                                 if len(body) > with_conf_index else (0, 0))
    entry_term_max = (_ENTRY_TERM_MAX.unpack_from(body, with_repair)[0]
                      if len(body) > with_repair else 0)
    return HardState(term=term, vote=vote, commit=commit, conf=conf, conf_index=conf_index,
                     repair_index=repair_index, repair_term=repair_term,
                     entry_term_max=entry_term_max)
