"""The change stream survives a failover: the table and the CDC job's state are lost, `dr restore` brings both back
from a backup whose positions lag the table, `cdc run --once` continues from the restored position (re-publishing
one snapshot), and `cdc apply --once` skips the replay: downstream == source, nothing applied twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from batch.common import table_ref
from batch.dr_backup import run_backup
from batch.dr_drill import destroy
from batch.dr_restore import restore
from batch.dr_store import DirectoryStore
from icetide.catalog import pyiceberg_catalog
from icetide.events import topic_for
from icetide.settings import load_settings
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration


def icetide(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "icetide.cli", *args, "--json"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_cdc_continues_after_restore_nothing_lost_nothing_twice(spark: SparkSession, base_settings: Settings,
                                                                 kafka_bootstrap: str, tmp_path: Path) -> None:
    # the session's catalog, warehouse and broker; this test's own CDC state, downstream and backups
    env = {"ICETIDE__STACK__STATE_DIR": str(tmp_path / "state"), "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "ICETIDE__CATALOG__URI": base_settings.catalog_uri, "ICETIDE__CATALOG__WAREHOUSE": base_settings.warehouse}
    settings = load_settings(None, environ=env)
    name = fresh_table_name("failover")
    table = table_ref(settings, name)
    spark.sql(f"CREATE TABLE {name} (id BIGINT NOT NULL, v STRING) USING iceberg TBLPROPERTIES "
              "('format-version'='2', 'write.delete.mode'='merge-on-read', 'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {name} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {name} SELECT id, concat('v', id) FROM range(40)")
    spark.sql(f"UPDATE {name} SET v = 'u' WHERE id < 10")
    icetide(env, "cdc", "run", "--once", "--tables", name)  # positions: after the update
    spark.sql(f"DELETE FROM {name} WHERE id >= 30")

    store = DirectoryStore(settings.backup_dir)
    backed = run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name])
    assert "cdc-positions" in backed["extras"]  # taken before the table: at the update, the table at the delete
    topic = topic_for("icetide", *name.split("."))
    icetide(env, "cdc", "run", "--once", "--tables", name)  # publishes the delete
    first = icetide(env, "cdc", "apply", "--once", "--topics", topic)
    assert first["dead_letters"] == 0

    destroy(spark, pyiceberg_catalog(settings, "writer"), name, table)  # the lake loses the table …
    shutil.rmtree(settings.state_dir / "cdc")  # … and the job's machine its positions
    restored = restore(settings, lambda: pyiceberg_catalog(settings, "writer"), store, tables=[name])
    assert restored["cdc_positions"] == "restored" and restored["warnings"] == []
    spark.sql(f"INSERT INTO {name} SELECT id, 'after' FROM range(100, 105)")  # a commit on the restored table

    again = icetide(env, "cdc", "run", "--once", "--tables", name)
    assert again["tables"][name]["events"] == 10 + 5  # the delete re-published, then the new insert
    second = icetide(env, "cdc", "apply", "--once", "--topics", topic)
    assert second["replayed"] == 10 and second["dead_letters"] == 0
    verified = icetide(env, "cdc", "verify", "--table", name)
    assert verified["equal"] is True, verified
