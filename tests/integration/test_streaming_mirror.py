"""Ecosystem proof: a stock Flink SQL job (`debezium-json` + Iceberg sink) mirrors an icetide topic.

Spark writes a table with identifier fields through merge-on-read and copy-on-write inserts,
updates, deletes and a MERGE; `icetide cdc run --once` publishes; the mirror job reads the topic
with Flink's own `debezium-json` format and upserts into a new Iceberg table. The mirror must
equal the source as of its current snapshot (same digest over the same columns), again after an
initial read (op `r`) is appended and the whole topic is replayed into the existing mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.digest import digest
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration

COLUMNS = ["id", "produto", "valor", "data_venda", "criado", "local_ts", "ativo", "nota", "bruto", "extra"]


def run_mirror_command(state_dir: Path, table: str, fmt: str = "json", registry: str | None = None) -> dict[str, Any]:
    """The mirror job in its own process (its own Flink gateway), as a user would run it."""
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), "ICETIDE__CDC__FORMAT": fmt}
    if registry:
        env["ICETIDE__CDC__SCHEMA_REGISTRY_URL"] = registry
    proc = subprocess.run([sys.executable, "-m", "streaming.mirror_cli", table, "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def table_digest(spark: Any, table: str) -> Any:
    spark.sql(f"REFRESH TABLE {table}")
    rows = [row.asDict(recursive=True) for row in spark.table(table).select(*COLUMNS).collect()]
    return digest(rows, COLUMNS)


@pytest.mark.parametrize("fmt", ["json", "connect-json", "avro"])
def test_flink_debezium_json_mirror_equals_source(spark: Any, base_settings: Any, kafka_bootstrap: str,
                                                  session_dir: Path, fmt: str, request: Any) -> None:
    """`connect-json`: Flink's `debezium-json` with `schema-include`, dates, timestamps and decimals (one
    nested in a struct) declared in their physical types and converted (streaming/mirror_wire.py);
    `avro`: Flink's `debezium-avro-confluent` against the registry, timestamptz converted from its string."""
    registry = request.getfixturevalue("schema_registry") if fmt == "avro" else None
    extra = ["--schema-registry", registry] if registry else []
    table = fresh_table_name("espelho")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, produto STRING, valor DECIMAL(12,2), "
              "data_venda DATE, criado TIMESTAMP, local_ts TIMESTAMP_NTZ, ativo BOOLEAN, nota DOUBLE, "
              "bruto BINARY, extra STRUCT<tags: ARRAY<STRING>, peso: DECIMAL(6,3)>) "
              "USING iceberg PARTITIONED BY (bucket(4, id)) TBLPROPERTIES ('format-version'='2', "
              "'write.delete.mode'='merge-on-read', 'write.update.mode'='merge-on-read', "
              "'write.merge.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, IF(id % 11 = 0, NULL, concat('p', id % 7)), "
              "CAST(id AS DECIMAL(12,2)) / 4 - 20, date_add(DATE'2024-01-01', CAST(id % 300 AS INT)), "
              "TIMESTAMP'2024-03-01 12:00:00.123456' + make_interval(0, 0, 0, 0, 0, 0, id), "
              "TIMESTAMP_NTZ'2024-03-01 00:00:00' + make_interval(0, 0, 0, CAST(id AS INT), 0, 0, 0), "
              "id % 2 = 0, id / 3.0, unhex(hex(id * 7919)), "
              "named_struct('tags', array('a', CAST(id AS STRING)), 'peso', CAST(id AS DECIMAL(6,3)) / 8) "
              "FROM range(300)")
    # merge-on-read: position deletes
    spark.sql(f"UPDATE {table} SET valor = valor + 1.5, produto = 'atualizado' WHERE id < 40")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 40 AND 59")
    # copy-on-write: rewritten data files
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('write.delete.mode'='copy-on-write', "
              "'write.update.mode'='copy-on-write', 'write.merge.mode'='copy-on-write')")
    spark.sql(f"UPDATE {table} SET nota = -nota, ativo = NOT ativo WHERE id % 10 = 3")
    spark.sql(f"DELETE FROM {table} WHERE id >= 280")
    spark.sql(f"MERGE INTO {table} t USING (SELECT id FROM range(270, 300)) s ON t.id = s.id "
              "WHEN MATCHED THEN UPDATE SET produto = 'merge' "
              "WHEN NOT MATCHED THEN INSERT (id, produto, valor, data_venda, criado, local_ts, ativo, nota, bruto) "
              "VALUES (s.id, 'novo', 1.25, DATE'2025-02-28', TIMESTAMP'2025-02-28 23:59:59.999999', "
              "TIMESTAMP_NTZ'2025-02-28 23:59:59', true, 0.5, X'00FF')")

    published = cdc_run(session_dir, "--tables", table, "--format", fmt, *extra)
    assert {"c", "u", "d"} <= set(published["tables"][table]["by_op"])

    summary = run_mirror_command(session_dir, table, fmt, registry)
    assert summary["mirror"] == f"{table}_mirror" and summary["key"] == ["id"]
    print(f"mirror job: {summary['job_s']} s after submission, {summary['duration_s']} s with JVM start")
    source = table_digest(spark, table)
    assert source.rows == 300 - 20 - 20 + 20
    assert table_digest(spark, summary["mirror"]) == source
    # Flink's upsert writer deletes by key: the mirror is a table with equality deletes (issue 3)
    written = pyiceberg_catalog(base_settings).load_table(summary["mirror"]).current_snapshot()
    assert written is not None and int(written.summary["total-equality-deletes"]) > 0

    # round 2: more changes, then an initial read (op "r") of the current rows; the mirror replays
    # the whole topic (history, then the "r" events) into the existing mirror table
    spark.sql(f"UPDATE {table} SET valor = valor * 2, bruto = NULL WHERE id % 5 = 0")
    spark.sql(f"INSERT INTO {table} SELECT id + 1000, 'r', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL "
              "FROM range(2)")
    republished = cdc_run(session_dir, "--tables", table, "--reset", "--start", "initial", "--format", fmt, *extra)
    assert republished["tables"][table]["by_op"].get("r") == source.rows + 2
    again = run_mirror_command(session_dir, table, fmt, registry)
    print(f"mirror replay: {again['job_s']} s after submission, {again['duration_s']} s with JVM start")
    assert table_digest(spark, again["mirror"]) == table_digest(spark, table)
