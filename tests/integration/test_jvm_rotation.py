"""S3 key rotation under running JVMs, none restarted: Spark and the REST catalog server (Iceberg's S3FileIO)
and the continuous CDC job's checkpoint file system (Hadoop s3a in Flink's plugin) follow the rewritten key
file through icetide's credentials providers (jvm/), and the old key is refused.

On the session's lake (tests/fixtures/lake.py): REST catalog + SeaweedFS. Its keys are rotated for real, so
later tests on the lake use the new keys, as any process following the files must.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import topic_for
from icetide.process import stop_group
from icetide.services.identities import rotate_s3
from icetide.services.object_store import s3_client
from icetide.settings import Settings
from icetide.storage import s3_endpoint, s3_key, warehouse_location
from streaming.changelog import Changelog
from streaming.checkpoints import latest_checkpoint, tables_dir
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_restart import start_job, wait_for

pytestmark = pytest.mark.integration
GRACE_S = 2.5  # the SDK's reloading supplier notices a rewritten file within about a second


def _refused_put(settings: Settings, role: Any, old: Any) -> bool:
    from botocore.exceptions import ClientError

    bucket, warehouse = warehouse_location(settings)
    client = s3_client(s3_endpoint(settings), old, settings.storage.region)
    try:
        client.put_object(Bucket=bucket, Key=f"{warehouse}/rotation-probe-{role}", Body=b"x")
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"]) == 403
    return False


def test_a_spark_session_and_the_rest_server_commit_after_their_keys_rotate(
        lake_spark: Any, lake_settings: Settings) -> None:
    table = f"{LAKE_CATALOG}.{fresh_table_name('jvmrot')}"
    lake_spark.sql(f"CREATE TABLE {table} (id BIGINT) USING iceberg")
    lake_spark.sql(f"INSERT INTO {table} VALUES (1)")
    old = {role: s3_key(lake_settings, role) for role in ("writer", "catalog")}
    # the writer's key signs Spark's data and manifest files; the catalog's the server's metadata files
    results = rotate_s3(lake_settings, "writer", GRACE_S) + rotate_s3(lake_settings, "catalog", GRACE_S)
    assert [r["old_key_refused"] for r in results] == [True, True]
    lake_spark.sql(f"INSERT INTO {table} VALUES (2)")  # the same session, the same server process
    assert sorted(r.id for r in lake_spark.sql(f"SELECT id FROM {table}").collect()) == [1, 2]
    for role, key in old.items():
        assert s3_key(lake_settings, role).access_key_id != key.access_key_id
        assert _refused_put(lake_settings, role, key)


def _checkpoint_number(uri: str | None) -> int:
    return int(uri.rsplit("chk-", 1)[1]) if uri else -1


def test_a_running_cdc_job_follows_a_cdc_key_rotation(lake_spark: Any, lake_settings: Settings,
                                                      s3_lake_env: dict[str, str], tmp_path: Path) -> None:
    """Snapshots committed after `rotate s3 --role cdc` are published by the same job (its PyIceberg reader
    re-reads the key), and its next checkpoints land in the bucket (its s3a provider did too)."""
    table = fresh_table_name("jvmrot_cdc")
    sql_table = f"{LAKE_CATALOG}.{table}"
    lake_spark.sql(f"CREATE TABLE {sql_table} (id BIGINT NOT NULL, v STRING) USING iceberg "
                   "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read')")
    lake_spark.sql(f"ALTER TABLE {sql_table} SET IDENTIFIER FIELDS id")
    lake_spark.sql(f"INSERT INTO {sql_table} SELECT id, 'a' FROM range(50)")
    topic = topic_for("icetide", *table.split("."))
    bootstrap = s3_lake_env["ICETIDE__KAFKA__BOOTSTRAP_SERVERS"]
    log = tmp_path / "job.log"
    checkpoints = tables_dir(lake_settings, [table])
    job = start_job(lake_settings.state_dir, table, log, s3_lake_env)
    try:
        wait_for(bootstrap, topic, 50, job, log)
        old = s3_key(lake_settings, "cdc")
        [result] = rotate_s3(lake_settings, "cdc", GRACE_S)
        assert result["old_key_refused"] is True
        before = _checkpoint_number(latest_checkpoint(lake_settings, checkpoints))  # as of the old key's deletion
        lake_spark.sql(f"UPDATE {sql_table} SET v = 'b' WHERE id < 10")  # a snapshot after the rotation
        seen, _ = wait_for(bootstrap, topic, 60, job, log)
        deadline = time.monotonic() + 60
        while _checkpoint_number(latest_checkpoint(lake_settings, checkpoints)) <= before + 1:  # begun after it
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no checkpoint after chk-{before}\n{log.read_text()[-3000:]}"
            time.sleep(1)
        assert job.poll() is None, "the job kept running"
    finally:
        stop_group(job.pid, lambda _: job.poll() is None, 60.0)  # SIGTERM, then SIGKILL: it must not outlive the test
    expected = Changelog(pyiceberg_catalog(lake_settings).load_table(table), lake_settings.catalog.name).events(None)
    assert seen == {e.source.position for e in expected}, "nothing lost"
    assert old.access_key_id != s3_key(lake_settings, "cdc").access_key_id
