"""What `icetide status` shows, gathered in one place: per table and for the whole deployment.

The numbers come from the processes' own metrics, read one of two ways:

- from the embedded Prometheus when monitoring runs (`source: prometheus`): the latest sample of every
  icetide series, `up` per scrape job and the alerts firing;
- otherwise straight from the processes' endpoints (`source: endpoints`): every target registered under
  `<state_dir>/monitoring/targets/` is scraped once (a process that does not answer counts as down).

Either way `summarize(samples, ...)` computes the same screen from the same samples, so the rendering is
tested from fixed inputs. Latency quantiles are over each consumer's lifetime (cumulative buckets); lag in
seconds is a lower bound: the age of the last published snapshot while the consumer has not applied it.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icetide.metrics import JOBS, targets_dir

if TYPE_CHECKING:
    from icetide.settings import Settings


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    job: str = ""


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def from_prometheus(base: str) -> tuple[list[Sample], dict[str, dict[str, int]], list[str]]:
    """(samples, {job: {up, down}}, firing alert names) from the Prometheus at `base`."""
    def query(promql: str) -> list[dict[str, Any]]:
        body = _get_json(f"{base}api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        return list(body["data"]["result"])

    samples = [Sample(r["metric"].get("__name__", ""), {k: v for k, v in r["metric"].items()
                                                          if k not in ("__name__", "job", "instance", "pid")},
                      float(r["value"][1]), r["metric"].get("job", ""))
               for r in query('{__name__=~"icetide_.+"}')]
    jobs: dict[str, dict[str, int]] = defaultdict(lambda: {"up": 0, "down": 0})
    for r in query("up"):
        jobs[r["metric"]["job"]]["up" if r["value"][1] == "1" else "down"] += 1
    alerts = sorted({r["metric"]["alertname"] for r in query('ALERTS{alertstate="firing"}')})
    return samples, dict(jobs), alerts


def from_endpoints(settings: Settings) -> tuple[list[Sample], dict[str, dict[str, int]], list[str]]:
    """Scrape every registered target once (no Prometheus needed)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: list[Sample] = []
    jobs: dict[str, dict[str, int]] = {}
    for job in JOBS:
        if job in ("kafka", "trino"):
            continue  # the broker's JMX metrics are not part of the screen; Trino's need its CA and a password
        for path in sorted(targets_dir(settings.state_dir, job).glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                target = entry[0]["targets"][0]
                with urllib.request.urlopen(f"http://{target}/metrics", timeout=3) as response:
                    text = response.read().decode()
            except (OSError, ValueError, KeyError, IndexError):
                jobs.setdefault(job, {"up": 0, "down": 0})["down"] += 1
                continue
            jobs.setdefault(job, {"up": 0, "down": 0})["up"] += 1
            for family in text_string_to_metric_families(text):
                samples += [Sample(s.name, dict(s.labels), float(s.value), job) for s in family.samples
                            if s.name.startswith("icetide_")]
    return samples, jobs, []


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets {le: count} (linear within a bucket, like Prometheus)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return prev_le


def _table_of_topic(topic: str) -> str:
    """`<prefix>.<ns>.<table>` → `ns.table`."""
    parts = topic.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else topic


def summarize(samples: list[Sample], jobs: dict[str, dict[str, int]], alerts: list[str], *, source: str,
              broker: dict[str, Any], now: float,
              source_snapshots: dict[str, int | None] | None = None) -> dict[str, Any]:
    """The screen's data as a JSON-ready dict (what `icetide status --json` prints)."""
    tables: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "last_source_snapshot": None, "last_published_snapshot": None, "last_applied_snapshot": None,
        "published_events": 0, "applied_events": 0, "lag_events": None, "lag_seconds": None,
        "snapshots": None, "data_files": None, "small_file_ratio": None})
    buckets: dict[float, float] = defaultdict(float)
    dead: dict[str, float] = defaultdict(float)
    published_ts: dict[str, float] = {}
    policy: dict[str, Any] | None = None
    # the broker-side group lag holds while a consumer is down; the consumer's own gauge otherwise
    lags: dict[str, dict[str, float]] = {"icetide_kafka_consumergroup_lag": defaultdict(float),
                                         "icetide_cdc_consumer_lag": defaultdict(float)}
    for s in samples:
        table = s.labels.get("table")
        if s.name == "icetide_cdc_last_published_snapshot" and table:
            tables[table]["last_published_snapshot"] = int(s.labels["snapshot_id"])
        elif s.name == "icetide_cdc_last_published_commit_timestamp_seconds" and table:
            published_ts[table] = s.value
        elif s.name == "icetide_cdc_events_published_total" and table:
            tables[table]["published_events"] += int(s.value)
        elif s.name == "icetide_cdc_last_applied_snapshot" and table:
            tables[table]["last_applied_snapshot"] = int(s.value)
        elif s.name == "icetide_cdc_events_applied_total" and table:
            tables[table]["applied_events"] += int(s.value)
        elif s.name in lags and "topic" in s.labels:  # summed over partitions (and groups)
            lags[s.name][_table_of_topic(s.labels["topic"])] += s.value
        elif s.name == "icetide_cdc_commit_to_apply_seconds_bucket":
            buckets[float(s.labels["le"])] += s.value
        elif s.name == "icetide_cdc_dead_letters_total":
            dead[s.labels.get("reason", "")] += s.value
        elif s.name == "icetide_cdc_policy_version":
            policy = {"policy_id": s.labels.get("policy_id"), "version": int(s.value)}
        elif s.name.startswith("icetide_table_") and table:
            key = s.name.removeprefix("icetide_table_")
            if key in ("snapshots", "data_files", "small_file_ratio"):
                tables[table][key] = s.value if key == "small_file_ratio" else int(s.value)
    for table in {*lags["icetide_kafka_consumergroup_lag"], *lags["icetide_cdc_consumer_lag"]}:
        by_broker, own = lags["icetide_kafka_consumergroup_lag"], lags["icetide_cdc_consumer_lag"]
        tables[table]["lag_events"] = int(by_broker[table] if table in by_broker else own[table])
    for table, row in tables.items():
        if source_snapshots and table in source_snapshots:
            row["last_source_snapshot"] = source_snapshots[table]
        behind = row["last_published_snapshot"] is not None and row["last_applied_snapshot"] != row[
            "last_published_snapshot"]
        if table in published_ts:
            row["lag_seconds"] = round(max(0.0, now - published_ts[table]), 1) if behind else 0.0
    return {
        "source": source,
        "broker": broker,
        "jobs": jobs,
        "alerts_firing": alerts,
        "commit_to_apply_p50_s": _round(quantile(0.5, buckets)),
        "commit_to_apply_p99_s": _round(quantile(0.99, buckets)),
        "dead_letters": {k: int(v) for k, v in sorted(dead.items())},
        "policy": policy,
        "tables": {k: tables[k] for k in sorted(tables)},
        "at": round(now, 3),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def source_snapshots(settings: Settings, tables: list[str]) -> dict[str, int | None]:
    """The current snapshot id of each table in the catalog (None when it cannot be read)."""
    out: dict[str, int | None] = {}
    if not tables:
        return out
    try:
        from icetide.catalog import pyiceberg_catalog

        catalog = pyiceberg_catalog(settings)
    except Exception:  # any catalog fault: the screen still shows the rest
        return {t: None for t in tables}
    for table in tables:
        try:
            snap = catalog.load_table(table).current_snapshot()
            out[table] = snap.snapshot_id if snap is not None else None
        except Exception:  # a table that cannot be loaded shows no source snapshot
            out[table] = None
    return out


def gather(settings: Settings) -> dict[str, Any]:
    """Everything `icetide status` shows, from Prometheus if it runs, else from the endpoints."""
    from icetide.stack import Stack

    stack = Stack(settings).status()
    broker = {"running": stack.running, "bootstrap": stack.bootstrap, "embedded": stack.embedded}
    prom = (stack.monitoring.get("prometheus") or {})
    if prom.get("running") and prom.get("url"):
        samples, jobs, alerts = from_prometheus(prom["url"])
        source = "prometheus"
    else:
        samples, jobs, alerts = from_endpoints(settings)
        source = "endpoints"
    names = sorted({s.labels["table"] for s in samples if "table" in s.labels})
    return summarize(samples, jobs, alerts, source=source, broker=broker, now=time.time(),
                     source_snapshots=source_snapshots(settings, names))
