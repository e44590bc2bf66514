"""The batch jobs on a real Spark standalone cluster (issue 11, item 5): `icetide spark up` starts a Master
and two Workers from pyspark's jars as separate JVMs; with spark.master at its spark:// URL the jobs' tasks
run in executors the Workers launch, and `icetide spark submit` runs a command through spark-submit (the
entry point of the operator's ScheduledSparkApplication). Every command runs in its own process, as a user
would run it (one Spark driver per process)."""

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

from icetide.process import runs_with
from icetide.services.spark_cluster import WORKER_CLASS, SparkCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ROW_DIGEST = "SELECT count(*) AS n, sum(hash(*)) AS digest FROM {table}"


def icetide(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-4000:])
    return done


def status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(icetide(env, "spark", "status", "--json").stdout)


def pid_alive(pid: int) -> bool:
    return runs_with(pid, WORKER_CLASS.encode()) or runs_with(pid, b"org.apache.spark.deploy.master.Master")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of commands on a two-Worker cluster of a fresh state dir; afterwards `spark down`
    leaves no Master, Worker or executor running."""
    state = tmp_path_factory.mktemp("spark-cluster")
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__SPARK__CLUSTER_PORT": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("ICETIDE__SPARK__MASTER", None)
    up = json.loads(icetide(env, "spark", "up", "--workers", "2", "--json").stdout)
    pids = [up["master_pid"], *up["worker_pids"]]
    try:
        yield {**env, "ICETIDE__SPARK__MASTER": up["master_url"]}
    finally:
        down = json.loads(icetide(env, "spark", "down", "--json").stdout)
        pids += status(env)["worker_pids"]
        assert down["stopped"]
        time.sleep(1)
        assert not [p for p in pids if p and pid_alive(p)]
        executors = subprocess.run(["pgrep", "-f", f"CoarseGrainedExecutorBackend.*{state}"], capture_output=True)
        assert not executors.stdout.strip(), executors.stdout


def test_up_starts_a_master_and_two_workers_and_brings_a_dead_worker_back(cluster: dict[str, str]) -> None:
    before = status(cluster)
    assert before["running"] and before["alive_workers"] == 2 and before["cores"] == 2
    assert {w["state"] for w in before["workers"]} == {"ALIVE"}
    assert before["master_url"].startswith("spark://127.0.0.1:")
    victim = before["worker_pids"][1]
    os.kill(victim, signal.SIGKILL)
    again = json.loads(icetide(cluster, "spark", "up", "--json").stdout)  # the settings' two Workers
    assert again["master_pid"] == before["master_pid"]
    assert again["worker_pids"][0] == before["worker_pids"][0] and again["worker_pids"][1] not in (None, victim)
    assert again["alive_workers"] == 2


def test_a_batch_job_runs_in_the_workers_and_writes_what_local_mode_writes(cluster: dict[str, str]) -> None:
    apps = len(status(cluster)["completedapps"])
    icetide(cluster, "batch", "generate", "--table", "c.on_cluster", "--rows", "30000", "--seed", "7")
    finished = status(cluster)["completedapps"]
    assert len(finished) == apps + 1 and finished[-1]["state"] == "FINISHED" and finished[-1]["cores"] == 2
    state = Path(cluster["ICETIDE__STACK__STATE_DIR"]) / "spark-cluster"
    ran = {p.relative_to(state).parts[0] for p in state.glob(f"worker-*/work/{finished[-1]['id']}/*/stderr")}
    assert ran == {"worker-0", "worker-1"}, ran  # an executor in each Worker

    local = {**cluster, "ICETIDE__SPARK__MASTER": "local[2]"}
    icetide(local, "batch", "generate", "--table", "c.local", "--rows", "30000", "--seed", "7")
    digests = [json.loads(icetide(local, "sql", "--json", ROW_DIGEST.format(table=t)).stdout)
               for t in ("c.on_cluster", "c.local")]
    assert digests[0] == digests[1] and digests[0][0]["n"] == 30000


def test_spark_submit_runs_maint_run_on_the_cluster(cluster: dict[str, str], tmp_path: Path) -> None:
    statements = tmp_path / "small.sql"  # four commits, four small files, one Spark application
    statements.write_text("CREATE TABLE c.small (id BIGINT, v STRING) USING iceberg;\n" + "".join(
        f"INSERT INTO c.small SELECT id, uuid() FROM range({n * 300}, {(n + 1) * 300});\n" for n in range(4)))
    icetide(cluster, "sql", "-f", str(statements))
    policy = tmp_path / "maintenance.yaml"
    policy.write_text("defaults:\n  compact: {min_files: 2, min_small_file_ratio: 0.1}\n")
    apps = len(status(cluster)["completedapps"])
    done = icetide(cluster, "spark", "submit", "maint", "run", "--policy", str(policy), "--table", "c.small", "--json")
    result = {r["table"]: r for r in json.loads(done.stdout)}
    compact = result["c.small"]["actions"]["compact"]
    assert compact["files_before"] > compact["files_after"] >= 1, compact
    finished = status(cluster)["completedapps"]
    assert len(finished) == apps + 1 and finished[-1]["state"] == "FINISHED"
    count = json.loads(icetide(cluster, "sql", "--json", "SELECT count(*) AS n FROM c.small").stdout)
    assert count == [{"n": 1200}]


def test_spark_submit_passes_the_commands_exit_code(cluster: dict[str, str]) -> None:
    done = icetide(cluster, "spark", "submit", "maint", "no-such-command", check=False)
    assert done.returncode != 0 and "No such command" in done.stdout + done.stderr


def test_a_taken_master_port_names_the_setting(cluster: dict[str, str], tmp_path: Path) -> None:
    taken = int(status(cluster)["master_url"].rsplit(":", 1)[1])
    env = {**cluster, "ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__SPARK__CLUSTER_PORT": str(taken)}
    done = icetide(env, "spark", "up", check=False)
    assert done.returncode != 0 and "spark.cluster_port" in done.stderr
    assert "ICETIDE__SPARK__CLUSTER_PORT" in done.stderr
    assert not SparkCluster(tmp_path).status()["running"]
