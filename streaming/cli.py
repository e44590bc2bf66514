"""`icetide cdc run`: start the PyFlink change-stream job (see `streaming/job.py`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from icetide.cli import App, emit
from icetide.errors import ConfigError
from icetide.settings import Settings


def _parse_keys(values: tuple[str, ...]) -> dict[str, list[str]]:
    """`--key sales.vendas=id,region` → {"sales.vendas": ["id", "region"]}."""
    keys: dict[str, list[str]] = {}
    for value in values:
        table, sep, columns = value.partition("=")
        if not sep or not columns:
            raise ConfigError(f"--key {value!r}: expected TABLE=COL[,COL...]")
        keys[table] = [c.strip() for c in columns.split(",") if c.strip()]
    return keys


def _check_start(start: str) -> str:
    kind, sep, value = start.partition(":")
    if start in ("earliest", "latest", "initial"):
        return start
    if sep and kind in ("snapshot", "timestamp") and value.lstrip("-").isdigit():
        return start
    raise ConfigError(f"--start {start!r}: expected earliest, latest, initial, snapshot:<id> or timestamp:<ms>")


def _with_overrides(settings: Settings, fmt: str | None, tombstones: bool | None, delivery: str | None,
                    registry: str | None) -> Settings:
    """Settings with the command-line overrides; `cdc.format: avro` without a registry is a ConfigError."""
    updates = {k: v for k, v in (("format", fmt), ("tombstones", tombstones), ("delivery", delivery),
                                 ("schema_registry_url", registry)) if v is not None}
    cdc = settings.cdc.model_copy(update=updates)
    if cdc.format == "avro" and not cdc.schema_registry_url:
        origin = f"{settings.source}: " if settings.source != "<defaults>" else ""
        raise ConfigError(f"{origin}setting 'cdc.schema_registry_url' is required when cdc.format is avro "
                          "(or pass --schema-registry URL)")
    return settings.model_copy(update={"cdc": cdc})


@click.command()
@click.option("--tables", default=None, help="Comma-separated tables (namespace.table). Default: cdc.tables.")
@click.option("--start", default=None,
              help="Where new tables start: earliest | latest | initial | snapshot:<id> | timestamp:<ms>. "
                   "Default: cdc.start.")
@click.option("--once", is_flag=True, help="Publish everything up to the current snapshots, then exit.")
@click.option("--reset", is_flag=True, help="Ignore stored positions and checkpoints; begin at --start.")
@click.option("--key", "keys", multiple=True, metavar="TABLE=COL[,COL]",
              help="Key columns of a table without identifier fields (repeatable).")
@click.option("--delivery", type=click.Choice(["at-least-once", "exactly-once"]), default=None,
              help="Kafka delivery guarantee. Default: cdc.delivery.")
@click.option("--format", "fmt", type=click.Choice(["json", "connect-json", "avro"]), default=None,
              help="Event encoding of the table topics: Debezium JSON without schemas, connect-json (Kafka "
                   "Connect's JsonConverter with schemas, for Connect sinks), or Avro in the Confluent wire "
                   "format (schemas registered as <topic>-key / <topic>-value). Schema-change and audience "
                   "topics stay JSON; docs/encodings.md. Default: cdc.format.")
@click.option("--tombstones/--no-tombstones", default=None,
              help="Follow each delete of a keyed table with a null-value record (for log compaction; "
                   "keyless tables get none). Default: cdc.tombstones.")
@click.option("--schema-registry", "registry", default=None, metavar="URL",
              help="Confluent-compatible schema registry for --format avro. Default: cdc.schema_registry_url.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus /metrics from the job's worker on this port (0: a free port).")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also publish <prefix>.sec_<user>.<ns>.<table> per audience, filtered and masked by this policy.")
@click.option("--from-savepoint", "savepoint", default=None, metavar="URI",
              help="Restore this savepoint (what `cdc stop --savepoint` printed) instead of the newest checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def run(app: App, tables: str | None, start: str | None, once: bool, reset: bool, keys: tuple[str, ...],
        delivery: str | None, fmt: str | None, tombstones: bool | None, registry: str | None,
        metrics_port: int | None, policy_file: str | None, savepoint: str | None, as_json: bool) -> None:
    """Run the Flink job: Iceberg changelogs → Kafka change events (keyed by row key)."""
    from icetide.stack import kafka_bootstrap

    from streaming.job import JobOptions, cdc_dir, read_positions, run_job

    settings = _with_overrides(app.settings, fmt, tombstones, delivery, registry)
    chosen = [t.strip() for t in tables.split(",")] if tables else list(settings.cdc.tables)
    chosen = [t for t in chosen if t]
    if not chosen or any(t.count(".") != 1 for t in chosen):
        raise ConfigError(f"--tables {tables!r}: expected namespace.table[,namespace.table...]")
    begin = _check_start(start or settings.cdc.start)
    if policy_file is not None:  # fail fast (PolicyError, file:line:col) before Flink starts
        from streaming.audiences import load_compiled

        load_compiled(policy_file, settings)
    if settings.cdc.format == "avro" and settings.cdc.schema_registry_url:  # fail fast: unreachable registry
        from icetide.schema_registry import SchemaRegistryClient

        SchemaRegistryClient(settings.cdc.schema_registry_url).subjects()
    if savepoint is not None and (reset or once):
        raise ConfigError("--from-savepoint restores a continuous job: not with --reset or --once")
    run_dir = cdc_dir(settings) / "runs" / time.strftime("%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    if reset:
        from streaming.checkpoints import drop_checkpoints

        drop_checkpoints(settings)
    options = JobOptions(
        settings=settings, tables=chosen, start=begin, once=once, run_dir=str(run_dir),
        seed_positions={} if reset else {t: p for t, p in read_positions(settings).items() if t in chosen},
        metrics_port=metrics_port, key_fields=_parse_keys(keys),
        policy_file=str(Path(policy_file).resolve()) if policy_file else None, from_savepoint=savepoint,
    )
    from icetide.console import progress
    from icetide.process import results_only_on_stdout

    from streaming import progress as run_progress

    # the bar: --once only (an unbounded job has no total); its estimate reads the catalog, so not with --json
    quiet = as_json or not once
    total = None if quiet else run_progress.estimate(settings, chosen, options.seed_positions, begin,
                                                    options.key_fields)
    # results_only_on_stdout: the JVMs' and Python workers' own output must not break --json
    with (results_only_on_stdout(), progress("publishing changes", total, "events", quiet=quiet) as bar,
          run_progress.watch(options.run_dir, bar)):
        bootstrap = kafka_bootstrap(settings)
        summary: dict[str, Any] = run_job(options, bootstrap)
    _record_lineage(settings, bootstrap, summary)
    lines = [f"{t}: {v['events']} events, last snapshot {v['last_snapshot']}" for t, v in summary["tables"].items()]
    lines.append(f"{summary['events']} events in {summary['duration_s']} s")
    emit(summary, as_json, "\n".join(lines))


def _record_lineage(settings: Any, bootstrap: str, summary: dict[str, Any]) -> None:
    """One run event per table: the Iceberg table → its change topic."""
    from icetide import lineage

    for name in summary["tables"]:
        lineage.emit(settings, "cdc.run", [lineage.table(settings, name)],
                     [lineage.change_topic(settings, bootstrap, name)])


@click.command()
@click.option("--savepoint", is_flag=True,
              help="Stop with a savepoint (for an upgrade: `cdc run --from-savepoint URI` resumes from it).")
@click.option("--json", "as_json", is_flag=True, help="Print the stopped jobs (and savepoints) as JSON.")
@click.pass_obj
def stop(app: App, savepoint: bool, as_json: bool) -> None:
    """Stop the CDC jobs running on the Flink cluster at flink.address (cancel, or stop with a savepoint)."""
    from icetide.services.flink_cluster import running_jobs, stop_job

    from streaming.checkpoints import savepoint_root
    from streaming.job import PIPELINE_NAME

    settings = app.settings
    if not settings.flink.address:
        origin = f"{settings.source}: " if settings.source != "<defaults>" else ""
        raise ConfigError(f"{origin}setting 'flink.address' is not set: `cdc stop` stops jobs on a Flink cluster "
                          "(a job in PyFlink's local mini-cluster stops with its `cdc run` process: Ctrl-C or SIGTERM)")
    target = savepoint_root(settings) if savepoint else None
    stopped = {jid: stop_job(settings.flink.address, jid, target)
               for jid in running_jobs(settings.flink.address, PIPELINE_NAME)}
    lines = [f"{jid}: " + (f"savepoint {where}" if where else "cancelled") for jid, where in stopped.items()]
    emit({"jobs": stopped}, as_json, "\n".join(lines) or "no CDC job was running")
