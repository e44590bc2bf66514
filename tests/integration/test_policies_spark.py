"""The policy engine on real Spark: views applied to the Iceberg catalog, masks equal to DuckDB
and the Python reference, the gateway end to end, and a failed apply leaving the old views."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlglot import exp

from icetide.cli import main
from policies.apply import AppliedState, ApplyError, apply_policy
from policies.compiler import compile_policy
from policies.keys import HmacPads
from policies.loader import parse_policy
from policies.masks import reference, render
from policies.model import MaskSpec
from policies.schemas import CatalogSchemaProvider
from policies.validate import check_policy
from policies.yamlpos import Pos
from tests.fixtures.spark import vendas_schema
from tests.unit.policy_engine.support import EXAMPLE, KEY_ENV, rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration

NS = f"pol_{os.getpid()}"
TABLE = f"{NS}.vendas"
SECRET = "SOUTH-ONLY-SECRET"
POS = Pos("t.yaml", 1, 1)


def policy_text(bucket: int = 100) -> str:
    return EXAMPLE.read_text().replace("sales.vendas", TABLE).replace("bucket: 100", f"bucket: {bucket}")


@pytest.fixture(scope="module")
def vendas(spark: SparkSession) -> list[dict[str, Any]]:
    data = rows(24)
    data[1] = dict(data[1], region="South", product=SECRET)
    spark.sql(exp.Create(this=exp.table_(NS, db="lake"), kind="SCHEMA", exists=True).sql(dialect="spark"))
    df = spark.createDataFrame([tuple(r[f.name] for f in vendas_schema().fields) for r in data], vendas_schema())
    df.writeTo(f"lake.{TABLE}").using("iceberg").createOrReplace()
    return data


@pytest.fixture(scope="module")
def state(base_settings: Settings, vendas: list[dict[str, Any]], spark: SparkSession,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Apply the example policy (on this module's table) through the CLI, as an admin would."""
    folder = tmp_path_factory.mktemp("policy")
    (folder / "policy.yaml").write_text(policy_text())
    env = {"ICETIDE__STACK__STATE_DIR": str(base_settings.state_dir), **KEY_ENV}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["policy", "apply", str(folder / "policy.yaml"), "--json"]) == 0
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return folder


def view_rows(spark: SparkSession, user: str) -> list[dict[str, Any]]:
    return [r.asDict() for r in spark.table(f"lake.sec_{user}.vendas").collect()]


def test_roadmap_cases_in_spark_views(spark: SparkSession, state: Path, vendas: list[dict[str, Any]]) -> None:
    ana, bruno, carla = view_rows(spark, "ana"), view_rows(spark, "bruno"), view_rows(spark, "carla")
    assert ana and {r["region"] for r in ana} == {"North"}
    assert bruno and {r["region"] for r in bruno} == {"South"}
    assert all(r["price"] % 100 == 0 for r in ana + bruno)
    assert {r["customer_email"] for r in ana + bruno} == {"****"}
    assert {r["customer_email"] for r in carla} == {r["customer_email"] for r in vendas}
    tables = {r.tableName for r in spark.sql("SHOW VIEWS IN lake.sec_dave").collect()} if _ns(spark, "sec_dave") \
        else set()
    assert "vendas" not in tables  # deny by default: no view at all


def _ns(spark: SparkSession, name: str) -> bool:
    return any(r[0] == name for r in spark.sql("SHOW NAMESPACES IN lake").collect())


def test_views_carry_rule_ids_and_content_hash(spark: SparkSession, state: Path) -> None:
    props = {r.key: r.value for r in spark.sql("SHOW TBLPROPERTIES lake.sec_ana.vendas").collect()}
    compiled_hash = parse_policy(policy_text(), "p.yaml").content_hash
    assert props["icetide.policy_hash"] == compiled_hash
    assert props["icetide.rule_ids"] == "rf-analyst-region,m-price-analysts"


