"""Time travel (roadmap iteration 2): snapshots, history, and reads `VERSION/TIMESTAMP AS OF`.

The as-of reads are sqlglot ASTs (`exp.Version` on the table node), so the snapshot id and the
timestamp are literals, never pasted text.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError
from sqlglot import exp

from batch.common import metadata_table, render, to_jsonable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def as_of(table: exp.Table, version: int | None = None, timestamp: str | None = None) -> exp.Table:
    """A copy of `table` read as of a snapshot id or a timestamp (exactly one of them)."""
    if (version is None) == (timestamp is None):
        raise ConfigError("give exactly one of a snapshot id (--version) or a timestamp (--timestamp)")
    node = table.copy()
    if version is not None:
        node.set("version", exp.Version(this="VERSION", kind="AS OF", expression=exp.Literal.number(version)))
    else:
        node.set("version", exp.Version(this="TIMESTAMP", kind="AS OF",
                                        expression=exp.Literal.string(str(timestamp))))
    return node


def count_as_of(spark: SparkSession, table: exp.Table, version: int | None = None,
                timestamp: str | None = None, where: str | None = None) -> int:
    """Rows of the table as of a snapshot or time, optionally under a filter (a SQL predicate)."""
    query = exp.select(exp.Count(this=exp.Star()).as_("n")).from_(as_of(table, version, timestamp))
    if where:
        query = query.where(where, dialect="spark")
    row = spark.sql(render(query)).first()
    return int(row["n"]) if row is not None else 0


def read_as_of(spark: SparkSession, table: exp.Table, version: int | None = None,
               timestamp: str | None = None, limit: int = 20) -> tuple[list[str], list[list[Any]]]:
    """Columns and the first `limit` rows of the table as it was (its schema then, not now)."""
    query = exp.select("*").from_(as_of(table, version, timestamp)).limit(limit)
    frame = spark.sql(render(query))
    return list(frame.columns), [list(r) for r in frame.collect()]


def snapshots(spark: SparkSession, table: exp.Table) -> list[dict[str, Any]]:
    """Every snapshot still in the metadata, oldest first, with its history flag and summary."""
    rows = spark.sql(
        f"SELECT s.committed_at, s.snapshot_id, s.parent_id, s.operation, s.summary, "
        f"h.is_current_ancestor FROM {metadata_table(table, 'snapshots')} s "
        f"LEFT JOIN {metadata_table(table, 'history')} h ON s.snapshot_id = h.snapshot_id "
        "ORDER BY s.committed_at, s.snapshot_id"
    ).collect()
    out = []
    for row in rows:
        summary = dict(row["summary"] or {})
        out.append({
            "snapshot_id": row["snapshot_id"],
            "parent_id": row["parent_id"],
            "committed_at": to_jsonable(row["committed_at"]),
            "operation": row["operation"],
            "current_ancestor": bool(row["is_current_ancestor"]),
            "total_records": int(summary.get("total-records", 0)),
            "added_records": int(summary.get("added-records", 0)),
            "total_data_files": int(summary.get("total-data-files", 0)),
        })
    return out


def history(spark: SparkSession, table: exp.Table) -> list[dict[str, Any]]:
    """The table's history: when each snapshot became current, oldest first."""
    rows = spark.sql(
        f"SELECT made_current_at, snapshot_id, parent_id, is_current_ancestor "
        f"FROM {metadata_table(table, 'history')} ORDER BY made_current_at"
    ).collect()
    return [{k: to_jsonable(v) for k, v in r.asDict().items()} for r in rows]


def parse_timestamp(text: str) -> str:
    """Validate a user timestamp (ISO 8601, UTC if no zone) and return it as Spark expects it."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"not a timestamp: {text!r} (use ISO 8601, e.g. 2026-01-31 12:00:00)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ", timespec="milliseconds")
