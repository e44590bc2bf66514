"""`icetide sql` and `icetide batch generate` on the session's Spark and catalog."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from batch.cli import batch
from batch.common import table_ref
from batch.generate import REGIONS, generate, vendas_rows
from batch.sql_cli import sql
from icetide.catalog import pyiceberg_catalog
from icetide.cli import App
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration


def invoke(command: Any, args: list[str], settings: Settings) -> Any:
    result = CliRunner().invoke(command, args, obj=App(config_path=None, _settings=settings))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_sql_runs_a_script_in_one_session(spark: SparkSession, base_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = fresh_table_name("sqlcli")
    script = tmp_path / "script.sql"
    script.write_text(
        f"CREATE TABLE {name} (id BIGINT NOT NULL, s STRING) USING iceberg;\n"
        f"INSERT INTO {name} VALUES (1, 'a;b'), (2, NULL);  -- two rows\n"
        f"SELECT id, s FROM {name} ORDER BY id;\n"
        f"CALL lake.system.expire_snapshots(table => '{name}', retain_last => 1)\n"
    )
    out = json.loads(invoke(sql, ["-f", str(script), "--json"], base_settings).stdout)
    assert [r["statement"].split()[0] for r in out] == ["CREATE", "INSERT", "SELECT", "CALL"]
    assert out[2]["rows"] == [{"id": 1, "s": "a;b"}, {"id": 2, "s": None}]
    assert "deleted_data_files_count" in out[3]["columns"]


def test_sql_text_table_and_single_statement_json(spark: SparkSession, base_settings: Settings) -> None:
    text = invoke(sql, ["SELECT 1 AS one, 'x' AS s"], base_settings).stdout
    assert text.splitlines()[:3] == ["one   s", "───────", "  1   x"]
    rows = json.loads(invoke(sql, ["SELECT 1 AS one", "--json"], base_settings).stdout)
    assert rows == [{"one": 1}]


def test_sql_error_is_one_line_exit_1(spark: SparkSession, base_settings: Settings) -> None:
    result = CliRunner().invoke(sql, ["SELEC 1"], obj=App(config_path=None, _settings=base_settings))
    assert result.exit_code != 0
    assert "statement 1 failed" in str(result.exception)


def test_generate_creates_table_and_appends_snapshots(spark: SparkSession, base_settings: Settings) -> None:
    name = fresh_table_name("vendas")
    first = json.loads(invoke(batch, ["generate", "--table", name, "--rows", "500", "--json"],
                              base_settings).stdout)
    second = json.loads(invoke(batch, ["generate", "--table", name, "--rows", "300", "--json"],
                               base_settings).stdout)
    assert first["created"] and not second["created"]
    assert (first["first_sale_id"], first["last_sale_id"]) == (1, 500)
    assert (second["first_sale_id"], second["last_sale_id"]) == (501, 800)
    assert first["snapshot_id"] != second["snapshot_id"]

    frame = spark.table(name)
    stats = frame.selectExpr("count(*) n", "count(distinct sale_id) ids", "min(sale_id) lo",
                             "max(sale_id) hi").first()
    assert (stats["n"], stats["ids"], stats["lo"], stats["hi"]) == (800, 800, 1, 800)
    assert {r["region"] for r in frame.select("region").distinct().collect()} <= set(REGIONS)
    assert frame.where("year <> year(sale_ts) OR month <> month(sale_ts)").count() == 0
    assert frame.where("amount <> price * quantity OR quantity < 1 OR price <= 0").count() == 0
    assert spark.table(f"{name}.snapshots").count() == 2

    table = pyiceberg_catalog(base_settings).load_table(name)
    schema = table.schema()
    assert [schema.find_field(i).name for i in schema.identifier_field_ids] == ["sale_id"]
    assert [f.name for f in table.spec().fields] == ["year", "month"]
    assert table.metadata.format_version == 2


def test_generate_is_deterministic_for_a_seed(spark: SparkSession, base_settings: Settings) -> None:
    names = [fresh_table_name("det") for _ in range(2)]
    for name in names:
        generate(spark, table_ref(base_settings, name), rows=400, seed=7)
    expression = "bit_xor(xxhash64(sale_id, sale_ts, region, product, customer_email, price, quantity))"

    def digest(name: str) -> Any:
        return spark.table(name).selectExpr(expression).first()[0]

    assert digest(names[0]) == digest(names[1])
    assert digest(names[0]) == vendas_rows(spark, 400, 1, 7).selectExpr(expression).first()[0]
    assert digest(names[0]) != vendas_rows(spark, 400, 1, 8).selectExpr(expression).first()[0]
