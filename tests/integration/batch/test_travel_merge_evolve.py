"""Roadmap iteration 2 on real Spark: time travel (10 → 20 rows), the inventory upsert, schema evolution."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from batch.cli import batch
from batch.common import render, table_ref
from batch.evolve import evolve
from batch.generate import generate, vendas_rows
from batch.timetravel import count_as_of, read_as_of, snapshots
from icetide.cli import App
from icetide.errors import ConfigError
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration


def run_json(args: list[str], settings: Settings) -> Any:
    result = CliRunner().invoke(batch, [*args, "--json"], obj=App(config_path=None, _settings=settings))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_time_travel_v1_has_10_rows_v2_has_20(spark: SparkSession, base_settings: Settings) -> None:
    name = fresh_table_name("travel")
    table = table_ref(base_settings, name)
    v1 = generate(spark, table, rows=10).snapshot_id
    v2 = generate(spark, table, rows=10).snapshot_id
    assert v1 is not None and v2 is not None
    assert count_as_of(spark, table, version=v1) == 10
    assert count_as_of(spark, table, version=v2) == 20

    listed = run_json(["snapshots", "--table", name], base_settings)
    assert [s["snapshot_id"] for s in listed] == [v1, v2]
    assert [s["total_records"] for s in listed] == [10, 20]
    committed_v1 = listed[0]["committed_at"]
    by_time = run_json(["travel", "--table", name, "--timestamp", committed_v1, "--limit", "3"], base_settings)
    assert by_time["rows"] == 10 and len(by_time["sample"]) == 3
    by_version = run_json(["travel", "--table", name, "--version", str(v2), "--where", "sale_id > 15"],
                          base_settings)
    assert by_version["rows"] == 5
    assert [h["snapshot_id"] for h in run_json(["history", "--table", name], base_settings)] == [v1, v2]


def test_merge_inventory_case(spark: SparkSession, base_settings: Settings) -> None:
    target, source = fresh_table_name("inventory"), fresh_table_name("inventory_updates")
    ddl = ("(product_id STRING NOT NULL, quantity INT, price DECIMAL(10,2), updated_at TIMESTAMP, "
           "year INT, month INT) USING iceberg PARTITIONED BY (year, month) "
           "TBLPROPERTIES ('format-version'='2')")
    spark.sql(f"CREATE TABLE {target} {ddl}")
    spark.sql(f"CREATE TABLE {source} {ddl}")
    day1, day2 = dt.datetime(2025, 1, 10), dt.datetime(2025, 2, 1)

    def rows(items: list[tuple[str, int, str]], at: dt.datetime) -> list[tuple[Any, ...]]:
        return [(p, q, decimal.Decimal(pr), at, at.year, at.month) for p, q, pr in items]

    columns = ["product_id", "quantity", "price", "updated_at", "year", "month"]
    initial = [("PROD_001", 100, "10.00"), ("PROD_002", 200, "20.00"), ("PROD_003", 300, "30.00"),
               ("PROD_004", 400, "40.00"), ("PROD_005", 500, "50.00")]
    changes = [("PROD_001", 50, "11.00"), ("PROD_002", 150, "20.00"), ("PROD_003", 300, "35.00"),
               ("PROD_006", 60, "60.00"), ("PROD_007", 70, "70.00")]
    spark.createDataFrame(rows(initial, day1), spark.table(target).schema).select(*columns) \
        .writeTo(target).append()
    spark.createDataFrame(rows(changes, day2), spark.table(source).schema).writeTo(source).append()
    assert spark.table(target).count() == 5

    result = run_json(["merge", "--target", target, "--source", source, "--key", "product_id"], base_settings)
    assert (result["rows_before"], result["rows_after"]) == (5, 7)
    assert (result["updated"], result["inserted"]) == (3, 2)
    assert result["statement"].startswith("MERGE INTO")

    after = {r["product_id"]: r for r in spark.table(target).collect()}
    assert after["PROD_001"]["quantity"] == 50 and after["PROD_001"]["price"] == decimal.Decimal("11.00")
    assert after["PROD_002"]["quantity"] == 150
    assert after["PROD_004"]["quantity"] == 400 and after["PROD_004"]["updated_at"] == day1
    assert after["PROD_006"]["quantity"] == 60 and after["PROD_006"]["month"] == 2


def test_schema_evolution_keeps_old_rows_and_snapshots(spark: SparkSession, base_settings: Settings) -> None:
    name = fresh_table_name("evolve")
    table = table_ref(base_settings, name)
    v1 = generate(spark, table, rows=10).snapshot_id
    assert v1 is not None

    run_json(["evolve", "--table", name, "--add", "category", "string"], base_settings)
    from pyspark.sql import functions as F

    vendas_rows(spark, 10, 11, 42).withColumn("category", F.lit("NEW")).writeTo(render(table)).append()
    counts = {r["category"]: r["n"] for r in spark.sql(
        f"SELECT category, count(*) n FROM {render(table)} GROUP BY category").collect()}
    assert counts == {None: 10, "NEW": 10}

    renamed = evolve(spark, table, "rename", ["customer_email", "email"])
    widened = evolve(spark, table, "widen", ["quantity", "bigint"])
    assert "email" in renamed["columns"] and "customer_email" not in renamed["columns"]
    assert widened["columns"]["quantity"] == "bigint"
    with pytest.raises(ConfigError):
        evolve(spark, table, "widen", ["quantity", "int"])

    columns, old_rows = read_as_of(spark, table, version=v1, limit=100)
    assert len(old_rows) == 10
    assert "category" not in columns and "customer_email" in columns
    assert spark.table(render(table)).where("email IS NULL").count() == 0
    assert len(snapshots(spark, table)) == 2
