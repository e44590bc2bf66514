"""The consumer loop: Kafka change events → one sink, batch by batch, exactly-once in effect.

Per poll batch: decode every record (poison → dead-letter topic), flush the dead letters, then
`sink.apply()` the changes together with the highest offset seen per (topic, partition), in one
transaction. If the batch fails with a terminal error, it is retried event by event so that only
the culprit goes to the dead-letter topic. Positions come from the sink: on assignment the
consumer seeks to stored + 1, never to Kafka's committed offsets (those are written too, for
outside lag tools only). `--once` stops when the end offsets that existed at start are reached; the
records between the starting positions and those end offsets (the lag to drain) are its progress bar.

A transient sink error (the database is full, away, out of connections: `connectors/retry.py`) is
never a reason to dead-letter or to exit: opening the sink, loading positions on assignment and
applying a batch are retried with back-off until they succeed (or the consumer is stopped). Topic
selection and the audience rule (an audience's events never reach a base table) are in
`connectors/topics.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from icetide import kafka_client
from icetide.console import Bar
from icetide.errors import EventError, TransientError
from icetide.settings import Settings

from connectors.base import Consumed, Sink, TopicPartition
from connectors.metrics import ConsumerMetrics
from connectors.records import AvroDecoder, DeadLetters, decode
from connectors.retry import SinkHealth, Stopped, call_until_ok
from connectors.schemas import SchemaBook
from connectors.snapshots import DEFAULT_MAX_HELD, SnapshotGate, with_transaction_topic
from connectors.summary import Summary
from connectors.topics import checked
from connectors.topics import default_pattern as default_pattern
from connectors.topics import select_topics as _select_topics

log = logging.getLogger(__name__)
TOPIC_REFRESH_S = 5.0
LAG_REFRESH_S = 2.0


@dataclass
class ConsumeOptions:
    topics: list[str] | None = None  # explicit topics, else `pattern`
    pattern: str | None = None  # default: ^<prefix>\. (audience, dead-letter, schema-change topics excluded)
    audience: str | None = None  # apply this policy user's audience topics (into sec_<user>__<ns> tables)
    once: bool = False
    idle_timeout_s: float = 30.0  # --once: give up after this long without records (once assigned)
    assign_timeout_s: float = 120.0  # --once: give up if no partition is assigned within this time
    poll_timeout_s: float = 0.5
    batch_size: int | None = None  # default: settings.sink.batch_size
    schema_registry_url: str | None = None  # needed for Avro (Confluent wire format) records
    retry_max_delay_s: float = 30.0  # cap of the back-off while the sink is unavailable (retried without end)
    snapshot_consistent: bool = False  # commit whole snapshots only (connectors/snapshots.py)
    max_held_events: int = DEFAULT_MAX_HELD  # --snapshot-consistent: events held in memory at most


def select_topics(available: list[str], settings: Settings, options: ConsumeOptions) -> list[str]:
    """The change topics of `options.audience` (None: base tables); see connectors/topics.py."""
    return _select_topics(available, settings, options.topics, options.pattern, options.audience)


class ChangeConsumer:
    """Consumes change events into `sink` until stopped (or, with `once`, until caught up)."""

    def __init__(self, settings: Settings, sink: Sink, bootstrap: str, options: ConsumeOptions,
                 metrics: ConsumerMetrics | None = None, bar: Bar | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.bootstrap = bootstrap
        self.options = options
        self.metrics = metrics or ConsumerMetrics()
        self.summary = Summary()
        self.stop = threading.Event()
        self._next: dict[TopicPartition, int] = {}  # next offset to read, per assigned partition
        self._ends: dict[TopicPartition, int] = {}
        self._starts: dict[TopicPartition, int] = {}  # --once: the first offset to read, per partition
        self.bar = bar
        self._consumer: Any = None
        self._assigned_at: float | None = None
        self.health = SinkHealth(self.metrics, sink.kind, options.retry_max_delay_s)
        self._pending: list[Any] | None = None  # assigned while the sink was away: positions not loaded yet
        self._pending_retry_at = 0.0
        self.dead = DeadLetters(bootstrap, settings.dead_letter_topic, settings)
        prefix = settings.cdc.topic_prefix
        self.schemas = SchemaBook(bootstrap, f"{prefix}.schema-changes", prefix, settings)  # types of plain JSON
        self.avro: AvroDecoder | None = None
        if options.schema_registry_url:
            from icetide.schema_registry import SchemaRegistryClient

            self.avro = AvroDecoder(SchemaRegistryClient(options.schema_registry_url).schema)
        self.gate = SnapshotGate(settings.cdc.topic_prefix, options.max_held_events) \
            if options.snapshot_consistent else None

    # -- Kafka plumbing ------------------------------------------------------------------------
    def _make_consumer(self) -> Any:
        return kafka_client.consumer(self.settings, "apply", self.bootstrap, {
            "group.id": self.settings.sink.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500,
            "logger": logging.getLogger("icetide.kafka.consumer"),
        })

    def _topics(self) -> list[str] | None:
        """The topics to read; None while the cluster does not answer (a broker restarting)."""
        from confluent_kafka import KafkaException

        try:
            meta = self._consumer.list_topics(timeout=10)
        except KafkaException as exc:
            log.warning("cannot list topics (%s); trying again", exc)
            return None
        topics = select_topics(list(meta.topics), self.settings, self.options)
        return with_transaction_topic(self.gate, topics, meta.topics)

    def _first_topics(self) -> list[str]:
        """Wait until the cluster answers (--once: at most assign_timeout_s, then TransientError)."""
        started = time.monotonic()
        while (topics := self._topics()) is None:
            if self.stop.is_set():
                return []
            if self.options.once and time.monotonic() - started > self.options.assign_timeout_s:
                raise TransientError(f"Kafka at {self.bootstrap} did not answer within "
                                     f"{self.options.assign_timeout_s:.0f}s")
            time.sleep(1.0)
        return topics

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Seek each partition to its stored position + 1. If the sink cannot tell (transient), assign
        nothing for now (nothing is fetched) and let the loop try again (`_assign_pending`): an error
        raised here would end the consumer."""
        from confluent_kafka import OFFSET_BEGINNING

        try:
            stored = self.sink.positions()
        except TransientError as exc:
            consumer.assign([])  # an assignment is made, so the client does not assign from Kafka's offsets
            self._pending = list(partitions)
            self._pending_retry_at = time.monotonic() + self.health.failed(exc)
            return
        self._pending = None
        self.health.ok()
        if self.gate is not None:  # held events are read again from the stored offsets
            self.gate.reset(self.sink.applied(), [tp.topic for tp in partitions])
        for tp in partitions:
            done = stored.get((tp.topic, tp.partition))
            tp.offset = done + 1 if done is not None else OFFSET_BEGINNING
            self._next[(tp.topic, tp.partition)] = max(done + 1 if done is not None else 0, 0)
            self._starts.setdefault((tp.topic, tp.partition), self._next[(tp.topic, tp.partition)])
        consumer.assign(partitions)
        self._assigned_at = time.monotonic()
        self._report_progress()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._next.pop((tp.topic, tp.partition), None)
        if self._pending is not None:
            gone = {(tp.topic, tp.partition) for tp in partitions}
            self._pending = [tp for tp in self._pending if (tp.topic, tp.partition) not in gone] or None
        consumer.unassign()

    def _assign_pending(self) -> None:
        """Partitions assigned while the sink was away: reopen it and load their positions again."""
        if self._pending is None or time.monotonic() < self._pending_retry_at:
            return
        try:
            self._reopen()
        except TransientError as exc:
            self._pending_retry_at = time.monotonic() + self.health.failed(exc)
            return
        self._on_assign(self._consumer, self._pending)

    def _end_offsets(self, topics: list[str]) -> dict[TopicPartition, int]:
        from confluent_kafka import TopicPartition as KafkaTP

        meta = self._consumer.list_topics(timeout=10)
        ends = {}
        for topic in topics:
            for part in meta.topics[topic].partitions:
                ends[(topic, part)] = self._consumer.get_watermark_offsets(KafkaTP(topic, part), timeout=10)[1]
        return ends

    def _report_progress(self) -> None:
        """--once: records read of the lag to drain (end offsets at start − starting positions), per assigned
        partition. Offsets count every record, transaction markers and tombstones too."""
        if self.bar is None or not self._ends:
            return
        total = done = 0
        for tp, start in self._starts.items():
            end = self._ends.get(tp, start)
            total += max(0, end - start)
            done += max(0, min(self._next.get(tp, start), end) - start)
        self.bar.update(completed=done, total=total)

    def _caught_up(self) -> bool:
        """--once: every partition read up to the end offset it had at start."""
        from confluent_kafka import TopicPartition as KafkaTP

        stored = call_until_ok(self.health, self.stop, self.sink.positions, self._reopen)
        pending = []
        for tp, end in self._ends.items():
            if end == 0 or stored.get(tp, -1) + 1 >= end or self._next.get(tp, 0) >= end:
                continue
            pending.append(tp)
        if not pending:
            return True
        # A transaction's commit marker occupies the last offset: ask where the fetcher stands.
        positions = self._consumer.position([KafkaTP(t, p) for t, p in pending])
        return all(kt.offset >= self._ends[(kt.topic, kt.partition)] for kt in positions)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> Summary:
        started = time.monotonic()
        self._consumer = self._make_consumer()
        try:
            self._loop()
        except Stopped:
            log.info("stopped while waiting for the sink; positions stay where the last batch left them")
        finally:
            self.summary.seconds = time.monotonic() - started
            self.summary.held = self.gate.held if self.gate is not None else 0
            self._consumer.close()
            self.schemas.close()
            self.dead.flush()
        return self.summary

    def _loop(self) -> None:
        topics = self._first_topics()
        if self.options.once:
            self._ends = self._end_offsets(topics)
        self.summary.topics = topics
        if topics:
            self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        batch_size = self.options.batch_size or self.settings.sink.batch_size
        started = last_record = last_refresh = last_lag = time.monotonic()
        while not self.stop.is_set():
            self._assign_pending()
            if self.options.once and (not topics or self._caught_up()):
                return
            msgs = self._consumer.consume(batch_size, self.options.poll_timeout_s) if topics else []
            now = time.monotonic()
            if msgs:
                if self.summary.first_record_at is None:
                    self.summary.first_record_at = now
                self._handle(msgs)
                self.summary.last_batch_at = last_record = time.monotonic()  # after any wait for the sink
            elif self.options.once and self._gave_up(now, started, last_record):
                self.summary.caught_up = False
                return
            else:
                time.sleep(0 if topics else self.options.poll_timeout_s)
            if now - last_lag > LAG_REFRESH_S:
                self._update_lag()
                last_lag = now
            if not self.options.once and now - last_refresh > TOPIC_REFRESH_S:
                fresh = self._topics()  # None while the broker is away: keep reading what we have
                if fresh and fresh != topics:
                    topics = fresh
                    self.summary.topics = topics
                    self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
                last_refresh = now

    def _gave_up(self, now: float, started: float, last_record: float) -> bool:
        """--once without progress: no assignment (another member holds the partitions?) or idle.
        Never while the sink is retrying: that wait has no bound (see the module docstring)."""
        if self._pending is not None or self.health.retrying:
            return False
        if self._assigned_at is None:
            if now - started > self.options.assign_timeout_s:
                log.warning("--once: no partitions assigned within %.0fs (group %s busy?)",
                            now - started, self.settings.sink.group_id)
                return True
            return False
        idle = now - max(last_record, self._assigned_at)
        if idle > self.options.idle_timeout_s:
            log.warning("--once: no records for %.0fs; stopping before the end offsets", idle)
            return True
        return False

    def _handle(self, msgs: list[Any]) -> None:
        changes: list[Consumed] = []
        by_position: dict[tuple[str, int, int], Any] = {}
        positions: dict[TopicPartition, int] = {}
        for msg in msgs:
            if msg.error():
                log.warning("consumer error: %s", msg.error())
                continue
            tp = (msg.topic(), msg.partition())
            positions[tp] = max(positions.get(tp, -1), msg.offset())
            if self.gate is not None and self.gate.take(tp, msg):
                continue
            try:
                change = decode(msg, self.avro)
            except EventError as exc:
                self._dead_letter(msg, "decode", str(exc))
                continue
            if change is not None:
                change = checked(change, self.options.audience, self.settings.cdc.topic_prefix)
                changes.append(change)
                by_position[(change.topic, change.partition, change.offset)] = msg
        if not positions:
            return
        changes = self.schemas.attach(changes)
        if self.gate is not None:  # only whole snapshots go on; the offsets stop before what is held
            released, positions = self.gate.admit([(c, by_position[(c.topic, c.partition, c.offset)]) for c in changes])
            changes, by_position = [c for c, _ in released], {(c.topic, c.partition, c.offset): m for c, m in released}
            self.metrics.held.set(self.gate.held)
        self.dead.flush()  # dead letters are safe before the positions that skip them are stored
        try:
            self._apply(changes, positions)
        except EventError as exc:
            log.warning("batch failed (%s); applying it event by event to isolate the culprit", exc)
            for change in changes:
                tp = (change.topic, change.partition)
                one = {tp: min(change.offset, positions[tp])}  # never past what the gate still holds
                try:
                    self._apply([change], one)
                except EventError as err:
                    self._dead_letter(by_position[(change.topic, change.partition, change.offset)], "apply", str(err))
                    self.dead.flush()
                    self._apply([], one)
            self._apply([], positions)
        for tp, off in positions.items():
            if tp in self._next:
                self._next[tp] = max(self._next[tp], off + 1)
        self._commit_kafka(positions)
        self._report_progress()

    def _apply(self, changes: list[Consumed], positions: dict[TopicPartition, int]) -> None:
        """sink.apply, retried without end on transient errors (reopening the sink between tries)."""
        result = call_until_ok(self.health, self.stop, lambda: self.sink.apply(changes, positions), self._reopen)
        now_ms = time.time() * 1000
        m, s = self.metrics, self.summary
        for (table, op), n in result.applied.items():
            m.applied.labels(table=table, op=op).inc(n)
        for change in result.applied_changes:
            latency = max(0.0, (now_ms - change.event.source.commit_ts_ms) / 1000)
            m.commit_to_apply.observe(latency)
            s.observe(latency)
        for table, snapshot in result.last_snapshot.items():
            m.last_snapshot.labels(table=table).set(snapshot)
        s.applied += result.total
        s.skipped += result.skipped
        s.replayed += result.replayed
        s.by_table_op.update(result.applied)
        s.batches += 1
        m.batches.inc()

    def _reopen(self) -> None:
        """Close the (broken) sink and open it again; TransientError if it cannot be opened yet."""
        try:
            self.sink.close()
        except Exception:  # the connection is already broken; opening anew is the point
            log.debug("closing a broken sink failed", exc_info=True)
        self.sink.open()

    def _dead_letter(self, msg: Any, reason: str, error: str) -> None:
        log.warning("dead-lettering %s[%s]@%s (%s): %s", msg.topic(), msg.partition(), msg.offset(), reason, error)
        self.dead.send(msg, reason, error)
        self.metrics.dead_letters.labels(reason=reason).inc()
        self.summary.dead_letters += 1

    def _commit_kafka(self, positions: dict[TopicPartition, int]) -> None:
        """Mirror the sink's positions into Kafka (for lag tools only; never read back)."""
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTP

        offsets = [KafkaTP(t, p, off + 1) for (t, p), off in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.debug("kafka offset commit skipped: %s", exc)

    def _update_lag(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTP

        for (topic, part), nxt in list(self._next.items()):
            try:
                high = self._consumer.get_watermark_offsets(KafkaTP(topic, part), cached=True)[1]
            except KafkaException:
                continue
            self.metrics.lag.labels(topic=topic, partition=str(part)).set(max(0, high - nxt))


def run_consumer(settings: Settings, sink: Sink, bootstrap: str, options: ConsumeOptions,
                 metrics: ConsumerMetrics | None = None,
                 on_start: Callable[[ChangeConsumer], None] | None = None, bar: Bar | None = None) -> Summary:
    """Open the sink (retried until it opens or the consumer is stopped), consume, close; returns the
    run's summary. `on_start` runs first (e.g. to install signal handlers that set `consumer.stop`);
    `bar` (--once) is told the lag drained so far."""
    consumer = ChangeConsumer(settings, sink, bootstrap, options, metrics, bar)
    if on_start is not None:
        on_start(consumer)
    try:
        call_until_ok(consumer.health, consumer.stop, sink.open)
    except Stopped:
        return consumer.summary
    try:
        return consumer.run()
    finally:
        sink.close()
