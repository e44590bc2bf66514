"""Table maintenance (roadmap iteration 3): compaction, snapshot expiry, orphan files, manifests.

Every job goes through Iceberg's own Spark procedures (`CALL lake.system.*`), which commit with
optimistic concurrency: a concurrent writer's commit is retried against, never overwritten, and
`remove_orphan_files` only considers files older than a minimum age (default 3 days) so a file
written by a commit in flight is never taken for an orphan. What was removed is appended to a JSON
lines log (`<state_dir>/maintenance/removed.jsonl`) with paths and bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from icetide.errors import ConfigError
from sqlglot import exp

from batch.common import call_sql, metadata_table, short_name
from batch.stats import SMALL_FILE_BYTES, table_stats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STRATEGIES = ("binpack", "sort", "zorder")
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024


def removal_log_path(state_dir: Path) -> Path:
    return state_dir / "maintenance" / "removed.jsonl"


def log_removals(log_path: Path, job: str, table: exp.Table, files: list[dict[str, Any]]) -> None:
    """Append one line per removed file: when, which job, which table, path, bytes."""
    if not files:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with log_path.open("a") as log:
        for item in files:
            log.write(json.dumps({"at": now, "job": job, "table": short_name(table), **item}) + "\n")


def _call(spark: SparkSession, table: exp.Table, procedure: str, args: Mapping[str, Any]) -> dict[str, Any]:
    rows = spark.sql(call_sql(table.catalog, procedure, {"table": short_name(table), **args})).collect()
    return rows[0].asDict() if rows else {}


def _file_size(location: str) -> int | None:
    """Size of a local warehouse file (None for object stores or files already gone)."""
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return None
    try:
        return os.stat(parsed.path).st_size
    except OSError:
        return None


def _column_name(name: str) -> str:
    """A plain column name for Iceberg's sort-order strings (which are parsed, so nothing else passes)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"not a plain column name: {name!r}")
    return name


