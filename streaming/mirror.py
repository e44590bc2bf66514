"""The ecosystem proof: a stock Flink SQL job mirrors an icetide topic into another Iceberg table.

It reads the topic in its `cdc.format`: JSON and connect-json with Flink's `debezium-json` format
(`schema-include` for connect-json), Avro with `debezium-avro-confluent`; columns whose wire value
is not Flink's own type are converted on the way in (`streaming/mirror_wire.py`).

Nothing here knows icetide's event classes. The job is plain Flink SQL, the way any Debezium user
would write it::

    CREATE CATALOG lake WITH (...)                           -- icetide.catalog.flink_catalog_ddl
    CREATE TEMPORARY TABLE src (<columns>, PRIMARY KEY (...) NOT ENFORCED)
      WITH ('connector' = 'kafka', 'format' = 'debezium-json', ...)
    CREATE TABLE IF NOT EXISTS lake.<ns>.<mirror> (<columns>, PRIMARY KEY (...) NOT ENFORCED)
      WITH ('format-version' = '2', 'write.upsert.enabled' = 'true')
    INSERT INTO lake.<ns>.<mirror> SELECT <columns> FROM src

Flink's `debezium-json` format turns `c`/`r` into +I, `u` into -U/+U (it needs the before image)
and `d` into -D (before image); the Iceberg sink in upsert mode writes equality deletes by the
primary key, so replaying the topic from the beginning is idempotent. If the events ever stop
matching what Flink expects, this job fails with Flink's own parse error.

The columns come from the source Iceberg table's current schema (PyIceberg → Flink SQL types);
the key is the table's identifier fields, or the given key columns.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icetide import jvm, kafka_client
from icetide.catalog import flink_catalog_ddl, pyiceberg_catalog
from icetide.errors import ConfigError
from icetide.events import topic_for
from icetide.flink_sql import with_options

from streaming.job import _wait_interruptibly, flink_config
from streaming.mirror_wire import IDENTITY, Spec, converter, wire

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.types import IcebergType

SOURCE_TABLE = "icetide_source"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # Flink SQL type, NOT NULL included for required columns
    wire_type: str | None = None  # the source table's type when the encoding carries another (mirror_wire)
    spec: Spec = IDENTITY  # how the wire value becomes the column's value (mirror_wire.converter)


@dataclass(frozen=True)
class MirrorPlan:
    """Everything the Flink SQL statements are built from (testable without a JVM)."""

    table: str  # namespace.table (the source)
    mirror: str  # namespace.table (the target)
    topic: str
    columns: list[Column]
    key: list[str]
    format: str = "json"  # cdc.format of the topic
    registry: str | None = None  # schema registry URL (Avro)


def quote_ident(name: str) -> str:
    """A Flink SQL identifier: backticks, embedded backticks doubled."""
    return "`" + name.replace("`", "``") + "`"


def flink_type(kind: IcebergType) -> str:
    """The Flink SQL type Iceberg's Flink connector uses for an Iceberg type (nullability aside)."""
    from pyiceberg import types as t

    simple: dict[type, str] = {
        t.BooleanType: "BOOLEAN", t.IntegerType: "INT", t.LongType: "BIGINT", t.FloatType: "FLOAT",
        t.DoubleType: "DOUBLE", t.DateType: "DATE", t.TimeType: "TIME", t.TimestampType: "TIMESTAMP(6)",
        t.TimestamptzType: "TIMESTAMP_LTZ(6)", t.StringType: "STRING", t.BinaryType: "BYTES",
    }
    if type(kind) in simple:
        return simple[type(kind)]
    if isinstance(kind, t.DecimalType):
        return f"DECIMAL({kind.precision}, {kind.scale})"
    if isinstance(kind, t.FixedType):
        return f"BINARY({len(kind)})"
    if isinstance(kind, t.StructType):
        fields = ", ".join(f"{quote_ident(f.name)} {_nullable(flink_type(f.field_type), f.required)}"
                           for f in kind.fields)
        return f"ROW<{fields}>"
    if isinstance(kind, t.ListType):
        return f"ARRAY<{_nullable(flink_type(kind.element_type), kind.element_required)}>"
    if isinstance(kind, t.MapType):
        return (f"MAP<{_nullable(flink_type(kind.key_type), True)}, "
                f"{_nullable(flink_type(kind.value_type), kind.value_required)}>")
    # uuid: Iceberg's Flink connector wants BINARY(16), events carry the text form; ns timestamps (v3)
    raise ConfigError(f"column type {kind} has no Flink SQL mirror type (supported: primitives except "
                      "uuid and timestamp_ns, decimal, fixed, struct, list, map)")


