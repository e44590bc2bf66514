"""Table-health gauges on their own registry (no JVM)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest

from batch.metrics import health_metrics
from batch.stats import QueryReport, TableStats

pytestmark = pytest.mark.unit


def test_gauges_follow_the_latest_stats_per_table() -> None:
    metrics = health_metrics()
    first = TableStats("sales.vendas", data_files=1200, delete_files=0, small_files=1200,
                       small_file_ratio=1.0, records=10, bytes=100, avg_file_bytes=0, snapshots=3, manifests=2,
                       partitions=[{"partition": {"month": 1}}])
    metrics.update(first, now=1.0)
    metrics.update(TableStats("sales.vendas", 12, 0, 0, 0.0, 10, 90, 7, 4, 1), now=2.0)
    text = generate_latest(metrics.registry).decode()
    assert 'icetide_table_data_files{table="sales.vendas"} 12.0' in text
    assert 'icetide_table_snapshots{table="sales.vendas"} 4.0' in text
    assert 'icetide_table_last_refresh_timestamp_seconds{table="sales.vendas"} 2.0' in text
    assert b"icetide_table_data_files" not in generate_latest(REGISTRY)  # never the global registry


def test_pruning_is_share_of_files_not_read() -> None:
    assert QueryReport("q", 0.1, 1, files_scanned=1, files_total=12).pruning == pytest.approx(0.9167)
    assert QueryReport("q", 0.1, 1, files_scanned=0, files_total=0).pruning is None
