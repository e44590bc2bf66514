"""The files the embedded Prometheus and Alertmanager run from, rendered from the settings (pure functions).

- `prometheus_config`: one scrape job per kind of icetide process, each fed by the file_sd folder its
  processes register into (`icetide.metrics.register_target`), plus Prometheus and Alertmanager themselves;
  the `trino` job has its own section (`TrinoScrape`: HTTPS with the local CA, the monitoring principal's
  password), present once Trino has made its CA (Prometheus drops a job whose CA file is missing);
- `scaled_rules`: ops/prometheus's rules with every `for:` and range window multiplied by
  `monitoring.time_scale` (1 in production; tests shrink minutes to seconds without editing the rules);
- `alertmanager_config`: one route to the webhook receiver (or a receiver that drops), timers scaled too;
- `JMX_KAFKA`: the JMX exporter agent's rules for the broker (under-replicated partitions, request
  latency, bytes and messages in/out; the JVM's heap comes with the agent's JVM collectors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icetide.metrics import JOBS

RULES_DIR = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_RANGE = re.compile(r"\[([0-9a-z:]+)\]")


def seconds(duration: str) -> float:
    """'5m' → 300.0, '1h30m' → 5400.0 (Prometheus duration syntax)."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(secs: float) -> str:
    """Seconds → a Prometheus duration in whole milliseconds (at least 1 ms)."""
    ms = max(1, round(secs * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale_duration(text: str, scale: float) -> str:
    return duration(seconds(text) * scale)


def scale_expr(expr: str, scale: float) -> str:
    """Every range window (`[10m]`, subquery `[5m:1m]`) in a PromQL expression multiplied by `scale`."""
    if scale == 1:
        return expr

    def one(match: re.Match[str]) -> str:
        return "[" + ":".join(scale_duration(p, scale) if p else p for p in match.group(1).split(":")) + "]"

    return _RANGE.sub(one, expr)


def scaled_rules(rules: dict[str, Any], scale: float) -> dict[str, Any]:
    """A copy of a rules document with `for:` and windows scaled (the rules themselves are untouched)."""
    groups = []
    for group in rules.get("groups", []):
        out_rules = []
        for rule in group.get("rules", []):
            rule = dict(rule)
            rule["expr"] = scale_expr(str(rule["expr"]), scale)
            if "for" in rule and scale != 1:
                rule["for"] = scale_duration(str(rule["for"]), scale)
            out_rules.append(rule)
        groups.append({**group, "rules": out_rules})
    return {**rules, "groups": groups}


@dataclass(frozen=True)
class TrinoScrape:
    """How Prometheus reaches the embedded Trino's /metrics: HTTPS verified against its local CA, as the
    monitoring principal (`username`, its password read from `password_file` at each scrape)."""

    username: str
    password_file: Path
    ca_file: Path


AUTH_JOBS = ("trino",)  # file_sd jobs whose scrape settings (scheme, auth, TLS) are their own


def _file_sd(targets: Path, job: str, scrape_s: float) -> dict[str, Any]:
    return {"job_name": job, "honor_labels": False,
            "file_sd_configs": [{"files": [str(targets / job / "*.json")], "refresh_interval": duration(scrape_s)}]}


def prometheus_config(*, host: str, port: int, alertmanager_port: int, targets: Path, rules: Path,
                      scrape_s: float, evaluation_s: float, trino: TrinoScrape | None = None) -> dict[str, Any]:
    file_jobs = [_file_sd(targets, job, scrape_s) for job in JOBS if job not in AUTH_JOBS]
    if trino is not None:
        file_jobs.append({**_file_sd(targets, "trino", scrape_s), "scheme": "https", "metrics_path": "/metrics",
                          "basic_auth": {"username": trino.username, "password_file": str(trino.password_file)},
                          "tls_config": {"ca_file": str(trino.ca_file)}})
    return {
        "global": {"scrape_interval": duration(scrape_s), "evaluation_interval": duration(evaluation_s),
                   "scrape_timeout": duration(min(scrape_s, 10.0))},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{host}:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"{host}:{port}"]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [f"{host}:{alertmanager_port}"]}]},
            *file_jobs,
        ],
    }


def alertmanager_config(webhook_url: str | None, scale: float) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {"receiver": "default", "group_by": ["alertname", "job", "instance", "topic", "group"],
                  "group_wait": scale_duration("30s", scale), "group_interval": scale_duration("5m", scale),
                  "repeat_interval": scale_duration("4h", scale)},
        "receivers": [receiver],
    }


JMX_KAFKA: dict[str, Any] = {
    "lowercaseOutputName": True,
    "lowercaseOutputLabelNames": True,
    "includeObjectNames": [
        "kafka.server:type=BrokerTopicMetrics,*",
        "kafka.server:type=ReplicaManager,*",
        "kafka.network:type=RequestMetrics,name=TotalTimeMs,*",
        "kafka.controller:type=KafkaController,*",
    ],
    "rules": [
        {"pattern": r"kafka.network<type=RequestMetrics, name=TotalTimeMs, request=(\w+)><>(50|99)thPercentile",
         "name": "kafka_network_request_total_time_ms", "type": "GAUGE",
         "labels": {"request": "$1", "quantile": "0.$2"}},
        {"pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+)PerSec, topic=(.+)><>Count",
         "name": "kafka_server_brokertopicmetrics_$1_total", "type": "COUNTER", "labels": {"topic": "$2"}},
        {"pattern": r"kafka.server<type=BrokerTopicMetrics, name=(\w+)PerSec><>Count",
         "name": "kafka_server_brokertopicmetrics_$1_total", "type": "COUNTER"},
        {"pattern": r"kafka.(server|controller)<type=(ReplicaManager|KafkaController), name=(\w+)><>Value",
         "name": "kafka_$1_$2_$3", "type": "GAUGE"},
    ],
}