def _nullable(sql_type: str, required: bool) -> str:
    return f"{sql_type} NOT NULL" if required else sql_type


def plan_mirror(settings: Settings, table: str, mirror: str | None = None,
                key: list[str] | None = None) -> MirrorPlan:
    """Read the source table's schema and identifier fields; name the topic and the mirror."""
    if table.count(".") != 1:
        raise ConfigError(f"table {table!r}: expected namespace.table")
    namespace, name = table.split(".")
    target = mirror or f"{namespace}.{name}_mirror"
    if target.count(".") != 1:
        raise ConfigError(f"mirror {target!r}: expected namespace.table")
    from pyiceberg.exceptions import NoSuchTableError

    try:
        schema = pyiceberg_catalog(settings).load_table(table).schema()
    except NoSuchTableError:
        raise ConfigError(f"table {table} not found in catalog {settings.catalog.name!r}") from None
    fmt = settings.cdc.format
    if fmt == "avro" and not settings.cdc.schema_registry_url:
        raise ConfigError("setting 'cdc.schema_registry_url' is required to mirror an Avro topic")
    columns = []
    for f in schema.fields:
        wire_type, spec = wire(f.field_type, fmt, flink_type)
        columns.append(Column(f.name, _nullable(flink_type(f.field_type), f.required),
                              _nullable(wire_type, f.required) if spec != IDENTITY else None, spec))
    chosen = key or [schema.find_column_name(i) or "" for i in schema.identifier_field_ids]
    if not chosen:
        raise ConfigError(f"table {table} has no identifier fields: give the key columns (--key col[,col])")
    unknown = sorted(set(chosen) - {c.name for c in columns})
    if unknown:
        raise ConfigError(f"key columns not in {table}: {', '.join(unknown)}")
    return MirrorPlan(table, target, topic_for(settings.cdc.topic_prefix, namespace, name), columns, chosen, fmt,
                      settings.cdc.schema_registry_url)


def _column_block(plan: MirrorPlan, on_wire: bool = False) -> str:
    lines = [f"{quote_ident(c.name)} {c.wire_type if on_wire and c.wire_type else c.sql_type}" for c in plan.columns]
    lines.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in plan.key)}) NOT ENFORCED")
    return ",\n  ".join(lines)


def source_ddl(plan: MirrorPlan, bootstrap: str, bounded: bool, group_id: str,
               client: Mapping[str, str] | None = None) -> str:
    """The Kafka source table: the topic read from the beginning with Flink's `debezium-json`
    (with `schema-include` for connect-json) or `debezium-avro-confluent` (Avro). `client`: the
    connector's security options (`kafka_client.flink_options`)."""
    options = {
        "connector": "kafka",
        "topic": plan.topic,
        "properties.bootstrap.servers": bootstrap,
        "properties.group.id": group_id,
        "properties.isolation.level": "read_committed",  # exactly-once runs publish in transactions
        "scan.startup.mode": "earliest-offset",
        **(client or {}),
    }
    if plan.format == "avro":
        options |= {"format": "debezium-avro-confluent", "debezium-avro-confluent.url": plan.registry or ""}
    else:
        options |= {"format": "debezium-json",
                    "debezium-json.timestamp-format.standard": "ISO-8601"}  # icetide writes them as Debezium does
        if plan.format == "connect-json":
            options["debezium-json.schema-include"] = "true"  # {"schema": …, "payload": …}
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return (f"CREATE TEMPORARY TABLE {SOURCE_TABLE} (\n  {_column_block(plan, True)}\n) "
            f"WITH (\n  {with_options(options)}\n)")


def mirror_ddl(settings: Settings, plan: MirrorPlan) -> str:
    """The Iceberg mirror (v2, upsert by the primary key: updates and deletes as equality deletes)."""
    options = {"format-version": "2", "write.upsert.enabled": "true"}
    return (f"CREATE TABLE IF NOT EXISTS {_mirror_path(settings, plan)} (\n  {_column_block(plan)}\n) "
            f"WITH (\n  {with_options(options)}\n)")


def converter_name(index: int) -> str:
    """The temporary function converting column `index` from its wire type (`mirror_wire`)."""
    return f"icetide_wire_{index}"


def insert_sql(settings: Settings, plan: MirrorPlan) -> str:
    names = ", ".join(f"{converter_name(i)}({quote_ident(c.name)}) AS {quote_ident(c.name)}" if c.wire_type
                      else quote_ident(c.name) for i, c in enumerate(plan.columns))
    return f"INSERT INTO {_mirror_path(settings, plan)} SELECT {names} FROM {SOURCE_TABLE}"


