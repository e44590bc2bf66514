"""docs/metrics.md, generated from the code: every metric icetide's processes serve, by process.

`python scripts/metrics_catalogue.py` rewrites docs/metrics.md; `--check` exits 1 when it is stale
(tests/unit/test_metrics_catalogue.py runs that). The metrics are read from the rooms' own metric
classes on fresh registries, so a renamed or new metric changes the catalogue.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "metrics.md"


def catalogue() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(process, scrape job, [{name, type, labels, help}]) for every icetide process serving /metrics."""
    from batch.metrics import backup_metrics, health_metrics
    from connectors.metrics import ConsumerMetrics
    from icetide.audit_metrics import metric_families
    from icetide.lag_exporter import families
    from streaming.metrics import CdcMetrics

    def from_registry(registry: Any) -> list[dict[str, Any]]:
        rows = []
        for collector in set(registry._collector_to_names):
            for family in collector.describe():
                rows.append({"name": family.name + ("_total" if family.type == "counter" else ""),
                             "type": family.type, "labels": list(getattr(collector, "_labelnames", ())),
                             "help": family.documentation})
        return sorted(rows, key=lambda r: r["name"])

    lag = [{"name": f.name, "type": f.type, "labels": ["group", "topic", "partition"], "help": f.documentation}
           for f in families()]
    lag += [{"name": f.name + ("_total" if f.type == "counter" else ""), "type": f.type, "labels": labels,
             "help": f.documentation} for f, labels in zip(metric_families(), (["action"], ["policy_id"], []),
                                                           strict=True)]
    return [
        ("`icetide cdc run` (the change-stream job's Python worker, `--metrics-port`)", "icetide-cdc",
         from_registry(CdcMetrics().registry)),
        ("`icetide cdc apply` (each consumer, `--metrics-port`)", "icetide-consumer",
         from_registry(ConsumerMetrics().registry)),
        ("`icetide maint exporter` (table health)", "icetide-table-health", from_registry(health_metrics().registry)),
        ("`icetide dr backup --every` (`--metrics-port`)", "icetide-dr", from_registry(backup_metrics().registry)),
        ("the stack's exporter: consumer-group lag and the policy audit log (started by `stack up --monitoring`)",
         "icetide-kafka-lag", lag),
    ]


def render() -> str:
    lines = ["# Metrics", "",
             "Generated from the code by `python scripts/metrics_catalogue.py` (a unit test fails when this file is",
             "stale). Every process registers its endpoint under `<state_dir>/monitoring/targets/<job>/`, which the",
             "embedded Prometheus (`icetide stack up --monitoring`) scrapes. Histograms also serve `_bucket`, `_sum`",
             "and `_count`. The JVMs and the object store serve their own metrics (last section).", ""]
    for process, job, rows in catalogue():
        lines += [f"## {process}", "", f"Scrape job `{job}`.", "", "| metric | type | labels | meaning |",
                  "|---|---|---|---|"]
        lines += [f"| `{r['name']}` | {r['type']} | {', '.join(r['labels']) or '-'} | {r['help']} |" for r in rows]
        lines.append("")
    from icetide.services.monitoring_config import EXTERNAL_METRICS

    lines += ["## The JVMs and the object store (with monitoring on)", "",
              "Names as their exporters form them; listed are the ones an operator looks at first (heap,",
              "throughput, checkpoints, jobs, requests): `EXTERNAL_METRICS` in",
              "`icetide/services/monitoring_config.py`,",
              "each seen served by a live run (tests/integration/test_monitoring.py, test_monitoring_trino.py,",
              "bench/prometheus_screenshot.py;",
              "the object store's by hand, docs/results.md).",
              "", "| scrape job | source | metrics |", "|---|---|---|"]
    lines += [f"| `{job}` | {source} | {', '.join(f'`{n}`' for n in names)} |"
              for job, (source, names) in EXTERNAL_METRICS.items()]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is stale: run python scripts/metrics_catalogue.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
