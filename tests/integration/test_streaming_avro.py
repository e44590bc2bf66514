"""Avro change events and tombstones, against the real schema registry (Apicurio, ccompat API) and broker.

1. The poller's Avro encoder without Flink: a table whose schema changes between two snapshots is
   encoded in the Confluent wire format, each value framed with the id registered under
   `<topic>-value` (a new version for the new schema), keys under `<topic>-key` (unchanged, so a
   key's bytes stay the same), and a reader that knows only the registry decodes every event.
2. `icetide cdc run --once --format avro --tombstones` end to end: Spark writes a keyed table, the
   Flink job publishes Avro values and tombstones (a null Kafka value, written by the `raw` format
   from a null BYTES field), `icetide cdc apply --once` reads them through the registry into SQLite,
   and `icetide cdc verify` finds the copy equal to the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DateType, DecimalType, DoubleType, LongType, NestedField, StringType

from connectors.records import AvroDecoder
from icetide.avro import schema_id_of
from icetide.events import ChangeEvent, Source, encode_row, topic_for
from icetide.schema_registry import SchemaRegistryClient
from streaming.poller import SCHEMA_OP, TOMBSTONE_OP, AvroEncoder, Position, Record, TablePoller
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration

V0 = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "name", StringType()),
            NestedField(3, "price", DecimalType(10, 2)), NestedField(4, "day", DateType()),
            NestedField(5, "x", DoubleType()), schema_id=0, identifier_field_ids=[1])
V1 = Schema(*V0.fields, NestedField(6, "channel", StringType()), schema_id=1, identifier_field_ids=[1])


def latest(registry: str, subject: str) -> tuple[int, list[int]]:
    """(id of the latest version, every version) of `subject`, read over the registry's REST API."""
    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{registry}/subjects/{urllib.parse.quote(subject, safe='')}{path}",
                                    timeout=10) as response:
            return json.loads(response.read())

    return int(get("/versions/latest")["id"]), list(get("/versions"))


@dataclass
class Snap:
    snapshot_id: int
    parent_snapshot_id: int | None


class EvolvingChangelog:
    """Two snapshots: inserts of ids 1, 2 in schema 0; then a column is added, id 1 is deleted and id 3
    inserted (schema 1). Rows carry JSON-encoded values, as the changelog engine's do."""

    namespace = "sales"

    def __init__(self, name: str, key_fields: list[str]) -> None:
        self.name, self.key_fields = name, key_fields
        self.snaps = [Snap(1, None), Snap(2, 1)]
        row = {"id": 1, "name": "ana", "price": "12.50", "day": "2024-02-29", "x": 1.5}
        self.events = {1: [("c", None, row), ("c", None, {**row, "id": 2, "x": 0.5})],
                       2: [("d", {**row, "channel": None}, None),
                           ("c", None, {"id": 3, "name": None, "price": None, "day": None, "x": None,
                                        "channel": "web"})]}

    def schema_by_id(self, schema_id: int) -> Schema:
        return V1 if schema_id else V0

    def refresh(self) -> None:
        pass

    current_snapshot_id = 2

    def snapshots_between(self, after: int | None, upto: int | None) -> list[Snap]:
        return [s for s in self.snaps if (after or 0) < s.snapshot_id <= (upto or 0)]

    def snapshot(self, snapshot_id: int) -> Snap:
        return self.snaps[snapshot_id - 1]

    def snapshot_events(self, snap: Snap, skip: int = 0) -> Iterator[ChangeEvent]:
        for ordinal, (op, before, after) in enumerate(self.events[snap.snapshot_id]):
            if ordinal >= skip:
                source = Source("lake", self.namespace, self.name, snap.snapshot_id, snap.snapshot_id,
                                1_700_000_000_000, ordinal, snap.snapshot_id - 1)
                yield ChangeEvent(op, before, after, source)


def publish(changelog: Any, prefix: str, registry: str) -> list[Record]:
    poller = TablePoller(changelog, prefix, encoder=AvroEncoder(SchemaRegistryClient(registry)), tombstones=True)
    return [r for r in poller.poll(Position(None)) if isinstance(r, Record)]


