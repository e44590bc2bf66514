"""Statement splitting, table names, CALL rendering and text tables (no JVM)."""

from __future__ import annotations

import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch.common import call_sql, format_table, render, table_ref
from batch.sql_cli import split_statements
from icetide.errors import ConfigError
from icetide.settings import load_settings

pytestmark = pytest.mark.unit

SETTINGS = load_settings(None, environ={})


def test_split_ignores_semicolons_in_strings_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    SELECT 'a;b' AS s;
    CALL lake.system.expire_snapshots(table => 'x;y', retain_last => 1);
    /* ; */ ALTER TABLE t SET IDENTIFIER FIELDS id ;;
    SELECT 2
    """
    assert split_statements(script) == [
        "SELECT 'a;b' AS s",
        "CALL lake.system.expire_snapshots(table => 'x;y', retain_last => 1)",
        "ALTER TABLE t SET IDENTIFIER FIELDS id",
        "SELECT 2",
    ]


def test_split_of_only_comments_is_empty() -> None:
    assert split_statements("-- nothing here;\n ; ;") == []


@given(st.lists(st.text(alphabet="abc ;'", max_size=8), min_size=1, max_size=5))
def test_split_round_trips_string_literals(values: list[str]) -> None:
    # Literals rendered by sqlglot may contain ';' and quotes; each SELECT stays one statement.
    from sqlglot import exp

    statements = [f"SELECT {render(exp.Literal.string(v))}" for v in values]
    assert split_statements(";\n".join(statements)) == statements


def test_table_ref_qualifies_with_catalog_and_quotes() -> None:
    assert render(table_ref(SETTINGS, "sales.vendas")) == "`lake`.`sales`.`vendas`"
    assert render(table_ref(SETTINGS, "lake.sales.vendas")) == "`lake`.`sales`.`vendas`"


@pytest.mark.parametrize("name", ["vendas", "other.sales.vendas"])
def test_table_ref_rejects_unqualified_or_foreign(name: str) -> None:
    with pytest.raises(ConfigError):
        table_ref(SETTINGS, name)


def test_call_sql_renders_literals() -> None:
    sql = call_sql("lake", "rewrite_data_files", {
        "table": "sales.v'x", "strategy": "sort", "where": None,
        "options": {"target-file-size-bytes": 1024}, "retain_last": 3,
    })
    assert sql == (
        "CALL `lake`.`system`.`rewrite_data_files`(table => 'sales.v\\'x', strategy => 'sort', "
        "options => map('target-file-size-bytes', '1024'), retain_last => 3)"
    )


def test_format_table_aligns_numbers_right() -> None:
    text = format_table(["name", "n"], [["a", 1], ["bbb", decimal.Decimal("10.50")], [None, None]])
    assert text.splitlines() == [
        "name       n",
        "────────────",
        "a          1",
        "bbb    10.50",
        "NULL    NULL",
        "(3 rows)",
    ]


def test_struct_rows_keep_their_field_names() -> None:
    from pyspark.sql import Row

    from batch.common import to_jsonable

    value = Row(year=2025, month=Row(n=3, d=decimal.Decimal("1.50")))
    assert to_jsonable([value]) == [{"year": 2025, "month": {"n": 3, "d": "1.50"}}]
