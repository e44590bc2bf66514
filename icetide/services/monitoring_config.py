"""The files the embedded Prometheus and Alertmanager run from, rendered from the settings (pure functions).

- `prometheus_config`: one scrape job per kind of icetide process, each fed by the file_sd folder its
  processes register into (`icetide.metrics.register_target`), plus Prometheus and Alertmanager themselves;
- `scaled_rules`: ops/prometheus's rules with every `for:` and range window multiplied by
  `monitoring.time_scale` (1 in production; tests shrink minutes to seconds without editing the rules);
- `alertmanager_config`: one route to the webhook receiver (or a receiver that drops), timers scaled too;
- `JMX_KAFKA`: the JMX exporter agent's rules for the broker (under-replicated partitions, request
  latency, bytes and messages in/out; the JVM's heap comes with the agent's JVM collectors).
"""

from __future__ import annotations

import re
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


def prometheus_config(*, host: str, port: int, alertmanager_port: int, targets: Path, rules: Path,
                      scrape_s: float, evaluation_s: float) -> dict[str, Any]:
    file_jobs = [
        {"job_name": job, "honor_labels": False,
         "file_sd_configs": [{"files": [str(targets / job / "*.json")], "refresh_interval": duration(scrape_s)}]}
        for job in JOBS
    ]
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
