"""Decode speed of `cdc apply` in one process, no Kafka and no database: Kafka records (key, value) of
the throughput bench's events → `Consumed` events, per encoding (plain JSON, connect-json, Avro in the Confluent
wire format with its schemas looked up once), beside the baseline of only parsing the same values
(orjson.loads for JSON, fastavro's schemaless_reader with the parsed schema for Avro).

    .venv/bin/python bench/decode_speed.py --events 50000 --out docs/results/decode-speed.json
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

from cdc_throughput import TABLE, bench_schema, encoded, make_events
from report import emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Record:
    """What `connectors.records.decode` reads of a confluent_kafka Message."""

    __slots__ = ("_key", "_offset", "_value")

    def __init__(self, key: bytes, value: bytes, offset: int) -> None:
        self._key, self._value, self._offset = key, value, offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return f"icetide.sales.{TABLE}"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


def _avro(records: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], Any, Any]:
    from fastavro import parse_schema

    from connectors.records import AvroDecoder
    from icetide.avro import AvroCodec, key_schema, value_schema
    from icetide.events import from_json, loads

    schemas = {1: key_schema(bench_schema(), ["sale_id"], "sales", TABLE),
               2: value_schema(bench_schema(), "sales", TABLE)}
    codec = AvroCodec(schemas[1], schemas[2], 1, 2)
    out = [(codec.encode_key(loads(k)), codec.encode_value(from_json(v))) for k, v in records]
    return out, AvroDecoder(schemas.__getitem__), parse_schema(schemas[2], {})


def _each(fn: Any, items: list[Any]) -> None:
    for item in items:  # results dropped: what is timed is the call, not keeping every result alive
        fn(item)


def _best_rate(fn: Any, n: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - started))
    return round(best, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import orjson
    from fastavro import schemaless_reader

    from connectors.records import decode

    base = make_events(args.events, args.seed)
    results: dict[str, Any] = {"events": len(base), "repeats": args.repeats, "encodings": {}}
    avro_records, avro, parsed = _avro(base)
    for encoding in ("json", "connect-json", "avro"):
        records = avro_records if encoding == "avro" else encoded(base, encoding)
        msgs = [Record(k, v, i) for i, (k, v) in enumerate(records)]
        decoder = avro if encoding == "avro" else None
        rate = _best_rate(lambda msgs=msgs, decoder=decoder: _each(lambda m: decode(m, decoder), msgs), len(msgs),
                          args.repeats)
        if encoding == "avro":
            values = [v[5:] for _, v in records]
            def read(body: bytes) -> Any:
                return schemaless_reader(io.BytesIO(body), parsed, None)

            parse = _best_rate(lambda values=values, read=read: _each(read, values), len(values), args.repeats)
        else:
            values = [v for _, v in records]
            parse = _best_rate(lambda values=values: _each(orjson.loads, values), len(values), args.repeats)
        results["encodings"][encoding] = {"decode_events_per_s": rate, "parse_only_events_per_s": parse,
                                          "ratio_decode_to_parse": round(rate / parse, 3)}
        print(encoding, results["encodings"][encoding], file=sys.stderr)
    emit(results, args.out)


if __name__ == "__main__":
    main()
