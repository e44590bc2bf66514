"""The standalone cluster's configuration: what a driver adds for executors, spark-submit's command line,
and settings that are refused (no JVM here; the cluster itself: tests/integration/batch/test_spark_cluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from icetide.errors import ConfigError
from icetide.services.spark_cluster import SparkCluster, executor_conf, spark_home
from icetide.settings import Settings, load_settings
from icetide.spark import session_conf
from icetide.spark_cli import submit_command

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), **env})


def test_local_sessions_get_no_executor_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.spark.master == "local[2]" and executor_conf(settings) == {}
    assert "spark.executor.memory" not in session_conf(settings)


def test_a_cluster_master_gives_executors_memory_utc_and_the_venvs_python(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ICETIDE__SPARK__MASTER="spark://127.0.0.1:7077",
                         ICETIDE__SPARK__EXECUTOR_MEMORY="3g")
    conf = session_conf(settings)
    assert conf["spark.master"] == "spark://127.0.0.1:7077" and conf["spark.executor.memory"] == "3g"
    assert conf["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"
    assert conf["spark.pyspark.python"] == sys.executable


def test_extra_conf_still_overrides_the_executor_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ICETIDE__SPARK__MASTER="spark://h:1",
                         ICETIDE__SPARK__EXTRA_CONF='{"spark.executor.memory": "5g"}')
    assert session_conf(settings)["spark.executor.memory"] == "5g"


def test_submit_runs_the_entry_point_with_the_jars_and_the_command_last(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ICETIDE__SPARK__MASTER="spark://127.0.0.1:7077")
    try:
        cmd = submit_command(settings, ["maint", "run", "--policy", "p.yaml"])
    except Exception as exc:  # no jars in a venv-only set-up: the error says how to get them
        assert "make setup" in str(exc)
        return
    assert cmd[0] == str(spark_home() / "bin" / "spark-submit") and Path(cmd[0]).exists()
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert all(Path(jar).exists() for jar in cmd[cmd.index("--jars") + 1].split(","))
    entry = cmd.index("--policy") - 3
    assert cmd[entry].endswith("icetide/spark_main.py") and Path(cmd[entry]).exists()
    assert cmd[entry + 1:] == ["maint", "run", "--policy", "p.yaml"]


@pytest.mark.parametrize(("key", "value"), [("WORKERS", "0"), ("WORKER_CORES", "0")])
def test_a_cluster_without_workers_or_cores_is_refused_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.lower()):
        _settings(tmp_path, **{f"ICETIDE__SPARK__{key}": value})


def test_a_cluster_never_started_reports_stopped(tmp_path: Path) -> None:
    data = SparkCluster(tmp_path).status()
    assert data["running"] is False and data["master_url"] is None and data["worker_pids"] == []
    assert SparkCluster(tmp_path).stop() is False
