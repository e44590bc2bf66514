"""`icetide batch …`: lakehouse batch jobs on the configured catalog (roadmap iterations 1–2).

Each command starts the Spark session only when it runs (never for --help).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from icetide.cli import emit

from batch.common import format_table, progress, render, spark_errors, spark_for, table_ref, to_jsonable


@click.group()
def batch() -> None:
    """Lakehouse batch jobs: generate, bench, merge, time travel, schema evolution."""


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True,
              help="Target table (namespace.table); created if missing.")
@click.option("--rows", type=click.IntRange(min=1), required=True, help="Rows to append.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed + same ids → same rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def generate(app: Any, table_name: str, rows: int, seed: int, as_json: bool) -> None:
    """Append N generated sales rows (one new snapshot; sale ids continue after the current max)."""
    from batch.generate import generate as run

    table = table_ref(app.settings, table_name)
    spark = spark_for(app.settings)
    with progress(spark, f"generating {rows:,} rows into {table.db}.{table.name}", as_json), spark_errors("generate"):
        result = run(spark, table, rows, seed)
    from icetide import lineage

    name = f"{table.db}.{table.name}"
    lineage.emit(app.settings, "batch.generate", [],
                 [lineage.table(app.settings, name, lineage.spark_fields(spark.table(render(table)).schema))])
    text = (
        f"{result.table}: wrote {result.rows:,} rows (sale_id {result.first_sale_id}…{result.last_sale_id}) "
        f"in {result.seconds:.2f} s = {result.rows_per_s:,.0f} rows/s; snapshot {result.snapshot_id}"
        + (" (table created)" if result.created else "")
    )
    emit(result.as_dict(), as_json, text)


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def snapshots(app: Any, table_name: str, as_json: bool) -> None:
    """List the table's snapshots (oldest first) with operation and record counts."""
    from batch.timetravel import snapshots as list_snapshots

    _emit_rows(app, table_name, as_json, list_snapshots, "listing snapshots",
               ["committed_at", "snapshot_id", "operation", "total_records", "added_records", "current_ancestor"])


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def history(app: Any, table_name: str, as_json: bool) -> None:
    """Show when each snapshot became the table's current state."""
    from batch.timetravel import history as table_history

    _emit_rows(app, table_name, as_json, table_history, "reading history",
               ["made_current_at", "snapshot_id", "parent_id", "is_current_ancestor"])


def _emit_rows(app: Any, table_name: str, as_json: bool, read: Callable[[Any, Any], list[dict[str, Any]]],
               doing: str, columns: list[str]) -> None:
    """Read rows about a table with Spark and print them as JSON or as a table of `columns`."""
    table = table_ref(app.settings, table_name)
    with spark_errors(doing):
        rows = read(spark_for(app.settings), table)
    emit(rows, as_json, format_table(columns, [[r[c] for c in columns] for r in rows]))


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True)
@click.option("--version", "version", type=int, help="Snapshot id (VERSION AS OF).")
@click.option("--timestamp", "timestamp", help="Point in time, ISO 8601, UTC if no zone (TIMESTAMP AS OF).")
@click.option("--where", help="Optional filter (a Spark SQL predicate) for the row count.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=0), help="Rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def travel(app: Any, table_name: str, version: int | None, timestamp: str | None, where: str | None,
           limit: int, as_json: bool) -> None:
    """Read the table as it was at a snapshot or a point in time (row count and first rows)."""
    from batch.timetravel import count_as_of, parse_timestamp, read_as_of

    table = table_ref(app.settings, table_name)
    stamp = parse_timestamp(timestamp) if timestamp else None
    spark = spark_for(app.settings)
    with spark_errors("time travel read"):
        count = count_as_of(spark, table, version, stamp, where)
        columns, rows = read_as_of(spark, table, version, stamp, limit)
    data = {"table": table_name, "version": version, "timestamp": stamp, "where": where, "rows": count,
            "sample": [{c: to_jsonable(v) for c, v in zip(columns, r, strict=True)} for r in rows]}
    at = f"snapshot {version}" if version is not None else f"time {stamp}"
    emit(data, as_json, f"{table_name} as of {at}: {count:,} rows\n" + format_table(columns, rows))


@batch.command()
@click.option("--target", required=True, help="Table to upsert into (namespace.table).")
@click.option("--source", required=True, help="Table with the new and changed rows.")
@click.option("--key", "keys", required=True, multiple=True, help="Key column (repeat for composite keys).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def merge(app: Any, target: str, source: str, keys: tuple[str, ...], as_json: bool) -> None:
    """Upsert SOURCE into TARGET by key with MERGE INTO (matched → update, new → insert)."""
    from batch.merge import upsert

    target_table, source_table = table_ref(app.settings, target), table_ref(app.settings, source)
    spark = spark_for(app.settings)
    with progress(spark, f"merging {source} into {target}", as_json), spark_errors("merge"):
        result = upsert(spark, target_table, source_table, list(keys))
    from icetide import lineage

    lineage.emit(app.settings, "batch.merge",
                 [lineage.table(app.settings, source, lineage.spark_fields(spark.table(render(source_table)).schema))],
                 [lineage.table(app.settings, target)])
    text = (f"{result.target}: {result.rows_before:,} → {result.rows_after:,} rows "
            f"({result.updated:,} updated, {result.inserted:,} inserted) in {result.seconds:.2f} s")
    emit(result.as_dict(), as_json, text)


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True)
@click.option("--add", "add", nargs=2, metavar="NAME TYPE", help="Add a column (old rows read NULL).")
@click.option("--rename", "rename", nargs=2, metavar="OLD NEW", help="Rename a column.")
@click.option("--widen", "widen", nargs=2, metavar="NAME TYPE",
              help="Widen a column type (int→bigint, float→double, decimal precision up).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def evolve(app: Any, table_name: str, add: tuple[str, str] | None, rename: tuple[str, str] | None,
           widen: tuple[str, str] | None, as_json: bool) -> None:
    """Change the table's schema in place (metadata only; old snapshots stay readable)."""
    from batch.evolve import evolve as run

    chosen = [(a, v) for a, v in (("add", add), ("rename", rename), ("widen", widen)) if v]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --add, --rename, --widen")
    action, args = chosen[0]
    table = table_ref(app.settings, table_name)
    with spark_errors(f"schema change ({action})"):
        result = run(spark_for(app.settings), table, action, list(args))
    text = result["statement"] + "\n" + format_table(["column", "type"], list(result["columns"].items()))
    emit(result, as_json, text)


@batch.command()
@click.argument("query")
@click.option("--slow-ms", default=1000.0, show_default=True, help="Log the query if slower than this.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def analyze(app: Any, query: str, slow_ms: float, as_json: bool) -> None:
    """Run QUERY and report its time, rows and data files read vs total (pruning efficiency).

    Queries slower than --slow-ms are appended to <state_dir>/batch/slow-queries.jsonl.
    """
    from batch.stats import analyze as run

    log_path = app.settings.state_dir / "batch" / "slow-queries.jsonl"
    with spark_errors("query"):
        report = run(spark_for(app.settings), query, "query", slow_ms / 1000, log_path)
    pruned = "n/a (no Iceberg scan)" if report.pruning is None else f"{report.pruning:.0%} of files pruned"
    text = (f"{report.seconds:.3f} s, {report.rows} rows, {report.files_scanned} of {report.files_total} "
            f"data files read ({pruned})" + (f"; slow → logged to {log_path}" if report.slow else ""))
    emit(report.as_dict(), as_json, text)


def _sizes(text: str | None) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",")] if text else []
    except ValueError:
        raise click.BadParameter(f"--sizes wants comma-separated row counts, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise click.BadParameter("--sizes must be positive")
    return sizes


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True,
              help="Sales table to query (with --sizes: its namespace, tables vendas_<N>).")
