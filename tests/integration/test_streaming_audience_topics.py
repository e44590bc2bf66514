"""Policies on streams: an audience's topic, applied downstream, equals that audience's secure view.

Spark writes a sales table (inserts, an update that moves a row from North to South, a delete);
`icetide cdc run --once --policy` publishes the table's topic and one topic per audience, filtered
and masked by the compiled policy (policies/examples/vendas.yaml, pointed at this test's table).
Each audience topic, applied to a keyed model sink, must equal what `lake.sec_<user>.<table>`
returns over the final table (the policies room's secure view of the same compiled policy).

With `icetide cdc apply` (issue #9, bug 1): on generated rows, a plain `cdc apply --once` reads the
base topic only and leaves the base table equal to the source (`cdc verify`), while
`cdc apply --audience ana` writes ana's events to `sec_ana__<ns>.<table>`, equal to her view.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from batch.common import table_ref
from batch.generate import generate
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.events import encode_row, from_json, topic_for
from policies.local import lake
from streaming.audiences import audience_topic, load_compiled
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import cdc_run

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "examples" / "vendas.yaml"
KEY_ENV = {"ICETIDE_POLICY_KEY_K1": "integration-test-hmac-key-0123456789"}


def _apply(events: list[Any]) -> dict[Any, dict[str, Any]]:
    sink: dict[Any, dict[str, Any]] = {}
    for message in events:
        event = from_json(message.value())
        if event.op == "d":
            assert event.before is not None
            del sink[event.before["sale_id"]]
        else:
            assert event.after is not None
            sink[event.after["sale_id"]] = event.after
    return sink


def test_audience_topics_equal_secure_views(spark: Any, kafka_stack: Any, base_settings: Any, session_dir: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = fresh_table_name("aud")
    spark.sql(f"""CREATE TABLE {name} (sale_id BIGINT NOT NULL, sale_ts TIMESTAMP, year INT, month INT,
                  region STRING, product STRING, customer_email STRING, price DECIMAL(10,2), quantity INT)
                  USING iceberg PARTITIONED BY (year, month) TBLPROPERTIES ('format-version'='2')""")
    spark.sql(f"ALTER TABLE {name} SET IDENTIFIER FIELDS sale_id")
    spark.sql(f"""INSERT INTO {name} VALUES
        (1, TIMESTAMP '2025-01-05 10:00:00', 2025, 1, 'North', 'P1', 'a@x.example', 1234.56, 2),
        (2, TIMESTAMP '2025-01-06 11:00:00', 2025, 1, 'North', 'P2', 'b@x.example', 99.10, 1),
        (3, TIMESTAMP '2025-02-07 12:00:00', 2025, 2, 'South', 'P1', 'c@y.example', 510.00, 5),
        (4, TIMESTAMP '2025-02-08 13:00:00', 2025, 2, 'East',  'P3', NULL,          42.00, 3)""")
    spark.sql(f"UPDATE {name} SET region = 'South', price = 1300.00 WHERE sale_id = 1")  # leaves ana, enters bruno
    spark.sql(f"DELETE FROM {name} WHERE sale_id = 3")

    policy = tmp_path / "policy.yaml"
    policy.write_text(EXAMPLE.read_text().replace("  sales.vendas:\n", f"  {name}:\n"))
    for key, value in KEY_ENV.items():
        monkeypatch.setenv(key, value)
    cdc_run(session_dir, "--tables", name, "--policy", str(policy))

    compiled = load_compiled(str(policy), base_settings, environ=KEY_ENV)
    final = [row.asDict() for row in spark.table(name).collect()]
    table = name.split(".")[1]
    for user in ("ana", "bruno", "carla", "erin"):
        con = lake(compiled, {name: final})
        try:
            rel = con.sql(exp.select("*").from_(exp.table_(table, db=f"sec_{user}", catalog="lake")).sql("duckdb"))
            view = {r["sale_id"]: encode_row(r) for r in (dict(zip(rel.columns, row, strict=True))
                                                          for row in rel.fetchall())}
        finally:
            con.close()
        streamed = _apply(consume_all(kafka_stack.bootstrap, audience_topic("icetide", user, name)))
        assert streamed == view, user
    # the roadmap's row filters, seen on the streams: ana only North, bruno only South, masked e-mails
    assert {r["region"] for r in _apply(consume_all(kafka_stack.bootstrap,
                                                    audience_topic("icetide", "ana", name))).values()} == {"North"}
    bruno = _apply(consume_all(kafka_stack.bootstrap, audience_topic("icetide", "bruno", name)))
    assert set(bruno) == {1} and bruno[1]["customer_email"] != "a@x.example"


def _secure_view(compiled: Any, name: str, user: str, final: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    con = lake(compiled, {name: final})
    try:
        rel = con.sql(exp.select("*").from_(exp.table_(name.split(".")[1], db=f"sec_{user}", catalog="lake"))
                      .sql("duckdb"))
        return {r["sale_id"]: encode_row(r) for r in (dict(zip(rel.columns, row, strict=True))
                                                      for row in rel.fetchall())}
    finally:
        con.close()


def test_plain_apply_keeps_base_tables_equal_and_audiences_apply_only_to_their_tables(
        spark: Any, kafka_stack: Any, base_settings: Any, session_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name = fresh_table_name("audapply")
    generate(spark, table_ref(base_settings, name), rows=1500, seed=9)
    spark.sql(f"UPDATE {name} SET region = 'South', price = price + 1 WHERE sale_id % 7 = 0")  # some leave North
    spark.sql(f"DELETE FROM {name} WHERE sale_id % 11 = 0")
    policy = tmp_path / "policy.yaml"
    policy.write_text(EXAMPLE.read_text().replace("  sales.vendas:\n", f"  {name}:\n"))
    prefix = f"a{uuid.uuid4().hex[:8]}"  # only this test's topics match the default pattern
    sqlite = tmp_path / "downstream.db"
    env = {**os.environ, **KEY_ENV, "ICETIDE__STACK__STATE_DIR": str(session_dir), "ICETIDE__CDC__TOPIC_PREFIX": prefix,
           "ICETIDE__SINK__SQLITE_PATH": str(sqlite), "ICETIDE__SINK__GROUP_ID": f"g-{uuid.uuid4().hex[:8]}"}

    def icetide(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True, text=True,
                              timeout=600)

    published = icetide("cdc", "run", "--once", "--json", "--tables", name, "--policy", str(policy))
    assert published.returncode == 0, published.stderr[-3000:]
    namespace, table = name.split(".")
    base_topic = topic_for(prefix, namespace, table)

    plain = icetide("cdc", "apply", "--once", "--json", "--sink", "sqlite")
    assert plain.returncode == 0, plain.stderr[-3000:]
    summary = json.loads(plain.stdout)
    assert summary["topics"] == [base_topic]  # no audience topic, no schema-change topic
    assert list(summary["tables"]) == [name] and summary["dead_letters"] == 0
    verified = icetide("cdc", "verify", "--table", name, "--sink", "sqlite", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["equal"] is True, verified.stdout[-2000:]

    for key, value in KEY_ENV.items():
        monkeypatch.setenv(key, value)
    compiled = load_compiled(str(policy), base_settings, environ=KEY_ENV)
    final = [row.asDict() for row in spark.table(name).collect()]
    ana = icetide("cdc", "apply", "--once", "--json", "--sink", "sqlite", "--audience", "ana")
    assert ana.returncode == 0, ana.stderr[-3000:]
    applied = json.loads(ana.stdout)
    assert applied["topics"] == [audience_topic(prefix, "ana", name)]
    assert list(applied["tables"]) == [f"sec_ana__{namespace}.{table}"]
    with SqliteSink(SqliteConfig(sqlite)) as sink:
        rows = {r["sale_id"]: encode_row(r) for r in sink.read_rows((f"sec_ana__{namespace}", table))}
    view = _secure_view(compiled, name, "ana", final)
    assert rows == view and {r["region"] for r in rows.values()} == {"North"}
    again = icetide("cdc", "verify", "--table", name, "--sink", "sqlite", "--json")
    assert json.loads(again.stdout)["equal"] is True  # the base table untouched by the audience's apply
    refused = icetide("cdc", "apply", "--once", "--sink", "sqlite", "--topics", audience_topic(prefix, "ana", name))
    assert refused.returncode == 2 and "--audience ana" in refused.stderr
