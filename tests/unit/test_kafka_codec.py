"""The Kafka client-protocol codec: round trips of every API and version, header rules, the
ApiVersions downgrade, zero-copy records, and typed errors for what cannot be encoded."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.wire.errors import ErrorCode
from broker.wire.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    LocalProtocolError,
    MalformedRequestError,
    RequestHeader,
    UnknownApiKeyError,
    UnsupportedVersionError,
    api_versions_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    encode_response_parts,
    peek_correlation_id,
    unsupported_api_versions_response,
)
from broker.wire.kafka.messages import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    FetchableTopicResponse,
    FetchResponse,
    MetadataRequest,
    PartitionData,
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from broker.wire.kafka.codegen import Compiler
from broker.wire.kafka.primitives import DecodeError
from broker.wire.kafka.schema import (
    BOOL,
    BYTES,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UINT16,
    UINT32,
    UUID,
    VARINT,
    VARLONG,
    ArrayOf,
    Kind,
    Records,
    kf,
)
from tests.unit.test_kafka_strategies import (
    CASES,
    FAST,
    TEXT,
    case_id,
    message_strategy,
    struct_strategy,
)

# ---- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
@FAST
@given(data=st.data(), correlation_id=st.integers(-(1 << 31), (1 << 31) - 1),
       client_id=st.one_of(st.none(), TEXT))
def test_round_trip(case: tuple[int, int, str], data: st.DataObject, correlation_id: int,
                    client_id: str | None) -> None:
    key, version, side = case
    body = data.draw(message_strategy(key, version, side))
    header = RequestHeader(api_key=key, api_version=version, correlation_id=correlation_id,
                           client_id=client_id)
    if side == "request":
        frame = encode_request(header, body)
        got_header, got = decode_request(frame[4:])
        assert got_header == header
    else:
        frame = encode_response(header, body)
        got_header, got = decode_response(key, version, frame[4:])
        assert got_header.correlation_id == correlation_id
    assert got == body
    assert type(got) is type(body)


def test_absent_fields_take_schema_defaults() -> None:
    header = RequestHeader(api_key=ApiKey.FETCH, api_version=0, correlation_id=3)
    frame = encode_response(header, FetchResponse(throttle_time_ms=99, error_code=5,
                                                  session_id=7))
    _, got = decode_response(ApiKey.FETCH, 0, frame[4:])
    # v0 has none of these fields: they decode to Kafka's defaults
    assert (got.throttle_time_ms, got.error_code, got.session_id) == (0, 0, 0)
    assert PartitionData().last_stable_offset == -1
    assert MetadataRequest().allow_auto_topic_creation is True


def test_dict_bodies_are_accepted() -> None:
    header = RequestHeader(api_key=ApiKey.PRODUCE, api_version=7, correlation_id=1)
    body = {"acks": -1, "timeout_ms": 5, "topic_data": [
        {"name": "t", "partition_data": [{"index": 2, "records": b"xyz"}]}]}
    _, got = decode_request(encode_request(header, body)[4:])
    assert got.topic_data[0].partition_data[0].index == 2
    assert bytes(got.topic_data[0].partition_data[0].records) == b"xyz"
    with pytest.raises(LocalProtocolError, match="no field"):
        encode_request(header, {"acks": 1, "bogus": 2})


# ---- wire details ---------------------------------------------------------------------------


def test_produce_request_bytes_match_kafka_layout() -> None:
    header = RequestHeader(api_key=ApiKey.PRODUCE, api_version=3, correlation_id=7,
                           client_id="cid")
    body = ProduceRequest(acks=-1, timeout_ms=1000, topic_data=(TopicProduceData(
        name="t", partition_data=(PartitionProduceData(index=0, records=b"abc"),)),))
    expected = (
        b"\x00\x00\x00\x03\x00\x00\x00\x07\x00\x03cid"  # header v1
        b"\xff\xff"  # transactional_id null
        b"\xff\xff\x00\x00\x03\xe8"  # acks -1, timeout 1000
        b"\x00\x00\x00\x01\x00\x01t"  # 1 topic "t"
        b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03abc"  # partition 0, 3 bytes
    )
    frame = encode_request(header, body)
    assert frame == struct.pack(">i", len(expected)) + expected
    assert encode_request(header, body, framed=False) == expected


def test_records_decode_as_views_into_the_frame() -> None:
    header = RequestHeader(api_key=ApiKey.PRODUCE, api_version=8, correlation_id=1)
    payload = bytes(range(256)) * 256
    body = ProduceRequest(acks=1, timeout_ms=1, topic_data=(TopicProduceData(
        name="t", partition_data=(PartitionProduceData(index=0, records=payload),)),))
    frame = bytearray(encode_request(header, body)[4:])
    _, got = decode_request(frame)
    records = got.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records == payload
    frame[-1] ^= 0xFF  # the view shares the frame's memory: no copy was made
    assert records[-1] == payload[-1] ^ 0xFF


def test_fetch_records_can_be_several_buffers_and_parts_are_not_copied() -> None:
    header = RequestHeader(api_key=ApiKey.FETCH, api_version=11, correlation_id=9)
    a, b = b"A" * 1000, memoryview(b"B" * 500)
    body = FetchResponse(responses=(FetchableTopicResponse(topic="t", partitions=(
        PartitionData(partition_index=0, high_watermark=10, records=[a, b]),)),))
    parts = encode_response_parts(header, body)
    assert any(p is a for p in parts) and any(p is b for p in parts)
    frame = b"".join(parts)
    assert frame == encode_response(header, body)
    _, got = decode_response(ApiKey.FETCH, 11, frame[4:])
    assert got.responses[0].partitions[0].records == a + bytes(b)


def test_flexible_api_versions_request_uses_header_v2() -> None:
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=3, correlation_id=5,
                           client_id="librdkafka")
    body = ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.3")
    frame = encode_request(header, body, framed=False)
    # header v2: int16-length client_id, then an empty tagged-field section
    assert frame[:8 + 2 + 10 + 1] == b"\x00\x12\x00\x03\x00\x00\x00\x05\x00\x0alibrdkafka\x00"
    # body: compact strings (length + 1), then the body's empty tagged fields
    assert frame[21:] == b"\x0blibrdkafka\x042.3\x00"
    got_header, got = decode_request(frame)
    assert got_header == header and got == body


def test_api_versions_response_header_is_v0_even_when_flexible() -> None:
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=3, correlation_id=0x01020304)
    frame = encode_response(header, api_versions_response(), framed=False)
    # correlation id then straight to error_code: no tagged-field byte in the header
    assert frame[:6] == b"\x01\x02\x03\x04\x00\x00"
    _, got = decode_response(ApiKey.API_VERSIONS, 3, frame)
    ranges = {k.api_key: (k.min_version, k.max_version) for k in got.api_keys}
    assert ranges == {int(k): v for k, v in SUPPORTED_VERSIONS.items()}


def test_api_versions_tagged_fields_round_trip_and_are_omitted_when_default() -> None:
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=3, correlation_id=1)
    plain_frame = encode_response(header, ApiVersionsResponse(), framed=False)
    assert plain_frame.endswith(b"\x00")  # no tagged fields written
    body = ApiVersionsResponse(finalized_features_epoch=42, zk_migration_ready=True)
    _, got = decode_response(ApiKey.API_VERSIONS, 3, encode_response(header, body)[4:])
    assert got == body


def test_unknown_tagged_fields_are_skipped() -> None:
    header = RequestHeader(api_key=ApiKey.API_VERSIONS, api_version=3, correlation_id=1)
    body = ApiVersionsRequest(client_software_name="x", client_software_version="1")
    frame = bytearray(encode_request(header, body, framed=False))
    assert frame[-1] == 0  # body's tagged-field count
    frame[-1:] = b"\x02" + b"\x07\x02hi" + b"\x7f\x00"  # two unknown tags, one empty
    frame[10:11] = b"\x01\x05\x03abc"  # and one unknown tag in the header v2
    _, got = decode_request(frame)
    assert got == body


def test_metadata_v0_empty_topics_and_v1_null_topics() -> None:
    for version, topics in ((0, ()), (1, None), (4, ())):
        header = RequestHeader(api_key=ApiKey.METADATA, api_version=version, correlation_id=1)
        _, got = decode_request(encode_request(header, MetadataRequest(topics=topics))[4:])
        assert got.topics == topics
    header = RequestHeader(api_key=ApiKey.METADATA, api_version=0, correlation_id=1)
    with pytest.raises(LocalProtocolError, match="not nullable"):
        encode_request(header, MetadataRequest(topics=None))


# ---- the ApiVersions downgrade --------------------------------------------------------------


def _api_versions_frame(version: int, correlation_id: int, body: bytes) -> bytes:
    return struct.pack(">hhih", 18, version, correlation_id, 4) + b"test" + body


@pytest.mark.parametrize("version", [4, 5, 127, -1, 32767])
def test_unsupported_api_versions_gets_v0_error_35(version: int) -> None:
    frame = _api_versions_frame(version, 0x0BADF00D, b"\x00\x99anything at all")
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(frame)
    assert info.value.api_key == ApiKey.API_VERSIONS
    assert info.value.correlation_id == 0x0BADF00D
    answer = unsupported_api_versions_response(frame)
    assert answer == (struct.pack(">ii", 16, 0x0BADF00D)  # size, correlation id (header v0)
                      + struct.pack(">hi", 35, 1)  # error_code, one api
                      + struct.pack(">hhh", 18, 0, 3))  # ApiVersions v0-v3
    # a client that asked at v3+ reads it as v0, as Kafka's clients do
    header, body = decode_response(ApiKey.API_VERSIONS, 3, answer[4:])
    assert header.correlation_id == 0x0BADF00D
    assert body.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in body.api_keys] == [(18, 0, 3)]


def test_unsupported_api_versions_needs_only_the_correlation_id() -> None:
    assert unsupported_api_versions_response(b"\x00\x12\x00\x09\x00\x00\x00\x2a")[4:8] == \
        b"\x00\x00\x00\x2a"
    with pytest.raises(MalformedRequestError):
        unsupported_api_versions_response(b"\x00\x12\x00\x09\x00\x00")


def test_api_versions_v3_request_decodes() -> None:
    frame = (struct.pack(">hhih", 18, 3, 77, 9) + b"librdkafka"[:9] + b"\x00"
             + b"\x0blibrdkafka\x062.3.0\x00")
    header, body = decode_request(frame)
    assert (header.api_version, header.correlation_id, header.client_id) == (3, 77, "librdkafk")
    assert body == ApiVersionsRequest(client_software_name="librdkafka",
                                      client_software_version="2.3.0")


def test_other_api_at_unsupported_version_and_unknown_key() -> None:
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(struct.pack(">hhih", ApiKey.PRODUCE, 9, 5, -1))
    assert (info.value.api_key, info.value.api_version, info.value.correlation_id) == (0, 9, 5)
    with pytest.raises(UnknownApiKeyError) as unknown:
        decode_request(struct.pack(">hhih", 9999, 0, 6, -1))
    assert unknown.value.correlation_id == 6


# ---- local errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("body, match", [
    (ProduceRequest(acks=1 << 20), "ProduceRequest v3: .*-32768"),
    (ProduceRequest(topic_data=(TopicProduceData(name=None),)), "not nullable"),  # type: ignore[arg-type]
    (ProduceRequest(topic_data=(TopicProduceData(name="x" * 40000),)), "more than a string"),
    (ProduceRequest(topic_data=(TopicProduceData(name=b"bytes"),)), "ProduceRequest v3"),  # type: ignore[arg-type]
    (FetchResponse(), "expected a ProduceRequest"),
])
def test_values_the_protocol_cannot_carry_raise_local_errors(body: object, match: str) -> None:
    header = RequestHeader(api_key=ApiKey.PRODUCE, api_version=3, correlation_id=1)
    with pytest.raises(LocalProtocolError, match=match):
        encode_request(header, body)


def test_encoding_a_version_we_do_not_speak_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="not a version we speak"):
        encode_request(RequestHeader(api_key=ApiKey.PRODUCE, api_version=9, correlation_id=1),
                       ProduceRequest())
    with pytest.raises(LocalProtocolError):
        decode_response(ApiKey.FETCH, 12, b"\x00\x00\x00\x01")


def test_peek_correlation_id() -> None:
    header = RequestHeader(api_key=ApiKey.FETCH, api_version=4, correlation_id=1234)
    assert peek_correlation_id(encode_response(header, FetchResponse())[4:]) == 1234


# ---- every primitive type, through a schema of our own --------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Inner:
    a: int = kf(INT8)
    b: str | None = kf(STRING, nullable="0+")


@dataclass(frozen=True, slots=True, kw_only=True)
class _AllKinds:
    i8: int = kf(INT8)
    i16: int = kf(INT16)
    i32: int = kf(INT32)
    i64: int = kf(INT64)
    u16: int = kf(UINT16)
    u32: int = kf(UINT32)
    vi: int = kf(VARINT)
    vl: int = kf(VARLONG)
    f64: float = kf(FLOAT64)
    flag: bool = kf(BOOL)
    ident: uuid.UUID = kf(UUID)
    text: str = kf(STRING)
    maybe_text: str | None = kf(STRING, nullable="0+")
    blob: bytes = kf(BYTES)
    maybe_blob: bytes | None = kf(BYTES, nullable="0+")
    records: Records | None = kf(RECORDS, nullable="0+")
    inner: _Inner = kf(_Inner)
    inners: Sequence[_Inner] | None = kf(ArrayOf(_Inner), nullable="0+")
    longs: Sequence[int] = kf(ArrayOf(INT64))
    flags: Sequence[bool] = kf(ArrayOf(BOOL))
    texts: Sequence[str] = kf(ArrayOf(STRING))
    varlongs: Sequence[int] = kf(ArrayOf(VARLONG))
    tagged_text: str | None = kf(STRING, nullable="0+", tag=0, default=None)
    tagged_inner: _Inner = kf(_Inner, tag=5)
    tagged_longs: Sequence[int] = kf(ArrayOf(INT64), tag=2)


@pytest.mark.parametrize("flexible", [False, True])
@FAST
@given(data=st.data())
def test_every_primitive_type_round_trips(flexible: bool, data: st.DataObject) -> None:
    compiler = Compiler()
    value = data.draw(struct_strategy(_AllKinds, 0, flexible))
    parts: list[bytes] = []
    compiler.writer(_AllKinds, 0, flexible)(value, parts.append)
    frame = memoryview(b"".join(parts))
    got, end = compiler.reader(_AllKinds, 0, flexible)(frame, 0, len(frame))
    assert end == len(frame)
    assert got == value
    for cut in range(len(frame)):
        with pytest.raises(DecodeError):
            compiler.reader(_AllKinds, 0, flexible)(frame, 0, cut)


@pytest.mark.parametrize("kind, value, encoded", [
    (VARINT, 0, b"\x00"), (VARINT, -1, b"\x01"), (VARINT, 1, b"\x02"), (VARINT, 300, b"\xd8\x04"),
    (VARINT, -(1 << 31), b"\xff\xff\xff\xff\x0f"), (VARLONG, (1 << 63) - 1, b"\xfe" + b"\xff" * 8 + b"\x01"),
    (UINT16, 65535, b"\xff\xff"), (UINT32, (1 << 32) - 1, b"\xff\xff\xff\xff"),
    (FLOAT64, 1.5, b"\x3f\xf8" + b"\x00" * 6), (BOOL, True, b"\x01"),
])
def test_primitive_encodings(kind: Kind, value: object, encoded: bytes) -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class One:
        v: object = kf(kind)

    parts: list[bytes] = []
    Compiler().writer(One, 0, False)(One(v=value), parts.append)
    assert b"".join(parts) == encoded
    got, _ = Compiler().reader(One, 0, False)(memoryview(encoded), 0, len(encoded))
    assert got.v == value


def test_varint_out_of_range_is_a_local_error() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class One:
        v: int = kf(VARINT)

    with pytest.raises(LocalProtocolError, match="does not fit a varint"):
        Compiler().writer(One, 0, False)(One(v=1 << 31), [].append)
