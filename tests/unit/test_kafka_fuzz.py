"""Hostile input to the Kafka codec: only typed protocol errors, never a crash, hang or huge
allocation. Random bytes, every truncation of valid frames, bit flips of valid frames, and the
specific faults (bad lengths, bad UTF-8, long varints, oversized arrays, trailing bytes).
Randomized loops print the seed that replays them."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.wire.kafka import (
    ApiKey,
    MalformedRequestError,
    MalformedResponseError,
    RemoteProtocolError,
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from broker.wire.limits import ARRAY_LENGTH_MAX
from tests.unit.test_kafka_strategies import CASES, FAST, case_id, message_strategy, served

SEED = 20240607


def _decode(side: str, key: int, version: int, frame: bytes | bytearray) -> Any:
    if side == "request":
        return decode_request(frame)
    return decode_response(key, version, frame)


def _valid_frame(side: str, key: int, version: int, body: Any) -> bytes:
    header = RequestHeader(api_key=key, api_version=version, correlation_id=7, client_id="c")
    encode = encode_request if side == "request" else encode_response
    return encode(header, body, framed=False)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@settings(FAST, max_examples=4)
@given(data=st.data(), seed=st.integers(0, 1 << 32))
def test_truncations_and_bit_flips(case: tuple[int, int, str], data: st.DataObject,
                                   seed: int) -> None:
    key, version, side = case
    frame = _valid_frame(side, key, version, data.draw(message_strategy(key, version, side)))
    malformed = MalformedRequestError if side == "request" else MalformedResponseError
    for cut in range(len(frame)):  # every strict prefix lacks bytes the full frame needed
        with pytest.raises(malformed):
            _decode(side, key, version, frame[:cut])
    with pytest.raises(malformed, match="trailing"):
        _decode(side, key, version, frame + b"\x00")
    rng = random.Random(seed)
    for _ in range(40):
        flipped = bytearray(frame)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(flipped))
            flipped[at] ^= 1 << rng.randrange(8)
        try:
            _decode(side, key, version, flipped)
        except RemoteProtocolError:
            pass


def test_random_request_bytes() -> None:
    rng = random.Random(SEED)
    keys = [k for k, _ in served()]
    for i in range(3000):
        size = rng.choice((0, 1, 7, 8, 9, 12, 20, 64, 300))
        frame = bytearray(rng.randbytes(size))
        if i % 2 and size >= 8:  # aim at APIs and versions we serve, so bodies get parsed
            key = rng.choice(keys)
            struct.pack_into(">hh", frame, 0, key, rng.randint(0, 12))
        try:
            decode_request(frame)
        except RemoteProtocolError:
            pass
        except Exception as e:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"seed {SEED}, frame {bytes(frame)!r}: {e!r}") from e


def test_random_response_bytes() -> None:
    rng = random.Random(SEED + 1)
    cases = list(served())
    for _ in range(3000):
        key, version = rng.choice(cases)
        frame = rng.randbytes(rng.choice((0, 3, 4, 5, 9, 16, 40, 200)))
        try:
            decode_response(key, version, frame)
        except RemoteProtocolError:
            pass
        except Exception as e:  # pragma: no cover
            raise AssertionError(f"seed {SEED + 1}, {key} v{version}, {frame!r}: {e!r}") from e


# ---- specific faults ------------------------------------------------------------------------

def _request(api_key: int, version: int, body: bytes, client_id: bytes = b"\xff\xff") -> bytes:
    return struct.pack(">hhi", api_key, version, 1) + client_id + body


def _fault(frame: bytes, match: str) -> MalformedRequestError:
    with pytest.raises(MalformedRequestError, match=match) as info:
        decode_request(frame)
    return info.value


def test_short_header() -> None:
    for cut in range(8):
        error = _fault(struct.pack(">hhi", 18, 0, 1)[:cut], "shorter than")
        assert error.offset == 0 and error.correlation_id is None


def test_negative_and_huge_lengths() -> None:
    # SaslHandshake v1: mechanism string
    error = _fault(_request(17, 1, b"\xff\xfe"), r"invalid length -2 .* byte 10")
    assert (error.api_key, error.api_version, error.correlation_id, error.offset) == (17, 1, 1, 10)
    _fault(_request(17, 1, b"\xff\xff"), "not nullable")
    _fault(_request(17, 1, b"\x7f\xff" + b"a" * 10), "needs 32767 bytes")
    # SaslAuthenticate v0: bytes with a 2 GiB length and a negative one
    _fault(_request(36, 0, b"\x7f\xff\xff\xff"), "needs 2147483647 bytes")
    _fault(_request(36, 0, b"\x80\x00\x00\x00"), "invalid length")
    # a client_id of negative length
    _fault(_request(18, 0, b"", client_id=b"\xff\xf0"), "RequestHeader.client_id")


def test_arrays_longer_than_the_limit_or_the_bytes_left() -> None:
    # DescribeGroups v0: groups []string
    too_many = struct.pack(">i", ARRAY_LENGTH_MAX + 1)
    _fault(_request(15, 0, too_many), f"more than the {ARRAY_LENGTH_MAX} allowed")
    _fault(_request(15, 0, struct.pack(">i", 1000) + b"\x00\x00" * 10),
           "claims 1000 elements .* only 20 bytes")
    _fault(_request(15, 0, struct.pack(">i", -7)), "invalid length -7")
    # Metadata v1 topics may be null, v0 topics may not
    assert decode_request(_request(3, 1, b"\xff\xff\xff\xff"))[1].topics is None
    _fault(_request(3, 0, b"\xff\xff\xff\xff"), "not nullable")


def test_invalid_utf8() -> None:
    error = _fault(_request(17, 0, b"\x00\x03a\xffb"), "invalid UTF-8 in SaslHandshakeRequest")
    assert error.offset == 13
    _fault(_request(17, 0, b"", client_id=b"\x00\x02\xc3\x28"), "invalid UTF-8")


def test_varints_too_long_or_truncated() -> None:
    head = struct.pack(">hhi", 18, 3, 1) + b"\xff\xff"  # ApiVersions v3, null client_id
    _fault(head + b"\x00" + b"\x80\x80\x80\x80\x80\x01" + b"x", "longer than 5 bytes")
    _fault(head + b"\x00" + b"\x80\x80", "truncated")
    _fault(head + b"\x00" + b"\xff\xff\xff\xff\x7f", "out of range")
    # a tagged field whose size runs past the frame, and one whose value is shorter than its size
    _fault(head + b"\x01\x00\x7f", "tagged fields")
    body = b"\x02a\x02b"
    _fault(head + b"\x00" + body + b"\x01\x00\x05ab", "needs 5 bytes")


def test_tagged_field_size_must_match_its_value() -> None:
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=3, correlation_id=1)
    frame = bytearray(encode_response(header, {"zk_migration_ready": True}, framed=False))
    assert frame[-4:] == b"\x01\x03\x01\x01"  # one tagged field: tag 3, size 1, true
    frame[-4:] = b"\x01\x03\x02\x01\x00"  # size 2 for a one-byte bool
    with pytest.raises(MalformedResponseError, match="does not match"):
        decode_response(ApiKey.API_VERSIONS, 3, frame)
