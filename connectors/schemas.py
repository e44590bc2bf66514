"""Row schemas of plain JSON change events, from `<prefix>.schema-changes`.

The job publishes one schema-change record per table and Iceberg schema version (keyed by
{db, table}) before the first event in that schema (`streaming.poller.schema_change`). A JSON event
names its schema only by `source.schema_id`, so the consumer keeps a map (db, table, schema_id) →
`RowSchema` read from that topic and attaches the schema to each change that lacks one. A miss reads
the topic up to its current end first (at most once per second): the record may have been committed
just after the event, on its own topic. Still nothing (a foreign producer, a schema-change record no
longer retained): the change keeps no schema, and the sink types its columns from what it knew
before or infers them from the first values.

Only events on a table's base topic (`<prefix>.<namespace>.<table>`) get the schema: audience topics
carry masked values whose types differ (a hashed number is a string).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from icetide import kafka_client
from icetide.errors import EventError
from icetide.events import loads, topic_for
from icetide.rowschema import RowSchema
from icetide.settings import Settings

from connectors.base import Consumed

log = logging.getLogger(__name__)
REFRESH_EVERY_S = 1.0
READ_TIMEOUT_S = 10.0
SchemaKey = tuple[str, str, int]  # (db, table, schema_id)


def schema_key(value: dict[str, Any]) -> SchemaKey:
    """The (db, table, schema_id) a schema-change record describes."""
    try:
        source = value["source"]
        return str(source["db"]), str(source["table"]), int(value.get("schema_id", source.get("schema_id", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"bad schema-change record: {exc!r}") from None


class SchemaBook:
    """(db, table, schema_id) → RowSchema, read from the schema-change topic on demand."""

    def __init__(self, bootstrap: str, topic: str, prefix: str, settings: Settings | None = None) -> None:
        self.bootstrap, self.topic, self.prefix = bootstrap, topic, prefix
        self.settings = settings or Settings()  # its Kafka security (`kafka_client`, principal `apply`)
        self.schemas: dict[SchemaKey, RowSchema] = {}
        self._consumer: Any = None
        self._next: dict[int, int] = {}  # partition → next offset to read
        self._refreshed = float("-inf")

    def add(self, value: dict[str, Any]) -> None:
        self.schemas[schema_key(value)] = RowSchema.from_schema_change(value)

    def attach(self, changes: Sequence[Consumed]) -> list[Consumed]:
        """`changes`, each base-topic change without a schema given the one its schema id names."""
        out = list(changes)
        for i, change in enumerate(out):
            if change.schema is not None:
                continue
            source = change.event.source
            if change.topic != topic_for(self.prefix, source.db, source.table):
                continue
            key = (source.db, source.table, source.schema_id)
            if key not in self.schemas and time.monotonic() - self._refreshed >= REFRESH_EVERY_S:
                self.refresh()
            schema = self.schemas.get(key)
            if schema is not None:
                out[i] = replace(change, schema=schema)
        return out

    def refresh(self) -> None:
        """Read the schema-change topic from where we stand to its current end (or for READ_TIMEOUT_S)."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        self._refreshed = time.monotonic()
        try:
            if self._consumer is None:
                self._consumer = kafka_client.consumer(
                    self.settings, "apply", self.bootstrap,
                    {"group.id": "icetide-schemas", "enable.auto.commit": False, "isolation.level": "read_committed",
                     "logger": logging.getLogger("icetide.kafka.schemas")})
            meta = self._consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if meta is None or meta.error is not None:
                return  # no schema-change topic (yet): nothing to learn
            ends = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5)[1]
                    for p in meta.partitions}
            todo = {p for p, end in ends.items() if self._next.get(p, 0) < end}
            if not todo:
                return
            self._consumer.assign([TopicPartition(self.topic, p, self._next.get(p, OFFSET_BEGINNING)) for p in todo])
            deadline = time.monotonic() + READ_TIMEOUT_S
            while todo and time.monotonic() < deadline:
                for msg in self._consumer.consume(500, 0.2):
                    if msg.error() is None:
                        self._read(msg)
                        self._next[msg.partition()] = msg.offset() + 1
                # a transaction's commit marker takes the last offset: ask where the fetcher stands
                for tp in self._consumer.position([TopicPartition(self.topic, p) for p in todo]):
                    if tp.offset >= ends[tp.partition]:
                        self._next[tp.partition] = max(self._next.get(tp.partition, 0), tp.offset)
                        todo.discard(tp.partition)
            self._consumer.unassign()
        except KafkaException as exc:
            log.warning("cannot read %s (%s); events keep the types known so far", self.topic, exc)

    def _read(self, msg: Any) -> None:
        try:
            value = loads(msg.value()) if msg.value() is not None else None
            if isinstance(value, dict):
                self.add(value)
        except EventError as exc:
            log.warning("skipping %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), exc)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
