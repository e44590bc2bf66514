"""`icetide maint …`: table maintenance an operator runs by hand or on a schedule (roadmap iteration 3)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from icetide.cli import emit

from batch.common import format_table, progress, short_name, spark_errors, spark_for, table_ref

TABLE = click.option("--table", "table_name", default="sales.vendas", show_default=True,
                     help="Table (namespace.table).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _log_path(app: Any) -> Path:
    from batch.maint import removal_log_path

    return removal_log_path(app.settings.state_dir)


def _lineage(app: Any, table_name: str, operation: str, result: dict[str, Any]) -> None:
    """One run event of a maintenance job: the table in and out, and an `icetide_maintenance` facet with the
    operation and its figures (numbers only: no file paths)."""
    from icetide import lineage

    figures = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    dataset = lineage.table(app.settings, short_name(table_ref(app.settings, table_name)))
    lineage.emit(app.settings, f"maint.{operation}", [dataset], [dataset],
                 facets={"icetide_maintenance": {"operation": operation, **figures}})


def _mb(value: int) -> str:
    return f"{value / 2**20:,.2f} MiB"


@click.group()
def maint() -> None:
    """Table maintenance: compact, expire, orphans, manifests, stats, exporter, run."""


@maint.command()
@TABLE
@click.option("--strategy", type=click.Choice(["binpack", "sort", "zorder"]), default="binpack",
              show_default=True)
@click.option("--columns", help="Sort / z-order columns, comma separated.")
@click.option("--target-file-mb", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--where", help="Only rewrite files matching this predicate, e.g. \"month = 3\".")
@click.option("--measure", is_flag=True,
              help="Run the benchmark queries (vendas schema) before and after, and compare.")
@JSON
@click.pass_obj
def compact(app: Any, table_name: str, strategy: str, columns: str | None, target_file_mb: int,
            where: str | None, measure: bool, as_json: bool) -> None:
    """Rewrite small data files into fewer, larger ones (rewrite_data_files)."""
    from batch.maint import compact as run

    table = table_ref(app.settings, table_name)
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    spark = spark_for(app.settings, "maint")
    suite_before: dict[str, Any] | None = None
    if measure:
        from batch.bench import run_suite

        with progress(spark, "benchmark before compaction", as_json), spark_errors("benchmark"):
            suite_before = run_suite(spark, table)
    with progress(spark, f"compacting {table_name} ({strategy})", as_json), spark_errors("compaction"):
        result = run(spark, table, strategy, cols, target_file_mb * 2**20, where)
    text = (f"{table_name}: {result['files_before']:,} → {result['files_after']:,} data files "
            f"(−{result['file_reduction']:.1%}), {_mb(result['bytes_before'])} → {_mb(result['bytes_after'])}, "
            f"{result['seconds']:.1f} s")
    if suite_before is not None:
        from batch.bench import run_suite

        with progress(spark, "benchmark after compaction", as_json), spark_errors("benchmark"):
            suite_after = run_suite(spark, table)
        result["queries"] = compare_suites(suite_before, suite_after)
        text += "\n" + format_table(
            ["query", "before s", "after s", "files before", "files after"],
            [[q["name"], q["before_s"], q["after_s"], q["files_before"], q["files_after"]]
             for q in result["queries"]["per_query"]])
        text += (f"\naverage warm median {result['queries']['avg_before_s']:.3f} s → "
                 f"{result['queries']['avg_after_s']:.3f} s")
    _lineage(app, table_name, f"compact.{strategy}", result)
    emit(result, as_json, text)


def compare_suites(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per-query warm medians and files read, before vs after."""
    after_by_name = {q["name"]: q for q in after["queries"]}
    per_query = [{"name": q["name"], "before_s": q["median_s"], "after_s": after_by_name[q["name"]]["median_s"],
                  "files_before": q["files_scanned"], "files_after": after_by_name[q["name"]]["files_scanned"]}
                 for q in before["queries"]]
    return {"avg_before_s": before["avg_median_s"], "avg_after_s": after["avg_median_s"], "per_query": per_query}


@maint.command()
@TABLE
@click.option("--older-than-days", default=7.0, show_default=True, type=click.FloatRange(min=0),
              help="Expire snapshots older than this.")
@click.option("--retain-last", default=1, show_default=True, type=click.IntRange(min=1),
              help="Always keep at least this many snapshots.")
@JSON
@click.pass_obj
def expire(app: Any, table_name: str, older_than_days: float, retain_last: int, as_json: bool) -> None:
    """Expire old snapshots and delete the files only they referenced (logged)."""
    from batch.maint import expire as run

    table = table_ref(app.settings, table_name)
    spark = spark_for(app.settings, "maint")
    with progress(spark, f"expiring snapshots of {table_name}", as_json), spark_errors("expire"):
        result = run(spark, table, older_than_days, retain_last, _log_path(app))
    text = (f"{table_name}: snapshots {result['snapshots_before']} → {result['snapshots_after']}, "
            f"{result['files_removed']} files removed ({_mb(result['bytes_removed'])})")
    _lineage(app, table_name, "expire", result)
    emit(result, as_json, text)


@maint.command()
@TABLE
@click.option("--older-than-days", default=3.0, show_default=True, type=click.FloatRange(min=0),
              help="Only files older than this can be orphans (protects commits in flight).")
