"""SQL builders, policy files and reports of the batch room (no JVM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from batch.bench import QUERIES, bind
from batch.common import render
from batch.evolve import add_column, check_widening, rename_column, widen_column
from batch.maint_policy import load_policy
from batch.merge import merge_statement
from batch.report import write_report
from batch.timetravel import as_of, parse_timestamp
from icetide.errors import ConfigError

pytestmark = pytest.mark.unit

TARGET = exp.to_table("lake.shop.inventory")
SOURCE = exp.to_table("lake.shop.inventory_updates")
COLUMNS = ["product_id", "quantity", "price", "updated_at"]


def test_merge_statement_is_an_upsert_on_the_key() -> None:
    sql = render(merge_statement(TARGET, SOURCE, ["product_id"], COLUMNS, COLUMNS))
    assert sql == (
        "MERGE INTO `lake`.`shop`.`inventory` AS `t` USING `lake`.`shop`.`inventory_updates` AS `s` "
        "ON `t`.`product_id` = `s`.`product_id` WHEN MATCHED THEN UPDATE SET `t`.`quantity` = `s`.`quantity`, "
        "`t`.`price` = `s`.`price`, `t`.`updated_at` = `s`.`updated_at` WHEN NOT MATCHED THEN INSERT "
        "(`product_id`, `quantity`, `price`, `updated_at`) VALUES (`s`.`product_id`, `s`.`quantity`, "
        "`s`.`price`, `s`.`updated_at`)"
    )


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(st.lists(names, min_size=1, max_size=6, unique=True), st.data())
def test_merge_statement_round_trips_and_never_updates_keys(columns: list[str], data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.sampled_from(columns), min_size=1, unique=True))
    sql = render(merge_statement(TARGET, SOURCE, keys, columns, columns))
    tree = sqlglot.parse_one(sql, read="spark")
    assert isinstance(tree, exp.Merge)
    updated = {eq.this.name for update in tree.find_all(exp.Update) for eq in update.expressions}
    assert updated == set(columns) - set(keys)
    on_columns = {c.name for c in tree.args["on"].find_all(exp.Column)}
    assert on_columns == set(keys)


def test_merge_key_must_exist_in_both() -> None:
    with pytest.raises(ConfigError):
        merge_statement(TARGET, SOURCE, ["sku"], COLUMNS, COLUMNS)


def test_alter_statements() -> None:
    table = exp.to_table("lake.sales.vendas")
    assert render(add_column(table, "category", "string")) == (
        "ALTER TABLE `lake`.`sales`.`vendas` ADD COLUMN `category` STRING")
    assert render(rename_column(table, "customer_email", "email")) == (
        "ALTER TABLE `lake`.`sales`.`vendas` RENAME COLUMN `customer_email` TO `email`")
    assert render(widen_column(table, "quantity", "bigint")) == (
        "ALTER TABLE `lake`.`sales`.`vendas` ALTER COLUMN `quantity` TYPE BIGINT")


@pytest.mark.parametrize(("current", "wanted", "ok"), [
    ("int", "bigint", True), ("float", "double", True), ("decimal(10,2)", "decimal(12,2)", True),
    ("bigint", "int", False), ("decimal(10,2)", "decimal(12,3)", False), ("string", "int", False),
])
def test_widening_rules(current: str, wanted: str, ok: bool) -> None:
    if ok:
        check_widening(current, wanted)
    else:
        with pytest.raises(ConfigError):
            check_widening(current, wanted)


def test_as_of_needs_exactly_one_point() -> None:
    table = exp.to_table("lake.sales.vendas")
    assert render(exp.select("*").from_(as_of(table, version=12))).endswith("VERSION AS OF 12")
    with pytest.raises(ConfigError):
        as_of(table)
    assert parse_timestamp("2026-01-31T12:00:00+01:00") == "2026-01-31 11:00:00.000"
    with pytest.raises(ConfigError):
        parse_timestamp("yesterday")


def test_bench_queries_bind_to_real_tables() -> None:
    tables = {"vendas": exp.to_table("lake.sales.vendas"), "products": exp.to_table("lake.sales.products")}
    assert len(QUERIES) == 10
    for query in QUERIES.values():
        sql = bind(query, tables)
        assert "`lake`.`sales`.`vendas`" in sql
        assert not any(t.name in {"vendas", "products"} and not t.db
                       for t in sqlglot.parse_one(sql, read="spark").find_all(exp.Table))
    assert "AS `v`" in bind(QUERIES["product_join"], tables)


def test_policy_merges_table_overrides(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("defaults:\n  expire: {older_than_days: 14}\ntables:\n"
                    "  sales.vendas:\n    compact: {strategy: zorder, columns: [region]}\n")
    policy = load_policy(path)
    rules = policy.for_table("sales.vendas")
    assert rules.compact.strategy == "zorder" and rules.expire.older_than_days == 14
    assert policy.for_table("other.t").compact.strategy == "binpack"
    assert rules.orphans.older_than_days == 3 and rules.orphans.remove is False


@pytest.mark.parametrize("text", ["defaults: {compact: {strategy: fast}}",
                                  "tables: {a.b: {expire: {retain_last: 0}}}",
                                  "defaults: {compactt: {}}", "defaults: [1"])
def test_bad_policy_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_policy(path)


def test_report_writes_json_markdown_and_a_png_chart(tmp_path: Path) -> None:
    query = {"name": "one_month", "median_s": 0.25, "min_s": 0.2, "max_s": 0.3, "rows": 4,
             "files_scanned": 1, "files_total": 12, "pruning": 0.9167}
    result = {"table": "sales.vendas", "records": 1000, "data_files": 12, "bytes": 2**20,
              "avg_median_s": 0.25, "fastest": "one_month", "slowest": "one_month", "queries": [query]}
    payload = {"runs": 3, "results": [result], "command": "icetide batch bench",
               "environment": {"measured_at": "now", "spark": "4.0.5", "master": "local[2]",
                               "driver_memory": "2g", "cpus": 2, "load_avg_1m": 1.0}}
    paths = write_report(payload, tmp_path)
    text = Path(paths["markdown"]).read_text()
    assert "| one_month | 0.250 | 0.200 | 0.300 | 4 | 1 / 12 | 92% |" in text
    assert "![warm median query time](batch-bench.png)" in text
    assert Path(paths["chart"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_example_maintenance_policy_loads() -> None:
    policy = load_policy(Path(__file__).parents[3] / "docs" / "examples" / "maintenance-policy.yaml")
    assert policy.for_table("sales.vendas").compact.strategy == "zorder"
    assert policy.for_table("sales.other").expire.older_than_days == 7
