"""The access policy's audit log as metrics: denied accesses and the policy version in force.

The audit log (icetide/audit.py, `log_path`: one JSON line per attempt, `result` allowed/denied/error, `action`,
`policy_id`, `policy_version`) lives in the kernel's state directory; the kernel's long-running exporter
(icetide/lag_exporter.py, started by `stack up --monitoring`) serves these families, because the commands
that write the log (`icetide query`, `policy apply`) are one-shot and no process of theirs lives to be scraped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


def metric_families() -> tuple[CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    """The audit log's three metric families, empty (also what docs/metrics.md lists)."""
    denied = CounterMetricFamily("icetide_policy_denied_accesses", "Access attempts the policy refused "
                                 "(audit records with result denied), by action.", labels=["action"])
    version = GaugeMetricFamily("icetide_policy_version", "Version of the access policy in force (the last "
                                "successful `policy apply`); policy_id in label.", labels=["policy_id"])
    gate = GaugeMetricFamily("icetide_trino_audit_gate_closed", "1 while the audit guard holds the embedded "
                             "Trino deny-all because its audit receiver cannot write the audit log, 0 when open "
                             "(absent without a Trino).")
    return denied, version, gate


class AuditMetrics(Collector):
    """Denied accesses and the policy version in force, read from the audit log at every scrape (only the lines
    appended since the last one: the log is append-only; a shorter file means it was replaced)."""

    def __init__(self, path: Path, held_rules: Path | None = None) -> None:
        self.path = path
        self.held_rules = held_rules  # the guard's `rules.held.json`: present while the gate is closed
        self.offset = 0
        self.denied: dict[str, int] = {}
        self.in_force: tuple[str, int] | None = None
        self.lock = threading.Lock()

    def _read(self) -> None:
        if not self.path.exists():
            return
        if self.path.stat().st_size < self.offset:
            self.offset, self.denied, self.in_force = 0, {}, None
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            for line in fh:
                if not line.endswith(b"\n"):  # a record being written: read it whole next time
                    break
                self.offset += len(line)
                record = json.loads(line)
                if record.get("result") == "denied":
                    action = str(record.get("action"))
                    self.denied[action] = self.denied.get(action, 0) + 1
                elif record.get("action") == "apply" and record.get("result") == "applied":
                    self.in_force = (str(record.get("policy_id")), int(record.get("policy_version") or 0))

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        denied, version, gate = metric_families()
        with self.lock:
            self._read()
            for action, n in sorted(self.denied.items()):
                denied.add_metric([action], n)
            if self.in_force is not None:
                version.add_metric([self.in_force[0]], self.in_force[1])
        if self.held_rules is not None and self.held_rules.parent.is_dir():
            gate.add_metric([], 1.0 if self.held_rules.exists() else 0.0)
        yield denied
        yield version
        yield gate
