"""Throughput: change events/s from Kafka into PostgreSQL (`cdc apply`), beside the raw Kafka rates.

One run, one set of messages, one machine:
  0. kafka     — Kafka's own `ProducerPerformance` (Java, from kafka-tools) sending the same N event
     values (drawn from a payload file of them, no keys) with the same producer settings: the
     raw Kafka produce rate, the baseline of the ratio.
  1. produce   — the N encoded change events (Debezium JSON, keyed) produced to a fresh topic with a
     plain confluent-kafka producer (lz4, linger 20 ms, acks=all): the Python produce rate.
  2. consume   — the same N records read back by a plain consumer (read_committed, no decoding, no
     sink): the raw Kafka consume rate, the ceiling of any consumer on this machine.
  3. apply     — the real `icetide cdc apply --sink postgres --once --workers K` (subprocess, its summary)
     into a fresh database of a real PostgreSQL server, with 1..K consumer processes of one group
     over P partitions. events/s = events applied / the longest active time of a process (first
     record received → last batch committed: the sustained rate, without process start-up and
     group join, which `events_per_s_incl_startup` includes).
Each encoding (`--encodings`: plain JSON, connect-json) × worker count is one run on its own topic. The
figure is the ratio apply / produce. The events: a keyed table (vendas-like, 10 columns),
70 % inserts of new keys, 20 % updates, 10 % deletes, in snapshots of 5,000 events.

    .venv/bin/python bench/cdc_throughput.py --events 300000 --partitions 2 --consumers 1,2 \
        --encodings json,connect-json --out docs/results/cdc-throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ICETIDE = str(Path(sys.executable).with_name("icetide"))
NAMESPACE, TABLE = "sales", "vendas_bench"


def make_events(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) records of a plausible change stream, with their Iceberg positions."""
    from icetide.events import ChangeEvent, Source, key_to_json, to_json

    rng = random.Random(seed)
    live: dict[int, dict[str, Any]] = {}
    keys: list[int] = []
    out = []
    now = int(time.time() * 1000)
    next_id = 0
    for i in range(n):
        seq, ordinal = 1 + i // 5000, i % 5000
        source = Source(catalog="lake", db=NAMESPACE, table=TABLE, snapshot_id=10_000 + seq, sequence_number=seq,
                        commit_ts_ms=now, ordinal=ordinal)
        roll = rng.random()
        if roll < 0.7 or len(keys) < 100:
            key = next_id
            next_id += 1
            before = None
        else:
            slot = rng.randrange(len(keys))
            key = keys[slot]
            before = live[key]
            if roll >= 0.9:  # delete
                keys[slot] = keys[-1]
                keys.pop()
                del live[key]
                out.append((key_to_json({"sale_id": key}), to_json(ChangeEvent("d", before, None, source))))
                continue
        after = {"sale_id": key, "sale_date": "2025-03-04", "customer_id": rng.randrange(10**6),
                 "product": f"PROD_{rng.randrange(1000):04d}", "category": rng.choice("ABCDE"),
                 "region": rng.choice(["north", "south", "east", "west"]), "quantity": rng.randrange(1, 10),
                 "unit_price": f"{rng.randrange(100, 100_000) / 100:.2f}",
                 "total": f"{rng.randrange(100, 1_000_000) / 100:.2f}", "created_at": "2025-03-04T10:11:12.123456"}
        if before is None:
            keys.append(key)
        live[key] = after
        event = ChangeEvent("u" if before else "c", before, after, source)
        out.append((key_to_json({"sale_id": key}), to_json(event)))
    return out


