"""What one `cdc apply` run did: counts, the tables and ops applied, commit→apply latencies
(a bounded reservoir sample), and the positions it ended at (`--json` prints `to_dict`)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connectors.base import TopicPartition

RESERVOIR = 100_000  # latencies kept for the percentiles; beyond, a uniform sample of all seen


@dataclass
class Summary:
    applied: int = 0
    skipped: int = 0
    replayed: int = 0  # of the skipped: events re-published at new offsets (at-least-once producer)
    dead_letters: int = 0
    batches: int = 0
    by_table_op: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seen_latencies: int = 0
    topics: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_record_at: float | None = None  # monotonic time the first record arrived
    last_batch_at: float | None = None  # monotonic time the last batch was committed downstream
    caught_up: bool = True  # --once: reached every end offset that existed at start
    held: int = 0  # --snapshot-consistent: events still held back at the end (snapshot incomplete)

    def observe(self, latency: float) -> None:
        self.seen_latencies += 1
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(latency)
        else:
            slot = random.randrange(self.seen_latencies)
            if slot < RESERVOIR:
                self.latencies[slot] = latency

    @property
    def active_seconds(self) -> float:
        """From the first record received to the last batch committed (no start-up, no idling)."""
        if self.first_record_at is None or self.last_batch_at is None:
            return 0.0
        return self.last_batch_at - self.first_record_at

    def to_dict(self, positions: dict[TopicPartition, int]) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) if lat else None

        tables: dict[str, dict[str, int]] = {}
        for (table, op), n in sorted(self.by_table_op.items()):
            tables.setdefault(table, {})[op] = n
        return {
            "applied": self.applied, "skipped": self.skipped, "replayed": self.replayed,
            "dead_letters": self.dead_letters, "held": self.held,
            "batches": self.batches, "tables": tables, "topics": self.topics, "caught_up": self.caught_up,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.applied / self.seconds, 1) if self.seconds else None,
            "active_seconds": round(self.active_seconds, 3),
            "active_events_per_s": round(self.applied / self.active_seconds, 1) if self.active_seconds else None,
            "commit_to_apply_p50_s": q(0.5), "commit_to_apply_p99_s": q(0.99),
            "commit_to_apply_max_s": round(lat[-1], 4) if lat else None,
            "positions": {f"{t}/{p}": off for (t, p), off in sorted(positions.items())},
        }
