"""Table health from Iceberg's metadata tables, and a query analyzer (roadmap iteration 3).

Health reads only metadata (`files`, `snapshots`, `manifests`): no data file is opened. The
analyzer runs a query and reads Iceberg's scan metrics from the executed Spark plan
(`resultDataFiles`, `skippedDataFiles`), which is what partition pruning and file skipping did.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from batch.common import metadata_table, render

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SMALL_FILE_BYTES = 32 * 1024 * 1024  # below this a data file counts as "small" (default; configurable)


@dataclass
class TableStats:
    """One table's health: what `maint stats` prints and the exporter publishes as gauges."""

    table: str
    data_files: int
    delete_files: int
    small_files: int
    small_file_ratio: float
    records: int
    bytes: int
    avg_file_bytes: int
    snapshots: int
    manifests: int
    partitions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_stats(spark: SparkSession, table: exp.Table, small_file_bytes: int = SMALL_FILE_BYTES) -> TableStats:
    """Files, small-file ratio, rows, bytes, partition distribution, snapshots, delete files."""
    files = metadata_table(table, "files")
    totals = spark.sql(
        "SELECT count_if(content = 0) AS data_files, count_if(content <> 0) AS delete_files, "
        f"count_if(content = 0 AND file_size_in_bytes < {int(small_file_bytes)}) AS small_files, "
        "coalesce(sum(IF(content = 0, record_count, 0)), 0) AS records, "
        f"coalesce(sum(file_size_in_bytes), 0) AS bytes FROM {files}"
    ).first()
    assert totals is not None
    has_partition = "partition" in spark.table(files).columns
    partitions: list[dict[str, Any]] = []
    if has_partition:
        for row in spark.sql(
            "SELECT to_json(partition) AS p, count(*) AS files, sum(record_count) AS records, "
            f"sum(file_size_in_bytes) AS bytes FROM {files} WHERE content = 0 "
            "GROUP BY to_json(partition) ORDER BY p"
        ).collect():
            partitions.append({"partition": json.loads(row["p"]), "files": row["files"],
                               "records": row["records"], "bytes": row["bytes"]})
    snapshots = spark.table(metadata_table(table, "snapshots")).count()
    manifests = spark.table(metadata_table(table, "manifests")).count()
    data_files = int(totals["data_files"])
    return TableStats(
        table=f"{table.db}.{table.name}",
        data_files=data_files,
        delete_files=int(totals["delete_files"]),
        small_files=int(totals["small_files"]),
        small_file_ratio=round(int(totals["small_files"]) / data_files, 4) if data_files else 0.0,
        records=int(totals["records"]),
        bytes=int(totals["bytes"]),
        avg_file_bytes=int(totals["bytes"]) // data_files if data_files else 0,
        snapshots=snapshots,
        manifests=manifests,
        partitions=partitions,
    )


def probe_query(spark: SparkSession, table: exp.Table) -> float:
    """Seconds a `count(*)` over the table takes end to end: what a reader waits for before the first row
    (planning over every snapshot's manifests and small files, then the count Iceberg answers from them)."""
    sql = render(exp.select(exp.Count(this=exp.Star())).from_(table.copy()))
    start = time.perf_counter()
    spark.sql(sql).collect()
    return time.perf_counter() - start


def list_tables(spark: SparkSession, catalog: str) -> list[exp.Table]:
    """Every table of every namespace in the catalog (one level of namespaces)."""
    tables = []
    for ns_row in spark.sql(f"SHOW NAMESPACES IN {render(exp.to_identifier(catalog))}").collect():
        namespace = ns_row[0]
        node = exp.Table(this=exp.to_identifier(namespace), db=exp.to_identifier(catalog))
        for row in spark.sql(f"SHOW TABLES IN {render(node)}").collect():
            if row["isTemporary"]:
                continue
            tables.append(exp.Table(this=exp.to_identifier(row["tableName"]),
                                    db=exp.to_identifier(namespace), catalog=exp.to_identifier(catalog)))
    return tables


@dataclass
class QueryReport:
    """One analyzed query run: time, rows, and how many data files its Iceberg scans read.

    `files_total` counts the live data files of the tables the query scanned, so
    `files_scanned / files_total` is the share of the table the query had to read.
    """

    name: str
    seconds: float
    rows: int
    files_scanned: int
    files_total: int
    tables: list[str] = field(default_factory=list)
    slow: bool = False

    @property
    def pruning(self) -> float | None:
        """Share of the tables' data files not read (1.0 = all pruned); None without an Iceberg scan."""
        return round(1 - self.files_scanned / self.files_total, 4) if self.files_total else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pruning": self.pruning}


def _iceberg_scans(plan: Any) -> tuple[int, set[str]]:
    """resultDataFiles summed over the Iceberg scans of an executed plan (py4j), and their tables."""
    scanned = 0
    tables: set[str] = set()
    stack = [plan]
    while stack:
        node = stack.pop()
        name = str(node.nodeName())
        if name.startswith("BatchScan"):
            tables.add(name.removeprefix("BatchScan").strip())
            option = node.metrics().get("resultDataFiles")
            if option.isDefined():
                scanned += int(option.get().value())
        if name.startswith("AdaptiveSparkPlan"):
            stack.append(node.executedPlan())
        elif name.endswith("QueryStage"):
            stack.append(node.plan())
        children = node.children().iterator()
        while children.hasNext():
            stack.append(children.next())
        subqueries = node.subqueries().iterator()
        while subqueries.hasNext():
            stack.append(subqueries.next())
    return scanned, tables


def live_data_files(spark: SparkSession, name: str) -> int:
    """Data files of a table's current snapshot (`catalog.ns.table` as Spark prints it)."""
    parts = name.split(".")
    table = exp.Table(this=exp.to_identifier(parts[-1]), db=exp.to_identifier(parts[-2]),
                      catalog=exp.to_identifier(parts[-3]) if len(parts) > 2 else None)
    row = spark.sql(f"SELECT count(*) AS n FROM {metadata_table(table, 'files')} WHERE content = 0").first()
    return int(row["n"]) if row is not None else 0


def analyze(spark: SparkSession, sql: str, name: str = "query", slow_seconds: float | None = None,
            log_path: Path | None = None, totals: dict[str, int] | None = None) -> QueryReport:
    """Run `sql` to completion, time it, read its pruning; log it to `log_path` if slower than the limit.

    `totals` caches each table's live data-file count across calls (the benchmark runs each query
    several times against unchanged tables; counting files is a Spark job of its own).
    """
    start = time.perf_counter()
    frame = spark.sql(sql)
    rows = len(frame.collect())
    seconds = time.perf_counter() - start
    scanned, tables = _iceberg_scans(frame._jdf.queryExecution().executedPlan())
    cache = totals if totals is not None else {}
    for t in tables - cache.keys():
        cache[t] = live_data_files(spark, t)
    total = sum(cache[t] for t in tables)
    report = QueryReport(name=name, seconds=round(seconds, 4), rows=rows, files_scanned=scanned,
                         files_total=total, tables=sorted(tables))
    if slow_seconds is not None and seconds > slow_seconds:
        report.slow = True
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sql": sql,
                     "threshold_s": slow_seconds, **report.as_dict()}
            with log_path.open("a") as log:
                log.write(json.dumps(entry) + "\n")
    return report
