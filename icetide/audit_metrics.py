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


def metric_families() -> tuple[CounterMetricFamily, GaugeMetricFamily]:
    """The audit log's two metric families, empty (also what docs/metrics.md lists)."""
    denied = CounterMetricFamily("icetide_policy_denied_accesses", "Access attempts the policy refused "
                                 "(audit records with result denied), by action.", labels=["action"])
    version = GaugeMetricFamily("icetide_policy_version", "Version of the access policy in force (the last "
                                "successful `policy apply`); policy_id in label.", labels=["policy_id"])
    return denied, version


class AuditMetrics(Collector):
    """Denied accesses and the policy version in force, read from the audit log at every scrape (only the lines
    appended since the last one: the log is append-only; a shorter file means it was replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        denied, version = metric_families()
        with self.lock:
            self._read()
            for action, n in sorted(self.denied.items()):
                denied.add_metric([action], n)
            if self.in_force is not None:
                version.add_metric([self.in_force[0]], self.in_force[1])
        yield denied
        yield version
