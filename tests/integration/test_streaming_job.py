"""`icetide cdc run --once` end to end: Spark writes, the Flink job publishes, a consumer reads back.

The events read from Kafka must be exactly the changelog engine's events (same keys, ops, images
and source positions), keyed by the row key, and a second run publishes only what is new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import from_json, key_to_json, topic_for
from streaming.changelog import Changelog
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration


def cdc_run(state_dir: Path, *args: str, chunk_events: int | None = None) -> dict[str, Any]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir)}
    if chunk_events is not None:  # the job's elements emit this many events at most (streaming/once.py)
        env["ICETIDE__CDC__CHUNK_EVENTS"] = str(chunk_events)
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "run", "--once", "--json", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def comparable(value: bytes) -> dict[str, Any]:
    event = from_json(value).to_dict()
    event.pop("ts_ms")
    return event


def test_cdc_run_once_publishes_the_changelog(spark: Any, base_settings: Any, kafka_bootstrap: str,
                                              session_dir: Path) -> None:
    table = fresh_table_name("vendas")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, produto STRING, valor DECIMAL(12,2), "
              "data_venda DATE, ano INT, mes INT) USING iceberg PARTITIONED BY (ano, mes) "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, concat('p', id % 7), CAST(id AS DECIMAL(12,2)) / 4, "
              "date_add(DATE'2024-01-01', CAST(id % 300 AS INT)), 2024 + CAST(id % 2 AS INT), "
              "1 + CAST(id % 12 AS INT) FROM range(200)")
    spark.sql(f"UPDATE {table} SET valor = valor + 1 WHERE id < 10")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14")

    first = cdc_run(session_dir, "--tables", table, chunk_events=40)  # 215 events: six elements and a last one
    topic = topic_for("icetide", *table.split("."))
    assert first["events"] == 200 + 10 + 5
    assert first["tables"][table]["by_op"] == {"c": 200, "u": 10, "d": 5}
    assert first["rounds"] == 1  # the snapshot summaries gave enough elements

    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
    expected = list(changelog.events(None))
    messages = consume_all(kafka_bootstrap, topic, timeout_s=30)
    assert len(messages) == len(expected)
    assert first["tables"][table]["last_snapshot"] == changelog.current_snapshot_id

    # exactly the engine's events, each keyed by its row key
    got = {(m.key(), json.dumps(comparable(m.value()), sort_keys=True)) for m in messages}
    want = {(key_to_json(e.key(["id"])), json.dumps(comparable(to_value(e)), sort_keys=True)) for e in expected}
    assert got == want
    # per key, events arrive in (snapshot sequence, ordinal) order
    per_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        per_key[m.key()].append(from_json(m.value()).source.position)
    assert all(p == sorted(p) for p in per_key.values())

    namespace, name = table.split(".")
    schema_key = key_to_json({"db": namespace, "table": name})
    changes = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, "icetide.schema-changes", 30)
               if m.key() == schema_key]
    assert [c["tableChanges"][0]["type"] for c in changes] == ["CREATE"]

    # a second run resumes after the last published snapshot: only the new changes, and a
    # schema-change record before the first record in the new schema; this run writes in Kafka
    # transactions, and consume_all reads read_committed: the records are there once committed
    spark.sql(f"ALTER TABLE {table} ADD COLUMN canal STRING")
    spark.sql(f"UPDATE {table} SET produto = 'novo', canal = 'web' WHERE id = 20")
    second = cdc_run(session_dir, "--tables", table, "--delivery", "exactly-once")  # Kafka transactions
    assert second["events"] == 1 and second["tables"][table]["by_op"] == {"u": 1}
    assert second["delivery"] == "exactly-once"
    assert second["tables"][table]["schema_changes"] == 1
    again = consume_all(kafka_bootstrap, topic, timeout_s=30)
    assert len(again) == len(messages) + 1
    last = from_json(max(again, key=lambda m: from_json(m.value()).source.position).value())
    assert last.op == "u" and last.after is not None and last.after["produto"] == "novo"
    assert last.after["canal"] == "web"
    changes = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, "icetide.schema-changes", 30)
               if m.key() == schema_key]
    assert [c["tableChanges"][0]["type"] for c in changes] == ["CREATE", "ALTER"]
    assert changes[1]["schema_id"] == last.source.schema_id != changes[0]["schema_id"]
    assert "canal" in [c["name"] for c in changes[1]["tableChanges"][0]["table"]["columns"]]


def to_value(event: Any) -> bytes:
    from icetide.events import to_json

    value: bytes = to_json(event)
    return value
