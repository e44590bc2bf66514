"""Secure views in an in-process DuckDB: the same compiled SELECTs as the Spark views.

Used by `policy test` fixtures and the unit-tier attack suite (no JVM): the base table is
loaded into `lake.<ns>.<table>` and each user's view is created as `lake.sec_<user>.<table>`,
so gateway-checked queries run unchanged against it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from policies.compiler import CompiledPolicy, audience, masked_select, table_ref
from policies.stream import arrow_type, connect

if TYPE_CHECKING:
    import duckdb

CATALOG = "lake"


def coerce(value: Any, col_type: str) -> Any:
    """A YAML/JSON value as the Python value of a column type (fixtures write `price: 12.5`)."""
    if value is None:
        return None
    try:
        if col_type.startswith("decimal"):
            return Decimal(str(value))
        if col_type in ("int", "long"):
            return int(value)
        if col_type in ("float", "double"):
            return float(value)
        if col_type == "date" and isinstance(value, str):
            return dt.date.fromisoformat(value)
        if col_type.startswith("timestamp") and isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        if col_type.startswith("timestamp") and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day)
        if col_type == "string":
            return str(value)
    except (ValueError, ArithmeticError):
        raise ValueError(f"value {value!r} is not a valid {col_type}") from None
    return value


def load_rows(con: duckdb.DuckDBPyConnection, compiled: CompiledPolicy, table: str,
              rows: list[dict[str, Any]]) -> None:
    """Create the base table `lake.<ns>.<table>` typed by the policy's schema and fill it."""
    import pyarrow as pa

    schema = compiled.checked.schemas[table]
    arrow_schema = pa.schema([pa.field(n, arrow_type(t)) for n, t in schema.columns])
    typed = [{n: coerce(r.get(n), t) for n, t in schema.columns} for r in rows]
    data = pa.Table.from_pylist(typed, schema=arrow_schema)
    ref = table_ref(table, CATALOG)
    con.execute(exp.Create(this=exp.table_(ref.db, db=CATALOG, quoted=True), kind="SCHEMA",
                           exists=True).sql(dialect="duckdb"))
    con.register("icetide_load", data)
    create = exp.Create(this=ref, kind="TABLE", replace=True,
                        expression=exp.select("*").from_("icetide_load"))
    con.execute(create.sql(dialect="duckdb"))
    con.unregister("icetide_load")


def create_views(con: duckdb.DuckDBPyConnection, compiled: CompiledPolicy) -> list[str]:
    """Create every visible user × table view; returns their names."""
    names = []
    for (user, table), access in compiled.access.items():
        if not access.visible:
            continue
        con.execute(exp.Create(this=exp.table_(audience(user), db=CATALOG, quoted=True), kind="SCHEMA",
                               exists=True).sql(dialect="duckdb"))
        view = exp.table_(table.split(".")[-1], db=audience(user), catalog=CATALOG, quoted=True)
        select = masked_select(compiled, access, table_ref(table, CATALOG), "duckdb", CATALOG)
        con.execute(exp.Create(this=view, kind="VIEW", replace=True, expression=select).sql(dialect="duckdb"))
        names.append(view.sql(dialect="duckdb"))
    return names


def lake(compiled: CompiledPolicy, data: dict[str, list[dict[str, Any]]]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with catalog `lake`, the given base tables and every secure view."""
    con = connect()
    con.execute("ATTACH ':memory:' AS lake")
    for table, rows in data.items():
        load_rows(con, compiled, table, rows)
    create_views(con, compiled)
    return con
