"""A stock consumer reads icetide's topics: Kafka Connect's Debezium JDBC sink rebuilds the table in PostgreSQL.

For each encoding a downstream team would point Connect at — Avro through the schema registry
(Apicurio's AvroConverter) and `connect-json` (Kafka's JsonConverter with schemas) — Spark writes a keyed
Iceberg table with every common column type: inserts, updates, deletes and a MERGE, then (second round)
an added column with more changes. After each round `icetide cdc run --once --tombstones` publishes,
the unmodified Debezium JDBC sink (upsert by record key, deletes enabled, basic schema evolution, table
named `${source.schema}_${source.table}`) consumes every record, tombstones included, and the
PostgreSQL table must equal the Iceberg table row for row, with the column types a Debezium source
would have produced.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from icetide.errors import ConfigError
from icetide.events import topic_for
from icetide.services.connect import KafkaConnect, raise_if_failed
from tests.fixtures.connect import converters, debezium_jdbc_sink
from tests.fixtures.kafka import consume_all, new_topic_name
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration

COLUMNS = ("id", "amount", "local_ts", "zoned_ts", "day", "flag", "score", "qty", "name")
# information_schema.columns: (data_type, numeric_precision, numeric_scale, datetime_precision)
EXPECTED_TYPES: dict[str, tuple[str, int | None, int | None, int | None]] = {
    "id": ("bigint", 64, 0, None),
    "amount": ("numeric", 12, 2, None),
    "local_ts": ("timestamp without time zone", None, None, 6),
    "zoned_ts": ("timestamp with time zone", None, None, 6),
    "day": ("date", None, None, 0),
    "flag": ("boolean", None, None, None),
    "score": ("double precision", 53, None, None),
    "qty": ("bigint", 64, 0, None),
}
TEXT_TYPES = ("text", "character varying")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# one row per id: values cover NULLs, negatives, pre-1970 dates and instants, microseconds, extremes, and
# (Avro only, see NON_FINITE) NaN and ±Infinity
ROWS = """SELECT id,
  CASE WHEN id % 13 = 0 THEN NULL ELSE CAST(id AS DECIMAL(12,2)) / 4 - 3 END AS amount,
  TIMESTAMP_NTZ'2024-02-29 23:59:59.123456' + make_dt_interval(0, 0, 0, id * 1.000007) AS local_ts,
  timestamp_micros(CASE WHEN id % 5 = 0 THEN -1000000000123456 ELSE 1714557600123456 END + id * 3600000001)
    AS zoned_ts,
  date_add(DATE'1969-12-25', CAST(id * 37 AS INT)) AS day,
  CASE WHEN id % 11 = 0 THEN NULL ELSE id % 3 = 0 END AS flag,
  CASE WHEN id = 7 THEN 1.7976931348623157E308 {non_finite} ELSE CAST(id AS DOUBLE) / 3 - 5 END AS score,
  CASE WHEN id = 9 THEN 9223372036854775807 ELSE id * 1000000007 - 5000000000 END AS qty,
  CASE WHEN id % 4 = 0 THEN NULL ELSE concat('nome-ção-', id) END AS name"""
# Kafka's JsonConverter cannot carry NaN or ±Infinity into a float64 field: it reads the string "NaN" (what
# Jackson, and so JsonConverter itself, writes) with JsonNode.doubleValue(), which is 0.0 for a text node,
# and its deserializer refuses a bare NaN token. So connect-json is checked with finite doubles only.
NON_FINITE = {"avro": "WHEN id = 8 THEN double('NaN') WHEN id = 16 THEN double('Infinity') "
                      "WHEN id = 17 THEN double('-Infinity')",
              "connect-json": ""}


def spark_rows(spark: Any, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """The Iceberg table's rows ordered by id; timestamptz as UTC epoch microseconds."""
    select = ", ".join("unix_micros(zoned_ts)" if c == "zoned_ts" else c for c in columns)
    return [tuple(r) for r in spark.sql(f"SELECT {select} FROM {table} ORDER BY id").collect()]


def postgres_rows(dsn: str, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query).fetchall()
    zoned = columns.index("zoned_ts")
    return [tuple((v - EPOCH) // dt.timedelta(microseconds=1) if i == zoned and v is not None else v
                  for i, v in enumerate(row)) for row in rows]


def postgres_columns(dsn: str, table: str) -> dict[str, tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale, datetime_precision "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s", (table,)).fetchall()
        key = conn.execute(
            "SELECT k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
            "WHERE c.table_name = %s AND c.constraint_type = 'PRIMARY KEY'", (table,)).fetchall()
    return {"__key__": tuple(k for (k,) in key), **{name: tuple(rest) for name, *rest in found}}


def wait_consumed(worker: KafkaConnect, connector: str, bootstrap: str, topic: str,
                  timeout_s: float = 240.0) -> int:
    """Wait until the sink has committed past the last record of `topic` (its task still RUNNING);
    the number of records (events and tombstones) it consumed."""
    from confluent_kafka import Consumer, TopicPartition

    records = consume_all(bootstrap, topic, timeout_s=30)
    ends = {m.partition(): m.offset() + 1 for m in sorted(records, key=lambda m: m.offset())}
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": f"connect-{connector}",
                      "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            status = worker.connector_status(connector)
            raise_if_failed(connector, status)
            committed = {tp.partition: tp.offset for tp in
                         group.committed([TopicPartition(topic, p) for p in ends], timeout=10)}
            if all(committed.get(p, -1) >= end for p, end in ends.items()):
                return len(records)
            assert time.monotonic() < deadline, f"sink at {committed}, topic ends at {ends}: {status}"
            time.sleep(0.5)
    finally:
        group.close()


