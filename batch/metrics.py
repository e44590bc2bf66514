"""Table-health gauges and the probe query's time for Prometheus, on an explicit registry (never the global default).

`maint exporter` refreshes them from `batch.stats.table_stats` every interval and times one probe query per
table against the SLA it is given (`--probe-sla-s`); one label, `table`.
`dr backup --every` keeps the backup gauges (`icetide_dr_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icetide.metrics import LATENCY_BUCKETS, new_registry
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from batch.stats import TableStats


@dataclass
class HealthMetrics:
    """The gauges of one exporter process."""

    registry: CollectorRegistry
    data_files: Gauge
    delete_files: Gauge
    small_files: Gauge
    small_file_ratio: Gauge
    records: Gauge
    bytes: Gauge
    snapshots: Gauge
    manifests: Gauge
    partitions: Gauge
    last_refresh: Gauge
    probe_seconds: Histogram
    probe_sla: Gauge

    def update(self, stats: TableStats, now: float) -> None:
        """Publish one table's stats."""
        table = stats.table
        self.data_files.labels(table).set(stats.data_files)
        self.delete_files.labels(table).set(stats.delete_files)
        self.small_files.labels(table).set(stats.small_files)
        self.small_file_ratio.labels(table).set(stats.small_file_ratio)
        self.records.labels(table).set(stats.records)
        self.bytes.labels(table).set(stats.bytes)
        self.snapshots.labels(table).set(stats.snapshots)
        self.manifests.labels(table).set(stats.manifests)
        self.partitions.labels(table).set(len(stats.partitions))
        self.last_refresh.labels(table).set(now)

    def probed(self, table: str, seconds: float, sla_s: float) -> None:
        """One probe query's wall time, and the SLA it is held to (the alert compares the two)."""
        self.probe_seconds.labels(table).observe(seconds)
        self.probe_sla.labels(table).set(sla_s)


def health_metrics(registry: CollectorRegistry | None = None) -> HealthMetrics:
    """Create the gauges on `registry` (a fresh one by default)."""
    reg = registry if registry is not None else new_registry()

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(f"icetide_table_{name}", doc, ["table"], registry=reg)

    return HealthMetrics(
        registry=reg,
        data_files=gauge("data_files", "Live data files in the current snapshot."),
        delete_files=gauge("delete_files", "Live delete files (position/equality) in the current snapshot."),
        small_files=gauge("small_files", "Live data files below the small-file threshold."),
        small_file_ratio=gauge("small_file_ratio", "Small data files / all data files (0-1)."),
        records=gauge("records", "Rows in the current snapshot's data files (before deletes)."),
        bytes=gauge("bytes", "Bytes of live data and delete files."),
        snapshots=gauge("snapshots", "Snapshots kept in the table metadata."),
        manifests=gauge("manifests", "Manifests of the current snapshot."),
        partitions=gauge("partitions", "Partitions with at least one data file."),
        last_refresh=gauge("last_refresh_timestamp_seconds", "When these gauges were last refreshed."),
        probe_seconds=Histogram("icetide_table_probe_query_seconds",
                                "Wall time of the probe query (a count over the table: planning, metadata, scan).",
                                ["table"], buckets=LATENCY_BUCKETS, registry=reg),
        probe_sla=gauge("probe_query_sla_seconds", "The SLA the probe query is held to (`--probe-sla-s`)."),
    )


@dataclass
class BackupMetrics:
    """The gauges of `dr backup --every`: how old the last good backup is, and how big it was."""

    registry: CollectorRegistry
    last_success: Gauge
    seconds: Gauge
    copied_bytes: Gauge
    copied_files: Gauge
    bytes: Gauge
    files: Gauge
    failures: Counter

    def update(self, result: dict[str, Any], now: float) -> None:
        self.last_success.set(now)
        self.seconds.set(result["seconds"])
        self.copied_bytes.set(result["copied_bytes"])
        self.copied_files.set(result["copied_files"])
        self.bytes.set(result["bytes"])
        self.files.set(result["files"])


def backup_metrics(registry: CollectorRegistry | None = None) -> BackupMetrics:
    """Create the backup gauges on `registry` (a fresh one by default). Alert on
    `time() - icetide_dr_last_backup_timestamp_seconds` (the age of the newest restorable point)."""
    reg = registry if registry is not None else new_registry()

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(f"icetide_dr_{name}", doc, registry=reg)

    return BackupMetrics(
        registry=reg,
        last_success=gauge("last_backup_timestamp_seconds", "When the newest backup was published."),
        seconds=gauge("last_backup_duration_seconds", "How long the newest backup took."),
        copied_bytes=gauge("last_backup_copied_bytes", "Bytes the newest backup copied (new files only)."),
        copied_files=gauge("last_backup_copied_files", "Files the newest backup copied (new files only)."),
        bytes=gauge("backup_bytes", "Bytes of every file the newest backup's tables need."),
        files=gauge("backup_files", "Files the newest backup's tables need."),
        failures=Counter("icetide_dr_backup_failures_total", "Backups that failed (and were retried next interval).",
                         registry=reg),
    )
