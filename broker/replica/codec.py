"""Raft messages on the peer bus: one message = a header frame + one frame per entry payload.

Header frame layout (big-endian), common part `>BBIIIQ`:
    version u8 (=1), type u8, group u32, src u32, dst u32, term u64
then per type:
    VOTE_REQ   last_index u64, last_term u64, flags u8 (1 pre_vote, 2 transfer)
    VOTE_RESP  granted u8, pre_vote u8
    APPEND_REQ prev_index u64, prev_term u64, commit u64, count u32,
               count x (term u64, kind u8, length u32)   -- entry i has index prev_index+1+i
    APPEND_RESP success u8, index u64, hint_index u64, hint_term u64
    HEARTBEAT  commit u64
    HB_RESP    (nothing)
    TIMEOUT_NOW (nothing)
    LOG_START  start_index u64, start_term u64, commit u64, conf_index u64, has_conf u8,
               voters u16, learners u16, (voters + learners) x u32
    REPAIR_MARK index u64, log_term u64
A type added later (REPAIR_MARK) is its own message, never a field of an older one: a peer that
does not know it drops just that message (an unknown type), and the appends beside it still
pass its exact length checks during a rolling upgrade.
Entry payloads travel as their own frames so large record batches are forwarded without copies.
Malformed input raises `PeerMessageError`; the caller drops and counts it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from broker.raft.messages import (
    AppendRequest,
    AppendResponse,
    ConfState,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    LogStartRequest,
    Message,
    RepairMark,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

__all__ = [
    "PeerMessageError", "encode_message", "decode_message", "ENTRIES_PER_MESSAGE_MAX",
    "encode_control", "decode_control", "message_type", "T_BROKER_HEARTBEAT", "T_REQUEST",
    "T_RESPONSE", "CONTROL_TYPES",
]

VERSION = 1
ENTRIES_PER_MESSAGE_MAX = 1 << 16

_COMMON = struct.Struct(">BBIIIQ")
_VOTE_REQ = struct.Struct(">QQB")
_VOTE_RESP = struct.Struct(">BB")
_APPEND_REQ = struct.Struct(">QQQI")
_ENTRY = struct.Struct(">QBI")
_APPEND_RESP = struct.Struct(">BQQQ")
_U64 = struct.Struct(">Q")
_LOG_START = struct.Struct(">QQQQBHH")
_U32 = struct.Struct(">I")

T_VOTE_REQ, T_VOTE_RESP, T_APPEND_REQ, T_APPEND_RESP = 1, 2, 3, 4
T_HEARTBEAT, T_HB_RESP, T_TIMEOUT_NOW, T_LOG_START = 5, 6, 7, 8
T_REPAIR_MARK = 9
_REPAIR_MARK = struct.Struct(">QQ")

Buffer = bytes | bytearray | memoryview


class PeerMessageError(ValueError):
    """A peer sent a message we cannot decode."""


def encode_message(group: int, m: Message) -> list[Buffer]:
    match m:
        case AppendRequest():
            parts = [
                _COMMON.pack(VERSION, T_APPEND_REQ, group, m.src, m.dst, m.term),
                _APPEND_REQ.pack(m.prev_index, m.prev_term, m.commit, len(m.entries)),
            ]
            parts.extend(_ENTRY.pack(e.term, e.kind, len(e.data)) for e in m.entries)
            frames: list[Buffer] = [b"".join(parts)]
            frames.extend(e.data for e in m.entries)
            return frames
        case AppendResponse():
            flags = (1 if m.success else 0) | (2 if m.repairing else 0)
            body = _APPEND_RESP.pack(flags, m.index, m.hint_index, m.hint_term)
            return [_COMMON.pack(VERSION, T_APPEND_RESP, group, m.src, m.dst, m.term) + body]
        case Heartbeat():
            body = _U64.pack(m.commit)
            return [_COMMON.pack(VERSION, T_HEARTBEAT, group, m.src, m.dst, m.term) + body]
        case HeartbeatResponse():
            return [_COMMON.pack(VERSION, T_HB_RESP, group, m.src, m.dst, m.term)]
        case VoteRequest():
            flags = (1 if m.pre_vote else 0) | (2 if m.transfer else 0)
            body = _VOTE_REQ.pack(m.last_index, m.last_term, flags)
            return [_COMMON.pack(VERSION, T_VOTE_REQ, group, m.src, m.dst, m.term) + body]
        case VoteResponse():
            body = _VOTE_RESP.pack(m.granted, m.pre_vote)
            return [_COMMON.pack(VERSION, T_VOTE_RESP, group, m.src, m.dst, m.term) + body]
        case TimeoutNow():
            return [_COMMON.pack(VERSION, T_TIMEOUT_NOW, group, m.src, m.dst, m.term)]
        case LogStartRequest():
            voters = sorted(m.conf.voters) if m.conf is not None else []
            learners = sorted(m.conf.learners) if m.conf is not None else []
            body = _LOG_START.pack(m.start_index, m.start_term, m.commit, m.conf_index,
                                   m.conf is not None, len(voters), len(learners))
            ids = b"".join(_U32.pack(n) for n in voters + learners)
            return [_COMMON.pack(VERSION, T_LOG_START, group, m.src, m.dst, m.term) + body + ids]
        case RepairMark():
            body = _REPAIR_MARK.pack(m.index, m.log_term)
            return [_COMMON.pack(VERSION, T_REPAIR_MARK, group, m.src, m.dst, m.term) + body]
    raise AssertionError(f"unknown message {m!r}")


def _unpack(s: struct.Struct, buf: Buffer, pos: int) -> tuple[int, ...]:
    if len(buf) < pos + s.size:
        raise PeerMessageError(f"truncated header: {len(buf)} bytes, need {pos + s.size}")
    return s.unpack_from(buf, pos)


def decode_message(frames: Sequence[Buffer]) -> tuple[int, Message]:
    """Returns (group id, message). Raises PeerMessageError on anything malformed."""
    if not frames:
        raise PeerMessageError("empty message")
    head = frames[0]
    version, kind, group, src, dst, term = _unpack(_COMMON, head, 0)
    if version != VERSION:
        raise PeerMessageError(f"unknown message version {version}")
    if src == 0 or dst == 0:
        raise PeerMessageError("node id 0 is reserved")
    pos = _COMMON.size
    if kind == T_APPEND_REQ:
        return group, _decode_append(head, pos, frames, src, dst, term)
    if len(frames) != 1:
        raise PeerMessageError(f"message type {kind} carries {len(frames) - 1} stray frames")
    m: Message
    if kind == T_APPEND_RESP:
        flags, index, hint_index, hint_term = _unpack(_APPEND_RESP, head, pos)
        m = AppendResponse(src=src, dst=dst, term=term, success=bool(flags & 1), index=index,
                           hint_index=hint_index, hint_term=hint_term, repairing=bool(flags & 2))
    elif kind == T_HEARTBEAT:
        (commit,) = _unpack(_U64, head, pos)
        m = Heartbeat(src=src, dst=dst, term=term, commit=commit)
    elif kind == T_HB_RESP:
        m = HeartbeatResponse(src=src, dst=dst, term=term)
    elif kind == T_VOTE_REQ:
        last_index, last_term, flags = _unpack(_VOTE_REQ, head, pos)
        m = VoteRequest(src=src, dst=dst, term=term, last_index=last_index, last_term=last_term,
                        pre_vote=bool(flags & 1), transfer=bool(flags & 2))
    elif kind == T_VOTE_RESP:
        granted, pre_vote = _unpack(_VOTE_RESP, head, pos)
        m = VoteResponse(src=src, dst=dst, term=term, granted=bool(granted),
                         pre_vote=bool(pre_vote))
    elif kind == T_TIMEOUT_NOW:
        m = TimeoutNow(src=src, dst=dst, term=term)
    elif kind == T_LOG_START:
        start_index, start_term, commit, conf_index, has_conf, n_v, n_l = _unpack(
            _LOG_START, head, pos)
        pos += _LOG_START.size
        if len(head) != pos + _U32.size * (n_v + n_l) or (not has_conf and n_v + n_l):
            raise PeerMessageError("log-start membership does not match its length")
        ids = [_U32.unpack_from(head, pos + _U32.size * i)[0] for i in range(n_v + n_l)]
        conf = ConfState(voters=frozenset(ids[:n_v]), learners=frozenset(ids[n_v:])) \
            if has_conf else None
        m = LogStartRequest(src=src, dst=dst, term=term, start_index=start_index,
                            start_term=start_term, commit=commit, conf=conf,
                            conf_index=conf_index)
    elif kind == T_REPAIR_MARK:
        index, log_term = _unpack(_REPAIR_MARK, head, pos)
        m = RepairMark(src=src, dst=dst, term=term, index=index, log_term=log_term)
    else:
        raise PeerMessageError(f"unknown message type {kind}")
    return group, m


def _decode_append(
    head: Buffer, pos: int, frames: Sequence[Buffer], src: int, dst: int, term: int
) -> AppendRequest:
    prev_index, prev_term, commit, count = _unpack(_APPEND_REQ, head, pos)
    pos += _APPEND_REQ.size
    if count > ENTRIES_PER_MESSAGE_MAX or count != len(frames) - 1:
        raise PeerMessageError(f"append declares {count} entries but has {len(frames) - 1} frames")
    if len(head) != pos + count * _ENTRY.size:
        raise PeerMessageError("append header length does not match its entry count")
    entries = []
    last_term = prev_term
    for i in range(count):
        e_term, e_kind, length = _ENTRY.unpack_from(head, pos + i * _ENTRY.size)
        data = frames[i + 1]
        if length != len(data):
            raise PeerMessageError(f"entry {i}: declared {length} bytes, frame has {len(data)}")
        if e_term < last_term or e_kind > EntryKind.EMPTY:
            raise PeerMessageError(f"entry {i}: bad term {e_term} or kind {e_kind}")
        last_term = e_term
        entries.append(Entry(index=prev_index + 1 + i, term=e_term, kind=EntryKind(e_kind),
                             data=bytes(data) if not isinstance(data, bytes) else data))
    return AppendRequest(src=src, dst=dst, term=term, prev_index=prev_index, prev_term=prev_term,
                         entries=tuple(entries), commit=commit)


# ---- broker-to-broker control messages (not Raft): one frame, `>BB` + UTF-8 JSON object ------
T_BROKER_HEARTBEAT, T_REQUEST, T_RESPONSE = 64, 65, 66
CONTROL_TYPES = frozenset({T_BROKER_HEARTBEAT, T_REQUEST, T_RESPONSE})
CONTROL_BYTES_MAX = 4 << 20
_CONTROL = struct.Struct(">BB")


def message_type(frames: Sequence[Buffer]) -> int:
    """The type byte of a peer message (Raft types 1-9, control types 64-66); 0 if malformed."""
    if not frames or len(frames[0]) < 2:
        return 0
    return frames[0][1]


def encode_control(kind: int, body: dict[str, object]) -> list[Buffer]:
    assert kind in CONTROL_TYPES, kind
    return [_CONTROL.pack(VERSION, kind) + json.dumps(body, separators=(",", ":")).encode()]


def decode_control(frames: Sequence[Buffer]) -> tuple[int, dict[str, object]]:
    if len(frames) != 1 or len(frames[0]) < 2 or len(frames[0]) > CONTROL_BYTES_MAX:
        raise PeerMessageError("control message must be one frame of bounded size")
    version, kind = _CONTROL.unpack_from(frames[0], 0)
    if version != VERSION or kind not in CONTROL_TYPES:
        raise PeerMessageError(f"unknown control message version {version} type {kind}")
    try:
        body = json.loads(bytes(frames[0][2:]))
    except (UnicodeDecodeError, ValueError) as e:
        raise PeerMessageError(f"control message is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise PeerMessageError("control message body must be a JSON object")
    return kind, body