def bench_schema() -> Any:
    """The Iceberg schema of the bench table (what connect-json events carry)."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, DecimalType, LongType, NestedField, StringType, TimestampType

    return Schema(NestedField(1, "sale_id", LongType(), required=True), NestedField(2, "sale_date", DateType()),
                  NestedField(3, "customer_id", LongType()), NestedField(4, "product", StringType()),
                  NestedField(5, "category", StringType()), NestedField(6, "region", StringType()),
                  NestedField(7, "quantity", LongType()), NestedField(8, "unit_price", DecimalType(10, 2)),
                  NestedField(9, "total", DecimalType(12, 2)), NestedField(10, "created_at", TimestampType()),
                  identifier_field_ids=[1])


def encoded(records: list[tuple[bytes, bytes]], encoding: str) -> list[tuple[bytes, bytes]]:
    """The JSON records re-encoded (`connect-json`: Kafka Connect's JsonConverter with schemas)."""
    if encoding == "json":
        return records
    from icetide.connect_json import ConnectJsonCodec, key_schema, value_schema
    from icetide.events import from_json, loads

    topic = f"icetide.{NAMESPACE}.{TABLE}"
    codec = ConnectJsonCodec(key_schema(bench_schema(), ["sale_id"], topic), value_schema(bench_schema(), topic))
    return [(codec.encode_key(loads(k)), codec.encode_value(from_json(v))) for k, v in records]


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)  # keep `admin` alive meanwhile


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "acks": "all", "enable.idempotence": True, "queue.buffering.max.messages": 1_000_000,
                         "batch.size": 1_000_000})
    started = time.perf_counter()
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("produce: messages left undelivered")
    return time.perf_counter() - started


