"""`icetide flink up` and `cdc run` submitted to it: a real standalone session cluster on loopback.

One cluster for the module (a JobManager and two TaskManagers, ~20 s to start on two busy cores), started with
the session lake's object store (tests/fixtures/lake.py: `storage.kind: s3`, the `cdc` key's file) so its S3 file
system is configured; the jobs on local storage keep their checkpoints in a folder. The CDC job runs on it at
parallelism 2 — each table derived by both subtasks (streaming/derivation.py) — and must publish exactly the
changelog engine's events (ordinals aside: they are numbered per lane), as in the mini-cluster
(`test_streaming_job.py`, `test_streaming_parallel.py`). `down` leaves no process of the cluster running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import key_to_json, topic_for
from icetide.process import runs_with
from icetide.services.flink_cluster import FlinkCluster
from icetide.settings import Settings
from icetide.storage import embedded_credentials_file, s3_endpoint
from streaming.changelog import Changelog
from streaming.checkpoints import completed_checkpoints, tables_dir
from tests.fixtures.kafka import consume_all
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_streaming_job import comparable, to_value

pytestmark = pytest.mark.integration

BIG = 40_000  # rows of the snapshot the TaskManager dies in


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flink-cluster")


def icetide(state_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    full = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", *args, "--json"], env=full,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cluster(cluster_dir: Path, base_settings: Settings, lake_settings: Settings) -> Iterator[dict[str, Any]]:
    # two slots each: the job (parallelism 2) fits on the TaskManager that survives a kill; the lake's object
    # store as the cluster's S3 file system, with its `cdc` key by its file (as the lake's own settings say)
    lake = {"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": s3_endpoint(lake_settings),
            "ICETIDE__STORAGE__CREDENTIALS__FILE": str(embedded_credentials_file(lake_settings, "cdc"))}
    status = icetide(cluster_dir, "flink", "up", "--taskmanagers", "2",
                     env={"ICETIDE__FLINK__TASKMANAGER_SLOTS": "2", **lake})
    try:
        yield status
    finally:
        FlinkCluster(cluster_dir).stop()


def test_up_registers_two_taskmanagers(cluster: dict[str, Any], cluster_dir: Path) -> None:
    assert cluster["running"] and len(cluster["taskmanagers"]) == 2
    status = icetide(cluster_dir, "flink", "status")
    assert status["address"] == cluster["address"] and status["address"].startswith("127.0.0.1:")
    assert len(status["taskmanagers"]) == 2
    assert set(status["pids"]) == {"jobmanager", "taskmanager-1", "taskmanager-2"}
    assert sorted(tm["id"] for tm in status["taskmanagers"]) == ["taskmanager-1", "taskmanager-2"]
    config_file = cluster_dir / "flink" / "conf" / "config.yaml"
    config = config_file.read_text()
    assert 'rest.bind-address: "127.0.0.1"' in config
    assert 's3.aws.credentials.provider: "io.icetide.s3a.FileCredentialsProvider"' in config  # the key by its file
    assert "s3.secret-key" not in config and config_file.stat().st_mode & 0o777 == 0o644


def test_cdc_run_on_the_cluster_publishes_the_changelog(cluster: dict[str, Any], spark: Any, base_settings: Any,
                                                        kafka_bootstrap: str, session_dir: Path) -> None:
    tables = [fresh_table_name("fc_a"), fresh_table_name("fc_b")]
    for n, table in enumerate(tables):
        spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, v STRING) USING iceberg "
                  "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
                  "'write.update.mode'='merge-on-read')")
        spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
        spark.sql(f"INSERT INTO {table} SELECT id, concat('v', id) FROM range({100 + n * 50})")
        spark.sql(f"UPDATE {table} SET v = 'u' WHERE id < 5")
        spark.sql(f"DELETE FROM {table} WHERE id BETWEEN 10 AND 12")
    remote = {"ICETIDE__FLINK__ADDRESS": cluster["address"], "ICETIDE__FLINK__PARALLELISM": "2"}
    summary = icetide(session_dir, "cdc", "run", "--once", "--tables", ",".join(tables), env=remote)
    # the job ran on the cluster: its JobManager lists it, finished, at parallelism 2
    jobs = FlinkCluster(Path(cluster["home"]).parent).rest("/jobs/overview")["jobs"]
    assert [job["state"] for job in jobs if job["name"] == "icetide-cdc"] == ["FINISHED"]
    for n, table in enumerate(tables):
        assert summary["tables"][table]["by_op"] == {"c": 100 + n * 50, "u": 5, "d": 3}
        changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
        expected = list(changelog.events(None))
        messages = consume_all(kafka_bootstrap, topic_for("icetide", *table.split(".")), timeout_s=30)
        got = sorted((m.key(), unnumbered(m.value())) for m in messages)
        want = sorted((key_to_json(e.key(["id"])), unnumbered(to_value(e))) for e in expected)
        assert got == want  # each event once, none missing
        assert len({m.value() for m in messages}) == len(messages)  # ordinals unique within a snapshot


def unnumbered(value: bytes) -> str:
    """An event without its ordinal: at parallelism 2 a table is derived in parallel and its events are
    numbered per lane (streaming/derivation.py); their content per key is the engine's."""
    event = comparable(value)
    del event["source"]["ordinal"]
    return json.dumps(event, sort_keys=True)


