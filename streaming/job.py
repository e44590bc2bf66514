"""The PyFlink job of `icetide cdc run`: Iceberg changelogs → Kafka change events.

Shape (DataStream + a Table API sink)::

    table names (bounded, --once) | datagen ticks → flat_map to table names (continuous)
      → key_by(table) → PublishChanges (Python KeyedProcessFunction; position in ValueState)
      → Row(topic, k, v) → Kafka table sink (key/value formats `raw`, writable `topic` metadata)

Each tick of a table polls its snapshots and emits the events after the stored position, at most
`cdc.chunk_events` per tick so checkpoints fall between chunks of a large snapshot and the TaskManager
holds a chunk of its output at a time, not the snapshot (`--once` ticks too: `once.py`). Values are encoded as
`cdc.format` says (JSON, or Avro registered by the worker in `cdc.schema_registry_url`; see
`poller.py`); with `cdc.tombstones` a null-value record follows each delete of a keyed table (the
`raw` value format writes a null BYTES field as a Kafka null value). Schema-change records,
snapshot boundaries (`cdc.transaction_metadata`: BEGIN/END on `<prefix>.transaction`, see
`transactions.py`) and audience topics stay JSON. The record key is the
row key, and the sink uses Kafka's key partitioner, so one key's events stay in order in one
partition. Delivery is at-least-once (Flink flushes on checkpoints) or exactly-once (Kafka
transactions committed with each checkpoint).

Positions survive restarts two ways: continuous runs keep retained checkpoints under
`<checkpoint root>/<id of the table set>` and restore the newest one (the root is `<state_dir>/cdc/checkpoints`,
or `s3://<bucket>/checkpoints/cdc` with `storage.kind: s3`: `checkpoints.py`); a finished `--once` run stores its final
positions in `<state_dir>/cdc/positions.json`, which seeds the next run (`--reset` ignores both).
Counters are written by the worker to `<run dir>/summary/<table>.json` for `--json`; the per-table work
(resume, one tick, audience fan-out, counters, metrics endpoint) is `worker.py`'s, apart from Flink.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide import jvm, kafka_client
from icetide.errors import IcetideError
from icetide.events import topic_for, transaction_topic
from icetide.flink_sql import with_options

from streaming.poller import Position, Record, TablePoller, make_encoder, schema_topic
from streaming.transactions import ensure_topic
from streaming.worker import AudienceFanout, MetricsEndpoint, ProgressFiles, Tally, publish_tick, resume_position

if TYPE_CHECKING:
    from icetide.settings import Settings

SINK_TABLE = "cdc_sink"
PIPELINE_NAME = "icetide-cdc"  # the job's name on a Flink cluster (`cdc stop` finds it by it)

log = logging.getLogger(__name__)


@dataclass
class JobOptions:
    """Everything the Python worker needs; pickled into the process function."""

    settings: Settings
    tables: list[str]
    start: str
    once: bool
    run_dir: str
    seed_positions: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    key_fields: dict[str, list[str]] = field(default_factory=dict)
    policy_file: str | None = None  # also publish per-audience topics (streaming/audiences.py)
    from_savepoint: str | None = None  # restore this savepoint (`cdc stop --savepoint`) instead of a checkpoint
    # partitions of each table's topic when parallel derivation is on (a lane each); empty: one subtask per table
    lanes: dict[str, int] = field(default_factory=dict)


def cdc_dir(settings: Settings) -> Path:
    return settings.state_dir / "cdc"


def read_positions(settings: Settings) -> dict[str, str]:
    path = cdc_dir(settings) / "positions.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def write_positions(settings: Settings, positions: dict[str, str]) -> None:
    path = cdc_dir(settings) / "positions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**read_positions(settings), **positions}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True))
    tmp.replace(path)


def _publish_function(options: JobOptions) -> Any:
    """Build the KeyedProcessFunction lazily (pyflink is imported only here); the work is `worker.py`'s."""
    from pyflink.common import Row
    from pyflink.common.typeinfo import Types
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    class PublishChanges(KeyedProcessFunction):  # type: ignore[misc]
        """Per table (the key): poll, emit records, keep the position in keyed state."""

        def __init__(self, opts: JobOptions) -> None:
            self.opts = opts

        def open(self, runtime_context: RuntimeContext) -> None:
            from icetide.catalog import pyiceberg_catalog

            from streaming.metrics import CdcMetrics

            self.position_state = runtime_context.get_state(ValueStateDescriptor("position", Types.STRING()))
            self.catalog = pyiceberg_catalog(self.opts.settings, "cdc")
            self.pollers: dict[str, TablePoller] = {}
            self.metrics = CdcMetrics()
            self.tallies: dict[str, Tally] = {}
            self.progress = ProgressFiles(self.opts.run_dir) if self.opts.once else None
            self.encoder = make_encoder(self.opts.settings.cdc)  # Avro: schemas registered on first use
            self.endpoint: MetricsEndpoint | None = None
            self.fanout: AudienceFanout | None = None
            if self.opts.policy_file is not None:
                from streaming.audiences import load_compiled

                policy = load_compiled(self.opts.policy_file, self.opts.settings)
                self.fanout = AudienceFanout(policy, self.opts.settings)
                self.metrics.policy_version.labels(policy.policy_id).set(policy.version)
            if self.opts.metrics_port is not None:
                self.endpoint = MetricsEndpoint(self.metrics, self.opts.settings, self.opts.metrics_port,
                                                self.opts.run_dir, runtime_context.get_index_of_this_subtask())

        def close(self) -> None:
            if self.endpoint is not None:
                self.endpoint.close()

        def _poller(self, table: str) -> TablePoller | None:
            poller = self.pollers.get(table)
            if poller is None:
                from pyiceberg.exceptions import NoSuchTableError

                from streaming.changelog import Changelog

                try:
                    loaded = self.catalog.load_table(table)
                except NoSuchTableError:
                    return None  # not created yet: try again on the next tick
                changelog = Changelog(loaded, self.opts.settings.catalog.name,
                                      self.opts.key_fields.get(table), self.opts.settings.cdc.topic_prefix)
                cdc = self.opts.settings.cdc
                poller = self.pollers[table] = TablePoller(changelog, cdc.topic_prefix, encoder=self.encoder,
                                                           tombstones=cdc.tombstones,
                                                           transactions=cdc.transaction_metadata)
            return poller

        def _store(self, position: Position) -> None:
            self.position_state.update(position.to_json())

        def process_element(self, table: str, ctx: Any) -> Iterator[Any]:
            poller = self._poller(table)
            if poller is None:
                return
            position, fresh = resume_position(poller, self.position_state.value(),
                                              self.opts.seed_positions.get(table), self.opts.start)
            if fresh:
                self._store(position)
            tally = self.tallies.setdefault(table, Tally())
            chunk = self.opts.settings.cdc.chunk_events
            position, moved = yield from publish_tick(poller, table, position, chunk, tally, self.metrics,
                                                      self.fanout, self.progress, self._store, _flink_row)
            if moved or self.opts.once:
                tally.write(self.opts.run_dir, table, position)
            if self.progress is not None:
                self.progress.write(table, tally)

    def _flink_row(record: Record) -> Any:
        return Row(record.topic, record.key, record.value)  # value None: a Kafka null (tombstone)

    return PublishChanges(options)


