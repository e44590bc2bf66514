"""`icetide status`: the screen computed and rendered from fixed samples (no process, no Prometheus)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.status import Sample, quantile, summarize
from icetide.status_cli import render_text

pytestmark = pytest.mark.unit
NOW = 1_700_000_100.0
TOPIC = "icetide.sales.orders"
BROKER = {"running": True, "bootstrap": "127.0.0.1:9092", "embedded": True}


def _samples(applied_snapshot: int) -> list[Sample]:
    buckets = {"0.1": 50, "0.5": 90, "1.0": 99, "+Inf": 100}
    return [
        Sample("icetide_cdc_last_published_snapshot", {"table": "sales.orders", "snapshot_id": "222"}, 1),
        Sample("icetide_cdc_last_published_commit_timestamp_seconds", {"table": "sales.orders"}, NOW - 40),
        Sample("icetide_cdc_events_published_total", {"table": "sales.orders", "op": "c"}, 120),
        Sample("icetide_cdc_last_applied_snapshot", {"table": "sales.orders"}, applied_snapshot),
        Sample("icetide_cdc_events_applied_total", {"table": "sales.orders", "op": "c"}, 100),
        Sample("icetide_cdc_consumer_lag", {"topic": "icetide.sales.orders", "partition": "0"}, 99),
        Sample("icetide_kafka_consumergroup_lag", {"group": "g", "topic": TOPIC, "partition": "0"}, 12),
        Sample("icetide_kafka_consumergroup_lag", {"group": "g", "topic": TOPIC, "partition": "1"}, 8),
        *[Sample("icetide_cdc_commit_to_apply_seconds_bucket", {"le": le}, n) for le, n in buckets.items()],
        Sample("icetide_cdc_dead_letters_total", {"reason": "decode"}, 3),
        Sample("icetide_cdc_dead_letters_total", {"reason": "apply"}, 0),
        Sample("icetide_cdc_policy_version", {"policy_id": "sales"}, 4),
        Sample("icetide_table_snapshots", {"table": "sales.orders"}, 17),
        Sample("icetide_table_small_file_ratio", {"table": "sales.orders"}, 0.25),
    ]


def test_summary_per_table_and_for_the_deployment() -> None:
    data = summarize(_samples(111), {"icetide-consumer": {"up": 1, "down": 0}}, ["IcetideCdcConsumerBehind"],
                     source="prometheus", broker=BROKER, now=NOW, source_snapshots={"sales.orders": 333})
    row = data["tables"]["sales.orders"]
    assert row["last_source_snapshot"] == 333 and row["last_published_snapshot"] == 222
    assert row["last_applied_snapshot"] == 111
    assert row["lag_events"] == 20, "the broker-side group lag wins over the consumer's own gauge"
    assert row["lag_seconds"] == 40.0
    assert row["snapshots"] == 17 and row["small_file_ratio"] == 0.25
    assert data["commit_to_apply_p50_s"] == pytest.approx(0.1)
    assert 0.5 < data["commit_to_apply_p99_s"] <= 1.0
    assert data["dead_letters"] == {"apply": 0, "decode": 3}
    assert data["policy"] == {"policy_id": "sales", "version": 4}
    json.dumps(data)  # JSON-ready


def test_caught_up_table_has_no_lag_seconds() -> None:
    data = summarize(_samples(222), {}, [], source="endpoints", broker=BROKER, now=NOW)
    assert data["tables"]["sales.orders"]["lag_seconds"] == 0.0


def test_rendering_shows_every_figure() -> None:
    data = summarize(_samples(111), {"icetide-consumer": {"up": 1, "down": 1}}, ["IcetideCdcConsumerBehind"],
                     source="prometheus", broker=BROKER, now=NOW, source_snapshots={"sales.orders": 333})
    text = render_text(data, width=160)
    for piece in ("broker up", "sales.orders", "333", "222", "111", "20", "40", "17", "25 %", "dead letters 3",
                  "policy sales v4", "IcetideCdcConsumerBehind", "icetide-consumer", "source prometheus"):
        assert piece in text, f"{piece!r} missing from:\n{text}"


def test_empty_deployment_renders() -> None:
    text = render_text(summarize([], {}, [], source="endpoints", broker={**BROKER, "running": False}, now=NOW))
    assert "broker DOWN" in text and "alerts firing: none" in text and "p50 -" in text


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=6), st.floats(0.01, 0.99))
def test_quantile_stays_within_its_bucket(increments: list[int], q: float) -> None:
    bounds = [0.1 * 2**i for i in range(len(increments))] + [math.inf]
    counts, total = {}, 0
    for le, inc in zip(bounds, [*increments, 0], strict=True):
        total += inc
        counts[le] = float(total)
    result = quantile(q, counts)
    if total == 0:
        assert result is None
        return
    assert result is not None and 0 <= result <= bounds[-2]
    rank = q * total
    first = next(le for le in bounds if counts[le] >= rank)
    below = max([le for le in bounds if le < first], default=0.0)
    assert below <= result <= (first if not math.isinf(first) else below)
