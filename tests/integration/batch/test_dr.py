"""Disaster recovery on real Spark + Iceberg: a drill on a merge-on-read table ends equal, a damaged backup is
refused naming its file, an incremental backup copies only the new files, backups racing a writer or a
compaction of a v3 table with deletion vectors each restore equal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from batch.common import call_sql, render, short_name, table_ref
from batch.dr_backup import run_backup
from batch.dr_cli import dr
from batch.dr_restore import restore
from batch.dr_store import DirectoryStore, IntegrityError
from icetide.catalog import pyiceberg_catalog
from icetide.cli import App
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlglot import exp

    from icetide.settings import Settings

pytestmark = pytest.mark.integration

MOR = ("TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
       "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')")


@pytest.fixture()
def settings(base_settings: Settings, tmp_path: Path) -> Settings:
    """The session's catalog and warehouse, with this test's own backup directory."""
    copy = base_settings.model_copy(deep=True)
    copy.dr.location = str(tmp_path / "backups")
    return copy


def invoke(args: list[str], settings: Settings) -> Any:
    return CliRunner().invoke(dr, args, obj=App(config_path=None, _settings=settings))


def run_json(args: list[str], settings: Settings) -> Any:
    result = invoke([*args, "--json"], settings)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def append(spark: SparkSession, table: exp.Table, first: int, count: int, note: bool = False) -> None:
    columns = ["id", "concat('name-', id) AS name", "CAST(id * 1.25 AS DECIMAL(10,2)) AS amount"]
    columns += ["CAST(NULL AS STRING) AS note"] if note else []
    spark.range(first, first + count).selectExpr(*columns).writeTo(render(table)).append()


def merge_on_read_table(spark: SparkSession, table: exp.Table) -> None:
    """Two appends, position deletes, a schema change, a merge-on-read update, the oldest snapshots expired."""
    spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg {MOR}")
    append(spark, table, 0, 300)
    append(spark, table, 300, 300)
    spark.sql(f"DELETE FROM {render(table)} WHERE id % 7 = 0")
    spark.sql(f"ALTER TABLE {render(table)} ADD COLUMN note STRING")
    spark.sql(f"UPDATE {render(table)} SET note = concat('n', id) WHERE id % 5 = 0")
    expire = call_sql(table.catalog, "expire_snapshots", {
        "table": short_name(table), "older_than": dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(
            seconds=1), "retain_last": 2})
    assert spark.sql(expire).first() is not None


def test_drill_on_merge_on_read_table_ends_equal(spark: SparkSession, settings: Settings) -> None:
    name = fresh_table_name("drill")
    table = table_ref(settings, name)
    merge_on_read_table(spark, table)
    assert spark.table(f"{render(table)}.snapshots").count() == 2  # the first three were expired
    retained = [r[0] for r in spark.sql(f"SELECT snapshot_id FROM {render(table)}.snapshots "
                                        "ORDER BY committed_at").collect()]
    older_count = spark.sql(f"SELECT count(*) FROM {render(table)} VERSION AS OF {retained[0]}").first()
    backed = run_json(["backup", "--table", name, "--digest"], settings)
    kinds = {f["kind"] for f in DirectoryStore(settings.backup_dir).load()["tables"][name]["files"]}
    assert kinds == {"data", "delete", "manifest", "manifest-list", "metadata"}
    append(spark, table, 600, 10, note=True)  # committed after the backup: the drill must report it lost

    report = run_json(["drill", "--table", name, "--yes"], settings)
    assert report["equal"] is True, report
    assert report["rows"] == 600 - len(range(0, 600, 7))
    assert report["restored"]["current_snapshot_id"] == retained[-1] == backed["tables"][name]["snapshot_id"]
    backup = DirectoryStore(settings.backup_dir).load()
    assert report["restored"]["digest"] == backup["tables"][name]["digest"]["digest"]
    assert len(report["lost_commits"]) == 1 and report["rpo_s"] > 0
    assert report["destroyed"]["files_left_by_purge"] >= 0 and report["rto_s"] > 0
    # the retained history came back too: time travel to the older snapshot reads what it read before
    assert spark.sql(f"SELECT count(*) FROM {render(table)} VERSION AS OF {retained[0]}").first() == older_count
    assert spark.sql(f"SELECT count(*) FROM {render(table)} WHERE note IS NOT NULL").first()[0] > 0
    append(spark, table, 600, 5, note=True)  # and the restored table takes new commits
    assert spark.table(render(table)).count() == report["rows"] + 5


def test_damaged_backup_is_refused_naming_the_file(spark: SparkSession, settings: Settings) -> None:
    name = fresh_table_name("damaged")
    table = table_ref(settings, name)
    spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg {MOR}")
    append(spark, table, 0, 50)
    spark.sql(f"DELETE FROM {render(table)} WHERE id < 5")
    store = DirectoryStore(settings.backup_dir)
    run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name])
    delete_file = next(f for f in store.load()["tables"][name]["files"] if f["kind"] == "delete")
    held = store.file_path(delete_file["path"])
    data = bytearray(held.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    held.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match="damaged") as refused:
        restore(settings, lambda: pyiceberg_catalog(settings, "writer"), store, tables=[name], replace=True)
    assert delete_file["path"] in str(refused.value)
    assert spark.table(render(table)).count() == 45  # refused before anything was written or re-pointed
    result = invoke(["verify", "--table", name], settings)  # `icetide` prints it as `error: …` and exits 1
    assert isinstance(result.exception, IntegrityError) and delete_file["path"] in str(result.exception)


def test_incremental_backup_copies_only_new_files(spark: SparkSession, settings: Settings) -> None:
    name = fresh_table_name("incr")
    table = table_ref(settings, name)
    spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg {MOR}")
    append(spark, table, 0, 100)
    store = DirectoryStore(settings.backup_dir)
    first = run_json(["backup", "--table", name], settings)
    assert first["copied_files"] == first["files"] > 0
    before = {f["path"] for f in store.load()["tables"][name]["files"]}
    held_at = {p: store.file_path(p).stat().st_mtime_ns for p in before}

    append(spark, table, 100, 100)
    second = run_json(["backup", "--table", name], settings)
    after = {f["path"] for f in store.load()["tables"][name]["files"]}
    new = after - before
    assert second["copied_files"] == len(new) > 0 and second["files"] == len(after)
    assert {f["kind"] for f in store.load()["tables"][name]["files"] if f["path"] in new} == {
        "data", "manifest", "manifest-list", "metadata"}
    assert {p: store.file_path(p).stat().st_mtime_ns for p in before} == held_at  # nothing copied again
    assert run_json(["backup", "--table", name], settings)["copied_files"] == 0  # no commit, nothing new
    assert [b["id"] for b in run_json(["list"], settings)] == store.ids() and len(store.ids()) == 3


def test_drill_on_the_s3_shape_ends_equal(lake_spark: SparkSession, lake_settings: Settings, tmp_path: Path) -> None:
    """The same drill on the REST catalog over the object store: files read, deleted and written back through S3."""
    from batch.dr_drill import drill
    from batch.dr_verify import content_digest

    settings = lake_settings.model_copy(deep=True)
    settings.dr.location = str(tmp_path / "backups")
    name = fresh_table_name("s3drill")
    table = table_ref(settings, name)
    lake_spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg {MOR}")
    append(lake_spark, table, 0, 100)
    lake_spark.sql(f"DELETE FROM {render(table)} WHERE id % 3 = 0")
    store = DirectoryStore(settings.backup_dir)
    run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name],
               lambda n, sid: content_digest(lake_spark, table_ref(settings, n), sid))
    assert store.load()["tables"][name]["location"].startswith("s3://")

    report = drill(settings, lake_spark, lambda: pyiceberg_catalog(settings, "writer"), store, name)
    assert report["equal"] is True and report["rows"] == 100 - 34, report
    assert lake_spark.table(render(table)).count() == 66


def test_backups_taken_while_a_writer_commits_restore_equal(spark: SparkSession, settings: Settings) -> None:
    """Each backup is one metadata version, whatever the writer commits meanwhile; re-pointing the table at the
    last one (`--replace`) gives exactly the rows its digest recorded."""
    import threading

    from batch.dr_verify import content_digest, verify

    name = fresh_table_name("busy")
    table = table_ref(settings, name)
    spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg {MOR}")
    append(spark, table, 0, 100)
    store = DirectoryStore(settings.backup_dir)
    done = threading.Event()

    def writer() -> None:
        first = 100
        while not done.is_set():
            append(spark, table, first, 20)
            spark.sql(f"DELETE FROM {render(table)} WHERE id = {first}")
            first += 20

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name],
                       lambda n, sid: content_digest(spark, table_ref(settings, n), sid))
    finally:
        done.set()
        thread.join()
    assert len({store.load(i)["tables"][name]["snapshot_id"] for i in store.ids()}) >= 2  # the writer moved on

    restored = restore(settings, lambda: pyiceberg_catalog(settings, "writer"), store, tables=[name], replace=True)
    assert restored["tables"][name]["status"] in ("replaced", "unchanged")
    checked = verify(settings, spark, pyiceberg_catalog(settings, "maint"), store, tables=[name])
    assert checked["equal"] is True, checked
    assert checked["tables"][name]["current_snapshot_id"] == store.load()["tables"][name]["snapshot_id"]


def test_a_v3_table_with_deletion_vectors_backed_up_mid_compaction_drills_equal(spark: SparkSession,
                                                                               settings: Settings) -> None:
    """Format v3: deletes are deletion vectors (Puffin blobs at offsets the manifests record), copied as they are.
    Backups race a compaction (`rewrite_data_files` folding the vectors into new data files): each one is a
    consistent version, whichever side of the compaction's commit it fell, and the newest drills equal."""
    import threading

    from batch.dr_verify import content_digest, verify

    name = fresh_table_name("dv")
    table = table_ref(settings, name)
    spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg "
              + MOR.replace("'format-version'='2'", "'format-version'='3'"))
    for first in range(0, 1200, 300):
        append(spark, table, first, 300)
    spark.sql(f"DELETE FROM {render(table)} WHERE id % 7 = 0")
    spark.sql(f"UPDATE {render(table)} SET name = concat('u-', id) WHERE id % 5 = 0")
    store = DirectoryStore(settings.backup_dir)
    digest = lambda n, sid: content_digest(spark, table_ref(settings, n), sid)  # noqa: E731
    run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name], digest)
    deletes = [f["path"] for f in store.load()["tables"][name]["files"] if f["kind"] == "delete"]
    assert deletes and all(p.endswith(".puffin") for p in deletes), deletes  # deletion vectors, not Parquet

    compaction = call_sql(table.catalog, "rewrite_data_files", {
        "table": short_name(table), "options": {"min-input-files": "1", "rewrite-all": "true"}})
    done = threading.Event()
    thread = threading.Thread(target=lambda: (spark.sql(compaction).collect(), done.set()))
    thread.start()
    try:
        while not done.is_set():
            run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name], digest)
    finally:
        thread.join()
    run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name], digest)  # after the compaction
    newest = store.load()["tables"][name]
    operation = spark.sql(f"SELECT operation FROM {render(table)}.snapshots WHERE snapshot_id = "
                          f"{newest['snapshot_id']}").first()
    assert operation is not None and operation[0] == "replace" and len(store.ids()) >= 3  # the compaction committed
    assert not any(f["kind"] == "delete" and f["path"] not in deletes for f in newest["files"])
    for backup_id in store.ids():  # every backup, before, during or after the compaction, reads its own rows
        checked = verify(settings, spark, pyiceberg_catalog(settings, "maint"), store, backup_id, [name])
        assert checked["equal"] is True, (backup_id, checked)

    report = run_json(["drill", "--table", name, "--yes"], settings)
    assert report["equal"] is True and report["rows"] == 1200 - len(range(0, 1200, 7)), report
    assert spark.sql(f"SELECT count(*) FROM {render(table)} WHERE name LIKE 'u-%'").first()[0] == len(
        [i for i in range(1200) if i % 5 == 0 and i % 7 != 0])


