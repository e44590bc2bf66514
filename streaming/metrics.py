"""Metrics of the change-stream job, on an explicit registry (STYLE.md #9).

Served on /metrics from the job's Python worker (`--metrics-port`), the process where events are
derived. Latency is measured from the snapshot's commit time to the moment the event is handed to
the Kafka sink (Flink then batches and acknowledges; the consumer's commit→apply histogram covers
the whole path).
"""

from __future__ import annotations

from icetide.metrics import LATENCY_BUCKETS, new_registry
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CdcMetrics:
    """Counters, latency histogram and last-snapshot gauges of `icetide cdc run`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        self.events = Counter(
            "icetide_cdc_events_published_total", "Change events handed to the Kafka sink.",
            ["table", "op"], registry=self.registry,
        )
        self.latency = Histogram(
            "icetide_cdc_commit_to_publish_seconds", "Snapshot commit → event published.",
            ["table"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        # snapshot ids are 64-bit: a float gauge would round them, so the id is a label of an info-like gauge
        self.last_snapshot = Gauge(
            "icetide_cdc_last_published_snapshot", "Last snapshot fully published (value 1; id in label).",
            ["table", "snapshot_id"], registry=self.registry,
        )
        self.last_commit = Gauge(
            "icetide_cdc_last_published_commit_timestamp_seconds",
            "Commit time of the last snapshot fully published.", ["table"], registry=self.registry,
        )
        self.policy_version = Gauge(
            "icetide_cdc_policy_version", "Version of the compiled access policy the job filters and masks by.",
            ["policy_id"], registry=self.registry,
        )
        self.polls = Counter("icetide_cdc_polls_total", "Table polls.", ["table"], registry=self.registry)
        self._last: dict[str, str] = {}

    def published(self, table: str, op: str, latency_s: float) -> None:
        self.events.labels(table, op).inc()
        self.latency.labels(table).observe(max(latency_s, 0.0))

    def snapshot_done(self, table: str, snapshot_id: int, commit_ts_ms: int) -> None:
        previous = self._last.get(table)
        if previous is not None:
            self.last_snapshot.remove(table, previous)
        self._last[table] = str(snapshot_id)
        self.last_snapshot.labels(table, str(snapshot_id)).set(1)
        self.last_commit.labels(table).set(commit_ts_ms / 1000)
