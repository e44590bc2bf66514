"""Continuous `icetide cdc run`: SIGKILL the job mid-stream, restart, and nothing is lost.

The restarted job restores its newest retained checkpoint (positions in keyed state), so every
change event of the table reaches Kafka; events after the checkpoint may come twice
(at-least-once), which the consumer de-duplicates by (snapshot, ordinal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import from_json, topic_for
from streaming.changelog import Changelog
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration


def start_job(state_dir: Path, table: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir),
           "ICETIDE__FLINK__CHECKPOINT_INTERVAL_MS": "1000"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "icetide.cli", "cdc", "run", "--tables", table],
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


def test_sigkill_and_restart_loses_nothing(spark: Any, base_settings: Any, kafka_bootstrap: str,
                                           session_dir: Path, tmp_path: Path) -> None:
    table = fresh_table_name("restart")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, v STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, 'a' FROM range(100)")
    topic = topic_for("icetide", *table.split("."))
    log = tmp_path / "job.log"
    job = start_job(session_dir, table, log)
    try:
        wait_for(kafka_bootstrap, topic, 100, job, log)
        spark.sql(f"UPDATE {table} SET v = 'b' WHERE id < 10")
        wait_for(kafka_bootstrap, topic, 110, job, log)
        time.sleep(3)  # let a checkpoint complete after the update
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        spark.sql(f"DELETE FROM {table} WHERE id >= 90")
        job = start_job(session_dir, table, log)
        seen, total = wait_for(kafka_bootstrap, topic, 120, job, log)
        os.killpg(job.pid, signal.SIGTERM)  # graceful: the job is cancelled, its checkpoint kept
        job.wait(60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    expected = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake").events(None)
    assert seen == {e.source.position for e in expected}
    assert total < 200, "the restarted job started over instead of restoring its checkpoint"