def flink_row_type() -> Any:
    """Row(topic, k, v): what every sink table of the job reads."""
    from pyflink.common.typeinfo import Types

    return Types.ROW_NAMED(["topic", "k", "v"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE()),
                                                 Types.PRIMITIVE_ARRAY(Types.BYTE())])


def lanes_of(settings: Settings, tables: list[str], bootstrap: str) -> dict[str, int]:
    """Parallel derivation's lanes: the partitions of each table's topic, created with one per subtask
    (at least `kafka.num_partitions`) when missing. Empty when a table is one subtask's work: parallelism 1,
    `cdc.parallel_derivation: false`."""
    if settings.flink.parallelism < 2 or not settings.cdc.parallel_derivation:
        return {}
    if not settings.flink.address:
        log.warning("flink.parallelism %d in PyFlink's local mini-cluster: its subtasks share one Python worker "
                    "(one GIL), so parallel derivation adds work without adding CPU; set flink.address to a "
                    "cluster of one-slot TaskManagers (`icetide flink up --taskmanagers N`) to spread it",
                    settings.flink.parallelism)
    wanted = max(settings.flink.parallelism, settings.kafka.num_partitions)
    return {table: ensure_topic(bootstrap, topic_for(settings.cdc.topic_prefix, *table.split(".", 1)),
                                settings=settings, partitions=wanted) for table in tables}


