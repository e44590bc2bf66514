"""The consumer's Prometheus metrics, on an explicit registry (never the global one).

Names and labels are what ops/prometheus/icetide-rules.yml and the Grafana dashboard query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icetide.metrics import LATENCY_BUCKETS, new_registry
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DEAD_LETTER_REASONS = ("decode", "apply")  # the consumer's _dead_letter(msg, reason, ...) calls


@dataclass
class ConsumerMetrics:
    registry: CollectorRegistry = field(default_factory=new_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.applied = Counter("icetide_cdc_events_applied", "Change events applied downstream.",
                               ["table", "op"], registry=r)
        self.commit_to_apply = Histogram(
            "icetide_cdc_commit_to_apply_seconds",
            "From the Iceberg snapshot's commit to the downstream transaction's commit.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("icetide_cdc_consumer_lag", "Records in the partition not applied yet.",
                         ["topic", "partition"], registry=r)
        self.last_snapshot = Gauge("icetide_cdc_last_applied_snapshot",
                                   "Snapshot id of the last change applied per table.", ["table"], registry=r)
        self.dead_letters = Counter("icetide_cdc_dead_letters", "Events sent to the dead-letter topic.",
                                    ["reason"], registry=r)
        for reason in DEAD_LETTER_REASONS:  # served as 0 from the start: increase() sees the first letter
            self.dead_letters.labels(reason=reason)
        self.batches = Counter("icetide_cdc_batches", "Batches committed downstream.", registry=r)
        self.sink_retrying = Gauge("icetide_cdc_sink_retrying",
                                   "1 while the sink is unavailable and the consumer backs off and retries.",
                                   registry=r)
        self.transient_errors = Counter("icetide_cdc_sink_transient_errors",
                                        "Failed sink attempts that will be retried (never dead-lettered), "
                                        "by kind of fault.", ["kind"], registry=r)
        self.held = Gauge("icetide_cdc_held_events",
                          "Events held back until their snapshot is whole (--snapshot-consistent).", registry=r)
