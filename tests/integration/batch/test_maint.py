"""Maintenance on real Spark: compaction, expiry and orphans beside a concurrent writer, stats, policy run."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from batch.common import metadata_table, render, table_ref
from batch.generate import create_vendas, generate, vendas_rows
from batch.maint import expire, remove_orphans
from batch.maint_cli import maint
from batch.metrics import health_metrics
from batch.stats import analyze, table_stats
from icetide.cli import App
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlglot import exp

    from icetide.settings import Settings

pytestmark = pytest.mark.integration


def run_json(args: list[str], settings: Settings) -> Any:
    result = CliRunner().invoke(maint, [*args, "--json"], obj=App(config_path=None, _settings=settings))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def maintenance_runs(settings: Settings, name: str) -> list[dict[str, Any]]:
    """The lineage events of maintenance runs on `name` (a table → itself), with their facet."""
    from icetide.lineage import events_path, read_events

    dataset = {"namespace": settings.warehouse, "name": name}
    return [e for e in read_events(events_path(settings.state_dir)) if e["job"]["name"].startswith("maint.")
            and [{k: d[k] for k in dataset} for d in e["inputs"]] == [dataset] == [
                {k: d[k] for k in dataset} for d in e["outputs"]]]


def fragmented(spark: SparkSession, table: exp.Table, rows: int, tasks: int) -> None:
    """One append by `tasks` unclustered tasks of the January/February rows: ≈ tasks × 2 small files."""
    create_vendas(spark, table)
    (vendas_rows(spark, rows, 1, 42).where("month <= 2").repartition(tasks).writeTo(render(table))
     .option("distribution-mode", "none").option("fanout-enabled", "true").append())


def digest(spark: SparkSession, table: exp.Table) -> Any:
    return spark.sql(f"SELECT count(*), bit_xor(xxhash64(sale_id, price, region)) FROM {render(table)}"
                     ).first()


def live_paths(spark: SparkSession, table: exp.Table) -> list[str]:
    return [urlparse(r[0]).path for r in spark.sql(f"SELECT file_path FROM {metadata_table(table, 'files')}"
                                                   ).collect()]


def test_compaction_cuts_small_files_by_95_percent(spark: SparkSession, base_settings: Settings) -> None:
    name = fresh_table_name("frag")
    table = table_ref(base_settings, name)
    fragmented(spark, table, rows=2400, tasks=20)
    before_digest = digest(spark, table)
    month_query = f"SELECT sum(quantity) FROM {render(table)} WHERE month = 2"  # count(*) is answered from metadata
    before_query = analyze(spark, month_query)

    result = run_json(["compact", "--table", name, "--target-file-mb", "64"], base_settings)
    assert result["files_before"] == 40
    assert result["file_reduction"] >= 0.95
    assert result["files_after"] == 2  # one per (year, month) partition
    assert digest(spark, table) == before_digest
    [run] = maintenance_runs(base_settings, name)
    facet = run["run"]["facets"]["icetide_maintenance"]
    assert run["job"]["name"] == "maint.compact.binpack" and facet["operation"] == "compact.binpack"
    assert (facet["files_before"], facet["files_after"]) == (40, 2)

    after_query = analyze(spark, month_query)
    assert (after_query.files_scanned, after_query.files_total) == (1, 2)
    assert (before_query.files_scanned, before_query.files_total) == (20, 40)

    stats = table_stats(spark, table)
    records = result["records"]
    assert 300 < records < 500  # ~2/12 of 2,400 rows
    assert (stats.data_files, stats.records, len(stats.partitions)) == (2, records, 2)
    assert stats.snapshots >= 2 and stats.delete_files == 0  # partial progress: one commit per group batch
    metrics = health_metrics()
    metrics.update(stats, time.time())
    text = generate_latest(metrics.registry).decode()
    assert f'icetide_table_data_files{{table="{stats.table}"}} 2.0' in text


def test_expire_and_orphans_never_remove_live_files_under_a_concurrent_writer(
    spark: SparkSession, base_settings: Settings, tmp_path: Path
) -> None:
    table = table_ref(base_settings, fresh_table_name("lifecycle"))
    for _ in range(2):
        generate(spark, table, rows=50)
    spark.sql(f"DELETE FROM {render(table)} WHERE sale_id <= 10")  # copy-on-write: old files now unreferenced
    data_dir = Path(live_paths(spark, table)[0]).parents[2]  # …/data/year=…/month=…/file
    planted = data_dir / "not-referenced.parquet"
    planted.write_bytes(b"orphan" * 100)
    old = time.time() - 10 * 86400
    os.utime(planted, (old, old))
    log = tmp_path / "removed.jsonl"

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(3):
                generate(spark, table, rows=50)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    expired = expire(spark, table, older_than_days=0, retain_last=1, log_path=log)
    removed = remove_orphans(spark, table, older_than_days=3, log_path=log)
    thread.join(timeout=300)
    assert not errors and not thread.is_alive()

    assert spark.table(render(table)).count() == 240
    assert all(Path(p).exists() for p in live_paths(spark, table))
    assert removed["paths"] == [planted.as_uri()] or [urlparse(p).path for p in removed["paths"]] == [
        str(planted)]
    assert not planted.exists()
    assert expired["files_removed"] >= 1
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["job"] for e in entries} == {"expire", "orphans"}
    assert any(e["bytes"] == 600 for e in entries if e["job"] == "orphans")

    dry = run_json(["orphans", "--table", f"{table.db}.{table.name}"], base_settings)
    assert dry["dry_run"] and dry["files"] == 0
    manifests = run_json(["manifests", "--table", f"{table.db}.{table.name}"], base_settings)
    assert manifests["manifests_after"] <= manifests["manifests_before"]
    assert spark.table(render(table)).count() == 240


def test_policy_run_compacts_fragmented_tables(spark: SparkSession, base_settings: Settings,
                                               tmp_path: Path) -> None:
    name = fresh_table_name("policy")
    table = table_ref(base_settings, name)
    fragmented(spark, table, rows=600, tasks=6)
    policy = tmp_path / "maintenance.yaml"
    policy.write_text(
        "defaults:\n"
        "  compact: {min_files: 1000, min_small_file_ratio: 0.5}\n"
        "  expire: {older_than_days: 7, retain_last: 2}\n"
        "  orphans: {older_than_days: 3}\n"
        "tables:\n"
        f"  {name}:\n"
        "    compact: {min_files: 10, strategy: sort, columns: [region]}\n"
    )
    planned = run_json(["run", "--policy", str(policy), "--table", name, "--dry-run"], base_settings)
    assert planned[0]["actions"]["compact"] == "due (dry run)"
    report = run_json(["run", "--policy", str(policy), "--table", name], base_settings)
    compacted = report[0]["actions"]["compact"]
    assert compacted["strategy"] == "sort" and (compacted["files_before"], compacted["files_after"]) == (12, 2)
    assert report[0]["actions"]["orphans"]["dry_run"] is True
    # what was done is lineage; the dry runs (the plan, the orphan listing) are not
    done = sorted(a for a, r in report[0]["actions"].items() if isinstance(r, dict) and not r.get("dry_run"))
    assert "compact" in done and "orphans" not in done
    assert sorted(e["job"]["name"] for e in maintenance_runs(base_settings, name)) == [
        "maint.compact.sort" if op == "compact" else f"maint.{op}" for op in done]
    assert table_stats(spark, table).records == compacted["records"]