def kafka_produce_rate(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], workdir: Path) -> float:
    """records/s of Kafka's ProducerPerformance over the records' values (its last summary line)."""
    from icetide import jvm

    payloads = workdir / "payloads.txt"
    payloads.write_bytes(b"\n".join(value for _, value in records))
    classpath = ":".join(str(p) for p in jvm.jars("kafka"))
    done = subprocess.run(
        [str(jvm.java_home() / "bin" / "java"), "-Xmx1g", "-cp", classpath,
         "org.apache.kafka.tools.ProducerPerformance",
         "--topic", topic, "--num-records", str(len(records)), "--payload-file", str(payloads), "--throughput", "-1",
         "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all", "linger.ms=20", "compression.type=lz4",
         "batch.size=1000000", "enable.idempotence=true"],
        capture_output=True, text=True, timeout=600)
    summary = [line for line in done.stdout.splitlines() if "records sent" in line]
    if done.returncode != 0 or not summary:
        raise RuntimeError(f"ProducerPerformance failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return float(summary[-1].split("records sent,")[1].split("records/sec")[0].strip())


def consume_raw(bootstrap: str, topic: str, expected: int) -> float:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    seen = 0
    started = None
    deadline = time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        msgs = consumer.consume(2000, 1.0)
        if msgs and started is None:
            started = time.perf_counter()
        seen += sum(1 for m in msgs if not m.error())
    consumer.close()
    if seen < expected or started is None:
        raise RuntimeError(f"raw consume read {seen} of {expected}")
    return time.perf_counter() - started


def run_apply(env: dict[str, str], topic: str, consumers: int, group: str) -> dict[str, Any]:
    """`cdc apply --once --workers K` (K consumer processes of one group under the supervisor); wall
    seconds until it ends."""
    env = {**env, "ICETIDE__SINK__GROUP_ID": group}
    argv = [ICETIDE, "cdc", "apply", "--sink", "postgres", "--topics", topic, "--once", "--json",
            "--idle-timeout", "20", "--workers", str(consumers)]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cdc apply failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    per_worker = summary.get("workers") or [summary]
    applied = summary["applied"]
    active = max(w["active_seconds"] or 0 for w in per_worker)
    return {"consumers": consumers, "applied": applied, "wall_s": round(wall, 2),
            "active_s": round(active, 2), "events_per_s": round(applied / active, 1),
            "events_per_s_incl_startup": round(applied / wall, 1),
            "per_process_active_events_per_s": [w["active_events_per_s"] for w in per_worker]}


def downstream_rows(dsn: str) -> int:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(NAMESPACE, TABLE))).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--consumers", default="1,2", help="Comma-separated consumer-process counts to try.")
    parser.add_argument("--encodings", default="json,connect-json",
                        help="Comma-separated event encodings to try (json, connect-json).")
    parser.add_argument("--batch-size", type=int, default=5000, help="Records per poll / transaction.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "bench-throughput")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from icetide import pgserver
    from icetide.settings import load_settings
    from icetide.stack import Stack

    shutil.rmtree(args.state_dir, ignore_errors=True)
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(args.state_dir),
           "ICETIDE__KAFKA__NUM_PARTITIONS": str(args.partitions),
           "ICETIDE__SINK__BATCH_SIZE": str(args.batch_size)}
    settings = load_settings(None, environ=env)
    stack = Stack(settings)
    status = stack.up()
    server = pgserver.start()
    try:
        t0 = time.perf_counter()
        records = make_events(args.events, args.seed)
        encode_s = time.perf_counter() - t0
        expected_rows = _expected_rows(records)
        results: dict[str, Any] = {
            "events": len(records), "partitions": args.partitions, "batch_size": args.batch_size,
            "bytes_per_event": round(sum(len(k) + len(v) for k, v in records) / len(records), 1),
            "encode_events_per_s": round(len(records) / encode_s, 1), "cpus": os.cpu_count(),
            "load_avg_start": os.getloadavg()[0], "runs": []}
        plans = [(e, int(c)) for e in args.encodings.split(",") for c in args.consumers.split(",")]
        by_encoding = {e: encoded(records, e) for e in {e for e, _ in plans}}
        for encoding, consumers in plans:
            records = by_encoding[encoding]
            topic = f"icetide.{NAMESPACE}.{TABLE}.{consumers}c.{time.time_ns()}"
            create_topic(status.bootstrap, topic, args.partitions)
            create_topic(status.bootstrap, topic + ".kafka", args.partitions)
            kafka_rate = kafka_produce_rate(status.bootstrap, topic + ".kafka", records, args.state_dir)
            produce_s = produce(status.bootstrap, topic, records)
            consume_s = consume_raw(status.bootstrap, topic, len(records))
            dsn = pgserver.create_database(server.dsn, "bench")
            applied = run_apply({**env, "ICETIDE__SINK__POSTGRES_DSN": dsn}, topic, consumers,
                                f"bench-{time.time_ns()}")
            rows = downstream_rows(dsn)
            run = {
                "encoding": encoding, "consumers": consumers,
                "bytes_per_event": round(sum(len(k) + len(v) for k, v in records) / len(records), 1),
                "kafka_produce_events_per_s": kafka_rate,
                "python_produce_events_per_s": round(len(records) / produce_s, 1),
                "raw_consume_events_per_s": round(len(records) / consume_s, 1),
                "apply": applied,
                "ratio_apply_to_kafka_produce": round(applied["events_per_s"] / kafka_rate, 3),
                "ratio_apply_to_python_produce": round(applied["events_per_s"] * produce_s / len(records), 3),
                "ratio_apply_to_raw_consume": round(applied["events_per_s"] * consume_s / len(records), 3),
                "downstream_rows": rows, "expected_rows": expected_rows, "equal": rows == expected_rows,
            }
            results["runs"].append(run)
            print(json.dumps(run), file=sys.stderr)
        results["load_avg_end"] = os.getloadavg()[0]
        best = max(results["runs"], key=lambda r: r["apply"]["events_per_s"])
        results["best"] = {"encoding": best["encoding"], "consumers": best["consumers"],
                           "events_per_s": best["apply"]["events_per_s"],
                           "ratio_apply_to_kafka_produce": best["ratio_apply_to_kafka_produce"],
                           "goal_events_per_s": 100_000}
    finally:
        server.stop()
        stack.down()
    emit(results, args.out)
    if not all(r["equal"] for r in results["runs"]):
        sys.exit("downstream row count differs from the source")


def _expected_rows(records: list[tuple[bytes, bytes]]) -> int:
    live: set[bytes] = set()
    for key, value in records:
        if b'"op":"d"' in value:
            live.discard(key)
        else:
            live.add(key)
    return len(live)


if __name__ == "__main__":
    main()