@click.option("--remove", is_flag=True, help="Delete them (default: dry run, report only).")
@JSON
@click.pass_obj
def orphans(app: Any, table_name: str, older_than_days: float, remove: bool, as_json: bool) -> None:
    """Find (and with --remove delete) files in the table folder no snapshot references."""
    from batch.maint import orphans as find
    from batch.maint import remove_orphans

    table = table_ref(app.settings, table_name)
    spark = spark_for(app.settings, "maint")
    with progress(spark, f"looking for orphan files of {table_name}", as_json), spark_errors("orphans"):
        if remove:
            result = remove_orphans(spark, table, older_than_days, _log_path(app))
        else:
            result = find(spark, table, older_than_days, dry_run=True)
    verb = "removed" if remove else "found (dry run; --remove deletes them)"
    text = f"{table_name}: {result['files']} orphan files {verb}, {_mb(result['bytes'])}"
    if remove:  # a dry run changes nothing
        _lineage(app, table_name, "orphans", result)
    emit(result, as_json, "\n".join([text, *result["paths"][:20]]))


@maint.command()
@TABLE
@JSON
@click.pass_obj
def manifests(app: Any, table_name: str, as_json: bool) -> None:
    """Rewrite manifests so query planning reads fewer of them."""
    from batch.maint import rewrite_manifests

    table = table_ref(app.settings, table_name)
    with spark_errors("rewrite manifests"):
        result = rewrite_manifests(spark_for(app.settings, "maint"), table)
    _lineage(app, table_name, "manifests", result)
    emit(result, as_json, f"{table_name}: manifests {result['manifests_before']} → {result['manifests_after']}")


@maint.command()
@TABLE
@click.option("--small-file-mb", default=32.0, show_default=True, help="Files below this are 'small'.")
@JSON
@click.pass_obj
def stats(app: Any, table_name: str, small_file_mb: float, as_json: bool) -> None:
    """Table health: files, small-file ratio, rows, bytes, partitions, snapshots, delete files."""
    from batch.stats import table_stats

    table = table_ref(app.settings, table_name)
    with spark_errors("stats"):
        result = table_stats(spark_for(app.settings, "maint"), table, int(small_file_mb * 2**20))
    lines = [
        f"table            {result.table}",
        f"data files       {result.data_files:,} ({result.small_files:,} small, ratio {result.small_file_ratio:.2f})",
        f"delete files     {result.delete_files:,}",
        f"records          {result.records:,}",
        f"bytes            {result.bytes:,} ({_mb(result.bytes)}, avg file {_mb(result.avg_file_bytes)})",
        f"snapshots        {result.snapshots:,}",
        f"manifests        {result.manifests:,}",
        "",
        format_table(["partition", "files", "records", "bytes"],
                     [[p["partition"], p["files"], p["records"], p["bytes"]] for p in result.partitions]),
    ]
    emit(result.as_dict(), as_json, "\n".join(lines))


@maint.command()
@click.option("--table", "table_names", multiple=True, help="Tables to watch (default: every table).")
@click.option("--port", default=0, show_default=True, help="HTTP port for /metrics (0 → a free one).")
@click.option("--interval", default=60.0, show_default=True, help="Seconds between refreshes.")
@click.option("--probe-sla-s", default=30.0, show_default=True,
              help="Time a probe query per table each refresh and hold it to this SLA (0: no probe).")
@click.option("--once", is_flag=True, help="Refresh once, print the exposition text and exit.")
@click.pass_obj
def exporter(app: Any, table_names: tuple[str, ...], port: int, interval: float, probe_sla_s: float,
             once: bool) -> None:
    """Serve table-health gauges (icetide_table_*) and the probe query's time for Prometheus."""
    from icetide.metrics import register_target, serve
    from prometheus_client import generate_latest

    from batch.metrics import health_metrics
    from batch.stats import list_tables, probe_query, table_stats

    spark = spark_for(app.settings, "maint")
    metrics = health_metrics()

    def refresh() -> None:
        with spark_errors("exporter refresh"):
            tables = ([table_ref(app.settings, n) for n in table_names] if table_names
                      else list_tables(spark, app.settings.catalog.name))
            for table in tables:
                stats = table_stats(spark, table)
                metrics.update(stats, time.time())
                if probe_sla_s > 0:
                    metrics.probed(stats.table, probe_query(spark, table), probe_sla_s)

    refresh()
    if once:
        click.echo(generate_latest(metrics.registry).decode())
        return
    _server, bound = serve(metrics.registry, app.settings.metrics.host, port)
    register_target(app.settings.state_dir, "icetide-table-health", app.settings.metrics.host, bound)
    click.echo(f"serving http://{app.settings.metrics.host}:{bound}/metrics (Ctrl-C stops)", err=True)
    while True:
        time.sleep(interval)
        refresh()


@maint.command()
@click.option("--policy", "policy_path", required=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Maintenance policy YAML (see batch/maint_policy.py).")
@click.option("--table", "table_names", multiple=True, help="Only these tables (default: every table).")
@click.option("--dry-run", is_flag=True, help="Say what is due without changing anything.")
@JSON
@click.pass_obj
def run(app: Any, policy_path: Path, table_names: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Apply the maintenance policy to every table: compact, expire, orphans, manifests."""
    from batch.maint_policy import load_policy, run_policy
    from batch.stats import list_tables

    policy = load_policy(policy_path)
    spark = spark_for(app.settings, "maint")
    with progress(spark, "applying maintenance policy", as_json), spark_errors("maintenance run"):
        tables = ([table_ref(app.settings, n) for n in table_names] if table_names
                  else list_tables(spark, app.settings.catalog.name))
        report = run_policy(spark, tables, policy, _log_path(app), dry_run)
    for done in report:
        for operation, result in done["actions"].items():
            if isinstance(result, dict) and not result.get("dry_run"):  # what was done, not what is due
                named = f"compact.{result['strategy']}" if "strategy" in result else operation
                _lineage(app, done["table"], named, result)
    rows = [[r["table"], r["files"], r["small_file_ratio"], ", ".join(r["actions"]) or "-"] for r in report]
    emit(report, as_json, format_table(["table", "files", "small ratio", "actions"], rows))