def test_masks_equal_in_spark_duckdb_and_python(spark: SparkSession) -> None:
    from pyspark.sql import types as T

    from tests.unit.policy_engine.test_masks import run_duckdb

    rng = random.Random(20261128)
    alphabet = "abcXYZ019 .@_-éçãß中文😀\t'\"\\"
    strings = ["", "a", "abcd", "abcde"] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
                                            for _ in range(200)]
    longs = [rng.randint(-10**12, 10**12) for _ in range(200)] + [0, -1, 99, 100, -100]
    decimals = [Decimal(rng.randint(-10**9, 10**9)) / 100 for _ in range(200)] + [Decimal("0.00"), Decimal("100.00")]
    doubles = [rng.uniform(-1e9, 1e9) for _ in range(200)] + [0.0, -0.5, 100.0]
    days = [dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 110000)) for _ in range(100)]
    stamps = [dt.datetime(1950, 1, 1) + dt.timedelta(seconds=rng.randint(0, 3 * 10**9)) for _ in range(100)]
    pads = HmacPads("k1", b"integration-key-0123456789")
    cases: list[tuple[str, Any, list[Any], list[MaskSpec]]] = [
        ("string", T.StringType(), [*strings, None], [MaskSpec("show_first", POS, n=3), MaskSpec("show_last", POS, n=4),
                                                      MaskSpec("redact", POS), MaskSpec("hash", POS, key="k1")]),
        ("long", T.LongType(), longs, [MaskSpec("bucket", POS, width=Decimal(1000)), MaskSpec("hash", POS, key="k1")]),
        ("decimal(10,2)", T.DecimalType(10, 2), decimals, [MaskSpec("bucket", POS, width=Decimal(100))]),
        ("double", T.DoubleType(), doubles, [MaskSpec("bucket", POS, width=Decimal(7))]),
        ("date", T.DateType(), days, [MaskSpec("year_only", POS), MaskSpec("null", POS)]),
        ("timestamp", T.TimestampNTZType(), stamps, [MaskSpec("year_only", POS)]),
    ]
    from policies.stream import connect

    con = connect()
    try:
        for col_type, spark_type, values, masks in cases:
            df = spark.createDataFrame([(i, v) for i, v in enumerate(values)],
                                       T.StructType([T.StructField("i", T.IntegerType()),
                                                     T.StructField("v", spark_type)]))
            df.createOrReplaceTempView("mask_values")
            for mask in masks:
                expr = render(mask, exp.column("v"), col_type, "spark", pads)
                select = exp.select("i", exp.alias_(expr, "m")).from_("mask_values").order_by("i")
                in_spark = [r["m"] for r in spark.sql(select.sql(dialect="spark")).collect()]
                expected = [reference(mask, v, col_type, pads) for v in values]
                assert in_spark == expected, (col_type, mask.label())
                assert run_duckdb(con, mask, col_type, values, pads) == expected, (col_type, mask.label())
    finally:
        con.close()


def run_cli(capsys: pytest.CaptureFixture[str], base_settings: Settings, *args: str) -> tuple[int, str, str]:
    saved = os.environ.get("ICETIDE__STACK__STATE_DIR")
    os.environ["ICETIDE__STACK__STATE_DIR"] = str(base_settings.state_dir)
    try:
        code = main(list(args))
    finally:
        if saved is None:
            os.environ.pop("ICETIDE__STACK__STATE_DIR", None)
        else:
            os.environ["ICETIDE__STACK__STATE_DIR"] = saved
    out = capsys.readouterr()
    return code, out.out, out.err


ATTACKS_DENIED = [
    f"SELECT * FROM lake.{TABLE}", f"SELECT * FROM {TABLE}", "SELECT * FROM lake.sec_bruno.vendas",
    f"SELECT * FROM lake.{TABLE}.snapshots", f"SELECT * FROM lake.{TABLE}.files",
    "SELECT * FROM lake.sec_ana.vendas.snapshots", "SELECT * FROM sec_ana.vendas VERSION AS OF 1",
    "SELECT * FROM sec_ana.vendas TIMESTAMP AS OF '2020-01-01 00:00:00'", "SELECT * FROM parquet.`/tmp`",
    "DROP VIEW lake.sec_ana.vendas", f"SELECT * FROM sec_ana.vendas WHERE sale_id IN (SELECT sale_id FROM {TABLE})",
]