def compact(spark: SparkSession, table: exp.Table, strategy: str = "binpack",
            columns: list[str] | None = None, target_file_bytes: int = DEFAULT_TARGET_BYTES,
            where: str | None = None, small_file_bytes: int = SMALL_FILE_BYTES) -> dict[str, Any]:
    """rewrite_data_files with binpack, sort (by columns or the table's order) or z-order."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    if strategy == "zorder" and not columns:
        raise ConfigError("z-order needs --columns (e.g. --columns region,product)")
    before = table_stats(spark, table, small_file_bytes)
    args: dict[str, Any] = {
        "strategy": "binpack" if strategy == "binpack" else "sort",
        "options": {"target-file-size-bytes": target_file_bytes, "min-input-files": 2,
                    "partial-progress.enabled": "true", "rewrite-all": "false"},
        "where": where,
    }
    if strategy == "zorder":
        args["sort_order"] = "zorder(" + ",".join(_column_name(c) for c in columns or []) + ")"
    elif strategy == "sort" and columns:
        args["sort_order"] = ",".join(f"{_column_name(c)} ASC NULLS LAST" for c in columns)
    start = time.perf_counter()
    result = _call(spark, table, "rewrite_data_files", args)
    seconds = time.perf_counter() - start
    after = table_stats(spark, table, small_file_bytes)
    reduction = 1 - after.data_files / before.data_files if before.data_files else 0.0
    return {
        "table": short_name(table), "strategy": strategy, "columns": columns or [], "where": where,
        "target_file_bytes": target_file_bytes, "seconds": round(seconds, 3),
        "files_before": before.data_files, "files_after": after.data_files,
        "bytes_before": before.bytes, "bytes_after": after.bytes,
        "small_files_before": before.small_files, "small_files_after": after.small_files,
        "file_reduction": round(reduction, 4), "records": after.records, "procedure": result,
    }


def _reachable_files(spark: SparkSession, table: exp.Table) -> dict[str, int]:
    """Every data/delete file and manifest any snapshot still references → its size."""
    files = {r["file_path"]: int(r["file_size_in_bytes"]) for r in spark.sql(
        f"SELECT DISTINCT file_path, file_size_in_bytes FROM {metadata_table(table, 'all_files')}").collect()}
    for row in spark.sql(f"SELECT DISTINCT path, length FROM {metadata_table(table, 'all_manifests')}"
                         ).collect():
        files[row["path"]] = int(row["length"])
    return files


def expire(spark: SparkSession, table: exp.Table, older_than_days: float = 7.0, retain_last: int = 1,
           log_path: Path | None = None) -> dict[str, Any]:
    """expire_snapshots older than N days (keeping the last `retain_last`); log what disappeared."""
    if retain_last < 1:
        raise ConfigError("retain-last must be at least 1 (the current snapshot is always kept)")
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
    snapshots_before = spark.table(metadata_table(table, "snapshots")).count()
    reachable_before = _reachable_files(spark, table)
    start = time.perf_counter()
    result = _call(spark, table, "expire_snapshots", {"older_than": cutoff, "retain_last": retain_last})
    seconds = time.perf_counter() - start
    reachable_after = _reachable_files(spark, table)
    removed = [{"path": p, "bytes": b} for p, b in sorted(reachable_before.items())
               if p not in reachable_after]
    if log_path is not None:
        log_removals(log_path, "expire", table, removed)
    return {
        "table": short_name(table), "older_than": cutoff.isoformat(sep=" "), "retain_last": retain_last,
        "snapshots_before": snapshots_before,
        "snapshots_after": spark.table(metadata_table(table, "snapshots")).count(),
        "files_removed": len(removed), "bytes_removed": sum(r["bytes"] for r in removed),
        "seconds": round(seconds, 3), "procedure": result,
    }


def orphans(spark: SparkSession, table: exp.Table, older_than_days: float = 3.0,
            dry_run: bool = True) -> dict[str, Any]:
    """remove_orphan_files: files in the table's folder no snapshot references, older than N days."""
    if older_than_days < 1 / 24 and not dry_run:
        raise ConfigError("refusing to delete orphans younger than 1 hour: a commit in flight could own them")
    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
    sql = call_sql(table.catalog, "remove_orphan_files",
                   {"table": short_name(table), "older_than": cutoff, "dry_run": dry_run})
    start = time.perf_counter()
    locations = [r["orphan_file_location"] for r in spark.sql(sql).collect()]
    seconds = time.perf_counter() - start
    # Sizes are known only before deletion (a dry run); `remove_orphans` sizes them first.
    found = [{"path": p, "bytes": _file_size(p)} for p in locations]
    return {
        "table": short_name(table), "older_than": cutoff.isoformat(sep=" "), "dry_run": dry_run,
        "files": len(found), "bytes": sum(f["bytes"] or 0 for f in found),
        "paths": [f["path"] for f in found], "seconds": round(seconds, 3),
    }


def remove_orphans(spark: SparkSession, table: exp.Table, older_than_days: float,
                             log_path: Path | None) -> dict[str, Any]:
    """Size the orphans with a dry run, then remove them: the log gets bytes for every file."""
    dry = orphans(spark, table, older_than_days, dry_run=True)
    sizes = {p: _file_size(p) for p in dry["paths"]}
    real = orphans(spark, table, older_than_days, dry_run=False)
    removed = [{"path": p, "bytes": sizes.get(p)} for p in real["paths"]]
    if log_path is not None:
        log_removals(log_path, "orphans", table, removed)
    real["bytes"] = sum(r["bytes"] or 0 for r in removed)
    return real


def rewrite_manifests(spark: SparkSession, table: exp.Table) -> dict[str, Any]:
    """rewrite_manifests: cluster manifests by partition so planning reads fewer of them."""
    before = spark.table(metadata_table(table, "manifests")).count()
    start = time.perf_counter()
    result = _call(spark, table, "rewrite_manifests", {})
    seconds = time.perf_counter() - start
    return {"table": short_name(table), "manifests_before": before,
            "manifests_after": spark.table(metadata_table(table, "manifests")).count(),
            "seconds": round(seconds, 3), "procedure": result}
