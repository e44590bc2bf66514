"""`cdc run --once --format connect-json` end to end, then `cdc apply` into SQLite and `cdc verify`.

Spark writes a keyed table with decimals (negative values too), dates, timestamps with and without
time zone, doubles, binary and a struct, then updates and deletes; the Flink job publishes every
event as Kafka Connect's JsonConverter would (`{"schema", "payload"}` key and value, envelope
`<topic>.Envelope`, Debezium's semantic types) with tombstones as real null values; `cdc apply`
reads them back (the images' RowSchema is the table's) and `cdc verify` finds the copy equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.connect_json import ConnectJsonDecoder
from icetide.events import topic_for
from icetide.rowschema import RowSchema
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_avro import icetide
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration


def test_cdc_run_connect_json_then_apply_equals_the_source(spark: Any, base_settings: Any, kafka_bootstrap: str,
                                                           session_dir: Path, tmp_path: Path) -> None:
    table = fresh_table_name("connectjson")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, produto STRING, valor DECIMAL(12,2), "
              "grande DECIMAL(38,0), data_venda DATE, visto TIMESTAMP, local_ts TIMESTAMP_NTZ, nota DOUBLE, "
              "bruto BINARY, extra STRUCT<peso: DECIMAL(6,3), dia: DATE>) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, concat('p', id % 7), CAST(id AS DECIMAL(12,2)) / 4 - 3, "
              "CAST(id AS DECIMAL(38,0)) * -123456789012345678901234567, date_add(DATE'1969-12-25', CAST(id AS INT)), "
              "timestamp_micros(1714557600123456 + id), TIMESTAMP_NTZ'2024-03-01 00:00:00.000001' + "
              "make_interval(0, 0, 0, CAST(id AS INT), 0, 0, 0), IF(id = 3, double('NaN'), id / 3), "
              "unhex(hex(id * 7919)), named_struct('peso', CAST(id AS DECIMAL(6,3)) / 8, 'dia', DATE'2024-02-29') "
              "FROM range(30)")
    spark.sql(f"UPDATE {table} SET valor = -valor, produto = NULL WHERE id < 4")
    spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 14")

    summary = cdc_run(session_dir, "--tables", table, "--format", "connect-json", "--tombstones")
    assert summary["format"] == "connect-json"
    assert summary["tables"][table]["by_op"] == {"c": 30, "u": 4, "d": 5}

    topic = topic_for("icetide", *table.split("."))
    messages = sorted(consume_all(kafka_bootstrap, topic, timeout_s=30), key=lambda m: (m.partition(), m.offset()))
    assert len(messages) == 30 + 4 + 5 + 5
    tombstones = [m for m in messages if m.value() is None]  # real Kafka null values
    assert len(tombstones) == 5
    decoder = ConnectJsonDecoder()
    expected = RowSchema.from_iceberg(pyiceberg_catalog(base_settings).load_table(table).schema())
    for message in messages:
        key = orjson.loads(message.key())
        assert list(key) == ["schema", "payload"] and key["schema"]["name"] == f"{topic}.Key"
        if message.value() is None:
            continue
        value = orjson.loads(message.value())
        assert list(value) == ["schema", "payload"] and value["schema"]["name"] == f"{topic}.Envelope"
        assert value["payload"]["source"]["schema"] == table.split(".")[0]
        _, rows = decoder.event(value)
        assert rows == expected
    after = next(orjson.loads(m.value())["payload"]["after"] for m in messages if m.value() is not None)
    assert isinstance(after["data_venda"], int) and isinstance(after["local_ts"], int)  # days, µs
    assert after["visto"].endswith("Z") and "T" in after["visto"]

    sqlite = tmp_path / "downstream.db"
    applied = icetide(session_dir, sqlite, "cdc", "apply", "--once", "--json", "--sink", "sqlite", "--topics", topic)
    assert applied.returncode == 0, applied.stderr[-3000:]
    result = json.loads(applied.stdout)
    assert (result["applied"], result["dead_letters"]) == (30 + 4 + 5, 0)
    verified = icetide(session_dir, sqlite, "cdc", "verify", "--table", table, "--sink", "sqlite", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    assert json.loads(verified.stdout)["equal"] is True
