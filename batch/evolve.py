"""Schema evolution (roadmap iteration 2): add, rename and widen columns as sqlglot ALTER TABLE ASTs.

Iceberg tracks columns by id, so these are metadata-only changes: no data file is rewritten, old
rows read NULL for an added column, and snapshots taken before the change stay readable in the
schema they were written with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError
from sqlglot import exp

from batch.common import render

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Widening Iceberg allows (type promotion); anything else is refused before Spark is asked.
WIDENINGS = {("int", "bigint"), ("float", "double")}


def _type(text: str) -> exp.DataType:
    try:
        return exp.DataType.build(text, dialect="spark")
    except Exception:  # sqlglot raises ParseError/ValueError for unknown types
        raise ConfigError(f"not a Spark SQL type: {text!r}") from None


def add_column(table: exp.Table, name: str, type_: str, comment: str | None = None) -> exp.Alter:
    """ALTER TABLE t ADD COLUMN name type [COMMENT ...]."""
    constraints = []
    if comment:
        constraints.append(exp.ColumnConstraint(kind=exp.CommentColumnConstraint(
            this=exp.Literal.string(comment))))
    column = exp.ColumnDef(this=exp.to_identifier(name), kind=_type(type_), constraints=constraints)
    return exp.Alter(this=table.copy(), kind="TABLE", actions=[column])


def rename_column(table: exp.Table, old: str, new: str) -> exp.Alter:
    """ALTER TABLE t RENAME COLUMN old TO new."""
    action = exp.RenameColumn(this=exp.to_column(old), to=exp.to_column(new))
    return exp.Alter(this=table.copy(), kind="TABLE", actions=[action])


def widen_column(table: exp.Table, name: str, type_: str) -> exp.Alter:
    """ALTER TABLE t ALTER COLUMN name TYPE wider (int→bigint, float→double, decimal precision up)."""
    action = exp.AlterColumn(this=exp.to_identifier(name), dtype=_type(type_))
    return exp.Alter(this=table.copy(), kind="TABLE", actions=[action])


def check_widening(current: str, wanted: str) -> None:
    """Refuse narrowing or unrelated type changes with a message (Spark's own is a stack trace)."""
    cur, new = current.lower().replace(" ", ""), wanted.lower().replace(" ", "")
    if cur == new or (cur, new) in WIDENINGS:
        return
    if cur.startswith("decimal(") and new.startswith("decimal("):
        (p1, s1), (p2, s2) = (tuple(int(x) for x in t[8:-1].split(",")) for t in (cur, new))
        if s1 == s2 and p2 >= p1:
            return
    raise ConfigError(f"cannot change column type {current} → {wanted}: Iceberg only widens "
                      "int→bigint, float→double and decimal(P,S)→decimal(P',S) with P' ≥ P")


def column_types(spark: SparkSession, table: exp.Table) -> dict[str, str]:
    """Current column name → Spark simple type string."""
    schema = spark.table(render(table)).schema
    return {f.name: f.dataType.simpleString() for f in schema.fields}


def evolve(spark: SparkSession, table: exp.Table, action: str, args: list[str]) -> dict[str, Any]:
    """Apply one change (`add NAME TYPE`, `rename OLD NEW`, `widen NAME TYPE`) and report the schema."""
    types = column_types(spark, table)
    if action == "add":
        if args[0] in types:
            raise ConfigError(f"column {args[0]!r} already exists")
        statement = add_column(table, args[0], args[1])
    elif action == "rename":
        if args[0] not in types:
            raise ConfigError(f"no column {args[0]!r}; columns: {', '.join(types)}")
        statement = rename_column(table, args[0], args[1])
    elif action == "widen":
        if args[0] not in types:
            raise ConfigError(f"no column {args[0]!r}; columns: {', '.join(types)}")
        check_widening(types[args[0]], _type(args[1]).sql("spark"))
        statement = widen_column(table, args[0], args[1])
    else:
        raise ConfigError(f"unknown schema change {action!r} (add | rename | widen)")
    spark.sql(render(statement))
    return {"statement": render(statement), "columns": column_types(spark, table)}