# Spark's own metrics (DAG scheduler, block manager, app status, executor) reach JMX through Spark's JmxSink
# (`spark.metrics.conf.*.sink.jmx.class`) under the namespace `icetide` (instead of the application id, so
# names do not change from run to run); Dropwizard names them `metrics:name=icetide.driver.<source>.<metric>,
# type=gauges|counters` (property order varies, hence the optional groups). Dots become underscores.
_SPARK_BEAN = r"metrics<(?:type=\w+, )?name=icetide\.(driver|executor)\.([^,>]+)(?:, type=\w+)?>"
JMX_SPARK: dict[str, Any] = {
    "lowercaseOutputName": True,
    "lowercaseOutputLabelNames": True,
    "includeObjectNames": ["metrics:type=gauges,*", "metrics:type=counters,*"],
    "rules": [
        {"pattern": _SPARK_BEAN + "<>Count", "name": "spark_$1_$2_total", "type": "COUNTER"},
        {"pattern": _SPARK_BEAN + "<>Value", "name": "spark_$1_$2", "type": "GAUGE"},
    ],
}


def spark_metrics_conf() -> dict[str, str]:
    """The Spark settings that put its metrics on JMX for the agent (namespace `icetide`)."""
    return {"spark.metrics.namespace": "icetide",
            "spark.metrics.conf.*.sink.jmx.class": "org.apache.spark.metrics.sink.JmxSink",
            "spark.metrics.appStatusSource.enabled": "true"}


FLINK_REPORTER_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


def flink_reporter_conf(port: int) -> dict[str, str]:
    """Flink's Prometheus reporter on one port: PyFlink's local mini-cluster is one JVM (JobManager and
    TaskManager share its metric registry), so one port serves both (`flink_jobmanager_*`, `flink_taskmanager_*`)."""
    return {"metrics.reporters": "prom", "metrics.reporter.prom.factory.class": FLINK_REPORTER_FACTORY,
            "metrics.reporter.prom.port": str(port), "metrics.reporter.prom.filterLabelValueCharacters": "true"}

# The metrics of the JVMs and the object store that icetide's rules, dashboards and `icetide status` read, by
# scrape job: (where they come from, names). docs/metrics.md lists them; live runs check that the job serves
# every one of its names while it runs: `spark` in tests/integration/test_monitoring.py, `trino` in
# tests/integration/test_monitoring_trino.py, `kafka`, `flink` and `spark` in bench/prometheus_screenshot.py
# (`object-store` was checked by hand, docs/results.md).
EXTERNAL_METRICS: dict[str, tuple[str, list[str]]] = {
    "kafka": ("the JMX exporter agent in the broker (rules `JMX_KAFKA`)",
              ["kafka_server_replicamanager_underreplicatedpartitions", "kafka_server_brokertopicmetrics_bytesin_total",
               "kafka_server_brokertopicmetrics_bytesout_total", "kafka_server_brokertopicmetrics_messagesin_total",
               "kafka_network_request_total_time_ms", "jvm_memory_used_bytes", "jvm_memory_max_bytes"]),
    "flink": ("Flink's Prometheus reporter in the CDC job's JVM (PyFlink's mini-cluster: JobManager and TaskManager)",
              ["flink_jobmanager_numRunningJobs", "flink_jobmanager_Status_JVM_Memory_Heap_Used",
               "flink_taskmanager_Status_JVM_Memory_Heap_Used", "flink_taskmanager_Status_JVM_Memory_Heap_Max",
               "flink_jobmanager_job_numberOfCompletedCheckpoints", "flink_jobmanager_job_lastCheckpointDuration",
               "flink_taskmanager_job_task_numRecordsOut"]),
    "spark": ("the JMX exporter agent in each Spark driver (rules `JMX_SPARK`, Spark's JmxSink)",
              ["spark_driver_dagscheduler_job_activejobs", "spark_driver_appstatus_jobs_succeededjobs_total",
               "spark_driver_appstatus_jobduration", "spark_driver_blockmanager_memory_memused_mb",
               "jvm_memory_used_bytes", "jvm_memory_max_bytes"]),
    "object-store": ("SeaweedFS' own /metrics (`weed mini -metricsPort`)",
                     ["SeaweedFS_s3_request_total", "SeaweedFS_s3_request_seconds_bucket"]),
    # Trino's JMX beans as its OpenMetrics endpoint names them; ExecutionTime is a summary in milliseconds over
    # Trino's own decaying windows (OneMinute, FiveMinutes, FifteenMinutes, AllTime)
    "trino": ("the embedded Trino's /metrics (HTTPS, read as the monitoring principal `icetide-monitor`)",
              ["trino_execution_name_QueryManager_ExecutionTime_FiveMinutes",
               "trino_execution_name_QueryManager_CompletedQueries", "trino_execution_name_QueryManager_FailedQueries",
               "trino_execution_name_QueryManager_RunningQueries", "trino_execution_name_QueryManager_QueuedQueries"]),
}