def sink_ddl(settings: Settings, bootstrap: str, name: str, topic: str, run_name: str) -> str:
    """A Kafka sink table for one topic: key `k` and value `v` as raw bytes (a null `v` → a null value).

    One sink per topic (fed by a filter on the records' topic): the connector's writable `topic`
    metadata column is not offered for a single configured topic.
    """
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": bootstrap,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.partitioner": "fixed" if topic == transaction_topic(settings.cdc.topic_prefix) else "default",
        "sink.delivery-guarantee": settings.cdc.delivery,
        "properties.linger.ms": "20",
        "properties.compression.type": "lz4",
        # the Java client's defaults since Kafka 3.0, stated: a replicated cluster keeps every acked write
        "properties.acks": "all",
        "properties.enable.idempotence": "true",
        **kafka_client.flink_options(settings, "cdc", bootstrap),
    }
    if settings.cdc.delivery == "exactly-once":
        options["sink.transactional-id-prefix"] = f"icetide-cdc-{run_name}-{name}"
        options["properties.transaction.timeout.ms"] = "900000"  # ≤ the broker's max (15 min)
    return f"CREATE TEMPORARY TABLE {name} (\n  `k` BYTES,\n  `v` BYTES\n) WITH (\n  {with_options(options)}\n)"


def flink_config(settings: Settings, checkpoints: str | Path, restore: str | Path | None) -> dict[str, str]:
    """The job's Flink configuration; with S3 storage the `cdc` key's file (`checkpoints.flink_s3_config`)."""
    from streaming.checkpoints import flink_s3_config

    conf = {
        "pipeline.jars": ";".join(p.as_uri() for p in jvm.jars("flink")),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "parallelism.default": str(settings.flink.parallelism),
        "execution.checkpointing.interval": f"{settings.flink.checkpoint_interval_ms}ms",
        "execution.checkpointing.dir": checkpoints.as_uri() if isinstance(checkpoints, Path) else checkpoints,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        "state.backend.type": "hashmap",
        "taskmanager.memory.managed.size": "128m",
        "python.fn-execution.bundle.time": "100",
        # one element per bundle: PyFlink's Java side queues a bundle's results (unbounded) until the bundle
        # ends, so a bundle of many ticks (a --once run's whole plan) held every event in the TaskManager's
        # heap; a serial job's element is one tick, at most cdc.chunk_events events
        "python.fn-execution.bundle.size": "1",
        "pipeline.name": PIPELINE_NAME,
        **flink_s3_config(settings),
    }
    conf.update(remote_config(settings))
    if restore is not None:
        conf["execution.state-recovery.path"] = restore.as_uri() if isinstance(restore, Path) else restore
        conf["execution.state-recovery.ignore-unclaimed-state"] = "true"
    return conf


def remote_config(settings: Settings) -> dict[str, str]:
    """With `flink.address` (host:port of a session cluster's REST endpoint, e.g. `icetide flink up`), the
    job is submitted there (`execution.target: remote`) instead of PyFlink's local mini-cluster; its jars
    go with it (`pipeline.jars`), its Python workers run the cluster's TaskManagers' `python.executable`.
    Checkpoints must then be on storage every TaskManager reaches: a folder of this machine (the cluster of
    `icetide flink up` is local) or the object store. For S3 the cluster's own processes need the S3 file
    system (a Flink file system is configured when a process starts, not by a job): `flink up` with
    `storage.kind: s3` renders it into the cluster's config.yaml (`services/flink_cluster.py`). A cluster
    whose configuration (its REST API's /jobmanager/config) has no or another S3 endpoint is refused."""
    if not settings.flink.address:
        return {}
    from icetide.services.flink_cluster import parse_address

    from streaming.checkpoints import checkpoint_root, on_s3

    host, port = parse_address(settings.flink.address)
    if on_s3(checkpoint_root(settings)):
        _check_cluster_s3(settings)
    return {"execution.target": "remote", "rest.address": host, "rest.port": str(port)}


