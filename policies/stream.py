"""Filter and mask change-stream rows with the compiled policy, in DuckDB.

The streaming room calls `apply_to_rows` / `apply_to_arrow` with one audience's user name;
the SQL is the same masked SELECT the secure views use (`compiler.masked_select`), so a
topic carries exactly what that audience's view returns. Columns the policy does not know
(added to the table after compilation) come out as NULL: deny by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlglot import exp

from policies.compiler import CompiledPolicy, masked_select

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

SOURCE = "icetide_rows"


def arrow_type(col_type: str) -> pa.DataType:
    """Arrow type for a canonical column type."""
    import pyarrow as pa

    if col_type.startswith("decimal("):
        p, s = col_type[len("decimal("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    return {
        "string": pa.string(), "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(),
        "float": pa.float32(), "double": pa.float64(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
        "timestamptz": pa.timestamp("us", tz="UTC"), "binary": pa.binary(),
    }.get(col_type, pa.string())


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection in UTC (masks on timestamps depend on the time zone)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def apply_to_arrow(compiled: CompiledPolicy, user: str, table: str, rows: pa.Table,
                   con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """The rows of `rows` that `user` may see, with masks applied (an Arrow table)."""
    import pyarrow as pa

    access = compiled.get(user, table)
    schema = compiled.checked.schemas.get(table)
    if access is None or schema is None:
        return pa.table({})
    missing = [n for n, _ in schema.columns if n not in rows.column_names]
    for name in missing:  # a row batch without a column: treat it as NULL
        rows = rows.append_column(name, pa.nulls(rows.num_rows, arrow_type(dict(schema.columns)[name])))
    select = masked_select(compiled, access, exp.to_table(SOURCE), "duckdb")
    known = set(schema.names)
    for extra in [n for n in rows.column_names if n not in known]:
        select = select.select(exp.alias_(exp.Null(), extra, quoted=True), copy=False)
    own = con is None
    con = con or connect()
    try:
        con.register(SOURCE, rows)
        result: pa.Table = con.sql(select.sql(dialect="duckdb")).to_arrow_table()
        con.unregister(SOURCE)
    finally:
        if own:
            con.close()
    return result


def apply_to_rows(compiled: CompiledPolicy, user: str, table: str, rows: list[dict[str, Any]],
                  con: duckdb.DuckDBPyConnection | None = None) -> list[dict[str, Any]]:
    """Same as `apply_to_arrow`, for a list of row dicts (typed by the table's schema)."""
    import pyarrow as pa

    schema = compiled.checked.schemas.get(table)
    if schema is None or not rows:
        return []
    known = dict(schema.columns)
    names = list(dict.fromkeys([*schema.names, *(k for r in rows for k in r)]))
    fields = [pa.field(n, arrow_type(known[n]) if n in known else pa.string()) for n in names]
    arrow_schema = pa.schema(fields)
    data = pa.Table.from_pylist([{n: _loose(r.get(n), n in known) for n in names} for r in rows],
                                schema=arrow_schema)
    out: list[dict[str, Any]] = apply_to_arrow(compiled, user, table, data, con).to_pylist()
    return out


def _loose(value: Any, known: bool) -> Any:
    return value if known or value is None else str(value)