def test_avro_encoder_registers_per_schema_and_frames_every_record(schema_registry: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    changelog = EvolvingChangelog("items", ["id"])
    records = publish(changelog, prefix, schema_registry)
    topic = topic_for(prefix, "sales", "items")
    assert [r.op for r in records] == [SCHEMA_OP, "c", "c", SCHEMA_OP, "d", TOMBSTONE_OP, "c"]
    assert all(r.topic == f"{prefix}.schema-changes" for r in records if r.op == SCHEMA_OP)  # JSON, as before
    json.loads(records[0].value or b"")
    changes = [r for r in records if r.op not in (SCHEMA_OP, TOMBSTONE_OP)]

    # one value version per Iceberg schema; the key record did not change, so one key version
    value_id, value_versions = latest(schema_registry, f"{topic}-value")
    key_id, key_versions = latest(schema_registry, f"{topic}-key")
    assert (value_versions, key_versions) == ([1, 2], [1])
    ids = [schema_id_of(r.value or b"") for r in changes]
    assert ids[0] == ids[1] != ids[2] == ids[3] == value_id
    assert {schema_id_of(r.key) for r in changes} == {key_id}
    assert changes[0].key == changes[2].key  # id 1 inserted in schema 0, deleted in schema 1: same key bytes
    dead = records[5]
    assert (dead.topic, dead.key, dead.value) == (topic, records[4].key, None)

    # a reader that knows only the registry gets the events back, JSON-encoded like JSON events
    decoder = AvroDecoder(SchemaRegistryClient(schema_registry).schema)
    for record in changes:
        assert record.event is not None and record.value is not None
        got = decoder.event(record.value)
        want = record.event
        assert (got.op, got.source, got.ts_ms) == (want.op, want.source, want.ts_ms)
        for side in ("before", "after"):
            image, expected = getattr(got, side), getattr(want, side)
            assert image == (None if expected is None else encode_row(expected)), side
        assert decoder.key_fields(record.key) == ("id",)

    # registering again (a restarted worker) gives the same ids and no new versions
    assert [schema_id_of(r.value or b"") for r in publish(changelog, prefix, schema_registry)
            if r.op in ("c", "d")] == ids
    assert latest(schema_registry, f"{topic}-value") == (value_id, [1, 2])


def test_keyless_table_is_keyed_by_the_whole_row_without_tombstones(schema_registry: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    records = publish(EvolvingChangelog("log", []), prefix, schema_registry)
    assert [r.op for r in records if r.op != SCHEMA_OP] == ["c", "c", "d", "c"]  # no tombstone
    decoder = AvroDecoder(SchemaRegistryClient(schema_registry).schema)
    assert decoder.key_fields(records[1].key) == ("id", "name", "price", "day", "x")
    topic = topic_for(prefix, "sales", "log")
    assert latest(schema_registry, f"{topic}-key")[1] == [1, 2]  # the row, hence the key, gained a column


def icetide(state_dir: Path, sqlite: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), "ICETIDE__SINK__SQLITE_PATH": str(sqlite)}
    return subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_cdc_run_avro_with_tombstones_then_apply_equals_the_source(spark: Any, kafka_bootstrap: str,
                                                                   schema_registry: str, session_dir: Path,
                                                                   tmp_path: Path) -> None:
    table = fresh_table_name("avro")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, produto STRING, valor DECIMAL(12,2), "
              "data_venda DATE, visto TIMESTAMP, nota DOUBLE) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, concat('p', id % 7), CAST(id AS DECIMAL(12,2)) / 4, "
              "date_add(DATE'2024-01-01', CAST(id AS INT)), timestamp_seconds(1714557600 + id), id / 3 FROM range(30)")
    spark.sql(f"UPDATE {table} SET valor = valor + 1, produto = NULL WHERE id < 4")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14")

    summary = cdc_run(session_dir, "--tables", table, "--format", "avro", "--tombstones",
                      "--schema-registry", schema_registry)
    assert summary["format"] == "avro"
    assert summary["tables"][table]["by_op"] == {"c": 30, "u": 4, "d": 5}
    assert summary["tables"][table]["tombstones"] == 5

    topic = topic_for("icetide", *table.split("."))
    messages = sorted(consume_all(kafka_bootstrap, topic, timeout_s=30), key=lambda m: (m.partition(), m.offset()))
    assert len(messages) == 30 + 4 + 5 + 5
    value_id, _ = latest(schema_registry, f"{topic}-value")
    key_id, _ = latest(schema_registry, f"{topic}-key")
    decoder = AvroDecoder(SchemaRegistryClient(schema_registry).schema)
    ops = []
    for i, message in enumerate(messages):
        assert schema_id_of(message.key()) == key_id
        if message.value() is None:  # a tombstone: right after a delete of the same key
            ops.append(TOMBSTONE_OP)
            assert ops[-2] == "d" and messages[i - 1].key() == message.key()
            continue
        assert schema_id_of(message.value()) == value_id
        ops.append(decoder.event(message.value()).op)
    assert ops.count(TOMBSTONE_OP) == ops.count("d") == 5

    sqlite = tmp_path / "downstream.db"
    applied = icetide(session_dir, sqlite, "cdc", "apply", "--once", "--json", "--sink", "sqlite", "--topics", topic,
                      "--schema-registry", schema_registry)
    assert applied.returncode == 0, applied.stderr[-3000:]
    result = json.loads(applied.stdout)
    assert (result["applied"], result["dead_letters"]) == (30 + 4 + 5, 0)
    verified = icetide(session_dir, sqlite, "cdc", "verify", "--table", table, "--sink", "sqlite", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    assert json.loads(verified.stdout)["equal"] is True
