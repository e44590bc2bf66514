"""Upsert by key (roadmap iteration 2): `MERGE INTO target USING source ON keys`, built as a sqlglot AST.

Matched rows take the source's values for every shared non-key column; unmatched source rows are
inserted with the columns the two tables share (target columns missing from the source read NULL).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError
from sqlglot import exp

from batch.common import render

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class MergeResult:
    """What `batch merge` reports: rows before/after and what the merge did."""

    target: str
    source: str
    keys: list[str]
    rows_before: int
    rows_after: int
    updated: int
    inserted: int
    seconds: float
    statement: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _col(name: str, alias: str) -> exp.Column:
    return exp.column(name, table=alias, quoted=True)


def merge_statement(target: exp.Table, source: exp.Table, keys: list[str],
                    target_columns: list[str], source_columns: list[str]) -> exp.Merge:
    """The MERGE INTO AST for an upsert of `source` into `target` on `keys`."""
    lower_target = {c.lower(): c for c in target_columns}
    lower_source = {c.lower(): c for c in source_columns}
    missing = [k for k in keys if k.lower() not in lower_target or k.lower() not in lower_source]
    if not keys or missing:
        raise ConfigError(f"merge key column(s) {missing or keys} must exist in both tables")
    shared = [lower_target[c.lower()] for c in source_columns if c.lower() in lower_target]
    key_set = {k.lower() for k in keys}
    on = exp.and_(*[
        exp.EQ(this=_col(lower_target[k.lower()], "t"), expression=_col(lower_source[k.lower()], "s"))
        for k in keys
    ])
    updates = [
        exp.EQ(this=_col(c, "t"), expression=_col(lower_source[c.lower()], "s"))
        for c in shared if c.lower() not in key_set
    ]
    insert = exp.Insert(
        this=exp.Tuple(expressions=[exp.column(c, quoted=True) for c in shared]),
        expression=exp.Tuple(expressions=[_col(lower_source[c.lower()], "s") for c in shared]),
    )
    whens = []
    if updates:
        whens.append(exp.When(matched=True, source=False, then=exp.Update(expressions=updates)))
    whens.append(exp.When(matched=False, source=False, then=insert))
    return exp.Merge(
        this=exp.alias_(target.copy(), "t", table=True),
        using=exp.alias_(source.copy(), "s", table=True),
        on=on,
        whens=exp.Whens(expressions=whens),
    )


def upsert(spark: SparkSession, target: exp.Table, source: exp.Table, keys: list[str]) -> MergeResult:
    """Run the upsert and count what it did (matched keys before it ran = rows updated)."""
    target_columns = list(spark.table(render(target)).columns)
    source_columns = list(spark.table(render(source)).columns)
    statement = merge_statement(target, source, keys, target_columns, source_columns)
    on = statement.args["on"]
    matched_query = (
        exp.select(exp.Count(this=exp.Star()).as_("n"))
        .from_(exp.alias_(source.copy(), "s", table=True))
        .where(exp.Exists(this=exp.select("1").from_(exp.alias_(target.copy(), "t", table=True))
                          .where(on.copy())))
    )
    before = spark.table(render(target)).count()
    matched = int(spark.sql(render(matched_query)).first()["n"])  # type: ignore[index]
    start = time.perf_counter()
    spark.sql(render(statement))
    seconds = time.perf_counter() - start
    after = spark.table(render(target)).count()
    return MergeResult(
        target=render(target).replace("`", ""), source=render(source).replace("`", ""), keys=keys,
        rows_before=before, rows_after=after, updated=matched, inserted=after - before,
        seconds=round(seconds, 3), statement=render(statement),
    )