def assert_downstream_equals(spark: Any, dsn: str, source: str, target: str, columns: Sequence[str]) -> None:
    found = postgres_columns(dsn, target)
    assert found.pop("__key__") == ("id",)
    assert set(found) == set(columns)
    for column in columns:
        if column in EXPECTED_TYPES:
            assert found[column] == EXPECTED_TYPES[column], column
        else:
            assert found[column][0] in TEXT_TYPES, column
    want, got = spark_rows(spark, source, columns), postgres_rows(dsn, target, columns)
    assert len(got) == len(want)
    for mine, theirs in zip(want, got, strict=True):
        assert comparable(theirs) == comparable(mine)


def comparable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Floats by their exact hex form, so that NaN equals NaN (and 0.1 still differs from 0.1000001)."""
    return tuple(v.hex() if isinstance(v, float) else v for v in row)


@pytest.mark.parametrize("encoding", ["avro", "connect-json"])
def test_debezium_jdbc_sink_rebuilds_the_table_in_postgres(encoding: str, spark: Any, kafka_bootstrap: str,
                                                           schema_registry: str, kafka_connect: KafkaConnect,
                                                           postgres_db: str, session_dir: Path) -> None:
    table = fresh_table_name(f"dbz_{encoding.replace('-', '_')}")
    namespace, name = table.split(".")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, amount DECIMAL(12,2), local_ts TIMESTAMP_NTZ, "
              "zoned_ts TIMESTAMP, day DATE, flag BOOLEAN, score DOUBLE, qty BIGINT, name STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    rows = ROWS.format(non_finite=NON_FINITE[encoding])
    spark.sql(f"INSERT INTO {table} {rows} FROM range(40)")
    spark.sql(f"UPDATE {table} SET amount = amount + 1, name = 'atualizado', flag = NOT flag WHERE id < 6")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14 OR id = 2")
    spark.sql(f"UPDATE {table} SET qty = -qty, local_ts = NULL WHERE id IN (3, 4)")  # a row updated twice
    spark.sql(f"MERGE INTO {table} t USING ({rows} FROM range(35, 45)) s ON t.id = s.id "
              "WHEN MATCHED AND s.id % 2 = 0 THEN DELETE "
              "WHEN MATCHED THEN UPDATE SET qty = s.qty + 1, score = s.score * 2, name = 'merged' "
              "WHEN NOT MATCHED THEN INSERT *")

    registry = ["--schema-registry", schema_registry] if encoding == "avro" else []
    summary = cdc_run(session_dir, "--tables", table, "--format", encoding, "--tombstones", *registry)
    assert summary["format"] == encoding
    first = summary["tables"][table]
    deletes = first["by_op"]["d"]
    assert deletes == 6 + 2 and first["tombstones"] == deletes  # ids 2, 10-14; the MERGE's 36, 38

    topic = topic_for("icetide", namespace, name)
    connector = new_topic_name(f"dbz-{encoding}")
    sink = debezium_jdbc_sink(topic, postgres_db, converters(encoding, schema_registry))
    kafka_connect.put_connector(connector, sink)
    try:
        kafka_connect.wait_running(connector)
        consumed = wait_consumed(kafka_connect, connector, kafka_bootstrap, topic)
        assert consumed == sum(first["by_op"].values()) + first["tombstones"]
        target = f"{namespace}_{name}"
        assert_downstream_equals(spark, postgres_db, table, target, COLUMNS)
        assert len(spark_rows(spark, table, ["id"])) == 40 - 6 - 2 + 5  # MERGE: 2 deleted, 5 inserted

        # round 2: a new column, and changes that use it; the sink alters its table
        spark.sql(f"ALTER TABLE {table} ADD COLUMN channel STRING")
        spark.sql(f"UPDATE {table} SET channel = 'web', qty = qty - 1 WHERE id % 3 = 0")
        spark.sql(f"INSERT INTO {table} {rows}, 'loja' AS channel FROM range(100, 110)")
        spark.sql(f"DELETE FROM {table} WHERE id IN (20, 21, 105)")
        second = cdc_run(session_dir, "--tables", table, "--format", encoding, "--tombstones", *registry)
        assert second["tables"][table]["by_op"]["d"] == 3 == second["tables"][table]["tombstones"]
        wait_consumed(kafka_connect, connector, kafka_bootstrap, topic)
        assert_downstream_equals(spark, postgres_db, table, target, (*COLUMNS, "channel"))
    finally:
        kafka_connect.delete_connector(connector)


def test_a_config_the_worker_refuses_is_a_config_error_naming_the_setting(kafka_connect: KafkaConnect) -> None:
    connector = new_topic_name("dbz-bad")
    bad = {"connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector", "topics": "t", "tasks.max": "0"}
    with pytest.raises(ConfigError, match=r"(?s)refused connector .*HTTP 400.*tasks\.max"):
        kafka_connect.put_connector(connector, bad)
    assert connector not in kafka_connect.status()["connectors"]
