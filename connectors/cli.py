"""`icetide cdc apply | status | verify`: the downstream side of the change stream."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click
from icetide import kafka_client
from icetide.cli import App, emit
from icetide.errors import ConfigError, StackError, TransientError
from icetide.settings import Settings
from icetide.stack import kafka_bootstrap

from connectors.base import Sink, TableRef
from connectors.snapshots import DEFAULT_MAX_HELD

SINKS = ("sqlite", "postgres")


def make_sink(settings: Settings, kind: str | None, dsn: str | None = None) -> Sink:
    """The configured sink (imports its driver only when chosen)."""
    kind = kind or settings.sink.kind
    if kind == "sqlite":
        from connectors.sqlite import SqliteConfig, SqliteSink

        return SqliteSink(SqliteConfig(settings.sqlite_path))
    if kind == "postgres":
        from connectors.postgres import PostgresConfig, PostgresSink

        secret = settings.sink.postgres_dsn
        chosen = dsn or (secret.get_secret_value() if secret is not None else None)
        if not chosen:
            raise ConfigError(f"{settings.source}: setting 'sink.postgres_dsn' is required for --sink postgres "
                              "(or pass --dsn)")
        return PostgresSink(PostgresConfig(chosen))
    raise ConfigError(f"unknown sink {kind!r} (choose from {', '.join(SINKS)})")


sink_option = click.option("--sink", "sink_kind", type=click.Choice(SINKS), default=None,
                           help="Downstream database (default: setting sink.kind).")
dsn_option = click.option("--dsn", default=None, help="PostgreSQL DSN (default: setting sink.postgres_dsn).")


@click.command()
@sink_option
@dsn_option
@click.option("--once", is_flag=True, help="Apply what exists now (end offsets at start), then exit.")
@click.option("--topics", default=None, help="Comma-separated topics (default: all matching --pattern).")
@click.option("--pattern", default=None,
              help=r"Topic regex (default: ^<cdc.topic_prefix>\.). Audience topics never match without --audience.")
@click.option("--audience", default=None, metavar="USER",
              help="Apply policy user USER's audience topics (<prefix>.sec_USER.<ns>.<table>, published by "
                   "`cdc run --policy`) into tables of namespace sec_USER__<ns>, never into the base tables.")
@click.option("--batch-size", type=int, default=None, help="Records per poll (default: setting sink.batch_size).")
@click.option("--idle-timeout", type=float, default=30.0, show_default=True,
              help="--once: give up (exit 1) after this many seconds without records "
                   "(time spent waiting for an unavailable sink does not count).")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus /metrics on this port (0 = a free one; default: setting metrics.port).")
@click.option("--schema-registry", "registry", default=None,
              help="Confluent-compatible schema registry URL, for Avro-encoded events "
                   "(default: setting cdc.schema_registry_url).")
@click.option("--snapshot-consistent", is_flag=True,
              help="Commit each Iceberg snapshot of a table in one downstream transaction, never part of one "
                   "(needs cdc.transaction_metadata on the job; events wait in memory for their snapshot's END).")
@click.option("--max-held-events", type=click.IntRange(min=1), default=DEFAULT_MAX_HELD, show_default=True,
              help="--snapshot-consistent: most events held in memory; a larger snapshot stops the consumer.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Consumer processes of one group under a supervisor that restarts a worker that dies and "
                   "stops them all on SIGTERM (useful up to one per partition); worker i serves its metrics "
                   "on --metrics-port + i.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def apply(app: App, sink_kind: str | None, dsn: str | None, once: bool, topics: str | None, pattern: str | None,
          audience: str | None, batch_size: int | None, idle_timeout: float, metrics_port: int | None,
          registry: str | None, snapshot_consistent: bool, max_held_events: int, workers: int,
          as_json: bool) -> None:
    """Consume change events and apply them downstream, exactly once in effect.

    A database that is full, away or out of connections is waited for (back-off, retried without
    end, gauge icetide_cdc_sink_retrying), never a reason to dead-letter or exit. With
    --snapshot-consistent, readers of the downstream database only ever see states the source
    table had: whole snapshots, each committed in one transaction."""
    if workers > 1:
        _supervise(workers, metrics_port, once, as_json)
        return
    from icetide.metrics import register_target, serve

    from connectors.consumer import ChangeConsumer, ConsumeOptions, run_consumer
    from connectors.metrics import ConsumerMetrics
    from connectors.topics import check_user

    settings = app.settings
    sink = make_sink(settings, sink_kind, dsn)
    bootstrap = kafka_bootstrap(settings)
    options = ConsumeOptions(topics=[t.strip() for t in topics.split(",") if t.strip()] if topics else None,
                             pattern=pattern, audience=check_user(audience) if audience is not None else None,
                             once=once, idle_timeout_s=idle_timeout, batch_size=batch_size,
                             schema_registry_url=registry or settings.cdc.schema_registry_url,
                             snapshot_consistent=snapshot_consistent, max_held_events=max_held_events)
    metrics = ConsumerMetrics()
    port = metrics_port if metrics_port is not None else (settings.metrics.port or None)
    if port is not None:
        _server, bound = serve(metrics.registry, settings.metrics.host, port)
        register_target(settings.state_dir, "icetide-consumer", settings.metrics.host, bound,
                        labels={"group": settings.sink.group_id})
        click.echo(f"metrics on http://{settings.metrics.host}:{bound}/metrics", err=True)

    def install_signals(consumer: ChangeConsumer) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: consumer.stop.set())

    if once:
        from icetide.console import progress

        with progress("applying the lag", unit="records", quiet=as_json) as bar:
            summary = run_consumer(settings, sink, bootstrap, options, metrics, on_start=install_signals, bar=bar)
    else:
        summary = run_consumer(settings, sink, bootstrap, options, metrics, on_start=install_signals)
    with make_sink(settings, sink_kind, dsn) as reader:
        positions = reader.positions()
    data = {"sink": sink.kind, **summary.to_dict(positions)}
    _record_lineage(settings, bootstrap, data["tables"])
    p50 = data["commit_to_apply_p50_s"]
    text = (f"applied {data['applied']} events ({data['skipped']} duplicates skipped, "
            f"{data['replayed']} of them re-published by the producer, "
            f"{data['dead_letters']} dead-lettered) in {data['seconds']} s"
            + (f"; {data['held']} held back (snapshot not whole yet)" if data["held"] else "")
            + (f"; commit→apply p50 {p50} s" if p50 is not None else ""))
    emit(data, as_json, text)
    if once and not summary.caught_up:
        raise TransientError("--once stopped before reaching the end offsets that existed at start "
                             "(no records or no partition assignment in time); run it again")


def _supervise(workers: int, metrics_port: int | None, once: bool, as_json: bool) -> None:
    """`--workers N`: this command line again in N worker processes (connectors/workers.py)."""
    import threading

    from connectors.workers import strip_options, supervise

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    base = strip_options(sys.argv[1:], {"--workers": 1, "--metrics-port": 1, "--json": 0})
    data = supervise(base, workers, metrics_port, stop=stop)
    text = (f"{workers} workers applied {data['applied']} events ({data['skipped']} duplicates skipped, "
            f"{data['dead_letters']} dead-lettered), {data['restarts']} restarts")
    emit(data, as_json, text)
    if not data["ok"]:
        sys.exit(f"workers {data['failed_workers']} failed")
    if once and not data["caught_up"]:
        raise TransientError("--once stopped before reaching the end offsets that existed at start; run it again")


@click.command()
@sink_option
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print the positions as JSON.")
@click.pass_obj
def status(app: App, sink_kind: str | None, dsn: str | None, as_json: bool) -> None:
    """Show the applied position per topic and partition (as stored in the sink), and the lag."""
    settings = app.settings
    with make_sink(settings, sink_kind, dsn) as sink:
        positions = sink.positions()
    ends = _end_offsets(settings, sorted({t for t, _ in positions}))
    rows = []
    for (topic, part), off in sorted(positions.items()):
        end = ends.get((topic, part))
        rows.append({"topic": topic, "partition": part, "applied_offset": off, "end_offset": end,
                     "lag": None if end is None else max(0, end - off - 1)})
    text = "\n".join(f"{r['topic']}[{r['partition']}]  applied {r['applied_offset']}  lag {r['lag']}"
                     for r in rows) or "nothing applied yet"
    emit({"sink": sink.kind, "positions": rows}, as_json, text)


def _end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """End offsets per partition, or {} if Kafka cannot be reached (status still answers)."""
    if not topics:
        return {}
    try:
        bootstrap = kafka_bootstrap(settings)
    except StackError:
        return {}
    from confluent_kafka import KafkaException, TopicPartition

    consumer = kafka_client.consumer(settings, "apply", bootstrap, {"group.id": "icetide-status"})
    out: dict[tuple[str, int], int] = {}
    try:
        meta = consumer.list_topics(timeout=5)
        for topic in topics:
            for part in getattr(meta.topics.get(topic), "partitions", {}):
                out[(topic, part)] = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=5)[1]
    except KafkaException:
        return {}
    finally:
        consumer.close()
    return out


@click.command()
@click.option("--table", "table_name", required=True, help="Source table, namespace.table (e.g. sales.vendas).")
@sink_option
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print both digests as JSON.")
@click.pass_obj
def verify(app: App, table_name: str, sink_kind: str | None, dsn: str | None, as_json: bool) -> None:
    """Compare the downstream copy with the Iceberg table: row count and content checksum.

    Values compare typed by the table's current schema: a downstream column of another type (text
    where the source has a decimal, a date, ...) makes the copy DIFFERENT, and the output names it."""
    import uuid

    from icetide.catalog import pyiceberg_catalog
    from icetide.digest import digest
    from icetide.rowschema import RowSchema

    settings = app.settings
    namespace, _, name = table_name.rpartition(".")
    if not namespace:
        raise ConfigError(f"--table must be namespace.table, got {table_name!r}")
    table = pyiceberg_catalog(settings, "cdc").load_table(table_name)
    schema = RowSchema.from_iceberg(table.schema())
    source_rows: list[dict[str, Any]] = table.scan().to_arrow().to_pylist()
    for column in [c.name for c in schema.columns if c.type == "uuid"]:  # Arrow may read uuids as 16 bytes
        for row in source_rows:
            if isinstance(row.get(column), bytes):
                row[column] = uuid.UUID(bytes=row[column])
    ref: TableRef = (namespace, name)
    with make_sink(settings, sink_kind, dsn) as sink:
        downstream_rows = sink.read_rows(ref)
    src, dst = digest(source_rows, schema=schema), digest(downstream_rows, schema=schema)
    equal = src == dst
    data = {"table": table_name, "sink": sink.kind, "source": src.to_dict(), "downstream": dst.to_dict(),
            "equal": equal}
    kinds = {c.name: c.type for c in schema.columns}
    wrong = "".join(f"\ndownstream column {c}: {what} (source: {kinds[c]})" for c, what in dst.mismatches.items())
    emit(data, as_json, f"source {src.rows} rows {src.checksum}\ndownstream {dst.rows} rows {dst.checksum}{wrong}\n"
                        f"{'EQUAL' if equal else 'DIFFERENT'}")
    if not equal:
        sys.exit(1)


def _record_lineage(settings: Any, bootstrap: str, tables: dict[str, Any]) -> None:
    """One run event per downstream table this run applied to: its change topic → the table."""
    from icetide import lineage

    for name in tables:
        lineage.emit(settings, "cdc.apply", [lineage.change_topic(settings, bootstrap, name)],
                     [lineage.downstream(settings, name)])
