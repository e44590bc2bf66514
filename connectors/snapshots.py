"""`cdc apply --snapshot-consistent`: hold change events back until their snapshot is whole.

The job frames each snapshot of a table with BEGIN/END records on `<prefix>.transaction`
(`streaming/transactions.py`); the END carries the snapshot's event count N, and its events have
ordinals 0..N-1. `SnapshotGate` sits between decoding and `Sink.apply()`:

- an event of a table's base topic (`<prefix>.<namespace>.<table>`) is held, per (topic,
  snapshot), under its ordinal: a copy re-published at a new offset (at-least-once producer) finds
  its ordinal taken and is dropped, so it is never applied twice (nor held twice);
- a snapshot is *complete* when its END has been read and its N ordinals are held; one topic's
  snapshots are released in sequence-number order, and only while the oldest held one is complete
  (a complete later snapshot waits for the earlier one), so every batch given to the sink holds
  whole snapshots only and the sink commits each of them in one transaction;
- events of snapshots already applied (at or below the highest sequence number applied for the
  topic, read from the sink on assignment) and of topics that are not base topics (audience
  topics, foreign producers) pass straight through: the sink skips what it has already applied.

Bookkeeping stays exact: the offsets handed to the sink (stored with the rows) stop, per
partition, just before the oldest record still needed — the first held event of each partition,
and on the transaction topic the first END of a snapshot not yet released. A crash or a rebalance
loses only memory: on assignment the gate is emptied and the consumer seeks every partition to its
stored offset + 1, so held events and their ENDs are read again. An END read again whose snapshot
is applied already (sequence number at or below the applied one) is ignored, as are BEGINs (the
END alone says a snapshot is complete) and duplicate ENDs.

Assumptions: one table's BEGIN/END stay in publish order (one partition per table on the
transaction topic: the job's `fixed` partitioner), so the END of an earlier snapshot is read
before the END of a later one; the consumer is the only member of its group (a member that is not
assigned the transaction topic, or some partitions of a table, never sees a snapshot complete);
the table's sequence numbers grow with each snapshot (Iceberg format v2).

Memory: held events are kept in memory, at most `max_held` of them (all topics together). A
snapshot larger than that can never be released whole: `admit` raises `ConfigError` naming the
snapshot, nothing of it is committed, and the consumer stops (raise `--max-held-events`, or apply
that stretch without `--snapshot-consistent`). So does a snapshot whose END never comes (a producer
with `cdc.transaction_metadata: false`), once the bound is reached; `held` counts what waits.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from icetide.errors import ConfigError, EventError
from icetide.events import loads, topic_for, transaction_topic

from connectors.base import Applied, Consumed, TopicPartition

log = logging.getLogger(__name__)
DEFAULT_MAX_HELD = 500_000  # about 1.5 GB: ~3 KB per held 8-column update, Kafka message included


@dataclass
class HeldSnapshot:
    """One snapshot of one topic being collected."""

    snapshot_id: int
    sequence: int
    events: dict[int, tuple[Consumed, Any]] = field(default_factory=dict)  # ordinal → first copy read, payload
    expected: int | None = None  # event count, from the END
    end_at: tuple[TopicPartition, int] | None = None  # where its (first) END was read
    first_offset: dict[TopicPartition, int] = field(default_factory=dict)  # per partition, lowest held

    @property
    def complete(self) -> bool:
        return self.expected is not None and len(self.events) >= self.expected


@dataclass(frozen=True)
class Boundary:
    """A decoded BEGIN/END record: which snapshot of which topic, and its event count (END)."""

    status: str
    topic: str
    snapshot_id: int
    sequence: int
    event_count: int | None


def parse_boundary(value: bytes | None, prefix: str) -> list[Boundary]:
    """The (topic, snapshot) boundaries one transaction record states; EventError if malformed."""
    if value is None:
        return []
    raw = loads(value)
    try:
        status, snapshot_id, sequence = str(raw["status"]), int(raw["snapshot_id"]), int(raw["sequence_number"])
        if status == "BEGIN":
            return []
        collections = raw["data_collections"] or []
        return [Boundary(status, f"{prefix}.{c['data_collection']}", snapshot_id, sequence, int(c["event_count"]))
                for c in collections]
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"bad transaction record: {exc!r}") from None


class SnapshotGate:
    """Releases change events in whole snapshots (module docstring)."""

    def __init__(self, prefix: str, max_held: int = DEFAULT_MAX_HELD) -> None:
        self.prefix = prefix
        self.topic = transaction_topic(prefix)
        self.max_held = max_held
        self.held = 0
        self._pending: dict[str, dict[int, HeldSnapshot]] = {}  # topic → snapshot id → held
        self._applied: dict[str, int] = {}  # topic → highest sequence number applied
        self._read: dict[TopicPartition, int] = {}  # highest offset read per partition
        self._topics: frozenset[str] | None = None  # the change topics consumed (None: any)

    def reset(self, applied: Mapping[TopicPartition, Applied], topics: Sequence[str] | None = None) -> None:
        """Forget everything held (the consumer seeks to the stored offsets) and learn, per topic,
        the highest sequence number the sink has applied."""
        self._pending.clear()
        self._read.clear()
        self._applied.clear()
        self.held = 0
        self._topics = frozenset(topics) if topics is not None else None
        for (topic, _part), done in applied.items():
            if done.event is not None:
                self._applied[topic] = max(self._applied.get(topic, done.event[0]), done.event[0])

    def take(self, tp: TopicPartition, msg: Any) -> bool:
        """Note a Kafka record read; True if it was a transaction record (consumed here)."""
        self.read(tp, msg.offset())
        if tp[0] != self.topic:
            return False
        self.boundary(tp, msg.offset(), msg.value())
        return True

    def read(self, tp: TopicPartition, offset: int) -> None:
        """Note a record read (any topic, any kind), for the offsets `admit` hands out."""
        if offset > self._read.get(tp, -1):
            self._read[tp] = offset

    def boundary(self, tp: TopicPartition, offset: int, value: bytes | None) -> None:
        """A record of the transaction topic: remember each END's event count until released."""
        self.read(tp, offset)
        try:
            found = parse_boundary(value, self.prefix)
        except EventError as exc:
            log.warning("ignoring %s[%s]@%s: %s", tp[0], tp[1], offset, exc)
            return
        for b in found:
            if b.event_count is None or (self._topics is not None and b.topic not in self._topics):
                continue  # a table this consumer does not apply
            done = self._applied.get(b.topic)
            if done is not None and b.sequence <= done:
                continue  # applied already (an END read again after a restart, or a duplicate)
            snap = self._snapshot(b.topic, b.snapshot_id, b.sequence)
            if snap.expected is None:
                snap.expected, snap.end_at = b.event_count, (tp, offset)

    def _snapshot(self, topic: str, snapshot_id: int, sequence: int) -> HeldSnapshot:
        per_topic = self._pending.setdefault(topic, {})
        snap = per_topic.get(snapshot_id)
        if snap is None:
            snap = per_topic[snapshot_id] = HeldSnapshot(snapshot_id, sequence)
        return snap

    def admit(self, items: Sequence[tuple[Consumed, Any]]
              ) -> tuple[list[tuple[Consumed, Any]], dict[TopicPartition, int]]:
        """Hold `items` (changes, each with a payload kept beside it: the consumer's Kafka message;
        every one already `read`), release whole snapshots: the items to apply now (in each
        topic's order) and the offsets the sink may store with them."""
        out: list[tuple[Consumed, Any]] = []
        for change, payload in items:
            source = change.event.source
            base = topic_for(self.prefix, source.db, source.table)
            done = self._applied.get(change.topic)
            if change.topic != base or (done is not None and source.sequence_number <= done):
                out.append((change, payload))  # not a base topic, or applied already: the sink decides
                continue
            snap = self._snapshot(change.topic, source.snapshot_id, source.sequence_number)
            if source.ordinal in snap.events:
                continue  # a re-published copy: the first one is held
            snap.events[source.ordinal] = (change, payload)
            tp = (change.topic, change.partition)
            if change.offset < snap.first_offset.get(tp, change.offset + 1):
                snap.first_offset[tp] = change.offset
            self.held += 1
        out += self._release()
        if self.held > self.max_held:
            raise ConfigError(self._too_much())
        return out, self.offsets()

    def _release(self) -> list[tuple[Consumed, Any]]:
        out: list[tuple[Consumed, Any]] = []
        for topic, per_topic in self._pending.items():
            for snap in sorted(per_topic.values(), key=lambda s: s.sequence):
                if not snap.complete:
                    break
                del per_topic[snap.snapshot_id]
                out += [snap.events[o] for o in sorted(snap.events)]
                self.held -= len(snap.events)
                self._applied[topic] = max(self._applied.get(topic, snap.sequence), snap.sequence)
        return out

    def offsets(self) -> dict[TopicPartition, int]:
        """Per partition read: the offset below the oldest record still needed (else the last read)."""
        needed: dict[TopicPartition, int] = {}
        for per_topic in self._pending.values():
            for snap in per_topic.values():
                marks = list(snap.first_offset.items()) + ([snap.end_at] if snap.end_at is not None else [])
                for tp, offset in marks:
                    needed[tp] = min(needed.get(tp, offset), offset)
        return {tp: (needed[tp] - 1 if tp in needed else last) for tp, last in self._read.items()}

    def oldest(self) -> HeldSnapshot | None:
        """The held snapshot with the lowest sequence number (what everything else waits for)."""
        snaps = [s for per_topic in self._pending.values() for s in per_topic.values() if s.events]
        return min(snaps, key=lambda s: s.sequence) if snaps else None

    def describe(self) -> str:
        snap = self.oldest()
        if snap is None:
            return "nothing held"
        topic = next(iter(snap.events.values()))[0].topic
        count = "END not read yet" if snap.expected is None else f"END says {snap.expected}"
        return f"{topic} snapshot {snap.snapshot_id}: {len(snap.events)} events held, {count}"

    def _too_much(self) -> str:
        return (f"--snapshot-consistent: {self.held} events held back waiting for whole snapshots, more than "
                f"--max-held-events {self.max_held} (oldest: {self.describe()}); raise --max-held-events "
                "(memory), or apply this stretch without --snapshot-consistent; nothing of an incomplete "
                "snapshot was committed")



def with_transaction_topic(gate: SnapshotGate | None, topics: list[str], available: Collection[str]) -> list[str]:
    """The change topics, plus the transaction topic when the gate needs it and it exists."""
    if gate is None or gate.topic in topics:
        return topics
    if gate.topic not in available:
        log.warning("--snapshot-consistent: no topic %s yet (is cdc.transaction_metadata on?); "
                    "events are held until their END records arrive", gate.topic)
        return topics
    return sorted([*topics, gate.topic])
