"""Typed downstream tables end to end: Spark writes and alters an Iceberg table, the Flink job publishes
plain JSON (`cdc run --once`), `cdc apply --once` builds SQLite and PostgreSQL copies, `cdc verify`
finds both equal — typed — before and after real Spark DDL: int→bigint, float→double, decimal(10,2)→
decimal(12,2), a rename and a drop.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from icetide.events import topic_for
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration


def icetide(state_dir: Path, sqlite: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), "ICETIDE__SINK__SQLITE_PATH": str(sqlite),
           "ICETIDE__SINK__POSTGRES_DSN": dsn}
    return subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def apply_and_verify(state_dir: Path, sqlite: Path, dsn: str, table: str, topic: str) -> None:
    for sink in ("sqlite", "postgres"):
        done = icetide(state_dir, sqlite, dsn, "cdc", "apply", "--once", "--json", "--sink", sink, "--topics", topic)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["dead_letters"] == 0
        verified = icetide(state_dir, sqlite, dsn, "cdc", "verify", "--table", table, "--sink", sink, "--json")
        assert verified.returncode == 0, (sink, verified.stdout, verified.stderr[-3000:])
        assert json.loads(verified.stdout)["equal"] is True


def pg_types(dsn: str, table: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = "
            "to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped", (table,)).fetchall())


def sqlite_types(path: Path, table: str) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return {str(n): str(t) for _, n, t, *_ in conn.execute(f"PRAGMA table_info('{table.replace('.', '__')}')")}


def test_spark_ddl_end_to_end_typed(spark: Any, kafka_bootstrap: str, session_dir: Path, postgres_db: str,
                                    tmp_path: Path) -> None:
    table = fresh_table_name("typed")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, n INT, f FLOAT, d DOUBLE, price DECIMAL(10,2), "
              "day DATE, at TIMESTAMP, local TIMESTAMP_NTZ, s STRING, b BINARY, st STRUCT<a: INT, b: STRING>, "
              "l ARRAY<BIGINT>, m MAP<STRING, INT>, old STRING, gone STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} VALUES (0, NULL, NULL, CAST('NaN' AS DOUBLE), NULL, NULL, NULL, NULL, NULL, "
              "NULL, NULL, NULL, NULL, NULL, NULL)")  # NULLs and NaN first
    spark.sql(f"INSERT INTO {table} SELECT id, CAST(id AS INT) * 1000, CAST(id AS FLOAT) / 3, "
              "CASE WHEN id = 3 THEN CAST('-Infinity' AS DOUBLE) ELSE id / 7 END, "
              "CAST(id AS DECIMAL(10,2)) / -4, date_add(DATE'2024-02-28', CAST(id AS INT)), "
              "timestamp_micros(1714557600123456 + id), "
              "CAST(timestamp_micros(1714557600000000 + id) AS TIMESTAMP_NTZ), "
              "concat('s', id), CAST(concat('b', id) AS BINARY), named_struct('a', CAST(id AS INT), 'b', 'x'), "
              "array(id, -id), map('k', CAST(id AS INT)), concat('o', id), concat('g', id) FROM range(1, 20)")
    spark.sql(f"UPDATE {table} SET price = price - 1, s = NULL WHERE id < 4")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 12")
    cdc_run(session_dir, "--tables", table)
    topic = topic_for("icetide", *table.split("."))
    sqlite = tmp_path / "downstream.db"
    apply_and_verify(session_dir, sqlite, postgres_db, table, topic)
    assert pg_types(postgres_db, table) == {
        "id": "bigint", "n": "integer", "f": "real", "d": "double precision", "price": "numeric(10,2)",
        "day": "date", "at": "timestamp with time zone", "local": "timestamp(6) without time zone", "s": "text",
        "b": "bytea", "st": "jsonb", "l": "jsonb", "m": "jsonb", "old": "text", "gone": "text"}
    assert sqlite_types(sqlite, table)["price"] == "DECIMAL TEXT(10,2)"

    spark.sql(f"ALTER TABLE {table} ALTER COLUMN n TYPE BIGINT")
    spark.sql(f"ALTER TABLE {table} ALTER COLUMN f TYPE DOUBLE")
    spark.sql(f"ALTER TABLE {table} ALTER COLUMN price TYPE DECIMAL(12,2)")
    spark.sql(f"ALTER TABLE {table} RENAME COLUMN old TO new")
    spark.sql(f"ALTER TABLE {table} DROP COLUMN gone")
    spark.sql(f"INSERT INTO {table} SELECT id, id * 10000000000, 0.1D, id / 7, CAST(id AS DECIMAL(12,2)) * 1000000, "
              "NULL, NULL, NULL, 'later', NULL, NULL, NULL, NULL, concat('n', id) FROM range(100, 105)")
    spark.sql(f"UPDATE {table} SET new = 'renamed', n = n + 1 WHERE id IN (1, 2, 100)")
    cdc_run(session_dir, "--tables", table)
    apply_and_verify(session_dir, sqlite, postgres_db, table, topic)
    types = pg_types(postgres_db, table)
    assert (types["n"], types["f"], types["price"], types["new"]) == ("bigint", "double precision", "numeric(12,2)",
                                                                     "text")
    assert "old" not in types and types["gone"] == "text"  # dropped: kept downstream, no longer written
    lite = sqlite_types(sqlite, table)
    assert (lite["n"], lite["f"], lite["price"], lite["new"], lite["gone"]) == ("BIGINT", "DOUBLE",
                                                                               "DECIMAL TEXT(12,2)", "TEXT", "TEXT")
