"""The Spark session factory: built on demand, never at import time.

One local session (`local[2]` by default) with the Iceberg runtime on its classpath and the
catalog of `icetide.catalog.spark_conf` registered as the default catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from icetide import jvm
from icetide.catalog import spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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
    conf.update(settings.spark.extra_conf)
    return conf


def spark_session(settings: Settings, role: Role = "writer") -> SparkSession:
    """Create (or reuse) the process's Spark session for `settings`, as `role` (the first session of a
    process fixes it: one command, one role)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in session_conf(settings, role).items():
        builder = builder.config(key, value)
    with jvm.gateway_launch():  # pyspark launches the JVM through spark-submit, which reads JAVA_HOME
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