def per_snapshot(positions: set[tuple[int, int]] | list[tuple[int, int]]) -> list[int]:
    """Sequence numbers of the positions, sorted: how many events each snapshot has (ordinals aside)."""
    return sorted(sequence for sequence, _ in positions)


def job_on_the_cluster(cluster: FlinkCluster, name: str, job: subprocess.Popen[bytes], log: Path,
                       timeout_s: float = 180) -> str:
    """The id of the RUNNING job `name` on the cluster (waiting for its submission)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert job.poll() is None, log.read_text()[-3000:]
        running = [j["jid"] for j in cluster.rest("/jobs/overview")["jobs"]
                   if j["name"] == name and j["state"] == "RUNNING"]
        if running:
            return running[0]
        time.sleep(1)
    raise AssertionError(f"no running {name} on the cluster\n{log.read_text()[-3000:]}")


def keyed_table(spark: Any, prefix: str, rows: int) -> tuple[str, str]:
    """A new merge-on-read table keyed by `id` with `rows` rows; (its name, its change topic)."""
    table = fresh_table_name(prefix)
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, v STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, 'a' FROM range({rows})")
    return table, topic_for("icetide", *table.split("."))


def final_state(cluster: FlinkCluster, jid: str, timeout_s: float = 60) -> str:
    """The state job `jid` ends in (FINISHED, CANCELED or FAILED)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = str(cluster.rest(f"/jobs/{jid}")["state"])
        if state in ("FINISHED", "CANCELED", "FAILED") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_sigkill_a_taskmanager_mid_stream_flink_restores_and_each_event_is_published_once(
        cluster: dict[str, Any], spark: Any, base_settings: Settings, kafka_bootstrap: str,
        session_dir: Path, tmp_path: Path) -> None:
    """Exactly-once delivery on the cluster: a TaskManager running the job dies; Flink restarts the job from
    its last checkpoint on the other TaskManager, aborts the open Kafka transactions, and a read_committed
    consumer sees every change event of the table exactly once (none lost, none twice)."""
    from tests.integration.test_streaming_restart import start_job, wait_for

    flink = FlinkCluster(Path(cluster["home"]).parent)
    table, topic = keyed_table(spark, "fc_kill", 200)
    log = tmp_path / "job.log"
    remote = {"ICETIDE__FLINK__ADDRESS": cluster["address"], "ICETIDE__FLINK__PARALLELISM": "2",
              "ICETIDE__CDC__DELIVERY": "exactly-once"}
    job = start_job(session_dir, table, log, remote)
    try:
        jid = job_on_the_cluster(flink, "icetide-cdc", job, log)
        wait_for(kafka_bootstrap, topic, 200, job, log)
        spark.sql(f"UPDATE {table} SET v = 'b' WHERE id < 20")
        wait_for(kafka_bootstrap, topic, 220, job, log)
        busy = [tm["id"] for tm in flink.taskmanagers() if tm["free_slots"] < tm["slots"]]
        assert busy, flink.taskmanagers()
        # a large snapshot, published in chunks with checkpoints between them: the kill falls inside it
        spark.sql(f"INSERT INTO {table} SELECT id, 'c' FROM range(1000, {1000 + BIG})")
        time.sleep(1.5)
        flink.kill_taskmanager(busy[0])
        spark.sql(f"DELETE FROM {table} WHERE id >= 180 AND id < 200")  # while the job is down or restarting
        seen, total = wait_for(kafka_bootstrap, topic, 240 + BIG, job, log)
        detail = flink.rest(f"/jobs/{jid}")
        assert detail["state"] == "RUNNING"
        exceptions = flink.rest(f"/jobs/{jid}/exceptions")
        assert exceptions.get("exceptionHistory", {}).get("entries"), "the job never failed over"
        os.killpg(job.pid, signal.SIGTERM)  # a service manager stopping the group: `cdc run` cancels the job
        job.wait(60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    expected = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake").events(None)
    assert per_snapshot(seen) == per_snapshot([e.source.position for e in expected])
    assert total == len(seen) == 240 + BIG  # read_committed: each event once
    assert final_state(flink, jid) == "CANCELED"


def test_stop_with_a_savepoint_and_resume_from_it(cluster: dict[str, Any], cluster_dir: Path, spark: Any,
                                                  base_settings: Settings, kafka_bootstrap: str,
                                                  session_dir: Path, tmp_path: Path) -> None:
    """An upgrade: `cdc stop --savepoint` stops the job with a savepoint, changes keep landing in the table,
    `cdc run --from-savepoint` resumes exactly after what was published (nothing again, nothing lost)."""
    from tests.integration.test_streaming_restart import start_job, wait_for

    # `flink up` again brings the cluster back to two TaskManagers (one may have been killed above)
    assert len(icetide(cluster_dir, "flink", "up", "--taskmanagers", "2")["taskmanagers"]) == 2
    flink = FlinkCluster(Path(cluster["home"]).parent)
    table, topic = keyed_table(spark, "fc_sp", 100)
    remote = {"ICETIDE__FLINK__ADDRESS": cluster["address"], "ICETIDE__FLINK__PARALLELISM": "2",
              "ICETIDE__CDC__DELIVERY": "exactly-once"}
    log = tmp_path / "job.log"
    job = start_job(session_dir, table, log, remote)
    try:
        first = job_on_the_cluster(flink, "icetide-cdc", job, log)
        wait_for(kafka_bootstrap, topic, 100, job, log)
        stopped = icetide(session_dir, "cdc", "stop", "--savepoint", env=remote)["jobs"]
        assert list(stopped) == [first]
        savepoint = stopped[first]
        assert savepoint.startswith(f"file:{session_dir / 'cdc' / 'savepoints'}/savepoint-")  # Flink's URI form
        assert job.wait(60) == 0, log.read_text()[-3000:]  # `cdc run` ends when its job does
        assert final_state(flink, first) == "FINISHED"
        spark.sql(f"UPDATE {table} SET v = 'b' WHERE id < 10")  # while no job runs
        job = start_job(session_dir, table, log, remote, ["--from-savepoint", savepoint])
        second = job_on_the_cluster(flink, "icetide-cdc", job, log)
        assert second != first
        seen, total = wait_for(kafka_bootstrap, topic, 110, job, log)
        checkpoints = flink.rest(f"/jobs/{second}/checkpoints")
        assert checkpoints["latest"]["restored"]["external_path"] == savepoint
        assert icetide(session_dir, "cdc", "stop", env=remote)["jobs"] == {second: None}
        assert job.wait(60) == 0, log.read_text()[-3000:]
        assert final_state(flink, second) == "CANCELED"
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    expected = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake").events(None)
    assert per_snapshot(seen) == per_snapshot([e.source.position for e in expected])
    assert total == len(seen) == 110  # the resumed job did not publish the first 100 again


def test_checkpoints_on_the_object_store_and_resume_from_there(cluster: dict[str, Any], lake_spark: Any,
                                                              lake_settings: Settings, s3_lake_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    """REST + S3 on the cluster: the job's checkpoints land in the bucket (the cluster's JobManager and
    TaskManagers write them with the `cdc` key), `cdc stop` cancels it, the next `cdc run` resumes from the
    newest checkpoint there, and a read_committed consumer sees each event once (none lost, none twice)."""
    from tests.integration.test_streaming_restart import kill_and_restart

    flink = FlinkCluster(Path(cluster["home"]).parent)
    table = fresh_table_name("fc_s3")
    remote = {**s3_lake_env, "ICETIDE__FLINK__ADDRESS": cluster["address"], "ICETIDE__CDC__DELIVERY": "exactly-once"}
    prefix = f"s3://{lake_settings.storage.bucket}/checkpoints/cdc/"
    stopped: list[str] = []

    def stop_the_job() -> None:  # after a checkpoint following the update: list it, then `cdc stop`
        done = completed_checkpoints(lake_settings, tables_dir(lake_settings, [table]))
        assert done and all(uri.startswith(prefix) for uri, _ in done), done
        stopped.extend(icetide(lake_settings.state_dir, "cdc", "stop", env=remote)["jobs"])

    seen, total = kill_and_restart(lake_spark, lake_settings, f"{LAKE_CATALOG}.{table}",
                                   s3_lake_env["ICETIDE__KAFKA__BOOTSTRAP_SERVERS"], tmp_path / "job.log", remote,
                                   stop_the_job)
    assert total == len(seen) == 120  # each event once: the resumed job did not publish the first 110 again
    assert len(stopped) == 1 and final_state(flink, stopped[0]) == "CANCELED"
    jobs = sorted((j for j in flink.rest("/jobs/overview")["jobs"] if j["name"] == "icetide-cdc"),
                  key=lambda j: j["start-time"])
    resumed = jobs[-1]["jid"]
    assert resumed != stopped[0]
    restored = flink.rest(f"/jobs/{resumed}/checkpoints")["latest"]["restored"]["external_path"]
    assert restored.startswith(prefix + tables_dir(lake_settings, [table]).rsplit("/", 1)[1] + "/"), restored
    assert not (lake_settings.state_dir / "cdc" / "checkpoints").exists()


def test_down_stops_every_process(cluster: dict[str, Any], cluster_dir: Path) -> None:
    pids = cluster["pids"]
    assert icetide(cluster_dir, "flink", "down") == {"stopped": True}
    assert not any(runs_with(pid, str(cluster_dir / "flink" / "conf").encode()) for pid in pids.values())
    assert icetide(cluster_dir, "flink", "status")["running"] is False
