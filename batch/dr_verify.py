"""`dr verify`: is a restored table the table that was backed up?

Two checks. Every file of the backup is re-hashed against its manifest (sha256, size). And per table, Spark reads
the table at the backed-up snapshot (`VERSION AS OF`, so a writer committing since changes nothing) and computes
its row count and an order-independent content digest: the sum over rows of the 64-bit xxhash64 of all columns,
as an exact decimal (no overflow) reduced modulo 2**64. A sum, unlike XOR, counts duplicates. The digest is
compared with the one the backup recorded (`dr backup --digest`) or a drill took from the source before
destroying it; without either, it is reported for comparison by hand.

Map columns are hashed as their entries sorted by key (a map's iteration order is not its content).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError
from sqlglot import exp

from batch.common import render, table_ref
from batch.dr_store import BackupStore

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.catalog import Catalog
    from pyspark.sql import SparkSession

_MOD = 2**64


def content_digest(spark: SparkSession, table: exp.Table, snapshot_id: int | None) -> dict[str, Any]:
    """{"rows", "digest"} of `table` at `snapshot_id` (None: the table with no snapshot is empty)."""
    if snapshot_id is None:
        return {"rows": 0, "digest": f"{0:016x}"}
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    query = exp.select("*").from_(table.copy()).sql(dialect="spark", identify=True)
    frame = spark.sql(f"{query} VERSION AS OF {int(snapshot_id)}")
    columns = []
    for column in frame.schema.fields:
        ref = F.col(render(exp.to_identifier(column.name)))
        columns.append(F.array_sort(F.map_entries(ref)) if isinstance(column.dataType, MapType) else ref)
    row = frame.agg(F.count(F.lit(1)).alias("rows"),
                    F.sum(F.xxhash64(*columns).cast("decimal(38,0)")).alias("total")).first()
    assert row is not None
    total = int(row["total"] or 0) % _MOD
    return {"rows": int(row["rows"]), "digest": f"{total:016x}"}


def verify(settings: Settings, spark: SparkSession, catalog: Catalog, store: BackupStore,
           backup_id: str | None = None, tables: list[str] | None = None,
           expected: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Checksums of every backed-up file, then per table: at the backed-up version, and content equal."""
    from pyiceberg.exceptions import NoSuchTableError

    manifest = store.load(backup_id)
    names = tables or sorted(manifest["tables"])
    checked = store.check(manifest, names)
    out: dict[str, Any] = {"backup": manifest["id"], "checked": checked, "tables": {}}
    for name in names:
        entry = manifest["tables"][name]
        table = table_ref(settings, name)
        try:
            current = catalog.load_table(name).metadata.current_snapshot()
        except (NoSuchTableError, OSError) as exc:
            raise ConfigError(f"{name} cannot be read from the catalog ({exc}): restore it first "
                              "(`icetide dr restore`)") from exc
        spark.sql(f"REFRESH TABLE {render(table)}")  # Spark's catalog cache may hold the table before the restore
        got = content_digest(spark, table, entry["snapshot_id"])
        want = (expected or {}).get(name) or entry.get("digest")
        out["tables"][name] = {
            "snapshot_id": entry["snapshot_id"], "current_snapshot_id": current.snapshot_id if current else None,
            **got, "expected": want, "equal": None if want is None else got == {k: want[k] for k in got},
        }
    results = [t["equal"] for t in out["tables"].values()]
    out["equal"] = all(r is True for r in results) if results and None not in results else None
    return out