def test_gateway_end_to_end(spark: SparkSession, state: Path, base_settings: Settings,
                            capsys: pytest.CaptureFixture[str]) -> None:
    for sql in ATTACKS_DENIED:
        code, _, err = run_cli(capsys, base_settings, "query", "--as", "ana", sql)
        assert code == 1 and "denied" in err, sql
    code, out, _ = run_cli(capsys, base_settings, "query", "--as", "ana", "--json",
                           "SELECT price, count(*) AS n FROM sec_ana.vendas GROUP BY price ORDER BY price")
    data = json.loads(out)
    assert code == 0 and all(Decimal(str(p)) % 100 == 0 for p, _ in data["rows"])
    probes = [
        "SELECT * FROM sec_ana.vendas WHERE CAST(product AS INT) = 1",
        "SELECT CAST(customer_email AS INT) AS x FROM sec_ana.vendas",
        "SELECT a.sale_id FROM sec_ana.vendas a JOIN sec_ana.vendas b ON a.customer_email = b.customer_email",
        "SELECT count(*) FROM sec_ana.vendas WHERE customer_email LIKE 'secret%'",
        "SELECT sale_id FROM vendas ORDER BY customer_email, sale_id",
    ]
    for sql in probes:
        code, out, err = run_cli(capsys, base_settings, "query", "--as", "ana", "--json", sql)
        assert code == 0, (sql, err)
        assert SECRET not in out + err and "secret" not in out.lower().replace("secret%", ""), sql
    code, out, _ = run_cli(capsys, base_settings, "policy", "audit-verify", "--json")
    verdict = json.loads(out)
    assert code == 0 and verdict["ok"] and verdict["records"] >= len(ATTACKS_DENIED) + len(probes) + 1


def test_failed_apply_keeps_previous_views(spark: SparkSession, state: Path, base_settings: Settings) -> None:
    state_file = base_settings.state_dir / "policies" / "applied.json"
    before = AppliedState.read(state_file)
    checked = check_policy(parse_policy(policy_text(bucket=1000), "v2.yaml"), CatalogSchemaProvider(base_settings))
    compiled = compile_policy(checked, KEY_ENV)

    class FailsOnBruno:
        """Spark whose second view statement fails after the first was replaced."""

        def sql(self, text: str) -> Any:
            if text.startswith("CREATE OR REPLACE VIEW `lake`.`sec_bruno`"):
                raise RuntimeError("simulated failure")
            return spark.sql(text)

    with pytest.raises(ApplyError):
        apply_policy(FailsOnBruno(), compiled, state_file)  # type: ignore[arg-type]
    assert {r["price"] % 1000 for r in view_rows(spark, "ana")} != {0}  # still bucket(100), not bucket(1000)
    assert AppliedState.read(state_file).policy_hash == before.policy_hash


def test_stream_filter_equals_spark_views(spark: SparkSession, state: Path, vendas: list[dict[str, Any]],
                                          base_settings: Settings) -> None:
    """What the CDC job would publish for an audience (DuckDB) is what its Spark view returns."""
    from policies.stream import apply_to_rows

    checked = check_policy(parse_policy(policy_text(), "p.yaml"), CatalogSchemaProvider(base_settings))
    compiled = compile_policy(checked, KEY_ENV)
    for user in ("ana", "bruno", "carla", "erin"):
        streamed = apply_to_rows(compiled, user, TABLE, vendas)
        viewed = view_rows(spark, user)
        assert streamed, user
        assert sorted(map(repr, map(sorted, (r.items() for r in streamed)))) == \
            sorted(map(repr, map(sorted, (r.items() for r in viewed)))), user
