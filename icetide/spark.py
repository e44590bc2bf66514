"""The Spark session factory: built on demand, never at import time.

One session (`local[2]` by default; a standalone cluster's `spark://` master runs its executors in the
cluster's Workers, icetide/services/spark_cluster.py) with the Iceberg runtime on its classpath and the
catalog of `icetide.catalog.spark_conf` registered as the default catalog; `task_progress` shows a
long action's tasks on a progress bar (icetide.console).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from icetide import jvm
from icetide.catalog import spark_conf
from icetide.console import polling
from icetide.services.spark_cluster import executor_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from icetide.console import Bar
    from icetide.settings import Role, Settings


def session_conf(settings: Settings, role: Role = "writer") -> dict[str, str]:
    """Everything the session is built with, as plain strings (useful for tests and --debug); the
    object store is reached with `role`'s key (icetide.storage)."""
    conf = {
        "spark.master": settings.spark.master,
        "spark.app.name": "icetide",
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.jars": ",".join(str(p) for p in jvm.jars("spark")),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.warehouse.dir": str(settings.state_dir / "spark-warehouse"),
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
    }
    conf.update(spark_conf(settings, role))
    conf.update(executor_conf(settings))
    conf.update(settings.spark.extra_conf)
    return conf


def with_metrics(conf: dict[str, str], settings: Settings, role: Role) -> dict[str, str]:
    """`conf` plus, with monitoring on, Spark's JMX sink and the JMX exporter agent in the driver: the
    driver serves its Spark metrics and heap to the state dir's Prometheus (job `spark`) while it runs."""
    if not settings.monitoring.enabled:
        return conf
    import os

    from icetide.services import monitoring_config
    from icetide.services.monitoring import Monitoring

    agent = Monitoring().jmx_agent(settings.state_dir, "spark", f"driver-{os.getpid()}", monitoring_config.JMX_SPARK,
                                   labels={"role": role})
    options = " ".join([conf.get("spark.driver.extraJavaOptions", ""), *agent]).strip()
    return {**conf, **monitoring_config.spark_metrics_conf(), "spark.driver.extraJavaOptions": options}


def spark_session(settings: Settings, role: Role = "writer") -> SparkSession:
    """Create (or reuse) the process's Spark session for `settings`, as `role` (the first session of a
    process fixes it: one command, one role)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    conf = session_conf(settings, role)
    if SparkSession.getActiveSession() is None:  # a new driver JVM starts: with its metrics agent
        conf = with_metrics(conf, settings, role)
    for key, value in conf.items():
        builder = builder.config(key, value)
    with jvm.gateway_launch():  # pyspark launches the JVM through spark-submit, which reads JAVA_HOME
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def task_progress(spark: SparkSession, bar: Bar, interval_s: float = 0.5) -> Iterator[None]:
    """Report the Spark tasks of the jobs started inside the block to `bar` (completed of total), polled from
    Spark's status tracker — how a single long Spark action (an append, a compaction) shows it is moving.

    Only jobs without a job group are seen (icetide sets none); a job that finished counts all its tasks,
    so stages Spark skipped (their output reused) do not leave the bar short."""
    tracker = spark.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup(None))

    def poll() -> None:
        done = total = 0
        for job_id in set(tracker.getJobIdsForGroup(None)) - before:
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            stages = [s for s in (tracker.getStageInfo(i) for i in job.stageIds) if s is not None]
            tasks = sum(s.numTasks for s in stages)
            total += tasks
            done += tasks if job.status == "SUCCEEDED" else sum(s.numCompletedTasks for s in stages)
        if total:
            bar.update(completed=done, total=total)

    with polling(poll, "spark-task-progress", interval_s):
        yield
    poll()