@click.option("--sizes", help="Load test: comma-separated row counts, e.g. 100000,500000,1000000.")
@click.option("--runs", default=3, show_default=True, type=click.IntRange(min=1), help="Timed runs per query.")
@click.option("--queries", "query_names", help="Comma-separated subset of the ten queries.")
@click.option("--seed", default=42, show_default=True)
@click.option("--out", "out_dir", default="docs/results", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the JSON/Markdown/PNG go.")
@click.option("--name", "stem", default="batch-bench", show_default=True, help="Report file name stem.")
@click.option("--json", "as_json", is_flag=True, help="Print the results JSON.")
@click.pass_obj
def bench(app: Any, table_name: str, sizes: str | None, runs: int, query_names: str | None, seed: int,
          out_dir: Path, stem: str, as_json: bool) -> None:
    """Ten analyst queries: warm medians and files read vs total, written as JSON + Markdown + a PNG chart."""
    from icetide.console import Bar
    from icetide.console import progress as console_progress
    from sqlglot import exp

    from batch.bench import QUERIES, environment, run_suite
    from batch.generate import generate as run_generate
    from batch.generate import table_exists
    from batch.report import write_report
    from batch.stats import table_stats

    names = [n.strip() for n in query_names.split(",")] if query_names else None
    unknown = [n for n in names or [] if n not in QUERIES]
    if unknown:
        raise click.BadParameter(f"unknown queries {unknown}; known: {', '.join(QUERIES)}")
    base = table_ref(app.settings, table_name)
    spark = spark_for(app.settings)
    targets: list[exp.Table] = []
    with spark_errors("benchmark"):
        for size in _sizes(sizes):
            table = base.copy()
            table.set("this", exp.to_identifier(f"vendas_{size}"))
            have = table_stats(spark, table).records if table_exists(spark, table) else 0
            if have < size:
                with progress(spark, f"generating {size - have:,} rows into {table.db}.{table.name}", as_json):
                    run_generate(spark, table, size - have, seed)
            targets.append(table)
        results = []
        for table in targets or [base]:
            with console_progress(f"{table.name}: analyst queries", unit="queries", quiet=as_json) as bar:
                def note(_name: str, i: int, n: int, bar: Bar = bar) -> None:
                    bar.update(completed=i - 1, total=n)

                results.append(run_suite(spark, table, runs, names, note))
                bar.update(completed=len(results[-1]["queries"]))
    command = f"icetide batch bench --table {table_name} --runs {runs} --out {out_dir}"
    command += (f" --sizes {sizes}" if sizes else "") + (f" --queries {query_names}" if query_names else "")
    payload = {"runs": runs, "environment": environment(spark), "results": results, "command": command}
    paths = write_report(payload, out_dir, stem)
    payload["files"] = paths
    text = "\n".join(
        f"{r['table']}: {r['records']:,} rows, {r['data_files']} files, avg warm median {r['avg_median_s']:.3f} s"
        for r in results
    ) + f"\nreport: {paths['markdown']}"
    emit(payload, as_json, text)