def _check_cluster_s3(settings: Settings) -> None:
    """ConfigError when the cluster at flink.address cannot reach the checkpoints' object store. An unreachable
    cluster is not judged here: the submission names it."""
    import urllib.error

    from icetide.errors import ConfigError
    from icetide.services.flink_cluster import FlinkCluster, rest_call
    from icetide.storage import s3_endpoint

    from streaming.checkpoints import checkpoint_root

    address = str(settings.flink.address)
    try:
        answer = rest_call(address, "/jobmanager/config", timeout_s=5.0)
    except (OSError, urllib.error.URLError, ValueError):
        return
    endpoint = {item.get("key"): item.get("value") for item in answer}.get("s3.endpoint")
    want = s3_endpoint(settings)
    if endpoint == want:
        return
    origin = f"{settings.source}: " if settings.source != "<defaults>" else ""
    found = "no S3 file system configured" if endpoint is None else f"s3.endpoint {endpoint}, not {want}"
    config_file = FlinkCluster(settings.state_dir).config_file
    raise ConfigError(f"{origin}setting 'flink.address': the Flink cluster at {address} has {found} in its "
                      f"config.yaml (`icetide flink up` writes {config_file}), so it cannot keep the checkpoints "
                      f"under {checkpoint_root(settings)}: restart it with the same storage settings (`icetide "
                      "flink down`, `icetide flink up`), or set 'flink.checkpoint_dir' to a file:// URI every "
                      "TaskManager reaches")


def execution_environment(settings: Settings, config: Any) -> Any:
    """PyFlink's local mini-cluster, or with `flink.address` an environment that submits to that cluster.

    `get_execution_environment` outside `flink run` always builds a `LocalStreamEnvironment`, which resets
    `execution.target` to `local`; the Java environment built from the configuration itself picks its
    executor from `execution.target` (`remote`: flink-clients' `RemoteExecutor`, a REST client)."""
    from pyflink.datastream import StreamExecutionEnvironment

    if not settings.flink.address:
        return StreamExecutionEnvironment.get_execution_environment(config)
    from pyflink.java_gateway import get_gateway

    j_env_class = get_gateway().jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
    return StreamExecutionEnvironment(j_env_class(config._j_configuration))


def load_file_system_plugins(config: Any) -> None:
    """Register the file systems of FLINK_PLUGINS_DIR (S3) with `config` in the gateway JVM: the local
    mini-cluster PyFlink runs does not load plugins itself, a Flink cluster's processes do at start."""
    from pyflink.java_gateway import get_gateway

    jvm_view = get_gateway().jvm
    j_config = config._j_configuration
    plugins = jvm_view.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(j_config)
    jvm_view.org.apache.flink.core.fs.FileSystem.initialize(j_config, plugins)


MAX_ROUNDS = 5  # --once: jobs run at most, should the snapshot summaries underestimate a table's work


def run_job(options: JobOptions, bootstrap: str) -> dict[str, Any]:
    """The job, until interrupted; with --once, until every table reached the snapshot current when the run
    began: a bounded job fed by `once.ticks`, and another from the stored positions while a table is behind."""
    from streaming import once

    if not options.once:
        return build_and_run(options, bootstrap)
    settings = options.settings
    options.lanes = options.lanes or lanes_of(settings, list(options.tables), bootstrap)
    summary: dict[str, Any] | None = None
    for round_no in range(1, MAX_ROUNDS + 1):
        work = once.plan(settings, list(options.tables), options.seed_positions, options.start,
                         options.key_fields, parallel=bool(options.lanes))
        result = build_and_run(options, bootstrap, once.ticks(work))
        summary = result if summary is None else merged(summary, result)
        summary["rounds"] = round_no
        positions = {t: p for t, p in read_positions(settings).items() if t in options.tables}
        late = once.behind(settings, work, positions, options.key_fields)
        if not late:
            return summary
        log.warning("cdc run --once: %s not yet at the snapshot current when the run began (its snapshot summaries "
                    "underestimate the work): round %d", ", ".join(late), round_no + 1)
        options.seed_positions = positions
        _next_round(Path(options.run_dir), round_no)
    raise IcetideError(f"cdc run --once: {', '.join(late)} still behind after {MAX_ROUNDS} rounds; run it again "
                       f"(it resumes from {cdc_dir(settings) / 'positions.json'})")


def _next_round(run_dir: Path, round_no: int) -> None:
    """Counters of a finished round out of the next one's way: its summaries are merged already, its progress
    files stay counted under another name (the bar adds every file)."""
    for path in (run_dir / "summary").glob("*.json"):
        path.unlink()
    for path in (run_dir / "progress").glob("*.json"):
        path.rename(path.with_name(f"{path.stem}.round{round_no}.json"))


