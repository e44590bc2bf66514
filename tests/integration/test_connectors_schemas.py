"""Plain JSON events typed by the job's schema-change records, through the real broker.

The schema-change records are made by the job's own `streaming.poller.schema_change` (from pyiceberg
schemas), the events by `icetide.events`; the consumer runs `--once` into SQLite. Schema 0 has a
double whose first value is NaN and a decimal; schema 1 renames a column (same field id) and widens
int → long and the decimal's precision.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DecimalType, DoubleType, IntegerType, LongType, NestedField, StringType, TimestamptzType

from connectors.base import Consumed
from connectors.consumer import ChangeConsumer, ConsumeOptions
from connectors.schemas import SchemaBook
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.events import ChangeEvent, Source, key_to_json, to_json, topic_for
from icetide.settings import load_settings
from streaming.poller import schema_change
from tests.fixtures.kafka import create_topic

pytestmark = pytest.mark.integration

V0 = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "x", DoubleType()),
            NestedField(3, "price", DecimalType(10, 2)), NestedField(4, "n", IntegerType()),
            NestedField(5, "label", StringType()), NestedField(6, "at", TimestamptzType()),
            schema_id=0, identifier_field_ids=[1])
V1 = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "x", DoubleType()),
            NestedField(3, "price", DecimalType(14, 2)), NestedField(4, "n", LongType()),
            NestedField(5, "name", StringType()), NestedField(6, "at", TimestamptzType()),
            schema_id=1, identifier_field_ids=[1])


class Changelog:
    namespace, name, key_fields = "sales", "items", ["id"]

    def schema_by_id(self, schema_id: int) -> Schema:
        return V1 if schema_id else V0


def _event(seq: int, ordinal: int, schema_id: int, after: dict[str, Any], prefix: str) -> ChangeEvent:
    source = Source("lake", "sales", "items", 100 + seq, seq, int(time.time() * 1000), ordinal, schema_id, prefix)
    return ChangeEvent("c", None, after, source)


def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for topic, key, value in records:
        producer.produce(topic, value, key=key)
    assert producer.flush(60) == 0


def _apply(bootstrap: str, prefix: str, db: Path, topics: list[str]) -> None:
    settings = load_settings(None, environ={"ICETIDE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                                            "ICETIDE__CDC__TOPIC_PREFIX": prefix,
                                            "ICETIDE__SINK__GROUP_ID": f"g-{uuid.uuid4().hex[:8]}",
                                            "ICETIDE__SINK__DEAD_LETTER_TOPIC": f"{prefix}.dead-letter"})
    with SqliteSink(SqliteConfig(db)) as sink:
        summary = ChangeConsumer(settings, sink, bootstrap, ConsumeOptions(topics=topics, once=True)).run()
    assert summary.dead_letters == 0 and summary.caught_up


def test_plain_json_events_land_typed_and_follow_schema_changes(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    topic = create_topic(kafka_bootstrap, topic_for(prefix, "sales", "items"))
    schemas = create_topic(kafka_bootstrap, f"{prefix}.schema-changes")
    rows0 = [{"id": 1, "x": "NaN", "price": "-12.50", "n": 7, "label": "a", "at": "2024-01-01 01:00:00.123456Z"},
             {"id": 2, "x": 1.5, "price": "0.10", "n": None, "label": None, "at": "2024-01-01T02:00:00Z"}]
    first = _event(1, 0, 0, rows0[0], prefix)
    record = schema_change(Changelog(), first, None, schemas)  # type: ignore[arg-type]
    _produce(kafka_bootstrap, [(schemas, record.key, record.value or b"")] + [
        (topic, key_to_json({"id": r["id"]}), to_json(_event(1, i, 0, r, prefix))) for i, r in enumerate(rows0)])
    db = tmp_path / "d.db"
    _apply(kafka_bootstrap, prefix, db, [topic])
    with sqlite3.connect(db) as conn:
        types = {n: t for _, n, t, *_ in conn.execute("PRAGMA table_info(sales__items)")}
    assert types == {"id": "BIGINT", "x": "DOUBLE", "price": "DECIMAL TEXT(10,2)", "n": "INTEGER", "label": "TEXT",
                     "at": "TIMESTAMPTZ"}

    rows1 = [{"id": 3, "x": -0.5, "price": "123456789012.34", "n": 2**40, "name": "c", "at": None}]
    later = _event(2, 0, 1, rows1[0], prefix)
    record = schema_change(Changelog(), later, 0, schemas)  # type: ignore[arg-type]
    _produce(kafka_bootstrap, [(schemas, record.key, record.value or b""),
                               (topic, key_to_json({"id": 3}), to_json(later))])
    _apply(kafka_bootstrap, prefix, db, [topic])
    with SqliteSink(SqliteConfig(db)) as sink:
        rows = {r["id"]: r for r in sink.read_rows(("sales", "items"))}
        types = {n: t for n, t in sink._declared(("sales", "items"))}
    assert types == {"id": "BIGINT", "x": "DOUBLE", "price": "DECIMAL TEXT(14,2)", "n": "BIGINT", "name": "TEXT",
                     "at": "TIMESTAMPTZ"}
    assert math.isnan(rows[1]["x"]) and rows[2]["x"] == 1.5 and rows[3]["x"] == -0.5
    assert rows[1]["price"] == Decimal("-12.50") and rows[3]["price"] == Decimal("123456789012.34")
    assert rows[1]["at"] == dt.datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=dt.UTC)
    assert rows[2]["at"] == dt.datetime(2024, 1, 1, 2, tzinfo=dt.UTC)
    assert (rows[1]["name"], rows[3]["name"], rows[3]["n"]) == ("a", "c", 2**40)

    # an audience topic's events carry masked values: never typed by the base table's schema
    book = SchemaBook(kafka_bootstrap, schemas, prefix)
    try:
        audience = Consumed(f"{prefix}.sec_ana.sales.items", 0, 0, first)
        base = Consumed(topic, 0, 0, first)
        typed = book.attach([audience, base])
    finally:
        book.close()
    assert typed[0].schema is None and typed[1].schema is not None
    assert typed[1].schema.column("price").type == "decimal(10, 2)"  # type: ignore[union-attr]
