"""Backups to an S3 backup bucket on the real SeaweedFS (`dr.location: s3://…`, the `backup` role's key): the
bucket `stack up` makes is versioned with SSE-S3 default encryption and every backed-up object is encrypted; a
drill (destroy, restore from the bucket, verify) ends equal; a bucket without encryption or versioning is refused,
named; `dr prune` keeps the newest backup whole and what it deleted stays as noncurrent versions."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from batch.common import render, table_ref
from batch.dr_backup import run_backup
from batch.dr_cli import dr
from batch.dr_drill import drill
from batch.dr_store import open_store
from batch.dr_store_s3 import S3Store
from icetide.catalog import pyiceberg_catalog
from icetide.cli import App
from icetide.errors import ConfigError
from icetide.services.object_store import ObjectStore, ensure_bucket
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.settings import Settings

pytestmark = pytest.mark.integration

BUCKET = "icetide-backups"


def _on_bucket(lake_settings: Settings, location: str) -> Settings:
    """The lake's settings with `dr.location` on the object store, set up as `stack up` does (the running store
    is reused: the bucket made, the backup role's policy put); waits for the role to be let in."""
    settings = lake_settings.model_copy(deep=True)
    settings.dr.location = location
    ObjectStore(settings.state_dir).start(settings, settings.state_dir)
    store = open_store(settings)
    assert isinstance(store, S3Store)
    deadline = time.monotonic() + 10
    while True:  # a policy just put may take a moment to reach the S3 gateway
        try:
            store.ids()
            return settings
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_backup_to_an_s3_bucket_is_encrypted_restores_equal_and_prunes(
        lake_spark: SparkSession, lake_settings: Settings) -> None:
    from batch.dr_verify import content_digest

    name = fresh_table_name("s3backup")
    settings = _on_bucket(lake_settings, f"s3://{BUCKET}/{name}")
    store = open_store(settings)
    assert isinstance(store, S3Store)
    table = table_ref(settings, name)
    lake_spark.sql(f"CREATE TABLE {render(table)} (id BIGINT, name STRING) USING iceberg "
                   "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read')")
    lake_spark.range(0, 60).selectExpr("id", "concat('n', id) AS name").writeTo(render(table)).append()
    first = run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name])
    lake_spark.sql(f"DELETE FROM {render(table)} WHERE id % 4 = 0")
    run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [name],
               lambda n, sid: content_digest(lake_spark, table_ref(settings, n), sid))

    admin = ObjectStore(settings.state_dir).client()
    assert admin.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET, Prefix=f"{name}/")["Contents"]]
    assert any(k.startswith(f"{name}/files/s3/") for k in keys) and f"{name}/backups/{first['id']}.json" in keys
    assert {admin.head_object(Bucket=BUCKET, Key=k).get("ServerSideEncryption") for k in keys} == {"AES256"}

    report = drill(settings, lake_spark, lambda: pyiceberg_catalog(settings, "writer"), store, name)
    assert report["equal"] is True and report["rows"] == 45, report  # put back through `open_copy`

    result = CliRunner().invoke(dr, ["prune", "--keep", "1", "--grace", "0", "--json"],
                                obj=App(config_path=None, _settings=settings))
    assert result.exit_code == 0, (result.output, result.exception)
    pruned: dict[str, Any] = json.loads(result.stdout)
    assert pruned["manifests_removed"] == [first["id"]] and pruned["files_removed"] >= 1, pruned
    assert pruned["bytes_freed"] > 0 and len(store.ids()) == 1
    store.check(store.load())  # the kept backup is whole
    gone = f"{name}/backups/{first['id']}.json"
    versions = admin.list_object_versions(Bucket=BUCKET, Prefix=gone)
    assert versions.get("Versions") and versions.get("DeleteMarkers")  # noncurrent until a lifecycle rule expires it


def test_a_bucket_without_encryption_or_versioning_is_refused(lake_settings: Settings) -> None:
    plain = "icetide-plain-backups"
    ensure_bucket(ObjectStore(lake_settings.state_dir).client(), plain, encrypted=False)
    settings = lake_settings.model_copy(deep=True)
    settings.dr.location = f"s3://{plain}/b"
    ObjectStore(settings.state_dir).identities(settings).ensure()  # the role may write there
    time.sleep(0.5)
    with pytest.raises(ConfigError, match=f"'{plain}'.*no default encryption and no versioning"):
        run_backup(settings, pyiceberg_catalog(settings, "maint"), open_store(settings), [])
    assert open_store(settings).ids() == []  # nothing written
