"""Throughput of the RecordBatch v2 codec on one core: a program that prints figures.

    python -m benchmarks.codec_bench [--seconds S] [--batch-bytes B] [--codecs C,C,...]

For 100 B and 1 KiB records (null key, no headers, values of words drawn at random from a small
vocabulary, which lz4 compresses about 2x, like typical JSON or log lines), batches of about
`--batch-bytes` of records, under each codec (none, gzip, snappy, lz4, zstd by default):
encode_batch and decode_batches in records/s and MiB/s of record values, the batch's size, and
verify_batch (length, magic, CRC-32C; what the broker does per batch) in MiB/s of batch bytes.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.wire.records import Compression, Record, decode_batches, encode_batch, verify_batch

__all__ = ["main"]

_RECORD_OVERHEAD_BYTES = 8  # length, attributes, deltas, key and value lengths, header count
_WORDS = (
    b"order user item price status shipped pending id amount currency eur usd region eu us "
    b"warehouse sku quantity customer timestamp created updated true false null version"
).split()


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    record_bytes: int
    compression: str
    records_per_batch: int
    batch_bytes: int
    encode_records_per_s: float
    decode_records_per_s: float
    verify_mib_per_s: float


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of `fn` per second, over about `seconds` of wall time after one warm-up call."""
    fn()
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def _records(record_bytes: int, count: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    base_ms = 1_700_000_000_000
    return [
        Record(key=None, value=_text(rng, record_bytes), headers=[], timestamp_ms=base_ms + i // 16)
        for i in range(count)
    ]


def _text(rng: random.Random, size: int) -> bytes:
    words = b" ".join(rng.choices(_WORDS, k=size // 3))
    return words[:size]


def measure(record_bytes: int, compression: str, batch_bytes: int, seconds: float) -> Row:
    per_batch = max(1, batch_bytes // (record_bytes + _RECORD_OVERHEAD_BYTES))
    records = _records(record_bytes, per_batch, seed=record_bytes)
    buf = encode_batch(records, compression=compression)

    def decode() -> None:
        for batch in decode_batches(buf):
            for r in batch.records:
                r.value  # touch every record, as a consumer would

    encode_rate = _rate(lambda: encode_batch(records, compression=compression), seconds)
    decode_rate = _rate(decode, seconds)
    verify_rate = _rate(lambda: verify_batch(buf), seconds)
    return Row(
        record_bytes=record_bytes, compression=compression, records_per_batch=per_batch,
        batch_bytes=len(buf), encode_records_per_s=encode_rate * per_batch,
        decode_records_per_s=decode_rate * per_batch,
        verify_mib_per_s=verify_rate * len(buf) / (1 << 20),
    )


def _print_table(rows: list[Row]) -> None:
    print(f"{'record':>7} {'codec':>6} {'recs/batch':>10} {'batch B':>8} "
          f"{'encode rec/s':>13} {'enc MiB/s':>9} {'decode rec/s':>13} {'dec MiB/s':>9} "
          f"{'verify MiB/s':>12}")
    for r in rows:
        mib = r.record_bytes / (1 << 20)
        print(f"{r.record_bytes:>6}B {r.compression:>6} {r.records_per_batch:>10} "
              f"{r.batch_bytes:>8} {r.encode_records_per_s:>13,.0f} "
              f"{r.encode_records_per_s * mib:>9.1f} {r.decode_records_per_s:>13,.0f} "
              f"{r.decode_records_per_s * mib:>9.1f} {r.verify_mib_per_s:>12,.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codec_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="wall time per measurement (default 1.0)")
    parser.add_argument("--batch-bytes", type=int, default=16 << 10,
                        help="record bytes per batch (default 16384)")
    parser.add_argument("--codecs", default=",".join(Compression),
                        help="comma-separated codecs (default: all)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.batch_bytes <= 0:
        parser.error("--seconds and --batch-bytes must be positive")
    codecs = args.codecs.split(",")
    unknown = set(codecs) - set(Compression)
    if unknown:
        parser.error(f"unknown codecs {sorted(unknown)}; known: {', '.join(Compression)}")
    rows = [
        measure(size, codec, args.batch_bytes, args.seconds)
        for size in (100, 1024)
        for codec in codecs
    ]
    _print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