def _file_bytes_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_restore_under_another_warehouse_and_catalog_rewrites_every_path(spark: SparkSession, settings: Settings,
                                                                          tmp_path: Path) -> None:
    """`dr restore --location`: a merge-on-read v2 table (position deletes, a schema change, expired snapshots)
    and a v3 table (deletion vectors) come back under a new warehouse root in a new catalog, read by Spark equal
    to their backed-up versions — deleted rows stay deleted, time travel reads what it read — and no file there
    names the old warehouse."""
    from batch.dr_verify import content_digest
    from icetide.catalog import spark_conf

    v2, v3 = fresh_table_name("moved2"), fresh_table_name("moved3")
    merge_on_read_table(spark, table_ref(settings, v2))
    t3 = table_ref(settings, v3)
    spark.sql(f"CREATE TABLE {render(t3)} (id BIGINT, name STRING, amount DECIMAL(10,2)) USING iceberg "
              + MOR.replace("'format-version'='2'", "'format-version'='3'"))
    append(spark, t3, 0, 400)
    spark.sql(f"DELETE FROM {render(t3)} WHERE id % 3 = 0")
    backed = run_json(["backup", "--table", v2, "--table", v3, "--digest"], settings)
    manifest = DirectoryStore(settings.backup_dir).load(backed["id"])
    assert {f["path"].endswith(".puffin") for f in manifest["tables"][v3]["files"] if f["kind"] == "delete"} == {True}
    older = spark.sql(f"SELECT snapshot_id FROM {render(table_ref(settings, v2))}.snapshots "
                      "ORDER BY committed_at").first()[0]
    older_digest = content_digest(spark, table_ref(settings, v2), older)

    site = settings.model_copy(deep=True)  # the recovery site: its own catalog database and warehouse
    site.catalog.name = "drsite"
    site.catalog.uri = f"jdbc:sqlite:{tmp_path / 'site' / 'catalog.db'}"
    site.catalog.warehouse = (tmp_path / "site" / "warehouse").as_uri()
    (tmp_path / "site").mkdir()
    result = restore(site, lambda: pyiceberg_catalog(site, "writer"), DirectoryStore(settings.backup_dir),
                     backed["id"], location=site.warehouse)
    assert {t["status"] for t in result["tables"].values()} == {"registered"}
    assert all(t["metadata_location"].startswith(site.warehouse) for t in result["tables"].values())

    for key, value in spark_conf(site).items():  # Spark loads a catalog by name when it is first used
        if key.startswith("spark.sql.catalog.drsite"):
            spark.conf.set(key, value)
    for name in (v2, v3):
        entry = manifest["tables"][name]
        got = content_digest(spark, table_ref(site, name), entry["snapshot_id"])
        assert got == {k: entry["digest"][k] for k in got}, name
    assert spark.sql(f"SELECT count(*) FROM {render(table_ref(site, v3))}").first()[0] == 400 - len(range(0, 400, 3))
    assert content_digest(spark, table_ref(site, v2), older) == older_digest  # history moved too
    old_root = settings.warehouse.removeprefix("file://")
    files = _file_bytes_under(tmp_path / "site" / "warehouse")
    assert files and not [p for p, data in files.items() if old_root.encode() in data]
    append(spark, table_ref(site, v3), 1000, 5)  # and the moved table takes new commits at its new home
    assert spark.sql(f"SELECT count(*) FROM {render(table_ref(site, v3))}").first()[0] == 400 - 134 + 5
