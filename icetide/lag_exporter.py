"""Consumer-group lag measured from the broker, for Prometheus (`python -m icetide.lag_exporter CONFIG`).

The consumer's own `icetide_cdc_consumer_lag` disappears with the consumer: a stopped consumer cannot say
that it is behind. This exporter, started beside the embedded Prometheus (icetide/services/monitoring.py),
asks the broker at every scrape for each group's committed offsets (the consumer mirrors the sink's
positions there, connectors/consumer.py) and the partitions' end offsets, like Burrow or kafka-lag-exporter:

- `icetide_kafka_consumergroup_lag{group,topic,partition}` — end offset minus committed offset;
- `icetide_kafka_consumergroup_committed_offset{group,topic,partition}` — the committed offset itself
  (an alert compares it over time: lag that waits while the offset stands still means nobody applies).

It also serves the access policy's `icetide_policy_denied_accesses_total{action}`,
`icetide_policy_version{policy_id}` (read from the audit log under `state_dir`) and
`icetide_trino_audit_gate_closed` (the embedded Trino's audit guard, icetide/audit_metrics.py):
the commands that write that log are one-shot, and this is the stack's long-running exporter.

CONFIG is a JSON file: `bootstrap`, `host`, `port` (0 → free), `state_dir` (where it registers its target).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from icetide.audit import log_path
from icetide.audit_metrics import AuditMetrics
from icetide.metrics import new_registry, register_target, serve
from icetide.services.trino_audit_guard import AuditGuard

log = logging.getLogger("icetide.lag_exporter")
TIMEOUT_S = 5.0


def families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """The exporter's two metric families, empty (also what docs/metrics.md lists)."""
    labels = ["group", "topic", "partition"]
    lag = GaugeMetricFamily("icetide_kafka_consumergroup_lag",
                            "Records after the group's committed offset (end offset - committed), from the broker.",
                            labels=labels)
    committed = GaugeMetricFamily("icetide_kafka_consumergroup_committed_offset",
                                  "The group's committed offset (the next record it will apply).", labels=labels)
    return lag, committed


class GroupLagCollector(Collector):
    """Reads the groups' offsets from the broker at every collection (one scrape → one round of requests)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.ends = Consumer({"bootstrap.servers": bootstrap, "group.id": "icetide-lag-exporter",
                              "enable.auto.commit": False})
        self.lock = threading.Lock()

    def offsets(self) -> list[tuple[str, str, int, int, int]]:
        """(group, topic, partition, committed, end) for every committed partition of every group."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

        rows: list[tuple[str, str, int, int, int]] = []
        listed = self.admin.list_consumer_groups(request_timeout=TIMEOUT_S).result()
        groups = sorted(g.group_id for g in listed.valid)
        for group in groups:
            try:
                future = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                                request_timeout=TIMEOUT_S)[group]
                parts = future.result().topic_partitions or []
            except KafkaException as exc:
                log.debug("offsets of group %s: %s", group, exc)
                continue
            for tp in parts:
                if tp.offset < 0:
                    continue
                end = self.ends.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=TIMEOUT_S)[1]
                rows.append((group, tp.topic, tp.partition, tp.offset, end))
        return rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from confluent_kafka import KafkaException

        lag, committed = families()
        with self.lock:
            try:
                rows = self.offsets()
            except KafkaException as exc:  # broker away: no series (IcetideKafkaBrokerDown says why)
                log.warning("reading group offsets failed: %s", exc)
                rows = []
        for group, topic, part, off, end in rows:
            values = [group, topic, str(part)]
            lag.add_metric(values, max(0, end - off))
            committed.add_metric(values, off)
        yield lag
        yield committed


def serve_until_stopped(bootstrap: str, host: str, port: int, state_dir: Path,
                        port_file: Path | None = None) -> int:
    """Serve the group lag and the audit log's policy metrics on host:port until SIGTERM/SIGINT."""
    registry = new_registry()
    registry.register(GroupLagCollector(bootstrap))
    registry.register(AuditMetrics(log_path(state_dir), AuditGuard(state_dir / "trino").held_file))
    server, bound = serve(registry, host, port)
    register_target(state_dir, "icetide-kafka-lag", host, bound, name="lag-exporter")
    if port_file is not None:
        port_file.write_text(f"{bound}\n")
    log.info("serving http://%s:%s/metrics for %s", host, bound, bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    return serve_until_stopped(config["bootstrap"], config["host"], int(config.get("port", 0)),
                               Path(config["state_dir"]), Path(argv[0]).parent / "lag-exporter.port")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
