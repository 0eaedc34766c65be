"""Prints µs per op of the Kafka codec's hot paths (a program, not a test)."""
import timeit
from broker.wire.kafka import RequestHeader, ApiKey, encode_request, decode_request, encode_response, encode_response_parts
from broker.wire.kafka.messages import (ProduceRequest, TopicProduceData, PartitionProduceData,
    FetchResponse, FetchableTopicResponse, PartitionData, ProduceResponse, TopicProduceResponse, PartitionProduceResponse)

def bench(label, fn, n):
    best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
    print(f"{label:60s} {best:8.2f} us/op")

records = bytes(64 * 1024)
for v in (3, 7, 8):
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=(
        TopicProduceData(name="orders", partition_data=(PartitionProduceData(index=0, records=records),)),))
    frame = encode_request(RequestHeader(api_key=ApiKey.PRODUCE, api_version=v, correlation_id=1, client_id="rdkafka"), req)[4:]
    bench(f"decode Produce v{v} request, 1 partition x 64 KiB", lambda: decode_request(frame), 20000)

hdr = RequestHeader(api_key=ApiKey.PRODUCE, api_version=8, correlation_id=1)
resp = ProduceResponse(responses=(TopicProduceResponse(name="orders", partition_responses=(PartitionProduceResponse(index=0, base_offset=12345),)),))
bench("encode Produce v8 response, 1 partition", lambda: encode_response(hdr, resp), 20000)

batch = bytes(16 * 1024)
for v in (4, 11):
    fr = FetchResponse(responses=(FetchableTopicResponse(topic="orders", partitions=tuple(
        PartitionData(partition_index=i, high_watermark=1000, last_stable_offset=1000, log_start_offset=0,
                      aborted_transactions=None, records=memoryview(batch)) for i in range(6))),))
    h = RequestHeader(api_key=ApiKey.FETCH, api_version=v, correlation_id=1)
    bench(f"encode Fetch v{v} response, 6 partitions x 16 KiB (bytes)", lambda: encode_response(h, fr), 20000)
    bench(f"encode Fetch v{v} response, 6 partitions x 16 KiB (parts)", lambda: encode_response_parts(h, fr), 20000)
    fr0 = FetchResponse(responses=(FetchableTopicResponse(topic="orders", partitions=tuple(
        PartitionData(partition_index=i, high_watermark=1000, records=None) for i in range(6))),))
    bench(f"encode Fetch v{v} response, 6 partitions, no records", lambda: encode_response(h, fr0), 20000)