def merged(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two rounds' summaries as one run's."""
    tables: dict[str, Any] = {}
    for name in {**first["tables"], **then["tables"]}:
        a = first["tables"].get(name, {})
        b = then["tables"].get(name, {})
        tables[name] = {
            "events": a.get("events", 0) + b.get("events", 0),
            "by_op": dict(Counter(a.get("by_op", {})) + Counter(b.get("by_op", {}))),
            "last_snapshot": b.get("last_snapshot") or a.get("last_snapshot"),
            "busy_s": round((a.get("busy_s") or 0) + (b.get("busy_s") or 0), 3),
            "schema_changes": a.get("schema_changes", 0) + b.get("schema_changes", 0),
            "tombstones": a.get("tombstones", 0) + b.get("tombstones", 0),
        }
    duration = first["duration_s"] + then["duration_s"]
    total = first["events"] + then["events"]
    return {**first, "events": total, "tables": tables, "duration_s": round(duration, 2),
            "submit_s": round(first["submit_s"] + then["submit_s"], 2),
            "events_per_s": round(total / duration, 1) if duration > 0 else None}


def build_and_run(options: JobOptions, bootstrap: str, once_ticks: list[str] | None = None) -> dict[str, Any]:
    """Build the job, run it (to the end with --once, fed `once_ticks`; until interrupted otherwise), summarize."""
    settings = options.settings
    from pyflink.common import Configuration
    from pyflink.common.typeinfo import Types
    from pyflink.table import StreamTableEnvironment

    from streaming.checkpoints import latest_checkpoint, on_s3, plugins_dir, tables_dir

    # one checkpoint folder per set of tables: a job restores only a checkpoint of the same job
    checkpoints = tables_dir(settings, options.tables)
    restore = options.from_savepoint or (None if options.once else latest_checkpoint(settings, checkpoints))
    extra: dict[str, str] = {}
    if on_s3(checkpoints):  # read by the gateway JVM when it starts (below)
        import pyflink

        # without FLINK_HOME, PyFlink sets FLINK_PLUGINS_DIR to its own plugins folder (no S3 file system)
        extra = {"FLINK_HOME": os.environ.get("FLINK_HOME") or os.path.dirname(os.path.abspath(pyflink.__file__)),
                 "FLINK_PLUGINS_DIR": str(plugins_dir())}
    reporter: dict[str, str] = {}
    if settings.monitoring.enabled:  # Flink's own metrics (JobManager, TaskManager, operators) for Prometheus
        from icetide.services.monitoring import Monitoring

        gateway_env, reporter = Monitoring().flink_reporter(settings.state_dir, f"cdc-{os.getpid()}")
        extra.update(gateway_env)
    with jvm.gateway_launch(extra):  # PyFlink starts its gateway JVM (on first use) from JAVA_HOME
        config = Configuration()
    for key, value in {**flink_config(settings, checkpoints, restore), **reporter}.items():
        config.set_string(key, value)
    started = time.monotonic()
    env = execution_environment(settings, config)
    if on_s3(checkpoints):
        load_file_system_plugins(config)
    t_env = StreamTableEnvironment.create(env)
    tables = list(options.tables)
    options.lanes = options.lanes or lanes_of(settings, tables, bootstrap)
    if options.once:
        names = env.from_collection(once_ticks or tables, type_info=Types.STRING())
    else:
        rate = max(1, round(1 / max(settings.cdc.poll_interval_s, 0.001)))
        t_env.execute_sql(
            "CREATE TEMPORARY TABLE cdc_ticks (n INT) WITH ('connector' = 'datagen', "
            f"'rows-per-second' = '{int(rate)}', 'fields.n.min' = '0', 'fields.n.max' = '9')"
        )
        ticks = t_env.to_data_stream(t_env.from_path("cdc_ticks"))
        names = ticks.flat_map(lambda _tick: iter(tables), output_type=Types.STRING()).uid("cdc-tables")
    if options.lanes:
        from streaming.parallel_job import build

        records = build(options, names)
    else:
        records = (names.key_by(lambda name: name, key_type=Types.STRING())
                   .process(_publish_function(options), output_type=flink_row_type())
                   .uid("cdc-publish").name("publish changes"))
    from pyflink.table.expressions import col, lit

    rows = t_env.from_data_stream(records)
    statements = t_env.create_statement_set()
    topics = [topic_for(settings.cdc.topic_prefix, *table.split(".", 1)) for table in tables]
    if options.policy_file is not None:
        from streaming.audiences import audience_topics, load_compiled

        topics += audience_topics(load_compiled(options.policy_file, settings), settings.cdc.topic_prefix, tables)
    topics.append(schema_topic(settings.cdc.topic_prefix))
    if settings.cdc.transaction_metadata:  # one partition, written with the `fixed` partitioner
        topics.append(transaction_topic(settings.cdc.topic_prefix))
        ensure_topic(bootstrap, topics[-1], settings=settings)
    for index, topic in enumerate(topics):
        sink = f"{SINK_TABLE}_{index}"
        t_env.execute_sql(sink_ddl(settings, bootstrap, sink, topic, Path(options.run_dir).name))
        statements.add_insert(sink, rows.filter(col("topic") == lit(topic)).select(col("k"), col("v")))
    result = statements.execute()
    submitted = time.monotonic() - started
    if options.once:
        result.wait()
    else:
        _wait_interruptibly(result, settings.flink.address)
    return collect_summary(options, submitted, time.monotonic() - started, restore)


def _wait_interruptibly(result: Any, address: str | None = None) -> None:
    """Wait for an unbounded job; SIGINT/SIGTERM cancel it (its last checkpoint is retained).

    `TableResult.wait()` blocks inside a Java call where Python never sees the signal. On a cluster
    (`address`) the job is watched and cancelled through the JobManager's REST API, not the gateway JVM: a
    SIGTERM to the whole process group (a service manager's stop) ends that JVM at once, and the job on the
    cluster would outlive its `cdc run`."""
    import signal

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    from icetide.services.flink_cluster import rest_call, stop_job

    previous = signal.signal(signal.SIGTERM, stop)
    client = result.get_job_client()
    job_id = str(client.get_job_id()) if address else ""  # hex, as the REST API names it
    try:
        while True:
            if address:
                status = str(rest_call(address, f"/jobs/{job_id}")["state"])
            else:
                status = client.get_job_status().result().name
            if status in ("FINISHED", "FAILED", "CANCELED"):
                if status == "FAILED":
                    if address:
                        raise RuntimeError(f"the CDC job {job_id} failed on the Flink cluster at {address}: "
                                           f"see its exceptions at http://{address}/jobs/{job_id}/exceptions")
                    result.wait()  # raises the job's failure
                return
            time.sleep(0.5)
    except KeyboardInterrupt:
        if address:
            stop_job(address, job_id, None)
        else:
            client.cancel().result()
    finally:
        signal.signal(signal.SIGTERM, previous)


def collect_summary(options: JobOptions, submit_s: float, duration_s: float,
                    restored: str | None) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    folder = Path(options.run_dir) / "summary"
    positions: dict[str, str] = {}
    for table in options.tables:
        path = folder / f"{table}.json"
        body = json.loads(path.read_text()) if path.is_file() else {"events": {}, "last_snapshot": None}
        for lane in sorted(folder.glob(f"{table}.lane*.json")):  # parallel derivation: each lane counts its own
            counts = json.loads(lane.read_text())
            body["events"] = dict(Counter(body["events"]) + Counter(counts["events"]))
            for name in ("schema_changes", "tombstones"):
                body[name] = body.get(name, 0) + counts.get(name, 0)
            body["busy_s"] = round(body.get("busy_s", 0) + counts.get("busy_s", 0), 3)
        if "position" in body:
            positions[table] = body["position"]
        tables[table] = {"events": sum(body["events"].values()), "by_op": body["events"],
                         "last_snapshot": body["last_snapshot"], "busy_s": body.get("busy_s"),
                         "schema_changes": body.get("schema_changes", 0), "tombstones": body.get("tombstones", 0)}
    if options.once and positions:
        write_positions(options.settings, positions)
    total = sum(t["events"] for t in tables.values())
    return {
        "events": total,
        "tables": tables,
        "duration_s": round(duration_s, 2),
        "submit_s": round(submit_s, 2),
        "events_per_s": round(total / duration_s, 1) if duration_s > 0 else None,
        "restored_from": restored,
        "delivery": options.settings.cdc.delivery,
        "format": options.settings.cdc.format,
    }