def _register_converters(t_env: Any, plan: MirrorPlan) -> None:
    """One Python scalar function per column that arrives in another type (`mirror_wire`)."""
    from pyflink.table.udf import udf

    for i, column in enumerate(plan.columns):
        if column.wire_type:
            result = column.sql_type.removesuffix(" NOT NULL")
            t_env.create_temporary_function(converter_name(i), udf(converter(column.spec), result_type=result))


def _mirror_path(settings: Settings, plan: MirrorPlan) -> str:
    namespace, name = plan.mirror.split(".")
    return ".".join(quote_ident(p) for p in (settings.catalog.name, namespace, name))


_LOG4J = """rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FileAppender
appender.file.name = FileAppender
appender.file.type = FILE
appender.file.append = false
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yyyy-MM-dd HH:mm:ss,SSS}} %-5p %-60c %x - %m%n
"""


def _table_environment(settings: Settings) -> Any:
    """A streaming TableEnvironment with the Flink jars.

    The Iceberg catalog needs the Hadoop classes on the gateway's own classpath (PyFlink's
    launcher adds `$HADOOP_CLASSPATH`). Known and benign: the SQLite driver, loaded child-first by
    the job's classloader, is not yet registered with `DriverManager` on its first use, so the
    Iceberg committer's first connection fails ("No suitable driver found") and Flink restarts
    the job once (about 1 s; the mirror is an upsert, so the replay is idempotent). Loading the
    driver parent-first instead makes the job's commits fail with SQLITE_BUSY against the
    client-side catalog's connection in the same JVM, so that is not done.
    PyFlink's default log4j config sends Hadoop's INFO lines to stdout, which would corrupt
    `--json`: the gateway logs to `<state_dir>/mirror/flink.log` instead.
    """
    hadoop = {} if "HADOOP_CLASSPATH" in os.environ else {
        "HADOOP_CLASSPATH": os.pathsep.join(str(p) for p in jvm.jars("flink") if "hadoop" in p.name)}
    folder = settings.state_dir / "mirror"
    folder.mkdir(parents=True, exist_ok=True)
    if "LOG4J_PROPERTIES" not in os.environ:
        log4j = folder / "log4j.properties"
        log4j.write_text(_LOG4J.format(path=(folder / "flink.log").as_posix()))
        os.environ["LOG4J_PROPERTIES"] = str(log4j)
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    with jvm.gateway_launch(hadoop):  # PyFlink starts its gateway JVM (on first use) from os.environ
        config = Configuration()
    checkpoints = folder / "checkpoints"
    for key, value in flink_config(settings, checkpoints, None).items():
        config.set_string(key, value)
    config.set_string("pipeline.name", "icetide-mirror")
    config.set_string("python.executable", sys.executable)  # the converters of `mirror_wire`, if any
    # a bounded proof must fail with Flink's error (e.g. a parse error), not retry forever
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", "3")
    config.set_string("restart-strategy.fixed-delay.delay", "1 s")
    environment = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    return TableEnvironment.create(environment)


def run_mirror(settings: Settings, table: str, bootstrap: str, mirror: str | None = None,
               key: list[str] | None = None, bounded: bool = True) -> dict[str, Any]:
    """Mirror `table`'s icetide topic into an Iceberg table; bounded runs stop at the topic's end.

    Returns the plan and timings; `job_s` is from submission to the job's end (the mirror's
    last commit included), `duration_s` includes starting the JVM.
    """
    started = time.monotonic()
    plan = plan_mirror(settings, table, mirror, key)
    t_env = _table_environment(settings)
    t_env.execute_sql(flink_catalog_ddl(settings))
    t_env.execute_sql(source_ddl(plan, bootstrap, bounded, f"icetide-mirror-{plan.mirror}",
                                 kafka_client.flink_options(settings, "mirror", bootstrap)))
    t_env.execute_sql(mirror_ddl(settings, plan))
    _register_converters(t_env, plan)
    submitted = time.monotonic()
    result = t_env.execute_sql(insert_sql(settings, plan))
    if bounded:
        result.wait()
    else:
        _wait_interruptibly(result)  # --follow: SIGINT/SIGTERM cancel the job
    ended = time.monotonic()
    current = pyiceberg_catalog(settings).load_table(plan.mirror).current_snapshot()
    return {
        "table": plan.table,
        "mirror": plan.mirror,
        "topic": plan.topic,
        "key": plan.key,
        "mirror_snapshot": current.snapshot_id if current else None,
        "job_s": round(ended - submitted, 2),
        "duration_s": round(ended - started, 2),
    }
