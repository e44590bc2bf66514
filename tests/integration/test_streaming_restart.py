"""Continuous `icetide cdc run`: SIGKILL the job mid-stream, restart, and nothing is lost.

The restarted job restores its newest retained checkpoint (positions in keyed state), so every
change event of the table reaches Kafka; events after the checkpoint may come twice
(at-least-once), which the consumer de-duplicates by (snapshot, ordinal). The same on REST + S3, where the
checkpoints live in the bucket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import from_json, topic_for
from icetide.services.object_store import s3_client
from icetide.settings import Settings
from icetide.storage import s3_endpoint, s3_key
from streaming.changelog import Changelog
from streaming.checkpoints import latest_checkpoint, tables_dir
from tests.fixtures.kafka import consume_all
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration


def start_job(state_dir: Path, table: str, log: Path, extra_env: dict[str, str] | None = None,
              args: list[str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir),
           "ICETIDE__FLINK__CHECKPOINT_INTERVAL_MS": "1000", **(extra_env or {})}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "icetide.cli", "cdc", "run", "--tables", table, *(args or [])],
                                env=env, stdout=out, stderr=out, start_new_session=True)


def wait_for(bootstrap: str, topic: str, count: int, job: subprocess.Popen[bytes],
             log: Path) -> tuple[set[Any], int]:
    """Wait until `count` distinct events are in `topic`; (their positions, number of records)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert job.poll() is None, log.read_text()[-3000:]
        records = consume_all(bootstrap, topic, timeout_s=10)
        seen = {from_json(m.value()).source.position for m in records}
        if len(seen) >= count:
            return seen, len(records)
        time.sleep(2)
    raise AssertionError(f"only {len(seen)} of {count} events in {topic}\n{log.read_text()[-3000:]}")


def kill_and_restart(spark: Any, settings: Settings, sql_table: str, kafka_bootstrap: str, log: Path,
                     extra_env: dict[str, str] | None = None,
                     before_kill: Callable[[], None] | None = None) -> tuple[set[Any], int]:
    """Stream a table, SIGKILL the job after a checkpoint, change the table, restart; (positions, records)."""
    table = sql_table.split(".", 1)[1] if sql_table.count(".") == 2 else sql_table
    spark.sql(f"CREATE TABLE {sql_table} (id BIGINT NOT NULL, v STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {sql_table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {sql_table} SELECT id, 'a' FROM range(100)")
    topic = topic_for("icetide", *table.split("."))
    job = start_job(settings.state_dir, table, log, extra_env)
    try:
        wait_for(kafka_bootstrap, topic, 100, job, log)
        spark.sql(f"UPDATE {sql_table} SET v = 'b' WHERE id < 10")
        wait_for(kafka_bootstrap, topic, 110, job, log)
        time.sleep(3)  # let a checkpoint complete after the update
        if before_kill is not None:
            before_kill()
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        spark.sql(f"DELETE FROM {sql_table} WHERE id >= 90")
        job = start_job(settings.state_dir, table, log, extra_env)
        seen, total = wait_for(kafka_bootstrap, topic, 120, job, log)
        os.killpg(job.pid, signal.SIGTERM)  # graceful: the job is cancelled, its checkpoint kept
        job.wait(60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    expected = Changelog(pyiceberg_catalog(settings).load_table(table), settings.catalog.name).events(None)
    assert seen == {e.source.position for e in expected}
    assert total < 200, "the restarted job started over instead of restoring its checkpoint"
    return seen, total


def test_sigkill_and_restart_loses_nothing(spark: Any, base_settings: Any, kafka_bootstrap: str,
                                           tmp_path: Path) -> None:
    kill_and_restart(spark, base_settings, fresh_table_name("restart"), kafka_bootstrap, tmp_path / "job.log")


def test_checkpoints_on_the_object_store_and_restore_from_there(lake_spark: Any, lake_settings: Settings,
                                                                 s3_lake_env: dict[str, str], tmp_path: Path) -> None:
    """REST + S3: the job's checkpoints land in the bucket (none under the state dir) and a restarted job resumes
    from them — Flink's S3 file system plugin, configured from the same settings and key as S3FileIO."""
    table = fresh_table_name("restart_s3")
    uploaded: list[str] = []

    def checkpoints_in_the_bucket() -> None:
        newest = latest_checkpoint(lake_settings, tables_dir(lake_settings, [table]))
        assert newest is not None and newest.startswith(f"s3://{lake_settings.storage.bucket}/checkpoints/cdc/")
        uploaded.append(newest)

    log = tmp_path / "job.log"
    bootstrap = s3_lake_env["ICETIDE__KAFKA__BOOTSTRAP_SERVERS"]
    kill_and_restart(lake_spark, lake_settings, f"{LAKE_CATALOG}.{table}", bootstrap, log, s3_lake_env,
                     checkpoints_in_the_bucket)
    assert not (lake_settings.state_dir / "cdc" / "checkpoints").exists()
    # the restore itself is shown by kill_and_restart (fewer than 200 records: it did not start over)
    store = s3_client(s3_endpoint(lake_settings), s3_key(lake_settings, "cdc"), lake_settings.storage.region)
    head = store.head_object(
        Bucket=lake_settings.storage.bucket, Key=uploaded[0].split("/", 3)[3] + "/_metadata")
    assert head.get("ServerSideEncryption") == "AES256"  # SSE-S3, like the table files
