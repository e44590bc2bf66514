"""`dr drill`: destroy a table for real, restore it from a backup, prove it equal, and time it.

Steps: read the source's digest at the backed-up snapshot and its commits (what the restore will lack); drop the
table with PURGE and delete whatever is left under its location; detect the loss (a read fails); restore; read
again (readable); verify content and checksums. RTO is detection → readable (the check, copy, register and the
first read — the Spark session is already up, as it would be for the team on call); RPO is the span of commits
the restore lacks: the newest lost commit's time minus the restored version's (0 when the backup was current).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError

from batch.common import render, table_ref
from batch.dr_restore import restore
from batch.dr_store import BackupStore, is_local, local_path, source_exists
from batch.dr_verify import content_digest, verify

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession
    from sqlglot import exp


def _readable(spark: SparkSession, sql: str) -> bool:
    try:
        spark.sql(sql).collect()
    except Exception as exc:  # Spark's AnalysisException and friends: the table is gone
        if type(exc).__module__.split(".")[0] not in {"pyspark", "py4j"}:
            raise
        return False
    return True


def destroy(spark: SparkSession, catalog: Catalog, name: str, table: exp.Table,
            known: Sequence[str] = ()) -> dict[str, Any]:
    """DROP TABLE … PURGE, then delete what purge left: everything under a local table's location, and on an
    object store each of the `known` files (the backup's) still there."""
    loaded = catalog.load_table(name)
    location, io = loaded.metadata.location, loaded.io
    spark.sql(f"DROP TABLE {render(table)} PURGE")
    leftover = 0
    if is_local(location):
        if local_path(location).exists():
            leftover = sum(1 for p in local_path(location).rglob("*") if p.is_file())
            shutil.rmtree(local_path(location))
    else:
        for path in known:
            if source_exists(io, path):
                io.delete(path)
                leftover += 1
    return {"location": location, "files_left_by_purge": leftover}


def drill(settings: Settings, spark: SparkSession, catalog_factory: Any, store: BackupStore, name: str,
          backup_id: str | None = None) -> dict[str, Any]:
    """Destroy `name`, restore it from the backup (newest by default), verify, report RTO and RPO."""
    manifest = store.load(backup_id)
    if name not in manifest["tables"]:
        raise ConfigError(f"backup {manifest['id']} does not hold {name}: back it up first (`icetide dr backup`)")
    entry = manifest["tables"][name]
    catalog = catalog_factory()
    table = table_ref(settings, name)
    source = catalog.load_table(name).metadata
    lost = sorted((s for s in source.snapshots if (s.sequence_number or 0) > entry["sequence_number"]),
                  key=lambda s: s.timestamp_ms)
    expected = content_digest(spark, table, entry["snapshot_id"])

    from icetide.catalog import pyiceberg_catalog

    # on the object store only `maint` may delete (icetide/services/identities.py): Spark's purge as `writer`
    # leaves the files, which the drill then deletes as `maint`
    destroyed = destroy(spark, pyiceberg_catalog(settings, "maint"), name, table, [f["path"] for f in entry["files"]])
    count_sql = f"SELECT count(*) FROM {render(table)}"
    if _readable(spark, count_sql):
        raise ConfigError(f"{name} is still readable after DROP TABLE … PURGE: the drill destroyed nothing")
    detected = time.perf_counter()
    restored = restore(settings, catalog_factory, store, manifest["id"], [name])
    if not _readable(spark, count_sql):
        raise ConfigError(f"{name} is not readable after the restore")
    readable = time.perf_counter()
    checked = verify(settings, spark, catalog_factory(), store, manifest["id"], [name], expected={name: expected})
    newest_lost = lost[-1].timestamp_ms if lost else None
    rpo_s = (newest_lost - (entry["committed_at_ms"] or newest_lost)) / 1000 if newest_lost is not None else 0.0
    return {
        "table": name, "backup": manifest["id"], "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "equal": checked["tables"][name]["equal"], "rows": expected["rows"], "digest": expected["digest"],
        "restored": checked["tables"][name], "destroyed": destroyed,
        "rto_s": round(readable - detected, 3), "restore_seconds": restored["seconds"],
        "rpo_s": round(rpo_s, 3), "lost_commits": [{"snapshot_id": s.snapshot_id, "committed_at_ms": s.timestamp_ms}
                                                   for s in lost],
        "files": len(entry["files"]), "bytes": sum(f["size"] for f in entry["files"]),
        "warnings": restored["warnings"],
    }
